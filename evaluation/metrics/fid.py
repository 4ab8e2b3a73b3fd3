"""Fréchet distance between two Gaussians (FID / pFID), as torch-fidelity computes it."""

from __future__ import annotations

import numpy as np
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

from urcdm.errors import UserError


def frechet_distance(mean_1: np.ndarray, cov_1: np.ndarray, mean_2: np.ndarray, cov_2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians, as torch-fidelity computes FID."""
    if mean_1.shape != mean_2.shape or cov_1.shape != cov_2.shape:
        raise UserError(f"feature dimensions differ: {mean_1.shape[0]} vs {mean_2.shape[0]}")
    stat_1 = {"mu": np.asarray(mean_1, np.float64), "sigma": np.asarray(cov_1, np.float64)}
    stat_2 = {"mu": np.asarray(mean_2, np.float64), "sigma": np.asarray(cov_2, np.float64)}
    return float(fid_statistics_to_metric(stat_1, stat_2, verbose=False)[KEY_METRIC_FID])

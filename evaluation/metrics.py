"""Statistics -> numbers: Fréchet distance (FID / pFID), KID, improved precision/recall.

Thin wrappers over torch-fidelity's implementations, so our numbers are the reference tool's
numbers on the same features; tests check them against clean-fid and closed forms as well.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

from urcdm.errors import UserError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PRC_NEIGHBOURHOOD = 3


def frechet_distance(mean_1: np.ndarray, cov_1: np.ndarray, mean_2: np.ndarray, cov_2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians, as torch-fidelity computes FID."""
    if mean_1.shape != mean_2.shape or cov_1.shape != cov_2.shape:
        raise UserError(f"feature dimensions differ: {mean_1.shape[0]} vs {mean_2.shape[0]}")
    stat_1 = {"mu": np.asarray(mean_1, np.float64), "sigma": np.asarray(cov_1, np.float64)}
    stat_2 = {"mu": np.asarray(mean_2, np.float64), "sigma": np.asarray(cov_2, np.float64)}
    return float(fid_statistics_to_metric(stat_1, stat_2, verbose=False)[KEY_METRIC_FID])


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 2020) -> tuple[float, float, int]:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets.

    Returns (mean, std, subset size used): the subset size shrinks to the smaller set when either
    has fewer than ``subset_size`` samples, and the size used is reported with the result.
    """
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise UserError("KID needs at least 2 samples on each side")
    out = kid_features_to_metric(_tensor(real), _tensor(fake), kid_subsets=subsets, kid_subset_size=size,
                                 kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                 kid_kernel_poly_coef0=1, rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD], size


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PRC_NEIGHBOURHOOD, batch_size: int = 10000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Precision: the fraction of fake samples inside the real manifold; recall: real inside fake.
    torch-fidelity >= 0.4 takes (generated, real) in that order; before 0.4 the two were swapped.
    """
    if min(len(real), len(fake)) <= k:
        raise UserError(f"precision/recall with k = {k} needs more than {k} samples on each side")
    out = prc_features_to_metric(_tensor(fake), _tensor(real), prc_neighborhood=k, prc_batch_size=batch_size,
                                 save_cpu_ram=True, verbose=False)
    return out[KEY_METRIC_PRECISION], out[KEY_METRIC_RECALL]


def _tensor(features: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

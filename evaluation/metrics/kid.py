"""Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel, via torch-fidelity."""

from __future__ import annotations

import numpy as np
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from evaluation.defaults import KID_SUBSET_SIZE, KID_SUBSETS
from evaluation.metrics._inputs import as_float32_tensor
from urcdm.errors import UserError


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 2020) -> tuple[float, float, int]:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets.

    Returns (mean, std, subset size used): the subset size shrinks to the smaller set when either
    has fewer than ``subset_size`` samples, and the size used is reported with the result.
    """
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise UserError("KID needs at least 2 samples on each side")
    out = kid_features_to_metric(as_float32_tensor(real), as_float32_tensor(fake), kid_subsets=subsets,
                                 kid_subset_size=size, kid_kernel="poly", kid_kernel_poly_degree=3,
                                 kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD], size

"""Improved precision and recall (Kynkäänniemi et al. 2019), via torch-fidelity."""

from __future__ import annotations

import numpy as np
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

from evaluation.defaults import PRC_NEIGHBOURHOOD
from evaluation.metrics._inputs import as_float32_tensor
from urcdm.errors import UserError


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PRC_NEIGHBOURHOOD, batch_size: int = 10000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Precision: the fraction of fake samples inside the real manifold; recall: real inside fake.
    torch-fidelity >= 0.4 takes (generated, real) in that order; before 0.4 the two were swapped.
    """
    if min(len(real), len(fake)) <= k:
        raise UserError(f"precision/recall with k = {k} needs more than {k} samples on each side")
    out = prc_features_to_metric(as_float32_tensor(fake), as_float32_tensor(real), prc_neighborhood=k,
                                 prc_batch_size=batch_size, save_cpu_ram=True, verbose=False)
    return out[KEY_METRIC_PRECISION], out[KEY_METRIC_RECALL]

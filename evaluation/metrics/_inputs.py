"""Shared input handling: validation with one clear ``UserError``, and float32 tensors for torch-fidelity."""

from __future__ import annotations

import numpy as np
import torch

from urcdm.errors import UserError


def as_float32_tensor(features: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))


def checked_feature_sets(real: np.ndarray, fake: np.ndarray, metric: str, min_real: int, min_fake: int,
                         why: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Both sides as 2-D arrays of finite features with one width, enough rows each; else a UserError.

    ``why`` says where the minimum comes from (e.g. the k of a k-NN radius), for the message.
    """
    real, fake = np.asarray(real), np.asarray(fake)
    for side, features in (("real", real), ("fake", fake)):
        if features.ndim != 2:
            raise UserError(f"{metric}: the {side} features must be a 2-D array (samples x dimensions), "
                            f"got shape {features.shape}")
    if real.shape[1] != fake.shape[1]:
        raise UserError(f"feature dimensions differ: {real.shape[1]} (real) vs {fake.shape[1]} (fake)")
    if len(real) < min_real or len(fake) < min_fake:
        raise UserError(f"{metric} needs at least {min_real} real and {min_fake} fake samples{why}; "
                        f"got {len(real)} real and {len(fake)} fake")
    for side, features in (("real", real), ("fake", fake)):
        if not _all_finite(features):
            raise UserError(f"{metric}: the {side} features contain NaN or inf")
    return real, fake


def _all_finite(features: np.ndarray, rows_per_check: int = 4096) -> bool:
    # In row chunks: np.isfinite on 50k x 2048 features would allocate a 100 MB mask at once.
    return all(np.isfinite(features[start:start + rows_per_check]).all()
               for start in range(0, len(features), rows_per_check))

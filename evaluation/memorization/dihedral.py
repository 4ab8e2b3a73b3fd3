"""The 8 flips and quarter turns of a square crop (the dihedral group D4), for tensors and arrays.

A slide has no "up": the training pipeline itself augments with these 8 transforms, so a model
that memorised a training region may well reproduce it flipped or turned. Transform ``t`` (0..7)
is: mirror left-right when ``t >= 4``, then turn ``t % 4`` quarter turns counter-clockwise.

Why the *queries* are transformed, not the training crops: the training lattice is the largest set
by far (every cell of every training slide) and feature extraction is the dominant cost, so
multiplying it by 8 would multiply the whole audit's cost and the database's memory by 8; the
synthetic and held-out samples are a fixed, smaller ``n``. The held-out calibration crops are
queried in exactly the same way, so the threshold already accounts for the higher chance
similarity that a best-of-8 brings.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from evaluation.features import Extractor

TRANSFORMS = 8
TRANSFORM_NAMES = ("identity", "rot90", "rot180", "rot270", "flip", "flip+rot90", "flip+rot180", "flip+rot270")


def inverse_transform(transform: int) -> int:
    """The transform that undoes ``transform``: quarter turns turn back, mirrorings are their own inverse."""
    return transform if transform >= 4 else (4 - transform) % 4


def transform_tensor(images: torch.Tensor, transform: int) -> torch.Tensor:
    """Transform ``transform`` applied to a (..., H, W) batch (H == W for quarter turns)."""
    if transform >= 4:
        images = torch.flip(images, dims=(-1,))
    return torch.rot90(images, transform % 4, dims=(-2, -1))


def transform_array(image: np.ndarray, transform: int) -> np.ndarray:
    """The same transform on an (H, W, ...) array, as displayed (rows down, columns right)."""
    if transform >= 4:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, transform % 4, axes=(0, 1)))


def dihedral_extractor(extractor: Extractor) -> Extractor:
    """An extractor giving, per crop, the features of all 8 transforms side by side: (B, 8 * D),
    transform-major within a row (``reshape(B, 8, D)`` recovers them)."""
    network = extractor.fn

    def all_orientations(images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"dihedral queries need square crops, got {tuple(images.shape[-2:])}")
        batch = torch.cat([transform_tensor(images, t) for t in range(TRANSFORMS)])
        features = torch.as_tensor(network(batch))
        count = images.shape[0]
        return features.reshape(TRANSFORMS, count, -1).transpose(0, 1).reshape(count, -1)

    return replace(extractor, id=f"{extractor.id}+dihedral{TRANSFORMS}", fn=all_orientations, standard=False)

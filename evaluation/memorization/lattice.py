"""Training crops on a dense lattice (pure; no I/O).

A random sample of training crops could miss the very region a model copied; a lattice with stride
``s`` guarantees that any square of the same span anywhere on a training slide lies within
``s / 2`` pixels (in x and in y) of a lattice crop. At the default stride of half the span that is
a quarter of the span, so a copied square overlaps its nearest lattice crop by at least
(3/4)^2 = 56 % of its area; the nearest-neighbour search then has to bridge the rest.

Rows use the crop-table format of :mod:`evaluation.crops` (``CROP_COLUMNS``), frame = the whole
image, so the same ``CropDataset`` reads them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evaluation.crops import CROP_COLUMNS, CropFilter
from evaluation.inputs import ImageInfo
from urcdm.errors import UserError


def lattice_stride(span: int, stride_fraction: float) -> int:
    """The lattice step in level-0 pixels: ``stride_fraction`` of the span, at least one pixel."""
    if not 0.0 < stride_fraction <= 1.0:
        raise UserError(f"--stride-fraction must be in (0, 1], got {stride_fraction:g}")
    return max(1, int(round(span * stride_fraction)))


def lattice_positions(length: int, span: int, stride: int) -> np.ndarray:
    """Crop origins along one axis of ``length`` pixels: 0, stride, 2 stride, ... and, when that
    leaves a strip uncovered at the far edge, one more crop flush with it (so every pixel is in
    some crop and no position is further than stride / 2 from a lattice origin)."""
    if span > length:
        return np.empty(0, dtype=np.int64)
    positions = np.arange(0, length - span + 1, stride, dtype=np.int64)
    if positions[-1] != length - span:
        positions = np.append(positions, length - span)
    return positions


def lattice_crops(images: Sequence[ImageInfo], span: int, stride: int, accept: CropFilter | None = None) -> np.ndarray:
    """Every lattice crop of every image as a float64 (n, 8) crop table, sorted by image then
    row-major; ``accept(image_index, x, y, size)`` may leave cells out (e.g. glass).
    Images smaller than the span contribute nothing."""
    if span < 1 or stride < 1:
        raise UserError(f"lattice span and stride must be positive, got {span} and {stride}")
    tables = []
    for index, image in enumerate(images):
        xs = lattice_positions(image.width, span, stride)
        ys = lattice_positions(image.height, span, stride)
        if not xs.size or not ys.size:
            continue
        grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
        origins = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
        if accept is not None:
            keep = np.fromiter((accept(index, float(x), float(y), float(span)) for x, y in origins), dtype=bool, count=len(origins))
            origins = origins[keep]
        table = np.empty((len(origins), len(CROP_COLUMNS)), dtype=np.float64)
        table[:, 0] = index
        table[:, 1:3] = origins
        table[:, 3] = span
        table[:, 4:8] = (0, 0, image.width, image.height)
        tables.append(table)
    return np.concatenate(tables) if tables else np.empty((0, len(CROP_COLUMNS)), dtype=np.float64)

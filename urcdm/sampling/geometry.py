"""Where every patch of every level lies (pure maths: no I/O, no models).

Frames. Level 0 is one patch covering ``levels[0].span`` slide pixels. Level L >= 1 is stitched from a
``grid x grid`` array of patches, ``stride = patch x (1 - overlap)`` apart, into an image of
``patch + (grid - 1) x stride`` pixels at ``levels[L].span / patch`` slide pixels per pixel. Every
level's image is centred on the same slide point (the centre of the level-0 patch), so level 1 of the
paper (6400 px x 6.35) and level 2 (41344 px x 1) both cover a little more than level 0's 40000 px.

A patch's context is the previous level's image around the patch's centre, a window of
``levels[L-1].span`` slide pixels, which is exactly ``patch`` pixels of the previous level's image:
what the level's unets were trained to condition on (``urcdm.training.pairs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from urcdm.config import URCDMConfig

Patch = tuple[int, int]  # (row, column)


@dataclass(frozen=True)
class LevelGrid:
    level: int
    grid: int
    patch: int
    stride: int
    scale: float            # slide pixels per pixel of this level's image
    origin: float           # slide coordinate of this level's pixel (0, 0), on both axes

    @classmethod
    def of(cls, config: URCDMConfig, level: int) -> "LevelGrid":
        spec = config.levels[level]
        scale = spec.span / config.patch_px
        size = config.patch_px + (spec.grid - 1) * config.stride
        centre = config.levels[0].span / 2
        return cls(level, spec.grid, config.patch_px, config.stride, scale, centre - size * scale / 2)

    @property
    def size(self) -> int:
        """Side of the stitched image in pixels."""
        return self.patch + (self.grid - 1) * self.stride

    @property
    def patches(self) -> list[Patch]:
        return [(row, col) for row in range(self.grid) for col in range(self.grid)]

    def index(self, patch: Patch) -> int:
        return patch[0] * self.grid + patch[1]

    def box(self, patch: Patch) -> tuple[int, int]:
        """(x, y) of the patch's top-left corner in this level's image."""
        row, col = patch
        return col * self.stride, row * self.stride

    def slide_box(self, patch: Patch) -> tuple[float, float, float]:
        """(x, y, side) of the patch in slide pixels."""
        x, y = self.box(patch)
        return self.origin + x * self.scale, self.origin + y * self.scale, self.patch * self.scale

    def centre(self, patch: Patch) -> tuple[float, float]:
        """The patch's centre in slide pixels."""
        x, y, side = self.slide_box(patch)
        return x + side / 2, y + side / 2

    def overlaps(self, a: Patch, b: Patch) -> bool:
        return a != b and abs(a[0] - b[0]) * self.stride < self.patch and abs(a[1] - b[1]) * self.stride < self.patch

    def neighbours(self, patch: Patch) -> list[Patch]:
        """Patches sharing pixels with ``patch`` (with overlap < 50 %: the 8 around it)."""
        reach = -(-self.patch // self.stride) - 1  # how many strides still overlap
        row, col = patch
        return [(r, c) for r in range(max(row - reach, 0), min(row + reach + 1, self.grid))
                for c in range(max(col - reach, 0), min(col + reach + 1, self.grid)) if (r, c) != patch]


def context_window(previous: LevelGrid, centre: tuple[float, float], context_span: float) -> tuple[float, float, float]:
    """(x, y, side) in the previous level's image pixels of the context centred on ``centre`` (slide px)."""
    side = context_span / previous.scale
    return (centre[0] - previous.origin) / previous.scale - side / 2, (centre[1] - previous.origin) / previous.scale - side / 2, side


def patch_context(config: URCDMConfig, level: int, patch: Patch) -> tuple[float, float, float]:
    """The context window of a level-L patch (L >= 1) in the previous level's image pixels."""
    if level < 1:
        raise ValueError("level 0 has no context")
    grid, previous = LevelGrid.of(config, level), LevelGrid.of(config, level - 1)
    return context_window(previous, grid.centre(patch), config.levels[level - 1].span)


def known_mask(grid: LevelGrid, patch: Patch, finished: Iterable[Patch]) -> np.ndarray:
    """(patch, patch) bool, True where a finished neighbour already made the pixel (to be kept)."""
    mask = np.zeros((grid.patch, grid.patch), dtype=bool)
    x0, y0 = grid.box(patch)
    for other in finished:
        if not grid.overlaps(patch, other):
            continue
        ox, oy = grid.box(other)
        left, top = max(ox - x0, 0), max(oy - y0, 0)
        right, bottom = min(ox + grid.patch - x0, grid.patch), min(oy + grid.patch - y0, grid.patch)
        mask[top:bottom, left:right] = True
    return mask


def feather_weights(grid: LevelGrid, patch: Patch) -> np.ndarray:
    """(patch, patch) float32 blending weights: 1 inside, a linear ramp across each side shared with a
    neighbour, so overlapping patches cross-fade instead of meeting at a hard edge. Summed over all
    patches the weights are positive everywhere, and exactly 1 wherever only one patch lies."""
    overlap = grid.patch - grid.stride
    ramp = np.ones(grid.patch, dtype=np.float32)
    if overlap > 0:
        ramp[:overlap] = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    row, col = patch
    along_x = np.minimum(ramp if col > 0 else 1.0, ramp[::-1] if col < grid.grid - 1 else 1.0)
    along_y = np.minimum(ramp if row > 0 else 1.0, ramp[::-1] if row < grid.grid - 1 else 1.0)
    return np.outer(np.broadcast_to(along_y, grid.patch), np.broadcast_to(along_x, grid.patch)).astype(np.float32)

"""Pure maths of a pyramid: level sizes and the 2 x 2 box reduction between levels."""

from __future__ import annotations

import numpy as np


def level_sizes(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """(width, height) of every level, halving (rounding up) until the level fits in one tile."""
    sizes = [(width, height)]
    while max(sizes[-1]) > tile:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def halve(rgb: np.ndarray) -> np.ndarray:
    """Downsample by exactly 2 with a 2 x 2 box filter (mean, rounded half up).

    The box filter is the exact antialiasing filter for a factor of 2 and is what OpenSlide users
    expect of a pyramid; an odd last row or column is paired with itself.
    """
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    total = (
        rgb[0::2, 0::2].astype(np.uint16)
        + rgb[1::2, 0::2]
        + rgb[0::2, 1::2]
        + rgb[1::2, 1::2]
    )
    return ((total + 2) // 4).astype(np.uint8)

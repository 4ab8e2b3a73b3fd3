"""The paper's three magnification levels, shared by the model side and by evaluation.

At level ``L`` one ``PATCH_PX``-pixel patch covers ``PAPER_LEVEL_SPANS[L]`` level-0 pixels of the
slide (the authors' ``MAG_LEVEL_SIZES``): level 0 is the whole-slide view, level 2 is full
resolution. Kept in a module of its own so evaluation can crop "at level L" without importing
the models.
"""

from __future__ import annotations

PATCH_PX = 1024
PAPER_LEVEL_SPANS = (40000, 6500, 1024)


def level_downsample(level: int, spans: tuple[int, ...] = PAPER_LEVEL_SPANS, patch_px: int = PATCH_PX) -> float:
    """Level-0 pixels per output pixel at magnification level ``level``."""
    if not 0 <= level < len(spans):
        raise ValueError(f"magnification level must be in 0..{len(spans) - 1}, got {level}")
    return spans[level] / patch_px

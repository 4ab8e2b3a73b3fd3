"""Pure geometry for region reads: which pyramid level to use and which source pixels each output
block needs. No I/O here, so it is tested in microseconds and shared by every slide backend."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

# Lanczos (PIL's LANCZOS, a=3) reaches 3 source pixels per output pixel, scaled up when downsampling.
LANCZOS_SUPPORT = 3.0


def best_level(level_downsamples: Sequence[float], downsample: float) -> int:
    """Index of the coarsest level whose downsample does not exceed ``downsample``.

    Reading from a coarser level would mean upsampling (losing detail); reading from a finer one
    wastes I/O. Same rule as OpenSlide's get_best_level_for_downsample, with a small tolerance so
    that a requested 2.0 matches a level whose downsample is 2.0005.
    """
    best = 0
    for index, level_downsample in enumerate(level_downsamples):
        if level_downsample <= downsample * (1 + 1e-3) and level_downsample >= level_downsamples[best]:
            best = index
    return best


def infer_downsample(base: tuple[int, int], level: tuple[int, int]) -> float:
    """The downsample of a level from its size.

    Pyramids are built with integer factors and rounded sizes (floor for most scanners, ceil for
    ours), so ``base / level`` is slightly off (4443 / 2221 = 2.0005) and would misplace reads by
    up to a pixel. When an integer factor explains both sizes, it is the true one.
    """
    (width, height), (level_w, level_h) = base, level
    factor = round(width / level_w)
    if factor >= 1 and all(size // factor <= size_k <= -(-size // factor) for size, size_k in ((width, level_w), (height, level_h))):
        return float(factor)
    return (width / level_w + height / level_h) / 2


@dataclass(frozen=True)
class Block:
    """One output block and the integer source window (level coordinates) that covers it.

    ``box`` is the exact fractional source rectangle of the block, relative to the window's origin,
    in the form PIL's ``Image.resize(box=...)`` expects.
    """

    out_x: int
    out_y: int
    out_w: int
    out_h: int
    src_x: int
    src_y: int
    src_w: int
    src_h: int
    box: tuple[float, float, float, float]


def _spans(src0: float, src1: float, out_len: int, block: int) -> Iterator[tuple[int, int, float, float, int, int]]:
    """Split one axis: output [o0, o1) needs source [s0, s1), read as integers [i0, i1) with margin."""
    scale = (src1 - src0) / out_len
    margin = math.ceil(LANCZOS_SUPPORT * max(1.0, scale)) + 1
    for o0 in range(0, out_len, block):
        o1 = min(out_len, o0 + block)
        s0 = src0 + o0 * scale
        s1 = src0 + o1 * scale
        i0 = math.floor(s0) - margin
        i1 = math.ceil(s1) + margin
        yield o0, o1, s0, s1, i0, i1


def plan_blocks(
    src_rect: tuple[float, float, float, float],
    out_size: tuple[int, int],
    max_source_pixels: int = 24_000_000,
) -> list[Block]:
    """Cut a resampling read into output blocks whose source windows stay under a pixel budget.

    ``src_rect`` is (x0, y0, x1, y1) in the chosen level's pixel coordinates (fractional allowed).
    Every block's window includes the filter's support, so resizing block by block gives the same
    pixels as resizing the whole window at once; memory stays bounded however large the region.
    """
    x0, y0, x1, y1 = src_rect
    out_w, out_h = out_size
    scale = max((x1 - x0) / out_w, (y1 - y0) / out_h, 1e-9)
    # Square blocks: side s output px needs about (s*scale + 2*margin)^2 source px.
    margin = 2 * (math.ceil(LANCZOS_SUPPORT * max(1.0, scale)) + 1)
    side = int((math.sqrt(max_source_pixels) - margin) / max(scale, 1.0))
    side = max(16, min(side, 4096))
    blocks = []
    for oy0, oy1, sy0, sy1, iy0, iy1 in _spans(y0, y1, out_h, side):
        for ox0, ox1, sx0, sx1, ix0, ix1 in _spans(x0, x1, out_w, side):
            blocks.append(
                Block(
                    out_x=ox0, out_y=oy0, out_w=ox1 - ox0, out_h=oy1 - oy0,
                    src_x=ix0, src_y=iy0, src_w=ix1 - ix0, src_h=iy1 - iy0,
                    box=(sx0 - ix0, sy0 - iy0, sx1 - ix0, sy1 - iy0),
                )
            )
    return blocks


def restrict_block(block: Block, bounds: tuple[int, int, int, int]) -> Block:
    """The block with its source window cut to ``bounds`` (x0, y0, x1, y1, level coordinates).

    PIL renormalises the filter at the edges of the image it is given, so a window cut at the
    bounds resamples exactly as if the bounded rectangle alone had been resized (anyres-gan resizes
    a square cut of each image); without the cut, the filter would reach past it.
    """
    x0, y0 = max(block.src_x, bounds[0]), max(block.src_y, bounds[1])
    x1, y1 = min(block.src_x + block.src_w, bounds[2]), min(block.src_y + block.src_h, bounds[3])
    dx, dy = x0 - block.src_x, y0 - block.src_y
    left, top, right, bottom = (block.box[0] - dx, block.box[1] - dy, block.box[2] - dx, block.box[3] - dy)
    tolerance = 1e-6  # float noise on a region that ends exactly at the bounds
    if x1 <= x0 or y1 <= y0 or min(left, top) < -tolerance or right > x1 - x0 + tolerance or bottom > y1 - y0 + tolerance:
        raise ValueError(f"region reaches outside its bounds {bounds}")
    box = (max(left, 0.0), max(top, 0.0), min(right, x1 - x0), min(bottom, y1 - y0))
    return replace(block, src_x=x0, src_y=y0, src_w=x1 - x0, src_h=y1 - y0, box=box)


def clip_window(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Intersection of a window with [0, width) x [0, height), or None when they do not meet."""
    cx0, cy0 = max(x, 0), max(y, 0)
    cx1, cy1 = min(x + w, width), min(y + h, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    return cx0, cy0, cx1 - cx0, cy1 - cy0


def fit_within(width: int, height: int, max_size: int) -> tuple[int, int]:
    """Largest size with the same aspect ratio whose longer side is at most ``max_size``."""
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))

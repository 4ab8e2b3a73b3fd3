"""Validation: synthetic slides with known copies planted in them, to check that the audit finds them.

A planted slide is a grid of square blocks. A *planted* block is a region of a training slide,
taken at a random (so almost never lattice-aligned) position, flipped/turned by one of the 8
dihedral transforms (cycled, so each appears); an *honest* block is a region of a held-out slide,
which no model trained on the training slides could have copied. The whole slide is then written
as a JPEG pyramid (quality 80 by default): every copy is also re-encoded. Blocks are taken where
the source has tissue, as a generator would copy tissue rather than glass.

The slides are built in memory: validation slides are small (a few thousand pixels a side).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from evaluation.memorization.dihedral import TRANSFORMS, transform_array
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.slides import SlideTissueMask, open_slide

PLANTED, HONEST, STRADDLING = 1, 0, -1
_TRIES = 200


@dataclass(frozen=True)
class SourceArea:
    """Where blocks may come from: a rectangle (level-0 pixels) of one slide."""

    path: str
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Block:
    x: int                 # position and side in the planted slide
    y: int
    size: int
    planted: bool
    source: str
    source_x: int
    source_y: int
    transform: int         # dihedral transform applied to the source pixels (0 for honest blocks)


def write_area(area: SourceArea, out_path: Path, quality: int | None = None) -> Path:
    """A rectangle of a slide as a slide of its own (lossless by default: the same pixels), e.g.
    to split one slide into training and held-out parts."""
    with open_slide(area.path) as slide:
        pixels = slide.read_region(area.x, area.y, area.width, area.height)
    write_pyramid(ArraySource(pixels), out_path, tile=256, quality=quality, progress=False)
    return Path(out_path)


def plant_slide(out_path: Path, blocks_per_side: int, block: int, training: Sequence[SourceArea],
                honest: Sequence[SourceArea], seed: int, planted_share: float = 0.5, quality: int = 80,
                min_tissue: float = 0.5, align: int = 1, transforms: Sequence[int] = tuple(range(TRANSFORMS))) -> list[Block]:
    """Write a planted slide of ``blocks_per_side``^2 blocks of ``block`` px; returns its blocks.

    ``align`` > 1 takes planted sources only at multiples of ``align`` (source-slide pixels): with
    ``align`` equal to the lattice stride, the copies sit exactly on the training lattice (a control
    that leaves only flips, turns and JPEG for the audit to see through). Planted blocks take the
    ``transforms`` in turn.
    """
    rng = np.random.default_rng(seed)
    count = blocks_per_side * blocks_per_side
    planted = np.zeros(count, dtype=bool)
    planted[rng.permutation(count)[:int(round(planted_share * count))]] = True
    canvas = np.empty((blocks_per_side * block, blocks_per_side * block, 3), dtype=np.uint8)
    masks: dict[str, SlideTissueMask] = {}
    blocks, planted_so_far = [], 0
    for number in range(count):
        sources = training if planted[number] else honest
        area = sources[number % len(sources)]
        source_x, source_y = _tissue_position(area, block, rng, masks, min_tissue, align if planted[number] else 1)
        with open_slide(area.path) as slide:
            pixels = slide.read_region(source_x, source_y, block, block)
        transform = 0
        if planted[number]:
            transform = int(transforms[planted_so_far % len(transforms)])
            planted_so_far += 1
            pixels = transform_array(pixels, transform)
        x, y = (number % blocks_per_side) * block, (number // blocks_per_side) * block
        canvas[y:y + block, x:x + block] = pixels
        blocks.append(Block(x, y, block, bool(planted[number]), area.path, source_x, source_y, transform))
    write_pyramid(ArraySource(canvas), out_path, tile=256, quality=quality, progress=False)
    return blocks


def crop_labels(crops: np.ndarray, paths: Sequence[str], blocks_by_path: dict[str, Sequence[Block]]) -> np.ndarray:
    """Per crop-table row: ``PLANTED`` when it lies wholly inside a planted block, ``HONEST`` wholly
    inside an honest block, ``STRADDLING`` otherwise (partly copied: neither a hit nor a false alarm)."""
    return np.array([STRADDLING if block is None else PLANTED if block.planted else HONEST
                     for block in crop_blocks(crops, paths, blocks_by_path)], dtype=np.int64)


def crop_blocks(crops: np.ndarray, paths: Sequence[str], blocks_by_path: dict[str, Sequence[Block]]) -> list[Block | None]:
    """The block each crop lies wholly inside, or None."""
    found: list[Block | None] = []
    for image, x, y, size in np.asarray(crops)[:, :4]:
        inside = [b for b in blocks_by_path.get(str(paths[int(image)]), ())
                  if b.x <= x and b.y <= y and x + size <= b.x + b.size and y + size <= b.y + b.size]
        found.append(inside[0] if inside else None)
    return found


def source_window(block: Block, x: int, y: int, size: int) -> tuple[int, int]:
    """Top-left, in the source slide, of the ``size`` square that a crop at (x, y) of a planted
    block shows (turned and flipped back); the crop must lie inside the block."""
    index = np.arange(block.size * block.size, dtype=np.int64).reshape(block.size, block.size)
    shown = transform_array(index, block.transform)[y - block.y:y - block.y + size, x - block.x:x - block.x + size]
    rows, cols = np.divmod(shown, block.size)
    return block.source_x + int(cols.min()), block.source_y + int(rows.min())


def _tissue_position(area: SourceArea, block: int, rng: np.random.Generator, masks: dict[str, SlideTissueMask],
                     min_tissue: float, align: int = 1) -> tuple[int, int]:
    """A random block position inside the area with at least ``min_tissue`` tissue (else the most
    tissue seen in a few hundred tries)."""
    if block > min(area.width, area.height):
        raise ValueError(f"block {block} does not fit in {area}")
    if area.path not in masks:
        with open_slide(area.path) as slide:
            masks[area.path] = SlideTissueMask.from_slide(slide)
    best, best_fraction = None, -1.0
    for _ in range(_TRIES):
        x = _aligned(area.x, area.width - block, align, rng)
        y = _aligned(area.y, area.height - block, align, rng)
        fraction = masks[area.path].fraction_in(x, y, block, block)
        if fraction >= min_tissue:
            return x, y
        if fraction > best_fraction:
            best, best_fraction = (x, y), fraction
    return best


def _aligned(start: int, room: int, align: int, rng: np.random.Generator) -> int:
    """A uniform position in [start, start + room], a multiple of ``align`` when ``align`` > 1."""
    if align <= 1:
        return start + int(rng.integers(0, room + 1))
    first = -(-start // align)
    last = (start + room) // align
    if last < first:
        raise ValueError(f"no multiple of {align} in [{start}, {start + room}]")
    return int(rng.integers(first, last + 1)) * align

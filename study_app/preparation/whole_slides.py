"""Whole-slide cases: every slide re-tiled one way, so that its tiles tell nothing but the tissue.

A real WSI and a synthetic pyramid differ in everything around the pixels: vendor, mpp, size, tile
size, JPEG tables, level structure, label and macro images. So each whole-slide case is made anew:

- one mpp: the synthetic slides' (they must agree), or ``whole_slides.mpp``; real slides are
  resampled to it, so the same zoom shows the same microns per pixel in both classes;
- one square side: the smallest any case has at that mpp (capped by ``whole_slides.max_side``),
  cut from each slide around its tissue (the tissue mask's centroid, moved inside the slide);
- one Deep Zoom layout: OpenSlide's ``DeepZoomGenerator`` over ``SquareView`` (254-px tiles with a
  1-px overlap, power-of-two levels), each tile encoded from a bare array in the study's encoding
  (uncompressed by default, ``study_app.preparation.encodings``), so every case has the same tile names
  (``<case id>_files/<level>/<col>_<row>.png``) and, uncompressed, the same bytes per tile name;
- one byte length per level where tiles are compressed (``display.format: jpeg``): after all cases
  are tiled, each tile is padded (as the crop arms' images are, ``study_app.preparation.rendering.pad``) to the
  longest tile of its level across the study.

Reads stream through the slides' pyramids, one tile window at a time, never a whole slide.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from openslide.deepzoom import DeepZoomGenerator
from tqdm import tqdm

from study_app.preparation.cases import Case
from study_app.preparation.encodings import Encoding
from study_app.preparation.parity import parity_report, served_attributes
from study_app.preparation.rendering import pad, padding_plan, write_served
from study_app.preparation.study import Display, WholeSlides
from urcdm.deepzoom.views import SquareView
from urcdm.errors import UserError
from urcdm.slides import SlideTissueMask, open_slide

TILE_SIZE, OVERLAP = 254, 1
MPP_TOLERANCE = 0.02  # synthetic slides written by one sampler config agree exactly; scanners round


@dataclass(frozen=True)
class SlideLayout:
    """What every whole-slide case looks like to the browser: the same for all of them."""

    mpp: float
    side: int
    tile_size: int = TILE_SIZE
    overlap: int = OVERLAP
    format: str = "jpeg"  # the tiles' encoding (raw, png or jpeg); layouts written before it existed: jpeg

    def as_dict(self) -> dict:
        return asdict(self)

    def encoding(self, quality: int) -> Encoding:
        return Encoding(self.format, quality)

    @property
    def suffix(self) -> str:
        return Encoding(self.format).suffix


def _mpp(path: str) -> tuple[float | None, tuple[int, int]]:
    with open_slide(path) as slide:
        return (sum(slide.mpp) / 2 if slide.mpp else None), slide.dimensions


def plan_layout(cases: Sequence[Case], settings: WholeSlides, display: Display) -> SlideLayout:
    """The study's one mpp and side, or a ``UserError`` naming the slide that prevents them."""
    found = {case.source: _mpp(case.source) for case in cases}
    missing = next((path for path, (mpp, _) in found.items() if mpp is None), None)
    if missing:
        raise UserError(f"{missing}: records no microns per pixel, so it cannot be shown at the study's scale "
                        f"(write it with an mpp, e.g. `urcdm convert --mpp`)")
    target = settings.mpp
    if target is None:
        synthetic = sorted({found[c.source][0] for c in cases if c.truth == "synthetic"})
        if synthetic[-1] > synthetic[0] * (1 + MPP_TOLERANCE):
            raise UserError(f"the synthetic slides have different mpp ({synthetic[0]:g} to {synthetic[-1]:g}); "
                            f"set whole_slides.mpp to the one all slides are shown at")
        target = float(np.median(synthetic))
    side = min(int(min(dims) * mpp / target) for mpp, dims in found.values())
    if settings.max_side:
        side = min(side, settings.max_side)
    if side < 256:
        raise UserError(f"at {target:g} µm/px the smallest whole slide is only {side} px a side (at least 256 needed)")
    return SlideLayout(mpp=round(target, 6), side=side, format=display.encoding(TILE_SIZE + 2 * OVERLAP).format)


def tissue_square(case: Case, layout: SlideLayout) -> tuple[float, float, float]:
    """(x, y, side) in the slide's level-0 pixels: the layout's square, centred on the tissue."""
    with open_slide(case.source) as slide:
        mpp = sum(slide.mpp) / 2
        side = layout.side * layout.mpp / mpp
        width, height = slide.dimensions
        mask = SlideTissueMask.from_slide(slide, max_size=1024)
    rows, cols = np.nonzero(mask.mask)
    if len(rows):
        cx = (cols.mean() + 0.5) * width / mask.mask.shape[1]
        cy = (rows.mean() + 0.5) * height / mask.mask.shape[0]
    else:
        cx, cy = width / 2, height / 2
    x = min(max(cx - side / 2, 0.0), width - side)
    y = min(max(cy - side / 2, 0.0), height - side)
    return x, y, side


def tile_folder(root: Path, case: Case) -> Path:
    return root / f"{case.id}_files"


def render_slide(case: Case, layout: SlideLayout, encoding: Encoding, root: Path, workers: int | None = None) -> str:
    """Write every tile of the case; returns its content id (the pixels of its one-tile overview)."""
    x, y, side = tissue_square(case, layout)
    folder = tile_folder(root, case)
    with open_slide(case.source) as slide:
        tiler = DeepZoomGenerator(SquareView(slide, x, y, side, layout.side), layout.tile_size, layout.overlap)
        addresses = [(level, col, row) for level, (cols, rows) in enumerate(tiler.level_tiles)
                     for col in range(cols) for row in range(rows)]
        for level in range(tiler.level_count):
            (folder / str(level)).mkdir(parents=True, exist_ok=True)

        def write(address: tuple[int, int, int]) -> None:
            level, col, row = address
            pixels = np.asarray(tiler.get_tile(level, (col, row)))
            write_served(folder / str(level) / f"{col}_{row}{encoding.suffix}", encoding.encode(pixels))

        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            list(pool.map(write, addresses))
        overview = next(level for level, tiles in reversed(list(enumerate(tiler.level_tiles))) if tiles == (1, 1))
        pixels = np.asarray(tiler.get_tile(overview, (0, 0)))
    return hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()[:16]


def render_slides(cases: Sequence[Case], layout: SlideLayout, encoding: Encoding, root: Path,
                  progress: bool) -> list[Case]:
    rendered = []
    for case in tqdm(cases, desc="tiling whole slides", unit="slide", disable=not progress):
        try:
            content_id = render_slide(case, layout, encoding, root)
        except UserError:
            raise
        except Exception as exc:  # a reader failure is the file's, reported by name
            raise UserError(f"{case.source}: cannot be tiled ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        rendered.append(Case(**{**case.as_dict(), "content_id": content_id}))
    return rendered


def equalise_tiles(cases: Sequence[Case], encoding: Encoding, root: Path) -> dict:
    """Pad each compressed tile to the longest of its level across all cases (uncompressed tiles of
    one name have one length already); returns the parity report of the tiles a reader's browser
    fetches first (each case by the sums of its first view's numbers, the rest as tuples)."""
    layouts = {case.id: sorted(p.relative_to(tile_folder(root, case)).as_posix()
                               for p in tile_folder(root, case).rglob(f"*{encoding.suffix}")) for case in cases}
    names = layouts[cases[0].id]
    if any(layout != names for layout in layouts.values()):
        raise UserError("whole-slide cases were tiled differently; prepare again")  # a bug, never a user's doing
    by_level: dict[str, list[str]] = {}
    for name in names:
        by_level.setdefault(name.split("/")[0], []).append(name)
    for level_names in by_level.values() if not encoding.blind else ():
        paths = [tile_folder(root, case) / name for case in cases for name in level_names]
        target, segments = padding_plan([path.stat().st_size for path in paths], encoding.container)
        for path in paths:
            write_served(path, pad(path.read_bytes(), target, encoding.container, segments))
    # What a reader's browser fetches first: the levels that show the whole slide on one screen (4 x 4 tiles).
    first_view = [name for level_names in by_level.values() if len(level_names) <= 16 for name in level_names]
    entries = []
    for case in cases:
        folder = tile_folder(root, case)
        attributes = [served_attributes((folder / name).read_bytes()) for name in first_view]
        entries.append((case.truth, _first_view(attributes)))
    return parity_report(entries, groups=[case.arm for case in cases])


def _first_view(attributes: list[dict]) -> dict:
    """One case's first-view tiles as one set of attributes: numbers summed, the rest as tuples."""
    keys = list(dict.fromkeys(key for a in attributes for key in a))
    combined = {}
    for key in keys:
        values = [a.get(key) for a in attributes]
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        combined[key] = sum(values) if numeric else tuple(values)
    return combined

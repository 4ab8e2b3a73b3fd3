"""The index of training windows: the slides in a folder, and per slide the lattice windows that are
not mostly glass (tissue detector), cached per slide and geometry in ``$URCDM_CACHE``."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from urcdm.errors import UserError
from urcdm.slides import Slide, open_slide, slide_tissue_mask
from urcdm.training.windows import lattice

SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif", ".png", ".jpg", ".jpeg"}
_INDEX_VERSION = 1


def list_slides(data_dir: str | Path) -> list[Path]:
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: is a file; --data names the folder that holds the training slides")
    if not root.is_dir():
        raise UserError(f"{root}: no such data folder")
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
    if not found:
        raise UserError(f"{root}: no slides found (looked for {', '.join(sorted(SLIDE_SUFFIXES))})")
    return found


def cache_dir() -> Path:
    return Path(os.environ.get("URCDM_CACHE", Path.home() / ".cache" / "urcdm")) / "index"


def _index_key(path: Path, span: int, white_threshold: float) -> str:
    stat = path.stat()
    text = f"{_INDEX_VERSION}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{span}:{white_threshold}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def slide_positions(slide: Slide, span: int, white_threshold: float) -> np.ndarray:
    """(x, y) origins of the windows on the lattice that are not mostly glass."""
    width, height = slide.dimensions
    mask = slide_tissue_mask(slide.path)
    keep = [(x, y) for y in lattice(height, span) for x in lattice(width, span)
            if 1.0 - mask.fraction_in(x, y, span, span) < white_threshold]
    return np.asarray(keep, dtype=np.int64).reshape(-1, 2)


def build_index(slides: Sequence[Path], span: int, white_threshold: float, use_cache: bool = True) -> tuple[list[str], np.ndarray]:
    """Readable slides and an int64 (N, 3) array of (slide, x, y); cached per slide and geometry."""
    paths, rows, unreadable = [], [], []
    for path in slides:
        cached = cache_dir() / f"{_index_key(path, span, white_threshold)}.npy"
        try:
            if use_cache and cached.exists():
                positions = np.load(cached)
            else:
                with open_slide(path) as slide:
                    positions = slide_positions(slide, span, white_threshold)
                if use_cache:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    temp = cached.with_suffix(f".{os.getpid()}.partial.npy")
                    np.save(temp, positions)
                    os.replace(temp, cached)
        except UserError as exc:
            unreadable.append(f"{path.name} ({str(exc).splitlines()[0]})")
            continue
        if len(positions):
            rows.append(np.column_stack([np.full(len(positions), len(paths)), positions]))
        paths.append(str(path))
    if not paths:
        raise UserError(f"none of the {len(slides)} slide(s) could be read: {'; '.join(unreadable[:3])}")
    if unreadable:
        print(f"note: left out {len(unreadable)} unreadable slide(s): {'; '.join(unreadable[:3])}", file=sys.stderr)
    if not rows:
        raise UserError(f"no window of {span} px in {len(paths)} slide(s) has enough tissue "
                        f"(white_threshold {white_threshold}); check the slides or raise white_threshold")
    return paths, np.concatenate(rows).astype(np.int64)


MPP_AGREEMENT = 1.1  # slides scanned at one magnification differ by a few percent, 20x and 40x by 2x


def slides_mpp(paths: Sequence[str | Path]) -> float | None:
    """The training slides' microns per pixel at full resolution, which a slide sampled from the models
    shares (scaled by span / patch_px): their median when every slide records it and they agree; None
    otherwise (a slide without it, or slides of several magnifications: no one scale is known to be right)."""
    return _slides_mpp(tuple(str(path) for path in paths))


@functools.lru_cache(maxsize=8)  # train-all checks nine jobs, then trains them, over the same slides
def _slides_mpp(paths: tuple[str, ...]) -> float | None:
    recorded = []
    for path in paths:
        with open_slide(path) as slide:
            if not slide.mpp:
                return None
            recorded.append(sum(slide.mpp) / 2)
    if not recorded or max(recorded) > MPP_AGREEMENT * min(recorded):
        return None
    return float(np.median(recorded))


def data_digest(paths: Sequence[str]) -> str:
    """What a checkpoint records of its slides (names and sizes), to refuse resuming on others."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).name}:{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()[:16]

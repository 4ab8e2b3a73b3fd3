"""Training pairs per level: (target patch, context) read from a folder of WSIs through the slide layer.

At level L a target is a window of ``levels[L].span`` slide pixels read at ``patch_px``; for L >= 1 its
context is the previous level's window (``levels[L-1].span``) centred on the same point, also at
``patch_px``, exactly what the sampler conditions on. Windows sit on a half-span lattice (the paper's
half-patch shifts); windows that are mostly glass are dropped with the tissue detector; pixels outside
the slide get the configured fill. Each pair gets one of the 8 dihedral transforms, the same for target
and context (both are centred on the same point, so they stay aligned).

Batches are addressed by step: the pairs of step s are drawn from a generator seeded with
(seed, rank, s), so a resumed run reads exactly the batches the uninterrupted run would have, with any
number of DataLoader workers. Only windows are ever read, never a whole slide.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from urcdm.config import URCDMConfig, check_level, has_context
from urcdm.errors import UserError
from urcdm.slides import Slide, open_slide, slide_tissue_mask

DIHEDRAL = 8
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif", ".png", ".jpg", ".jpeg"}
_INDEX_VERSION = 1


# ---- pure geometry -------------------------------------------------------------------------------

def lattice(extent: int, span: int) -> list[int]:
    """Window origins along one axis: a half-span lattice over the slide; a slide narrower than the
    window gets one window centred on it (padded with fill)."""
    if span >= extent:
        return [(extent - span) // 2]
    step = max(span // 2, 1)
    origins = list(range(0, extent - span + 1, step))
    if origins[-1] != extent - span:
        origins.append(extent - span)
    return origins


def context_window(x: int, y: int, span: int, context_span: int) -> tuple[float, float, int]:
    """Origin of the previous level's window centred on the target window (x, y, span)."""
    centre_x, centre_y = x + span / 2, y + span / 2
    return centre_x - context_span / 2, centre_y - context_span / 2, context_span


def dihedral(pixels: np.ndarray, k: int) -> np.ndarray:
    """Transform k of the 8 symmetries of the square: k % 4 quarter turns, then a mirror when k >= 4."""
    out = np.rot90(pixels, k % 4, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def batch_codes(seed: int, step: int, batch_size: int, positions: int, rank: int = 0) -> np.ndarray:
    """The pairs of one training step, as codes ``position * 8 + transform``."""
    rng = np.random.default_rng([seed, rank, step])
    return rng.integers(positions, size=batch_size) * DIHEDRAL + rng.integers(DIHEDRAL, size=batch_size)


def split_validation(positions: np.ndarray, span: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out positions. Whole blocks of 2 x 2 spans are held out together: half-span
    windows overlap their neighbours, so holding out single windows would put most validation pixels
    in training windows too (only windows on a block's border still share pixels across the split)."""
    blocks = np.stack([positions[:, 0], positions[:, 1] // (2 * span), positions[:, 2] // (2 * span)], axis=1)
    keys = [hashlib.sha256(f"{seed}:{a}:{b}:{c}".encode()).digest()[:8] for a, b, c in blocks]
    draws = np.array([int.from_bytes(k, "little") / 2**64 for k in keys])
    held = draws < fraction
    if fraction > 0 and not held.any() and len(held) > 1:
        held[int(np.argmin(draws))] = True
    return held


# ---- index of valid positions ---------------------------------------------------------------------

def list_slides(data_dir: str | Path) -> list[Path]:
    root = Path(data_dir)
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


# ---- reading pairs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LevelWindows:
    patch_px: int
    span: int
    context_span: int | None
    fill_rgb: tuple[int, ...]

    @classmethod
    def of(cls, config: URCDMConfig, level: int, method: str = "urcdm") -> "LevelWindows":
        check_level(config, method, level, "--level")
        context = config.levels[level - 1].span if has_context(method, level) else None
        return cls(config.patch_px, config.levels[level].span, context, tuple(config.fill_rgb))


def read_window(slide: Slide, x: float, y: float, span: float, out_px: int, fill: tuple[int, ...]) -> np.ndarray:
    """The window at ``out_px``; pixels whose centres fall outside the slide get ``fill``."""
    pixels = slide.read_region(x, y, span, span, out_size=(out_px, out_px))
    width, height = slide.dimensions
    centres = (np.arange(out_px) + 0.5) * span / out_px
    outside_x, outside_y = (x + centres < 0) | (x + centres >= width), (y + centres < 0) | (y + centres >= height)
    if outside_x.any() or outside_y.any():
        pixels = pixels.copy()
        pixels[outside_y, :] = fill
        pixels[:, outside_x] = fill
    return pixels


class TrainingPairs(Dataset):
    """Item ``code`` (position * 8 + transform) is ``(target, context)``: float tensors in [0, 1],
    (3, P, P); the context is an empty tensor at level 0. Slides are opened lazily per worker."""

    def __init__(self, paths: Sequence[str], positions: np.ndarray, windows: LevelWindows):
        self.paths, self.positions, self.windows = list(paths), positions, windows
        self._slides: dict[int, Slide] = {}

    def __len__(self) -> int:
        return len(self.positions) * DIHEDRAL

    def _slide(self, index: int) -> Slide:
        if index not in self._slides:
            self._slides[index] = open_slide(self.paths[index])
        return self._slides[index]

    def pair(self, code: int) -> tuple[np.ndarray, np.ndarray | None]:
        position, transform = divmod(int(code), DIHEDRAL)
        slide_index, x, y = (int(v) for v in self.positions[position])
        w, slide = self.windows, self._slide(slide_index)
        target = dihedral(read_window(slide, x, y, w.span, w.patch_px, w.fill_rgb), transform)
        if w.context_span is None:
            return target, None
        cx, cy, size = context_window(x, y, w.span, w.context_span)
        return target, dihedral(read_window(slide, cx, cy, size, w.patch_px, w.fill_rgb), transform)

    def __getitem__(self, code: int):
        target, context = self.pair(code)
        as_tensor = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()).float().div_(255)  # noqa: E731
        return as_tensor(target), (as_tensor(context) if context is not None else torch.empty(0))


class StepBatches(Sampler):
    """Batches of codes for steps ``start .. stop - 1`` (see ``batch_codes``)."""

    def __init__(self, seed: int, start: int, stop: int, batch_size: int, positions: int, rank: int = 0):
        self.seed, self.start, self.stop, self.batch_size, self.positions, self.rank = seed, start, stop, batch_size, positions, rank

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield batch_codes(self.seed, step, self.batch_size, self.positions, self.rank).tolist()

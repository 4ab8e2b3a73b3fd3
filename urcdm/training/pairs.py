"""Training pairs per level: (target patch, context), read through the slide layer or from shards.

At level L a target is a window of ``levels[L].span`` slide pixels read at ``patch_px``; for L >= 1 its
context is the previous level's window (``levels[L-1].span``) centred on the same point, also at
``patch_px``, exactly what the sampler conditions on. Pixels outside the slide get the configured fill.
Each pair gets one of the 8 dihedral transforms, the same for target and context (both are centred on
the same point, so they stay aligned). Only windows are ever read, never a whole slide.

A pair's source is either the slides (``SlidePairs``) or shards written once by ``urcdm prepare-pairs``
(``urcdm.training.shards.ShardPairs``); both serve the same untransformed windows per position, and
the transform is applied here, so the two yield identical pairs for the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from urcdm.config import URCDMConfig, check_level, has_context
from urcdm.slides import Slide, open_slide
from urcdm.training.windows import DIHEDRAL, batch_codes, context_window, dihedral


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


def unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as floats in [0, 1], where the model runs: a batch crosses from the loader's
    workers and to the GPU as uint8, a quarter of the bytes (IEEE division: the same values anywhere)."""
    return images.float().div_(255)


class Pairs(Dataset):
    """Item ``code`` (position * 8 + transform) is ``(target, context)``: uint8 tensors (3, P, P)
    (``unit_float`` makes them the model's [0, 1]); the context is an empty tensor at level 0.
    ``positions`` is the (N, 3) array of (slide, x, y) window origins; subclasses serve the
    untransformed windows of position i."""

    positions: np.ndarray

    def windows_at(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def subset(self, keep: np.ndarray) -> "Pairs":
        """The pairs of the positions where ``keep`` is true, in the same order."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.positions) * DIHEDRAL

    def pair(self, code: int) -> tuple[np.ndarray, np.ndarray | None]:
        position, transform = divmod(int(code), DIHEDRAL)
        target, context = self.windows_at(position)
        return dihedral(target, transform), (None if context is None else dihedral(context, transform))

    def __getitem__(self, code: int):
        target, context = self.pair(code)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
        return as_tensor(target), (as_tensor(context) if context is not None else torch.empty(0, dtype=torch.uint8))


class SlidePairs(Pairs):
    """Pairs read from the slides themselves; slides are opened lazily, once per DataLoader worker."""

    def __init__(self, paths: Sequence[str], positions: np.ndarray, windows: LevelWindows):
        self.paths, self.positions, self.windows = list(paths), positions, windows
        self._slides: dict[int, Slide] = {}

    def subset(self, keep: np.ndarray) -> "SlidePairs":
        return SlidePairs(self.paths, self.positions[keep], self.windows)

    def _slide(self, index: int) -> Slide:
        if index not in self._slides:
            self._slides[index] = open_slide(self.paths[index])
        return self._slides[index]

    def windows_at(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        slide_index, x, y = (int(v) for v in self.positions[index])
        w, slide = self.windows, self._slide(slide_index)
        target = read_window(slide, x, y, w.span, w.patch_px, w.fill_rgb)
        if w.context_span is None:
            return target, None
        cx, cy, size = context_window(x, y, w.span, w.context_span)
        return target, read_window(slide, cx, cy, size, w.patch_px, w.fill_rgb)


class StepBatches(Sampler):
    """Batches of codes for steps ``start .. stop - 1`` (see ``batch_codes``)."""

    def __init__(self, seed: int, start: int, stop: int, batch_size: int, positions: int, rank: int = 0):
        self.seed, self.start, self.stop, self.batch_size, self.positions, self.rank = seed, start, stop, batch_size, positions, rank

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield batch_codes(self.seed, step, self.batch_size, self.positions, self.rank).tolist()

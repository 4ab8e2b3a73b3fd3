"""Slides presented through the part of ``openslide.OpenSlide`` that OpenSlide's Deep Zoom tiler uses.

``SlideView`` is a ``Slide`` as it is (a plain TIFF or PNG that OpenSlide cannot open).
``SquareView`` is a square of a slide resampled to another pixel size, with power-of-two levels:
what a reader study serves, so that a real WSI and a synthetic pyramid are re-tiled at one mpp, one
size and one level structure. Both answer reads with RGBA, as OpenSlide does.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Mapping

import numpy as np
from openslide import PROPERTY_NAME_BACKGROUND_COLOR
from PIL import Image

from urcdm.slides import FILL_RGB, Slide
from urcdm.slides.openslide_slide import OpenSlideSlide

# No bounds properties: the whole plane is shown, glass-coloured where nothing was imaged.
_PROPERTIES: Mapping[str, str] = {PROPERTY_NAME_BACKGROUND_COLOR: "%02x%02x%02x" % FILL_RGB}
SMALLEST_LEVEL = 256  # SquareView's coarsest level is the first at most this many pixels a side


def _rgba(rgb: np.ndarray) -> Image.Image:
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")


def _reader_lock(slide: Slide):
    # OpenSlide handles are thread-safe; tifffile and Pillow file handles are not shared between threads.
    return contextlib.nullcontext() if isinstance(slide, OpenSlideSlide) else threading.Lock()


class SlideView:
    """A ``Slide`` with OpenSlide's interface, read level by level."""

    properties = _PROPERTIES

    def __init__(self, slide: Slide):
        self.slide = slide
        self.level_count = slide.level_count
        self.level_dimensions = slide.level_dimensions
        self.level_downsamples = slide.level_downsamples
        self.dimensions = slide.dimensions
        self._lock = _reader_lock(slide)

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return self.slide.best_level_for_downsample(downsample)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        # Origin in level-0 pixels, size in level pixels, as OpenSlide takes them.
        downsample = self.level_downsamples[level]
        x, y = (int(round(v / downsample)) for v in location)
        with self._lock:
            return _rgba(self.slide.read_level_window(level, x, y, *size))


class SquareView:
    """The level-0 square (x, y, side) of ``slide`` shown ``out_side`` pixels a side.

    Every read goes through ``Slide.read_region`` (from the source level that matches, Lanczos, the
    filter stopped at the square's edges), so the view's levels cost nothing to make.
    """

    properties = _PROPERTIES

    def __init__(self, slide: Slide, x: float, y: float, side: float, out_side: int):
        self.slide, self.x, self.y, self.side, self.out_side = slide, x, y, side, out_side
        count = 1 + max(0, math.ceil(math.log2(out_side / SMALLEST_LEVEL)))
        self.level_downsamples = tuple(float(2 ** k) for k in range(count))
        self.level_dimensions = tuple((math.ceil(out_side / d),) * 2 for d in self.level_downsamples)
        self.level_count = count
        self.dimensions = self.level_dimensions[0]
        self._lock = _reader_lock(slide)

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return max(k for k, d in enumerate(self.level_downsamples) if d <= downsample or k == 0)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        source_per_pixel = self.side / self.out_side * self.level_downsamples[level]
        x = self.x + location[0] * self.side / self.out_side
        y = self.y + location[1] * self.side / self.out_side
        w, h = size[0] * source_per_pixel, size[1] * source_per_pixel
        # A coarse level's last pixel can reach past the square (its size is rounded up): the filter
        # stops at the square's edges or at that pixel's, whichever is further out.
        right, bottom = max(self.x + self.side, x + w), max(self.y + self.side, y + h)
        with self._lock:
            rgb = self.slide.read_region(x, y, w, h, out_size=size,
                                         within=(self.x, self.y, right - self.x, bottom - self.y))
        return _rgba(rgb)

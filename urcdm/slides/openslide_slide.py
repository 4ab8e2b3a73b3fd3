"""Slides that OpenSlide reads: Aperio, Hamamatsu, MIRAX, generic tiled TIFF, our own pyramids..."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

from urcdm.errors import SlideError
from urcdm.slides.base import Slide, composite_over_fill


class OpenSlideSlide(Slide):
    def __init__(self, path: Path):
        super().__init__(path)
        # Raises openslide.OpenSlideError subclasses; open_slide() decides what to do with them.
        self._osr = openslide.OpenSlide(str(path))
        self._level_dimensions = tuple(tuple(map(int, dims)) for dims in self._osr.level_dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._level_dimensions

    @property
    def vendor(self) -> str:
        return self._osr.properties.get(openslide.PROPERTY_NAME_VENDOR) or "unknown"

    @property
    def mpp(self) -> tuple[float, float] | None:
        props = self._osr.properties
        try:
            return float(props[openslide.PROPERTY_NAME_MPP_X]), float(props[openslide.PROPERTY_NAME_MPP_Y])
        except (KeyError, ValueError):
            return None

    @property
    def openslide(self) -> openslide.OpenSlide:
        """The OpenSlide handle itself, for OpenSlide's own tools (its Deep Zoom tiler)."""
        return self._osr

    @property
    def properties(self) -> dict[str, str]:
        """The raw OpenSlide properties (vendor metadata)."""
        return dict(self._osr.properties)

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        # OpenSlide takes the origin in level-0 coordinates and divides by its own downsample.
        downsample = self._osr.level_downsamples[level]
        origin = (int(round(x * downsample)), int(round(y * downsample)))
        try:
            rgba = np.asarray(self._osr.read_region(origin, level, (w, h)))
        except openslide.OpenSlideError as exc:
            self.reopen()
            raise SlideError(f"{self.path}: cannot read level {level} at ({x}, {y}): {exc}") from exc
        # Regions the scanner never imaged come back transparent: show them as glass.
        return composite_over_fill(rgba)

    def reopen(self) -> None:
        """A fresh handle after a read failed: OpenSlide's errors are sticky, and the handle that met
        one damaged tile fails every later read, the intact regions' included. The old handle is not
        closed here, as another thread may still be reading through it; it closes when collected."""
        self._osr = openslide.OpenSlide(str(self.path))

    def close(self) -> None:
        self._osr.close()

"""The one object every part of the toolkit reads pixels through.

A backend says what levels it has and how to read an in-bounds window of one level; ``Slide`` turns
that into reads at any scale, in level-0 coordinates, with glass-coloured fill outside the slide.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from PIL import Image

from urcdm.slides.regions import (
    best_level,
    clip_window,
    fit_within,
    infer_downsample,
    plan_blocks,
    restrict_block,
)

# Both reach at most LANCZOS_SUPPORT source pixels (scaled), the margin plan_blocks leaves.
_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}

# The colour of empty glass in the authors' data; used wherever a read leaves the slide.
FILL_RGB = (242, 243, 242)


def filled(height: int, width: int, fill: tuple[int, int, int] = FILL_RGB) -> np.ndarray:
    """A (height, width, 3) uint8 image of one colour."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[...] = fill
    return out


def composite_over_fill(rgba: np.ndarray, fill: tuple[int, int, int] = FILL_RGB) -> np.ndarray:
    """Flatten straight (non-premultiplied) RGBA onto the glass colour."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    weight = alpha.astype(np.float32) / 255.0
    blended = rgb * weight + np.asarray(fill, np.float32) * (1.0 - weight)
    return np.round(blended).astype(np.uint8)


class Slide(ABC):
    """A whole-slide image or plain image, read in level-0 pixel coordinates.

    Subclasses provide the level geometry and ``_read_level``; everything else is shared.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    # -- what a backend provides -------------------------------------------------------------------
    @property
    @abstractmethod
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of every level, level 0 first."""

    @property
    @abstractmethod
    def vendor(self) -> str:
        """Format family, e.g. ``aperio`` or ``generic-tiff`` (OpenSlide's names), ``tiff``, ``png``."""

    @property
    @abstractmethod
    def mpp(self) -> tuple[float, float] | None:
        """Microns per pixel at level 0 (x, y), when the file records it."""

    @abstractmethod
    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 (h, w, 3) of a window that lies inside ``level`` (level coordinates)."""

    def close(self) -> None:
        """Release file handles; reads after this are undefined."""

    # -- shared behaviour --------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(infer_downsample(self.dimensions, dims) for dims in self.level_dimensions)

    def best_level_for_downsample(self, downsample: float) -> int:
        return best_level(self.level_downsamples, downsample)

    def read_level_window(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """A window of one level in that level's coordinates; parts outside the level are glass."""
        level_w, level_h = self.level_dimensions[level]
        inside = clip_window(x, y, w, h, level_w, level_h)
        if inside == (x, y, w, h):
            return self._read_level(level, x, y, w, h)
        out = filled(h, w)
        if inside is not None:
            cx, cy, cw, ch = inside
            out[cy - y : cy - y + ch, cx - x : cx - x + cw] = self._read_level(level, cx, cy, cw, ch)
        return out

    def read_region(self, x: float, y: float, w: float, h: float, out_size: tuple[int, int] | None = None,
                    within: tuple[float, float, float, float] | None = None, resample: str = "lanczos") -> np.ndarray:
        """RGB uint8 (out_h, out_w, 3) of the level-0 rectangle (x, y, w, h), resized to ``out_size``.

        Reads from the coarsest pyramid level that still has at least the requested resolution and
        resizes with antialiasing (Lanczos), block by block so memory stays bounded. Anything
        outside the slide is filled with ``FILL_RGB``. ``within`` (level-0 x, y, w, h, containing
        the region) is where the image is taken to end: the filter is renormalised at its edges,
        as when that rectangle alone is resized, instead of reaching past it into the slide or glass.
        ``resample="bicubic"`` uses PIL's bicubic filter instead (clean-fid's, for whole-image FID).
        """
        if resample not in _FILTERS:
            raise ValueError(f"resample must be one of {', '.join(_FILTERS)}, got {resample!r}")
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {w} x {h}")
        out_w, out_h = (int(round(w)), int(round(h))) if out_size is None else (int(out_size[0]), int(out_size[1]))
        if out_w <= 0 or out_h <= 0:
            raise ValueError(f"out_size must be positive, got {out_w} x {out_h}")

        downsamples = self.level_downsamples
        level = best_level(downsamples, min(w / out_w, h / out_h))
        scale = downsamples[level]
        src = (x / scale, y / scale, (x + w) / scale, (y + h) / scale)

        if _is_identity(src, out_w, out_h):
            return self.read_level_window(level, int(src[0]), int(src[1]), out_w, out_h)

        bounds = None
        if within is not None:
            # Outward to whole pixels of this level (a tolerance keeps float noise from adding one).
            wx, wy, ww, wh = within
            bounds = (math.floor(wx / scale + 1e-6), math.floor(wy / scale + 1e-6),
                      math.ceil((wx + ww) / scale - 1e-6), math.ceil((wy + wh) / scale - 1e-6))
        out = np.empty((out_h, out_w, 3), dtype=np.uint8)
        for block in plan_blocks(src, (out_w, out_h)):
            if bounds is not None:
                block = restrict_block(block, bounds)
            window = self.read_level_window(level, block.src_x, block.src_y, block.src_w, block.src_h)
            resized = Image.fromarray(window).resize((block.out_w, block.out_h), _FILTERS[resample], box=block.box)
            out[block.out_y : block.out_y + block.out_h, block.out_x : block.out_x + block.out_w] = np.asarray(resized)
        return out

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """The whole slide with its longer side at most ``max_size`` pixels."""
        width, height = self.dimensions
        return self.read_region(0, 0, width, height, out_size=fit_within(width, height, max_size))

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        width, height = self.dimensions
        return f"{type(self).__name__}({str(self.path)!r}, {width}x{height}, levels={self.level_count}, vendor={self.vendor!r})"


def _is_identity(src: tuple[float, float, float, float], out_w: int, out_h: int) -> bool:
    """True when the read is a plain copy: integer origin and one source pixel per output pixel."""
    x0, y0, x1, y1 = src
    return (
        float(x0).is_integer()
        and float(y0).is_integer()
        and math.isclose(x1 - x0, out_w, abs_tol=1e-9)
        and math.isclose(y1 - y0, out_h, abs_tol=1e-9)
    )

"""Tissue detection: is a patch tissue or glass, and where is the tissue on a slide?

The authors thresholded HSV. Here a pixel is tissue when it carries stain: haematoxylin and eosin
both absorb green more than red and blue, so ``(R + B) / 2 - G`` is positive on any H&E tissue,
however pale, and near zero on glass, dust and grey debris whatever their brightness. Some scanners
tint the glass faintly pink, so a weak stain signal also needs texture (tinted glass is flat, pale
tissue is not). Other stains (DAB brown) are chromatic or dark rather than pink and count when
textured. Marker ink, far more saturated than stain or neutral and near-black, is removed.
Morphology then repairs what colour alone gets wrong: specks are dropped, and holes enclosed by
tissue (the clear interiors of fat cells, small lumens) count as tissue, while open glass does not.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from urcdm.slides.base import Slide
from urcdm.slides.regions import fit_within


@dataclass(frozen=True)
class TissueParams:
    """Knobs of the detector; the defaults were chosen on the labelled tiles in shared/data/tiles."""

    stain_excess: float = 4.0  # minimum (R+B)/2 - G, 8-bit units, after smoothing
    strong_stain_excess: float = 12.0  # above this, stain alone makes tissue; below, texture is needed
    min_texture: float = 2.0  # local standard deviation of brightness (8-bit units) of weak stain
    texture_sigma: float = 3.0  # pixels; the window of that standard deviation
    min_chroma: float = 20.0  # max - min of RGB: colour of a non-H&E stain, with texture
    max_glass_brightness: float = 200.0  # darker textured pixels are tissue whatever their colour
    ink_saturation: float = 0.6  # HSV saturation above which a pixel is marker ink, not stain
    ink_darkness: float = 80.0  # neutral pixels darker than this are black ink, not stain
    smoothing_sigma: float = 1.5  # pixels; suppresses sensor and JPEG noise before thresholding
    closing_iterations: int = 2  # joins thin membranes into closed rings
    min_object_fraction: float = 0.002  # tissue pieces smaller than this share of the image are specks
    max_hole_fraction: float = 0.1  # enclosed glass smaller than this share counts as tissue
    border_encloses: bool = True  # a patch border may close a hole (a fat cell cut by the edge)


PATCH_PARAMS = TissueParams()
# On a whole-slide thumbnail the slide edge is glass, and small biopsies are small.
THUMBNAIL_PARAMS = TissueParams(min_object_fraction=0.0002, max_hole_fraction=0.005, border_encloses=False)

DEFAULT_BACKGROUND_THRESHOLD = 0.5


def _component_sizes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels, sizes


def tissue_mask(rgb: np.ndarray, params: TissueParams = PATCH_PARAMS) -> np.ndarray:
    """Boolean (H, W) mask of tissue pixels in an RGB uint8 image."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    pixels = ndimage.gaussian_filter(rgb[..., :3].astype(np.float32), sigma=(params.smoothing_sigma,) * 2 + (0,))
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    brightest = pixels.max(axis=2)
    saturation = (brightest - pixels.min(axis=2)) / np.maximum(brightest, 1.0)
    excess = (red + blue) / 2 - green
    brightness = rgb[..., :3].astype(np.float32).mean(axis=2)
    local_mean = ndimage.gaussian_filter(brightness, params.texture_sigma)
    local_var = ndimage.gaussian_filter(brightness * brightness, params.texture_sigma) - local_mean * local_mean
    textured = local_var > params.min_texture**2
    # Other stains (DAB brown, counterstains) are chromatic or dark rather than pink: with texture
    # they are tissue too. Flat, neutral, bright pixels are glass whatever their exact white.
    chroma = brightest - pixels.min(axis=2)
    other_stain = textured & ((chroma > params.min_chroma) | (brightness < params.max_glass_brightness))
    stained = (excess > params.strong_stain_excess) | ((excess > params.stain_excess) & textured) | other_stain
    ink = (saturation > params.ink_saturation) | ((brightest < params.ink_darkness) & (chroma < params.min_chroma))
    mask = stained & ~ink

    if params.closing_iterations:
        mask = ndimage.binary_closing(mask, iterations=params.closing_iterations, border_value=1)

    labels, sizes = _component_sizes(mask)
    mask = (sizes >= params.min_object_fraction * mask.size)[labels]

    padded = np.pad(mask, 1, constant_values=params.border_encloses)
    hole_labels, hole_sizes = _component_sizes(~padded)
    if not params.border_encloses:
        hole_sizes[hole_labels[0, 0]] = padded.size  # the glass around the slide is never a hole
    padded |= ((hole_sizes > 0) & (hole_sizes < params.max_hole_fraction * mask.size))[hole_labels]
    return padded[1:-1, 1:-1]


def tissue_fraction(rgb: np.ndarray, params: TissueParams = PATCH_PARAMS) -> float:
    """Share of a patch covered by tissue, in [0, 1]."""
    return float(tissue_mask(rgb, params).mean())


def is_background(rgb: np.ndarray, threshold: float = DEFAULT_BACKGROUND_THRESHOLD) -> bool:
    """True for a "mostly white" patch: less than ``threshold`` of it is tissue."""
    return tissue_fraction(rgb) < threshold


@dataclass(frozen=True)
class SlideTissueMask:
    """Tissue mask of a whole slide, computed on a thumbnail; queried in level-0 coordinates."""

    mask: np.ndarray
    slide_size: tuple[int, int]

    @classmethod
    def from_slide(cls, slide: Slide, max_size: int = 2048, params: TissueParams = THUMBNAIL_PARAMS) -> "SlideTissueMask":
        width, height = slide.dimensions
        # Never upsample a small image to build its mask.
        thumb_size = fit_within(width, height, min(max_size, max(width, height)))
        thumbnail = slide.read_region(0, 0, width, height, out_size=thumb_size)
        return cls(mask=tissue_mask(thumbnail, params), slide_size=(width, height))

    @property
    def fraction(self) -> float:
        """Share of the whole slide that is tissue."""
        return float(self.mask.mean())

    def fraction_in(self, x: float, y: float, w: float, h: float) -> float:
        """Share of the level-0 rectangle that is tissue; area outside the slide is glass."""
        mask_h, mask_w = self.mask.shape
        sx, sy = mask_w / self.slide_size[0], mask_h / self.slide_size[1]
        x0, x1 = int(np.floor(x * sx)), max(int(np.floor(x * sx)) + 1, int(np.ceil((x + w) * sx)))
        y0, y1 = int(np.floor(y * sy)), max(int(np.floor(y * sy)) + 1, int(np.ceil((y + h) * sy)))
        inside = self.mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
        return float(inside.sum()) / ((x1 - x0) * (y1 - y0))


def slide_tissue_mask(path: str | os.PathLike) -> SlideTissueMask:
    """The tissue mask of a slide file, computed once per file version and process.

    Training indexes each slide at three spans and evaluation draws crops at several scales; the
    mask (a 2048-px thumbnail read and classified) was most of that time when made each time.
    """
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    return _mask_of_file(resolved, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _mask_of_file(path: str, size: int, mtime_ns: int) -> SlideTissueMask:
    from urcdm.slides.opening import (
        open_slide,  # opening imports the readers, which import this module
    )

    with open_slide(path) as slide:
        return SlideTissueMask.from_slide(slide)

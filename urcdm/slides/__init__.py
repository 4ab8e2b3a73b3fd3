"""Slide I/O: one ``Slide`` object for every whole-slide format, our pyramids and plain images.

>>> from urcdm.slides import open_slide
>>> with open_slide("slide.svs") as slide:
...     patch = slide.read_region(0, 0, 40000, 40000, out_size=(1024, 1024))
"""

from urcdm.slides.base import FILL_RGB, Slide
from urcdm.slides.opening import OpenSlides, open_slide
from urcdm.slides.tissue import (
    DEFAULT_BACKGROUND_THRESHOLD,
    SlideTissueMask,
    TissueParams,
    is_background,
    slide_tissue_mask,
    tissue_fraction,
    tissue_mask,
)

__all__ = [
    "DEFAULT_BACKGROUND_THRESHOLD",
    "FILL_RGB",
    "OpenSlides",
    "Slide",
    "SlideTissueMask",
    "TissueParams",
    "is_background",
    "open_slide",
    "slide_tissue_mask",
    "tissue_fraction",
    "tissue_mask",
]

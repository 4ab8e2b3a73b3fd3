"""Deep Zoom tiles of any slide the toolkit reads, with OpenSlide's own tiler doing the geometry.

openslide-python's ``DeepZoomGenerator`` is the reference Deep Zoom tiler of this field: it picks
the slide level that matches each Deep Zoom level, reads the tile's window there and resizes it
(Lanczos). A slide that OpenSlide reads (SVS, our pyramids, ...) goes to it unchanged, so its
tiles are OpenSlide's to the bit; ``SlideView`` presents any other ``Slide`` (a plain tiled or
untiled TIFF, a PNG) through the same interface. Either way a 41344 x 41344 pyramid is read one
tile window at a time.
"""

from __future__ import annotations

import io
from functools import lru_cache

import openslide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from urcdm.deepzoom.views import SlideView
from urcdm.errors import SlideError, UserError
from urcdm.slides import Slide
from urcdm.slides.openslide_slide import OpenSlideSlide

TILE_SIZE = 254  # + 2 px overlap = 256-px JPEGs, OpenSlide's and OpenSeadragon's usual choice
OVERLAP = 1
JPEG_QUALITY = 90
CACHED_TILES = 1024  # about 25 MB of encoded tiles per slide: repeated pans are free, memory bounded


class DeepZoomSlide:
    """One slide as a Deep Zoom image: the DZI descriptor and JPEG tiles, cached."""

    def __init__(self, slide: Slide, tile_size: int = TILE_SIZE, overlap: int = OVERLAP, quality: int = JPEG_QUALITY):
        self.slide = slide
        self.quality = quality
        self.tile_size, self.overlap = tile_size, overlap
        self.generator = self._generator()
        self.tile_jpeg = lru_cache(maxsize=CACHED_TILES)(self._encode)

    def _generator(self) -> DeepZoomGenerator:
        # OpenSlide's own handle keeps its exact level downsamples (2.0005, not 2) and level choice.
        source = self.slide.openslide if isinstance(self.slide, OpenSlideSlide) else SlideView(self.slide)
        return DeepZoomGenerator(source, tile_size=self.tile_size, overlap=self.overlap)

    @property
    def level_count(self) -> int:
        return self.generator.level_count

    def tile_image(self, level: int, col: int, row: int) -> Image.Image:
        """The RGB tile; ``UserError`` for an address outside the pyramid, ``SlideError`` for a tile
        the file cannot give (damaged data)."""
        if not 0 <= level < self.generator.level_count:
            raise UserError(f"no Deep Zoom level {level} (the slide has {self.generator.level_count})")
        cols, rows = self.generator.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise UserError(f"no tile ({col}, {row}) at Deep Zoom level {level} ({cols} x {rows} tiles)")
        try:
            return self.generator.get_tile(level, (col, row))
        except openslide.OpenSlideError as exc:
            # The handle is now in OpenSlide's sticky error state: a new one, or every later tile fails.
            self.slide.reopen()
            self.generator = self._generator()
            raise SlideError(f"{self.slide.path.name}: cannot read Deep Zoom tile {level}/{col}_{row}: {exc}") from exc

    def _encode(self, level: int, col: int, row: int) -> bytes:
        buffer = io.BytesIO()
        self.tile_image(level, col, row).save(buffer, "JPEG", quality=self.quality)
        return buffer.getvalue()

    def dzi(self) -> str:
        return self.generator.get_dzi("jpeg")

    def describe(self) -> dict:
        """What the viewer page needs: size, physical scale and the tile layout."""
        width, height = self.slide.dimensions
        mpp = self.slide.mpp
        return {"name": self.slide.path.name, "width": width, "height": height,
                "mpp": round(sum(mpp) / 2, 6) if mpp else None, "vendor": self.slide.vendor,
                "tile_size": self.tile_size, "overlap": self.overlap, "levels": self.generator.level_count}

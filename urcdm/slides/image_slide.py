"""Fallback for what OpenSlide refuses: untiled or SubIFD/OME TIFFs (tifffile) and PNG/JPEG (Pillow).

TIFFs are read lazily through tifffile's zarr view, so only the strips or tiles a read touches are
decoded. Pillow formats have no random access; they are decoded once, on first read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import tifffile
import zarr
from PIL import Image
from zarr.core.sync import sync  # zarr's own loop, where its reads run

from urcdm.errors import SlideError
from urcdm.slides.base import Slide, composite_over_fill


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB from the sample layouts plain images come in (grey, RGB, RGBA, 16-bit)."""
    if pixels.dtype == np.uint16:
        pixels = (pixels // 257).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise SlideError(f"unsupported sample type {pixels.dtype}: expected 8- or 16-bit images")
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2)
    if pixels.shape[2] == 4:
        return composite_over_fill(pixels)
    return np.ascontiguousarray(pixels[..., :3])


def _tiff_mpp(page: tifffile.TiffPage) -> tuple[float, float] | None:
    unit = page.tags.get("ResolutionUnit")
    microns_per_unit = {2: 25400.0, 3: 10000.0}.get(int(unit.value) if unit else 2)
    x_res, y_res = page.tags.get("XResolution"), page.tags.get("YResolution")
    if microns_per_unit is None or x_res is None or y_res is None:
        return None
    (xn, xd), (yn, yd) = x_res.value, y_res.value
    if not (xn and xd and yn and yd):
        return None
    return microns_per_unit * xd / xn, microns_per_unit * yd / yn


def _check_complete(path: Path, series: tifffile.TiffPageSeries) -> None:
    """Refuse a TIFF whose strips or tiles point past the end of the file: tifffile would read the
    missing ones as flat fill without a word, and a half-grey slide would pass for a real one."""
    size = path.stat().st_size
    for level in series.levels:
        for page in level.pages:
            if page is None or not page.dataoffsets:
                continue
            end = int((np.asarray(page.dataoffsets, dtype=np.int64) + np.asarray(page.databytecounts, dtype=np.int64)).max())
            if end > size:
                raise SlideError(f"{path}: damaged TIFF, cut short (its pixel data runs to byte {end}, "
                                 f"the file has {size}); is the file complete?")


def _settle_zarr_reads() -> None:
    """Let the other chunk reads of a failed zarr read finish. zarr gathers a read's chunks on its own
    event loop and, when one fails, leaves the rest running; stopped at exit, each printed "Task was
    destroyed but it is pending!" with a stack (about 230 lines after the one error line)."""
    async def others_done() -> None:
        current = asyncio.current_task()
        await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not current), return_exceptions=True)

    sync(others_done())


class TiffSlide(Slide):
    """Any TIFF tifffile understands, with the pyramid levels tifffile finds (SubIFDs, OME)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._tiff = tifffile.TiffFile(str(path))
        series = self._tiff.series[0]
        axes = series.axes
        if axes not in ("YX", "YXS", "SYX"):
            raise SlideError(f"{path}: unsupported TIFF layout (axes {axes!r}); expected a 2-D RGB or grey image")
        self._planar = axes == "SYX"
        _check_complete(path, series)
        self._levels = [self._level_array(series, i) for i in range(len(series.levels))]
        self._level_dimensions = tuple(self._xy_size(level) for level in self._levels)
        self._mpp = _tiff_mpp(series.levels[0].keyframe)

    def _level_array(self, series, level: int):
        """A lazily read array of one level: memory-mapped when the pixels are stored raw and
        contiguous (a zarr chunk would be a whole strip, often the whole image), else zarr."""
        if series.levels[level].keyframe.is_memmappable:
            return tifffile.memmap(str(self.path), series=0, level=level, mode="r")
        return zarr.open(series.aszarr(level=level), mode="r")

    def _xy_size(self, array) -> tuple[int, int]:
        height, width = (array.shape[1:3] if self._planar else array.shape[:2])
        return int(width), int(height)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._level_dimensions

    @property
    def vendor(self) -> str:
        return "tiff"

    @property
    def mpp(self) -> tuple[float, float] | None:
        return self._mpp

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        array = self._levels[level]
        try:
            if self._planar:
                pixels = np.moveaxis(np.asarray(array[:, y : y + h, x : x + w]), 0, -1)
            else:
                pixels = np.asarray(array[y : y + h, x : x + w])
        except Exception as exc:  # codec errors surface as many types; all mean a damaged file
            _settle_zarr_reads()
            raise SlideError(f"{self.path}: cannot decode TIFF data: {exc}") from exc
        return _to_rgb(pixels)

    def close(self) -> None:
        self._tiff.close()


class PillowSlide(Slide):
    """PNG, JPEG, BMP, WebP...: one level, decoded on first read."""

    def __init__(self, path: Path):
        super().__init__(path)
        try:
            with Image.open(path) as image:
                image.verify()  # checks the stream without decoding every pixel
                self._size = image.size
                self._format = (image.format or "image").lower()
        except Image.DecompressionBombError as exc:
            # Pillow must decode such an image whole; a tiled TIFF can be read piece by piece.
            raise SlideError(f"{path}: too large for a format without random access ({exc}); save it as a tiled TIFF") from exc
        self._pixels: np.ndarray | None = None

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return (self._size,)

    @property
    def vendor(self) -> str:
        return self._format

    @property
    def mpp(self) -> tuple[float, float] | None:
        return None

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        if self._pixels is None:
            try:
                with Image.open(self.path) as image:
                    image.load()
                    mode = "RGBA" if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info else "RGB"
                    self._pixels = _to_rgb(np.asarray(image.convert(mode)))
            except (OSError, ValueError) as exc:
                raise SlideError(f"{self.path}: cannot decode image: {exc}") from exc
        return self._pixels[y : y + h, x : x + w]

    def close(self) -> None:
        self._pixels = None

"""``open_slide``: pick the backend for a path, or explain in one line why nothing can read it."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import openslide
import tifffile
from PIL import Image, UnidentifiedImageError

from urcdm.errors import SlideError
from urcdm.slides.base import Slide
from urcdm.slides.image_slide import PillowSlide, TiffSlide
from urcdm.slides.openslide_slide import OpenSlideSlide

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Formats only their scanner's reader (OpenSlide here) understands in full: a file with such a name
# that OpenSlide cannot open is damaged (typically truncated), even where tifffile still finds the
# first pages and would give level 0 without the rest of the pyramid or the mpp.
_VENDOR_SUFFIXES = {".svs": "Aperio", ".ndpi": "Hamamatsu", ".scn": "Leica", ".bif": "Ventana", ".mrxs": "MIRAX",
                    ".vms": "Hamamatsu", ".vmu": "Hamamatsu", ".svslide": "Sakura"}
_TIFF_BASED = {".svs", ".ndpi", ".scn", ".bif", ".svslide"}  # the others are index or text files


def open_slide(path: str | os.PathLike) -> Slide:
    """Open a slide or image with the best reader: OpenSlide first, then tifffile, then Pillow.

    Raises ``SlideError`` (a ``UserError``) with a one-line reason for a missing path, a directory,
    an empty file or a file none of the readers understand.
    """
    path = Path(path)
    if not path.exists():
        raise SlideError(f"{path}: no such file")
    if path.is_dir():
        raise SlideError(f"{path}: is a directory, not a slide")
    if not path.is_file():  # a device or pipe: its size says nothing, and it cannot be read at random
        raise SlideError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise SlideError(f"{path}: empty file (0 bytes)")
    with open(path, "rb") as handle:
        magic = handle.read(4)

    openslide_reason = "not a format OpenSlide recognises"
    if openslide.OpenSlide.detect_format(str(path)) is not None:
        try:
            return OpenSlideSlide(path)
        except openslide.OpenSlideError as exc:
            openslide_reason = f"OpenSlide: {exc}"

    vendor = _VENDOR_SUFFIXES.get(path.suffix.lower())
    if vendor is not None and path.suffix.lower() in _TIFF_BASED and magic not in _TIFF_MAGIC:
        raise SlideError(f"{path}: {_what_it_is(path)}; a {path.suffix} slide ({vendor}) is a TIFF")
    if vendor is not None:
        raise SlideError(f"{path}: damaged {vendor} slide ({openslide_reason}); is the file complete?")
    if magic in _TIFF_MAGIC:
        try:
            with _tifffile_warnings() as warned:
                slide = TiffSlide(path)
            truncated = [message for message in warned if "invalid page offset" in message]
            if truncated:  # an IFD past the end of the file: the pages after it were cut off
                slide.close()
                raise SlideError(f"{path}: damaged TIFF, cut short ({truncated[0]}); is the file complete?")
            return slide
        except SlideError:
            raise
        except Exception as exc:  # tifffile raises many types for damaged files
            raise SlideError(f"{path}: damaged or unsupported TIFF ({openslide_reason}; tifffile: {exc})") from exc
    try:
        return PillowSlide(path)
    except SlideError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SlideError(f"{path}: not a readable slide or image ({openslide_reason}; Pillow: {_first_line(exc)})") from exc


def _what_it_is(path: Path) -> str:
    """A file's real kind, for a name that promised another."""
    try:
        with Image.open(path) as image:
            return f"the file is a {image.format} image"
    except (UnidentifiedImageError, OSError, ValueError):
        return "the file is neither an image nor a slide"


@contextmanager
def _tifffile_warnings():
    """tifffile's warnings while it parses a file, gathered instead of printed as raw log lines."""
    warned: list[str] = []

    class Gather(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warned.append(record.getMessage())

    logger, handler = logging.getLogger("tifffile"), Gather(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield warned
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class OpenSlides:
    """At most ``limit`` slides kept open, the least recently used closed first: for readers that
    visit many slides in no particular order (crop sets, verification), without a handle per slide."""

    def __init__(self, limit: int = 8):
        self.limit = limit
        self._open: OrderedDict[str, Slide] = OrderedDict()

    def get(self, path: str | os.PathLike) -> Slide:
        key = str(path)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        if len(self._open) >= self.limit:
            self._open.popitem(last=False)[1].close()
        slide = self._open[key] = open_slide(key)
        return slide

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# tifffile logs warnings for odd-but-readable files; the user sees our messages instead.
tifffile.logger().setLevel("ERROR")

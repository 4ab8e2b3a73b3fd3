"""Parity encoding: every image a reader sees is made the same way, whatever it came from.

A real crop cut from an Aperio SVS and a synthetic one from our pyramid differ in container, tile
codec, ICC profile and metadata (an ImageDescription saying "Aperio" on real images only would give
the game away). So each case is read as plain RGB pixels through the slide layer, resized to the
display size, and encoded afresh from a bare array: same format, size, quality and chroma
subsampling for all, no EXIF, ICC, text chunks or comments, and the same file timestamp.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from study_app.cases import Case
from study_app.study import FORMATS, Display
from urcdm.slides import open_slide

# Every served file gets this modification time: HTTP Last-Modified must not reveal that real
# images were rendered before synthetic ones.
SERVED_MTIME = 946684800  # 2000-01-01T00:00:00Z


def read_case_pixels(case: Case, size: int) -> np.ndarray:
    """The case as RGB uint8 (size, size, 3): its crop, or the whole image's centred square."""
    with open_slide(case.source) as slide:
        if case.crop is None:
            width, height = slide.dimensions
            side = min(width, height)
            x, y = (width - side) // 2, (height - side) // 2
            return slide.read_region(x, y, side, side, out_size=(size, size), within=(x, y, side, side))
        x, y, side = case.crop[:3]
        return slide.read_region(x, y, side, side, out_size=(size, size), within=case.crop[3:7] or None)


def encode(rgb: np.ndarray, display: Display) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))  # a bare array: no metadata to carry
    buffer = io.BytesIO()
    if display.format == "jpeg":
        image.save(buffer, format=FORMATS["jpeg"], quality=display.quality, subsampling="4:2:0", optimize=False)
    else:
        image.save(buffer, format=FORMATS["png"], compress_level=6)
    return buffer.getvalue()


def render_case(case: Case, display: Display, out_dir: Path) -> str:
    """Write the case's image as ``<case id><suffix>``; returns its image id (sha256 prefix of the bytes)."""
    data = encode(read_case_pixels(case, display.size), display)
    path = out_dir / f"{case.id}{display.suffix}"
    path.write_bytes(data)
    os.utime(path, (SERVED_MTIME, SERVED_MTIME))
    return hashlib.sha256(data).hexdigest()[:16]

"""How served images are written, and which encodings are blind (pure: pixels in, bytes out).

A browser can read every byte it receives: a reader's script, or the developer tools, can fetch a
case image and parse it. Any compressed encoding then carries a measure of the picture besides the
picture itself: a blurred image's JPEG or PNG has fewer coded bytes, and padding the file to one
length only moves that number into the padding's own length. The one encoding that gives nothing
away is one whose bytes depend on the image size alone:

- ``raw``: PNG with deflate's *stored* blocks (zlib level 0). The chunk layout, every chunk length
  and the total length are fixed by the width and height; only the pixel bytes (and the checksums
  computed from them) differ. It is a plain PNG every browser decodes. It costs bandwidth: 3 bytes
  a pixel, about 0.2 MB for a 256-px tile, 3.1 MB for a 1024-px crop and 12.6 MB at 2048 px.
- ``png`` and ``jpeg``: compressed, so they leak through their lengths; ``prepare`` refuses them
  unless the study opts out (``display.parity: warn``).

``auto`` (the default) is ``raw`` up to ``AUTO_RAW_MAX_SIDE`` px a side (every demo, crops up to
2048 px, every whole-slide tile) and ``jpeg`` above it, where uncompressed images would be too
heavy to serve.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

FORMATS = ("auto", "raw", "png", "jpeg")
AUTO_RAW_MAX_SIDE = 2048
_MEDIA_TYPES = {"raw": "image/png", "png": "image/png", "jpeg": "image/jpeg"}


def resolve_format(requested: str, side: int) -> str:
    """The encoding a study's images of ``side`` px get: ``requested``, or for ``auto`` raw when small enough."""
    if requested != "auto":
        return requested
    return "raw" if side <= AUTO_RAW_MAX_SIDE else "jpeg"


@dataclass(frozen=True)
class Encoding:
    """A resolved encoding: ``raw``, ``png`` or ``jpeg`` (never ``auto``), with the JPEG quality."""

    format: str
    quality: int = 92

    def __post_init__(self):
        if self.format not in _MEDIA_TYPES:
            raise ValueError(f"not a served image format: {self.format!r}")

    @property
    def suffix(self) -> str:
        return ".jpg" if self.format == "jpeg" else ".png"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self.format]

    @property
    def blind(self) -> bool:
        """True when the bytes depend on the image size alone (nothing to pad, nothing to parse)."""
        return self.format == "raw"

    @property
    def container(self) -> str:
        """The file format on disk: ``jpeg`` or ``png`` (how files are padded and parsed)."""
        return "jpeg" if self.format == "jpeg" else "png"

    def encode(self, rgb: np.ndarray) -> bytes:
        image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))  # a bare array: no metadata to carry
        buffer = io.BytesIO()
        if self.format == "jpeg":
            image.save(buffer, format="JPEG", quality=self.quality, subsampling="4:2:0", optimize=False)
        else:
            image.save(buffer, format="PNG", compress_level=0 if self.blind else 6)
        return buffer.getvalue()

    def bytes_per_image(self, side: int) -> int | None:
        """The served size of one ``side``-px square image where it is fixed (raw), else None."""
        return len(self.encode(np.zeros((side, side, 3), np.uint8))) if self.blind else None

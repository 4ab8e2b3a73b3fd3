"""Parity rendering: every image a reader sees is made the same way, whatever it came from.

A real crop cut from an Aperio SVS and a synthetic one from our pyramid differ in container, tile
codec, ICC profile and metadata (an ImageDescription saying "Aperio" on real images only would give
the game away). So each case is read as plain RGB pixels through the slide layer at the study's
one display side, and encoded afresh from a bare array: same format, size, quality and chroma
subsampling for all (``study_app.preparation.encodings``), no EXIF, ICC or text, and the same file timestamp.

The display side is the smallest source side among the study's cases (``source_side``), capped by
``display.size``: a study of equal-sized crops is shown at exactly one source pixel per pixel (the
viewer's 1:1), a study mixing sizes at its smallest, and nothing is upscaled.

The default encoding for crops up to 2048 px and for whole-slide tiles is uncompressed (``raw``),
whose bytes depend on the size alone. Compressed sizes differ by content (a blurred image compresses
to half the bytes of a sharp one), and a browser shows them as Content-Length; so a study that opts
for JPEG or PNG has each file padded to the study's longest: JPEGs with the same number of
zero-filled comment segments after SOI, PNGs with one private ancillary chunk, which decoders skip.
That hides the total length only: the padding's own length and the coded data's length still follow
the picture, and ``study_app.preparation.parity`` reports them.
"""

from __future__ import annotations

import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from evaluation.crops import CropProtocol
from study_app.preparation.cases import Case
from study_app.preparation.encodings import Encoding
from urcdm.slides import open_slide

# Every served file gets this modification time: HTTP Last-Modified must not reveal that real
# images were rendered before synthetic ones.
SERVED_MTIME = 946684800  # 2000-01-01T00:00:00Z


def source_side(crop, protocol: CropProtocol | None, dimensions: tuple[int, int]) -> int:
    """A case's side in the pixels it is read at (what 1:1 shows): for a whole image (``crop`` None)
    its centred square's side; for a fixed-scale crop the protocol's patch size, the crop read at
    that level's or mpp's own resolution (never more than its level-0 span); for a pfid (or whole)
    crop its footprint in level-0 pixels. ``dimensions``: the image's level-0 (width, height)."""
    if crop is None:
        return min(dimensions)
    span = math.floor(float(crop[2]) + 1e-6)  # pfid footprints fall between pixels; never round up
    if protocol is not None and protocol.mode == "fixed":
        return min(protocol.patch_size, span)
    return span


def read_case_pixels(case: Case, size: int) -> np.ndarray:
    """The case as RGB uint8 (size, size, 3): its crop, or the whole image's centred square, read
    (streamed, through the slide's pyramid) at ``size`` pixels a side."""
    with open_slide(case.source) as slide:
        if case.crop is None:
            width, height = slide.dimensions
            side = min(width, height)
            x, y = (width - side) // 2, (height - side) // 2
            return slide.read_region(x, y, side, side, out_size=(size, size), within=(x, y, side, side))
        x, y, side = case.crop[:3]
        return slide.read_region(x, y, side, side, out_size=(size, size), within=case.crop[3:7] or None)


def render_case(case: Case, encoding: Encoding, out_dir: Path, side: int) -> str:
    """Write the case's image, ``side`` pixels square, as ``<case id><suffix>``; returns its content
    id (a sha256 prefix of the pixels shown, so the same image reached through two files or arms is
    recognised)."""
    pixels = read_case_pixels(case, side)
    write_served(out_dir / f"{case.id}{encoding.suffix}", encoding.encode(pixels))
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes() + str(pixels.shape).encode()).hexdigest()[:16]


def write_served(path: Path, data: bytes) -> str:
    """Write a served file with the study's timestamp; returns its image id (sha256 prefix of the bytes)."""
    path.write_bytes(data)
    os.utime(path, (SERVED_MTIME, SERVED_MTIME))
    return hashlib.sha256(data).hexdigest()[:16]


_JPEG_SEGMENT = 65533  # a comment segment's largest payload (its length field counts itself)
_PNG_CHUNK = b"paDd"   # ancillary (p), private (a), reserved (D), safe to copy (d): decoders skip it


def padding_plan(lengths: list[int], image_format: str) -> tuple[int, int]:
    """(target length, segments per file) that bring every file to one length with the same structure.
    ``image_format``: the container, ``jpeg`` or ``png``."""
    longest, shortest = max(lengths), min(lengths)
    if image_format == "jpeg":
        segments = max(1, -(-(longest - shortest) // _JPEG_SEGMENT))
        return longest + 4 * segments, segments
    return longest + 12, 1


def pad(data: bytes, target: int, image_format: str, segments: int) -> bytes:
    """``data`` padded to ``target`` bytes without changing a decoded pixel."""
    if image_format == "jpeg":
        fill = target - len(data) - 4 * segments
        comments = b""
        for _ in range(segments):
            size = min(fill, _JPEG_SEGMENT)
            comments += b"\xff\xfe" + (size + 2).to_bytes(2, "big") + bytes(size)
            fill -= size
        assert data[:2] == b"\xff\xd8" and fill == 0 and len(comments) + len(data) == target
        return data[:2] + comments + data[2:]
    payload = bytes(target - len(data) - 12)
    chunk = len(payload).to_bytes(4, "big") + _PNG_CHUNK + payload + zlib.crc32(_PNG_CHUNK + payload).to_bytes(4, "big")
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]

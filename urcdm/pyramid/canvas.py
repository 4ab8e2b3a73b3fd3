"""A disk-backed RGB canvas of any size: write regions in any order, read any region back.

Pixels live in a file of fixed-size square chunks, each stored contiguously, so a chunk-aligned
read or write is one system call and memory never depends on the canvas size. The file is written
with pread/pwrite rather than mmap: mapped pages would count against the process's resident memory
until the kernel wrote them back, and a 41344^2 canvas is 5.1 GB. A header records the geometry and
which chunks were ever written (unwritten chunks read as the fill colour), so a canvas can be
reopened to resume work after a crash.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from urcdm.errors import UserError
from urcdm.slides.base import FILL_RGB, filled

_MAGIC = b"URCDMCANVAS1"
_HEADER_BYTES = 4096


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class DiskCanvas:
    """An RGB uint8 image of ``width`` x ``height`` stored on disk in ``chunk`` x ``chunk`` blocks."""

    def __init__(self, path: Path, fd: int, width: int, height: int, chunk: int, fill: tuple[int, int, int]):
        self.path, self._fd = Path(path), fd
        self.width, self.height, self.chunk, self.fill = width, height, chunk, tuple(fill)
        self.chunks_x, self.chunks_y = -(-width // chunk), -(-height // chunk)
        self._chunk_bytes = chunk * chunk * 3
        self._data_offset = _HEADER_BYTES + _round_up(self.chunks_x * self.chunks_y, _HEADER_BYTES)
        self._written = np.frombuffer(
            os.pread(fd, self.chunks_x * self.chunks_y, _HEADER_BYTES), dtype=np.uint8
        ).reshape(self.chunks_y, self.chunks_x).copy()

    # -- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, width: int, height: int, chunk: int = 512,
               fill: tuple[int, int, int] = FILL_RGB) -> "DiskCanvas":
        """A new canvas file; refuses to start when the disk cannot hold it."""
        if width <= 0 or height <= 0 or chunk <= 0:
            raise ValueError(f"canvas size and chunk must be positive, got {width} x {height}, chunk {chunk}")
        path = Path(path)
        chunks = -(-width // chunk) * -(-height // chunk)
        data_offset = _HEADER_BYTES + _round_up(chunks, _HEADER_BYTES)
        size = data_offset + chunks * chunk * chunk * 3
        free = shutil.disk_usage(path.parent if path.parent.exists() else ".").free
        if size > free:
            raise UserError(f"{path.parent}: not enough disk space for a {width} x {height} canvas "
                            f"(needs {size / 1e9:.1f} GB, {free / 1e9:.1f} GB free)")
        header = json.dumps({"width": width, "height": height, "chunk": chunk, "fill": list(fill)}).encode()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.pwrite(fd, _MAGIC + header.ljust(_HEADER_BYTES - len(_MAGIC)), 0)
            os.ftruncate(fd, size)  # sparse: untouched chunks cost no disk
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return cls(path, fd, width, height, chunk, fill)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "DiskCanvas":
        """Reopen an existing canvas, e.g. to resume after an interruption."""
        path = Path(path)
        fd = os.open(path, os.O_RDWR)
        header = os.pread(fd, _HEADER_BYTES, 0)
        if not header.startswith(_MAGIC):
            os.close(fd)
            raise UserError(f"{path}: not a URCDM canvas file")
        meta = json.loads(header[len(_MAGIC):].rstrip(b" \x00"))
        return cls(path, fd, meta["width"], meta["height"], meta["chunk"], tuple(meta["fill"]))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def flush(self) -> None:
        """Make every write so far durable (the sampler journals a patch only after this)."""
        os.fsync(self._fd)

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "DiskCanvas":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- pixels ------------------------------------------------------------------------------------
    @property
    def written_fraction(self) -> float:
        """Share of chunks that received at least one write."""
        return float(self._written.mean())

    def _chunk_offset(self, cx: int, cy: int) -> int:
        return self._data_offset + (cy * self.chunks_x + cx) * self._chunk_bytes

    def _read_chunk(self, cx: int, cy: int) -> np.ndarray:
        if not self._written[cy, cx]:
            return filled(self.chunk, self.chunk, self.fill)
        buffer = np.empty((self.chunk, self.chunk, 3), dtype=np.uint8)
        os.preadv(self._fd, [memoryview(buffer).cast("B")], self._chunk_offset(cx, cy))
        return buffer

    def _write_chunk(self, cx: int, cy: int, pixels: np.ndarray) -> None:
        os.pwrite(self._fd, np.ascontiguousarray(pixels).data, self._chunk_offset(cx, cy))
        if not self._written[cy, cx]:
            self._written[cy, cx] = 1
            os.pwrite(self._fd, b"\x01", _HEADER_BYTES + cy * self.chunks_x + cx)

    def _chunks_overlapping(self, x: int, y: int, w: int, h: int):
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > self.width or y + h > self.height:
            raise ValueError(f"region ({x}, {y}, {w}, {h}) is not inside the {self.width} x {self.height} canvas")
        c = self.chunk
        for cy in range(y // c, (y + h - 1) // c + 1):
            for cx in range(x // c, (x + w - 1) // c + 1):
                # Intersection in canvas coordinates.
                x0, y0 = max(x, cx * c), max(y, cy * c)
                x1, y1 = min(x + w, (cx + 1) * c), min(y + h, (cy + 1) * c)
                yield cx, cy, x0, y0, x1, y1

    def write(self, x: int, y: int, pixels: np.ndarray) -> None:
        """Store an (h, w, 3) uint8 region with its top-left corner at (x, y)."""
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected (h, w, 3) uint8 pixels, got {pixels.shape} {pixels.dtype}")
        h, w = pixels.shape[:2]
        c = self.chunk
        for cx, cy, x0, y0, x1, y1 in self._chunks_overlapping(x, y, w, h):
            part = pixels[y0 - y : y1 - y, x0 - x : x1 - x]
            if (x1 - x0, y1 - y0) == (c, c):
                self._write_chunk(cx, cy, part)
                continue
            # A partial chunk: read, modify, write back.
            chunk = self._read_chunk(cx, cy)
            chunk[y0 - cy * c : y1 - cy * c, x0 - cx * c : x1 - cx * c] = part
            self._write_chunk(cx, cy, chunk)

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The (h, w, 3) uint8 region with its top-left corner at (x, y)."""
        out = np.empty((h, w, 3), dtype=np.uint8)
        c = self.chunk
        for cx, cy, x0, y0, x1, y1 in self._chunks_overlapping(x, y, w, h):
            chunk = self._read_chunk(cx, cy)
            out[y0 - y : y1 - y, x0 - x : x1 - x] = chunk[y0 - cy * c : y1 - cy * c, x0 - cx * c : x1 - cx * c]
        return out

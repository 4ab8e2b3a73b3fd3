"""Stream an image of any size into a pyramidal BigTIFF that OpenSlide opens with every level.

Layout (what OpenSlide's generic-tiff reader needs): each level is a top-level tiled page, every
page after the first is marked reduced-resolution, tiles are square, JPEG or deflate, and the
resolution tags carry the mpp. SubIFD pyramids are invisible to OpenSlide.

Each level is written tile by tile in row-major order; while a tile goes out, its 2 x 2 reduction
goes into a disk canvas that becomes the next level. Memory is a few tiles, whatever the size.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import tifffile
from tqdm import tqdm

from urcdm import __version__
from urcdm.errors import OutputExistsError, UserError
from urcdm.interrupts import signals_deferred
from urcdm.pyramid.canvas import DiskCanvas
from urcdm.pyramid.levels import halve, level_sizes

TILE_SIZES = (256, 512)


class PixelSource(Protocol):
    """Anything the writer can pull level-0 pixels from: a DiskCanvas, a slide, an array."""

    width: int
    height: int

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray: ...


class ArraySource:
    """An in-memory image as a PixelSource (small images and tests)."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels
        self.height, self.width = pixels.shape[:2]

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self.pixels[y : y + h, x : x + w]


class SlideSource:
    """Level 0 of a Slide as a PixelSource."""

    def __init__(self, slide):
        self.slide = slide
        self.width, self.height = slide.dimensions

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self.slide.read_level_window(0, x, y, w, h)


@dataclass(frozen=True)
class PyramidInfo:
    path: str
    width: int
    height: int
    tile: int
    compression: str
    quality: int | None
    mpp: float | None
    level_dimensions: list[tuple[int, int]]
    file_bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


PYRAMID_SUFFIXES = (".tiff", ".tif")


def check_pyramid_name(out_path: Path) -> None:
    """A pyramid is a BigTIFF; a file named ``slide.png`` would be opened as a PNG by every tool that picks
    its reader by the name (our ``open_slide`` included), so the name must say TIFF."""
    if Path(out_path).suffix.lower() not in PYRAMID_SUFFIXES:
        raise UserError(f"{out_path}: a pyramid is a BigTIFF; give it a .tiff or .tif name")


def check_output_path(out_path: Path, overwrite: bool, directory: bool = False) -> None:
    """What can be known about where a result goes before the work that makes it: it is not there
    (or may be replaced), is of the right kind, and its folder takes a new file (tried: a read-only
    mount or /proc passes every permission check as root). Errors name the user's path."""
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise OutputExistsError(f"{out_path}: already exists (use --overwrite to replace it)")
    if directory and out_path.exists() and not out_path.is_dir():
        raise UserError(f"{out_path}: exists and is not a directory; the output is a new directory")
    if not directory and out_path.is_dir():
        raise UserError(f"{out_path}: is a directory")
    if not out_path.parent.is_dir():
        raise UserError(f"{out_path.parent}: no such directory")
    with signals_deferred():  # a Ctrl-C between making the probe and removing it would leave it
        fd, probe = _temporary_beside(out_path, tempfile.mkstemp)
        os.close(fd)
        os.unlink(probe)


def _temporary_beside(out_path: Path, make):
    try:
        return make(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".partial")
    except OSError as exc:
        raise UserError(f"{out_path}: cannot be written there ({exc.strerror})") from None


@contextmanager
def atomic_output(out_path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``out_path``; rename it into place only if the block succeeds.

    An interrupted or failed write leaves nothing behind, and an existing file is never touched
    unless ``overwrite`` is set.
    """
    check_output_path(out_path, overwrite)
    temp_path = None
    try:
        with signals_deferred():  # the file exists only once `finally` is in charge of removing it
            fd, temp = _temporary_beside(out_path, tempfile.mkstemp)
            os.close(fd)
            temp_path = Path(temp)
        yield temp_path
        umask_permissions(temp_path)
        os.replace(temp_path, out_path)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A write deep in a library names no file: say which output the full disk stopped.
        raise UserError(f"{out_path}: not written, no space left on the device ({exc.strerror})") from exc
    finally:
        if temp_path is not None:
            temp_path.unlink(missing_ok=True)


@contextmanager
def scratch_directory(make_folder: Callable[[], str]) -> Iterator[Path]:
    """The folder ``make_folder`` makes (``tempfile.mkdtemp``), removed with what it holds when the
    block ends. Unlike ``tempfile.TemporaryDirectory``, a SIGTERM while it is made cannot leave it
    behind: one between mkdtemp and the cleanup's registration left ``.urcdm-levels-*`` beside a
    converted slide (with the probe in ``check_output_path``, 3 of 100 converts killed under load)."""
    folder = None
    try:
        with signals_deferred():
            folder = Path(make_folder())
        yield folder
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def check_output_directory(out_dir: Path, overwrite: bool, ours: Sequence[str]) -> None:
    """``check_output_path`` for a folder output; with ``overwrite``, an existing folder must hold only
    files named as this output names its own (``ours``: glob patterns). Run it before the work."""
    out_dir = Path(out_dir)
    check_output_path(out_dir, overwrite, directory=True)
    if out_dir.is_dir():
        foreign = sorted(entry.name for entry in out_dir.iterdir()
                         if not (entry.is_file() and any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in ours)))
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise UserError(f"{out_dir}: holds {foreign[0]!r}{more}, which this command did not write; --overwrite "
                            "replaces only a folder of its own output: choose a new folder")


@contextmanager
def atomic_directory(out_dir: Path, overwrite: bool, ours: Sequence[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; it becomes ``out_dir`` only if the block succeeds.

    A result made of several files (a table, its plot) appears whole or not at all. An existing
    folder is replaced only with ``overwrite``, and only if it holds nothing but files named as this
    output names its files (``ours``: glob patterns): never the user's notes, nor the inputs.
    """
    check_output_directory(out_dir, overwrite, ours)
    out_dir = Path(out_dir).absolute()  # `-o .`: the folder is renamed into place by its full name
    with scratch_directory(lambda: _temporary_beside(out_dir, tempfile.mkdtemp)) as temp:
        yield temp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        umask_permissions(temp, directory=True)
        os.replace(temp, out_dir)


def umask_permissions(path: Path, directory: bool = False) -> None:
    """The mode a plain ``open``/``mkdir`` would have given: temporary files are created private
    (0600 / 0700), which must not leak into the published output."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


# The microns per pixel a TIFF can record for every level: its resolution tags are 32-bit rationals
# (pixels per cm), which neither 1e-9 µm/px (a numerator past 2**32) nor 1e300 (zero) fits.
RECORDABLE_MPP = (1e-3, 1e4)


def check_recordable_mpp(mpp: float | None, what: str = "--mpp") -> None:
    low, high = RECORDABLE_MPP
    if mpp is not None and not low <= mpp <= high:
        raise UserError(f"{what} {mpp:g} µm per pixel cannot be recorded in a TIFF (from {low:g} to {high:g})")


def _check_disk_space(out_path: Path, workdir: Path, width: int, height: int, lossless: bool) -> None:
    raw = width * height * 3
    # Level canvases (a quarter of level 0, then a sixteenth...) plus a pessimistic output size.
    needed = raw * 0.34 + raw * (0.6 if lossless else 0.15)
    free = shutil.disk_usage(workdir).free
    if needed > free:
        raise UserError(f"{out_path}: not enough disk space in {out_path.parent} to write a {width} x {height} "
                        f"pyramid (needs about {_megabytes(needed)}, {_megabytes(free)} free)")


def _megabytes(count: float) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"


def _tiles(source: PixelSource, tile: int, next_level: DiskCanvas | None, progress) -> Iterator[np.ndarray]:
    """Tiles of one level in row-major order, feeding the next level's canvas on the way."""
    for y in range(0, source.height, tile):
        for x in range(0, source.width, tile):
            pixels = source.read(x, y, min(tile, source.width - x), min(tile, source.height - y))
            if next_level is not None:
                next_level.write(x // 2, y // 2, halve(pixels))
            h, w = pixels.shape[:2]
            if (h, w) != (tile, tile):
                # Edge tiles are padded by replication: flat padding would ring in JPEG.
                pixels = np.pad(pixels, ((0, tile - h), (0, tile - w), (0, 0)), mode="edge")
            progress.update(1)
            yield pixels


def write_pyramid(
    source: PixelSource,
    out_path: str | os.PathLike,
    *,
    tile: int = 512,
    quality: int | None = 90,
    mpp: float | None = None,
    chroma_subsampling: bool = True,
    overwrite: bool = False,
    workdir: str | os.PathLike | None = None,
    progress: bool = True,
) -> PyramidInfo:
    """Write ``source`` as an OpenSlide-readable pyramid; ``quality=None`` means lossless deflate.

    ``chroma_subsampling`` stores JPEG colour at half resolution (4:2:0, as scanners do); turn it
    off for full-resolution colour (4:4:4).

    The file appears at ``out_path`` only when complete. Temporary level canvases go to ``workdir``
    (default: beside the output, where the space was checked).
    """
    if tile not in TILE_SIZES:
        raise UserError(f"tile size must be one of {TILE_SIZES}, got {tile}")
    if quality is not None and not 1 <= quality <= 100:
        raise UserError(f"JPEG quality must be between 1 and 100, got {quality}")
    check_recordable_mpp(mpp, "mpp")
    out_path = Path(out_path)
    sizes = level_sizes(source.width, source.height, tile)
    lossless = quality is None
    if lossless:
        codec = {"compression": "zlib", "predictor": True, "photometric": "rgb"}
    else:
        # We hand tifffile RGB; it converts to YCbCr (declaring YCbCr would mislabel RGB samples).
        # 4:2:0 by default, as scanners write real slides; 4:4:4 gains ~1 dB for ~20 % more bytes.
        codec = {"compression": "jpeg", "compressionargs": {"level": quality}, "photometric": "rgb",
                 "subsampling": (2, 2) if chroma_subsampling else (1, 1)}

    with atomic_output(out_path, overwrite) as temp_path, scratch_directory(
        lambda: tempfile.mkdtemp(dir=workdir or out_path.parent, prefix=".urcdm-levels-")
    ) as level_dir:
        _check_disk_space(out_path, Path(level_dir), source.width, source.height, lossless)
        total_tiles = sum(-(-w // tile) * -(-h // tile) for w, h in sizes)
        with tifffile.TiffWriter(temp_path, bigtiff=True) as tiff, tqdm(
            total=total_tiles, desc=f"pyramid {out_path.name}", unit="tile", disable=not progress, leave=False
        ) as bar:
            level_source: PixelSource = source
            for level, (width, height) in enumerate(sizes):
                next_canvas = None
                if level + 1 < len(sizes):
                    next_w, next_h = sizes[level + 1]
                    next_canvas = DiskCanvas.create(Path(level_dir) / f"level{level + 1}.raw", next_w, next_h, chunk=tile)
                downsample = source.width / width
                tiff.write(
                    _tiles(level_source, tile, next_canvas, bar),
                    shape=(height, width, 3),
                    dtype=np.uint8,
                    tile=(tile, tile),
                    subfiletype=1 if level else 0,
                    resolution=(1e4 / (mpp * downsample), 1e4 / (mpp * downsample)) if mpp else None,
                    resolutionunit="CENTIMETER" if mpp else None,
                    description=f"URCDM {__version__} pyramid level {level}" if level == 0 else None,
                    software=f"urcdm {__version__}",
                    metadata=None,
                    **codec,
                )
                if level > 0:
                    level_source.delete()  # our own level canvas, now in the file: free the disk early
                level_source = next_canvas
        file_bytes = temp_path.stat().st_size
    return PyramidInfo(
        path=str(out_path), width=source.width, height=source.height, tile=tile,
        compression="deflate" if lossless else "jpeg", quality=quality, mpp=mpp,
        level_dimensions=sizes, file_bytes=file_bytes,
    )

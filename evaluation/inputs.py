"""Where the images come from: a directory, a glob, a text file listing paths, or a single file.

Every image is opened once through the slide layer before any crop is planned, so a corrupt file
is reported up front (with its reason) instead of halfway through a 50k-crop run.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from urcdm.errors import UserError
from urcdm.slides import open_slide

SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".tif", ".tiff"}
IMAGE_SUFFIXES = SLIDE_SUFFIXES | {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}
_GLOB_CHARS = set("*?[")
_FINGERPRINT_BYTES = 1 << 16


@dataclass(frozen=True)
class ImageInfo:
    path: str
    width: int
    height: int
    mpp: float | None  # mean of x and y microns per pixel, when the file records it


def is_stats_spec(spec: str) -> bool:
    return spec.endswith(".npz")


def list_images(spec: str) -> list[Path]:
    """The image paths a command-line INPUT names, in a stable (sorted or listed) order."""
    path = Path(spec)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"{spec} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        found = _read_list_file(path)
        where = spec
    elif path.is_file():
        found = [path]
        where = spec
    elif _GLOB_CHARS & set(spec):
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        where = f"glob {spec}"
    else:
        raise UserError(f"{spec}: no such file or directory")
    if not found:
        raise UserError(f"no images found in {where}")
    return found


def _read_list_file(path: Path) -> list[Path]:
    listed = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line) if os.path.isabs(line) else path.parent / line
        if not entry.is_file():
            raise UserError(f"{path}:{number}: {line}: no such file")
        listed.append(entry)
    return listed


# The memorisation audit has no --skip-bad: a slide left out of the training or held-out set would
# bias the copy threshold or hide a copy.
AUDIT_READS_ALL = " (the audit reads every slide of a set: repair or remove them)"


def open_images(paths: Sequence[Path], skip_bad: bool = False, label: str = "images",
                skip_hint: str = " (use --skip-bad to leave them out)") -> tuple[list[ImageInfo], list[tuple[str, str]]]:
    """Open every image once for its size and mpp. Returns (readable, skipped-with-reason).

    Unreadable files are an error listing them all, unless ``skip_bad`` is set.
    """
    readable, bad = [], []
    for path in tqdm(paths, desc=f"opening {label}", unit="file", leave=False, disable=len(paths) < 50):
        try:
            with open_slide(path) as slide:
                width, height = slide.dimensions
                mpp = sum(slide.mpp) / 2 if slide.mpp else None
            readable.append(ImageInfo(str(path), int(width), int(height), mpp))
        except Exception as exc:  # any reader failure is a property of the file, reported by name
            bad.append((str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    if bad and not skip_bad:
        shown = "; ".join(f"{p} ({reason})" for p, reason in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UserError(f"{len(bad)} unreadable {label} file(s): {shown}{more}{skip_hint}")
    if not readable:
        raise UserError(f"none of the {len(paths)} {label} file(s) could be read")
    return readable, bad


def fingerprint(paths: Iterable[str]) -> str:
    """A short digest of the inputs: names, sizes, and the first and last 64 KiB of each file.

    Content-based rather than path-based so a dataset moved to another disk keeps its fingerprint,
    and cheap enough for thousands of gigapixel slides.
    """
    digest = hashlib.sha256()
    for name in paths:
        size = os.path.getsize(name)
        digest.update(f"{Path(name).name}\0{size}\0".encode())
        with open(name, "rb") as handle:
            digest.update(handle.read(_FINGERPRINT_BYTES))
            if size > _FINGERPRINT_BYTES:
                handle.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
                digest.update(handle.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]

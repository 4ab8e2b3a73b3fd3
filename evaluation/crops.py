"""Which pixels are compared: crop protocols and seeded crop sampling (pure; no I/O).

Three protocols, each producing square crops ``(image, x, y, size)`` in level-0 pixels:

- ``pfid``  — Chai et al. 2022 (anyres-gan, ``fid-patch{P}-min{A}max{B}``): each crop comes from a
  random image; its side is uniform in [A, B] (defaults: P and the image's shorter side), so the
  image is in effect downsampled by a random factor and never upsampled; random position.
- ``whole`` — each image once, its centred square (FID-10k on 1024^2 low-resolution outputs).
- ``fixed`` — random crops at one magnification: a URCDM level (``level``) or a physical
  resolution (``mpp``), e.g. FID at each of the three levels.

Every crop is read back at ``patch_size`` pixels (the protocol's output), then resized to the
extractor's ``image_size``. Both sizes are part of the protocol: statistics computed under a
different protocol are never compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import numpy as np

from evaluation.inputs import ImageInfo
from urcdm.errors import UserError
from urcdm.magnification import level_downsample

MODES = ("pfid", "whole", "fixed")
CROP_COLUMNS = ("image", "x", "y", "size")
_MAX_REJECTIONS_PER_CROP = 200


@dataclass(frozen=True)
class CropProtocol:
    mode: str = "pfid"
    patch_size: int = 256
    image_size: int = 299
    min_size: int | None = None
    max_size: int | None = None
    level: int | None = None
    mpp: float | None = None
    min_tissue: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"crop protocol must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.patch_size < 1 or self.image_size < 1:
            raise UserError("--patch-size and --image-size must be positive")
        if self.mode == "fixed" and (self.level is None) == (self.mpp is None):
            raise UserError("a fixed-scale protocol needs exactly one of --level or --mpp")
        if self.mode != "fixed" and (self.level is not None or self.mpp is not None):
            raise UserError(f"--level/--mpp select the fixed-scale protocol, not {self.mode}")
        if self.mode != "pfid" and (self.min_size is not None or self.max_size is not None):
            raise UserError("--min/--max apply to the pfid protocol only")
        if self.min_size is not None and self.min_size < self.patch_size:
            raise UserError(f"--min {self.min_size} is below --patch-size {self.patch_size}: crops are never upsampled")
        if self.min_size is not None and self.max_size is not None and self.max_size < self.min_size:
            raise UserError(f"--max {self.max_size} is below --min {self.min_size}")
        if self.level is not None:
            try:
                level_downsample(self.level)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        if self.mpp is not None and self.mpp <= 0:
            raise UserError("--mpp must be positive")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise UserError("--min-tissue must be in [0, 1]")

    @property
    def read_size(self) -> int:
        """Pixels per crop side as read from the slide (whole images go straight to image_size)."""
        return self.image_size if self.mode == "whole" else self.patch_size

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CropProtocol":
        return cls(**values)

    def with_image_size(self, image_size: int) -> "CropProtocol":
        return replace(self, image_size=image_size)

    def describe(self) -> str:
        if self.mode == "whole":
            text = f"whole images at {self.image_size}px"
        elif self.mode == "pfid":
            low = self.min_size or self.patch_size
            high = self.max_size or "(shorter side)"
            text = f"pfid patch{self.patch_size}-min{low}-max{high} -> {self.image_size}px"
        else:
            scale = f"level {self.level}" if self.level is not None else f"{self.mpp:g} mpp"
            text = f"fixed {scale}, patch{self.patch_size} -> {self.image_size}px"
        return text + (f", tissue >= {self.min_tissue:g}" if self.min_tissue else "")

    def differences(self, other: "CropProtocol") -> list[str]:
        mine, theirs = self.as_dict(), other.as_dict()
        return [f"{key} {theirs[key]!r} vs {mine[key]!r}" for key in mine if mine[key] != theirs[key]]


def crop_size_range(protocol: CropProtocol, image: ImageInfo) -> tuple[int, int] | None:
    """Smallest and largest crop side (level-0 px) this image can supply, or None if it can't."""
    shorter = min(image.width, image.height)
    if protocol.mode == "whole":
        return shorter, shorter
    if protocol.mode == "pfid":
        low = protocol.min_size or protocol.patch_size
        high = min(shorter, protocol.max_size or shorter)
        return (low, high) if low <= high else None
    if protocol.level is not None:
        span = round(protocol.patch_size * level_downsample(protocol.level))
    else:
        if image.mpp is None:
            raise UserError(f"{image.path}: resolution (mpp) unknown, so --mpp cannot be honoured; use --level")
        span = round(protocol.patch_size * protocol.mpp / image.mpp)
    return (span, span) if span <= shorter else None


CropFilter = Callable[[int, int, int, int], bool]


def sample_crops(images: Sequence[ImageInfo], protocol: CropProtocol, n: int, seed: int,
                 accept: CropFilter | None = None) -> np.ndarray:
    """``n`` crops as an int64 array with columns ``CROP_COLUMNS``, sorted by image.

    Seeded: the same images, protocol, n and seed give the same crops. ``accept`` may reject a
    crop (e.g. too little tissue); rejected crops are redrawn. In ``whole`` mode ``n`` images are
    chosen without replacement (all of them when there are fewer).
    """
    if n < 1:
        raise UserError("--n must be at least 1")
    rng = np.random.default_rng(seed)
    if protocol.mode == "whole":
        chosen = np.arange(len(images)) if len(images) <= n else np.sort(rng.choice(len(images), n, replace=False))
        rows = []
        for index in chosen:
            image = images[index]
            side = min(image.width, image.height)
            rows.append((index, (image.width - side) // 2, (image.height - side) // 2, side))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 4)

    ranges = [crop_size_range(protocol, image) for image in images]
    eligible = np.array([i for i, r in enumerate(ranges) if r is not None])
    if eligible.size == 0:
        smallest = min(min(im.width, im.height) for im in images)
        raise UserError(f"no image is large enough for {protocol.describe()} "
                        f"(largest shorter side is {max(min(im.width, im.height) for im in images)} px, smallest {smallest} px)")
    crops = np.empty((n, 4), dtype=np.int64)
    made, rejected = 0, 0
    while made < n:
        index = int(eligible[rng.integers(eligible.size)])
        image, (low, high) = images[index], ranges[index]
        size = int(rng.integers(low, high + 1))
        x = int(rng.integers(0, image.width - size + 1))
        y = int(rng.integers(0, image.height - size + 1))
        if accept is not None and not accept(index, x, y, size):
            rejected += 1
            if rejected > _MAX_REJECTIONS_PER_CROP * n:
                raise UserError(f"only {made} of {n} crops met the tissue threshold after {rejected} tries; "
                                f"lower --min-tissue")
            continue
        crops[made] = (index, x, y, size)
        made += 1
    return crops[np.argsort(crops[:, 0], kind="stable")]


def derive_seed(seed: int, inputs: str) -> int:
    """A reproducible crop stream per (``--seed``, input set), from a hex fingerprint of the inputs."""
    return int(np.random.SeedSequence([seed, int(inputs, 16)]).generate_state(1)[0])

"""Which pixels are compared: crop protocols and seeded crop sampling (pure; no I/O).

Three protocols, each producing square crops ``(image, x, y, size)`` in level-0 pixels (float64;
fractional where the protocol's grid falls between source pixels), each with the frame it is cut
from (``frame_*``: the part of the image that the protocol resizes as a whole; the resampling
filter stops at its edges, as it does at the edges of an image resized whole):

- ``pfid``  — anyres-gan's ``fid-patch{P}-min{m}max{M}`` (Chai et al. 2022, ``util/patch_util.py``).
  The image is cut to a random square of side S (its shorter side); a new side u is drawn uniformly
  and continuously in [max(P, m), min(S, M)] (M = 0: S) and rounded; the square resized to u x u
  gives a P x P patch at a uniform integer position. ``m`` and ``M`` bound the *resized image*, not
  the crop: the footprint in source pixels is P * S / u, so most patches are downsampled little.
  The patch is read straight from the pyramid level that matches it, never by resizing the image.
- ``whole`` — each image once, its centred square read at ``image_size`` with PIL bicubic, as
  clean-fid resizes (FID-10k on 1024^2 low-resolution outputs); ``image_size`` equal to the images'
  own size feeds them as they are, so the network resizes them as torch-fidelity's pipeline does.
- ``fixed`` — random crops at one magnification: a URCDM level (``level``), a physical
  resolution (``mpp``), or a span in level-0 pixels (``span``: another config's level, e.g. the
  tiny preset's), e.g. FID at each of the three levels.

In ``pfid`` and ``fixed`` the images take shuffled, cycled turns (anyres-gan's sampler), so every
image gives n / N crops, give or take one. Every crop is read at ``patch_size`` pixels (the
protocol's output) and reaches the extractor at ``image_size``. Both sizes and the sampling law
are part of the protocol: statistics made under a different one are never compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import numpy as np

from evaluation.inputs import ImageInfo
from urcdm.errors import UserError
from urcdm.magnification import level_downsample

MODES = ("pfid", "whole", "fixed")
CROP_COLUMNS = ("image", "x", "y", "size", "frame_x", "frame_y", "frame_w", "frame_h")
# The sampling law, recorded with every statistics file. Before it was recorded, the crop side was
# drawn uniformly and each crop's image with replacement (pFID 1.6-2.6x too low), and whole images
# were read with Lanczos, the filter reaching past their edges: no statistics of then compare.
SAMPLING = "anyres-gan"
LEGACY_SAMPLING = "legacy: crop side uniform, images drawn with replacement, whole images by Lanczos"
_MAX_REJECTIONS_PER_CROP = 200


@dataclass(frozen=True)
class CropProtocol:
    mode: str = "pfid"
    patch_size: int = 256
    image_size: int = 256
    min_size: int | None = None   # pfid: smallest resized-image side m (default: patch size)
    max_size: int | None = None   # pfid: largest resized-image side M (default: the image's own)
    level: int | None = None
    mpp: float | None = None
    min_tissue: float = 0.0
    span: int | None = None       # fixed: level-0 pixels per crop side (instead of a paper level or an mpp)
    sampling: str = SAMPLING

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"crop protocol must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.sampling not in (SAMPLING, LEGACY_SAMPLING):
            raise UserError(f"unknown crop sampling law {self.sampling!r}")
        if self.patch_size < 1 or self.image_size < 1:
            raise UserError("--patch-size and --image-size must be positive")
        scales = sum(value is not None for value in (self.level, self.mpp, self.span))
        if self.mode == "fixed" and scales != 1:
            raise UserError("a fixed-scale protocol needs exactly one of --level, --mpp or --span")
        if self.mode != "fixed" and scales:
            raise UserError(f"--level/--mpp/--span select the fixed-scale protocol, not {self.mode}")
        if self.span is not None and self.span < self.patch_size:
            raise UserError(f"--span {self.span} is below --patch-size {self.patch_size}: crops are never upsampled")
        if self.mode != "pfid" and (self.min_size is not None or self.max_size is not None):
            raise UserError("--min/--max apply to the pfid protocol only")
        if self.min_size is not None and self.min_size < self.patch_size:
            raise UserError(f"--min {self.min_size} is below --patch-size {self.patch_size}: images are never upsampled")
        if self.max_size is not None and self.max_size != 0 and self.max_size < (self.min_size or self.patch_size):
            raise UserError(f"--max {self.max_size} is below --min {self.min_size or self.patch_size} (0 means each image's own size)")
        if self.max_size is not None and self.max_size < 0:
            raise UserError("--max must be 0 (each image's own size) or a side in pixels")
        # One spelling per law, so that equal protocols compare equal: --min P and --max 0 are the defaults.
        if self.min_size == self.patch_size:
            object.__setattr__(self, "min_size", None)
        if self.max_size == 0:
            object.__setattr__(self, "max_size", None)
        if self.level is not None:
            try:
                level_downsample(self.level)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        if self.mpp is not None and not (np.isfinite(self.mpp) and self.mpp > 0):
            raise UserError(f"--mpp must be a finite number > 0, got {self.mpp}")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise UserError("--min-tissue must be in [0, 1]")

    @property
    def read_size(self) -> int:
        """Pixels per crop side as read from the slide (whole images go straight to image_size)."""
        return self.image_size if self.mode == "whole" else self.patch_size

    @property
    def resample(self) -> str:
        """The filter crops are read with: Lanczos (anyres-gan's) for crops, and for whole images
        PIL's bicubic, clean-fid's "clean" resize (identical up to clean-fid's float output)."""
        return "bicubic" if self.mode == "whole" else "lanczos"

    @property
    def name(self) -> str:
        """The protocol's short name; for pfid anyres-gan's metric name (M = 0: each image's own size)."""
        if self.mode == "pfid":
            return f"patch{self.patch_size}-min{self.min_size or self.patch_size}max{self.max_size or 0}"
        if self.mode == "whole":
            return f"whole{self.image_size}"
        scale = f"level{self.level}" if self.level is not None else \
            f"span{self.span}" if self.span is not None else f"mpp{self.mpp:g}"
        return f"fixed-{scale}-patch{self.patch_size}"

    def as_dict(self) -> dict:
        values = asdict(self)
        if values["span"] is None:
            # Added later: left out when unused, so the identity of every earlier protocol (a study's
            # prepared cases, a statistics file's header) stays what it was.
            del values["span"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "CropProtocol":
        values = dict(values)
        values.setdefault("sampling", LEGACY_SAMPLING)  # written before the law was recorded
        return cls(**values)

    def with_image_size(self, image_size: int) -> "CropProtocol":
        return replace(self, image_size=image_size)

    def describe(self) -> str:
        if self.mode == "whole":
            text = f"whole images (centred square) -> {self.image_size}px, bicubic"
        else:
            fed = f"{self.image_size}px" if self.image_size != self.read_size else f"{self.read_size}px as read"
            named = self.name if self.name.startswith(self.mode) else f"{self.mode} {self.name}"  # not "fixed fixed-..."
            if self.mode == "pfid":  # anyres-gan's name is terse: "max0" reads as a bound of 0
                largest = f"{self.max_size}px" if self.max_size else "each image's own side"
                named += f" (squares resized to {self.min_size or self.patch_size}px .. {largest})"
            text = f"{named} -> {fed}"
        return text + (f", tissue >= {self.min_tissue:g}" if self.min_tissue else "")

    def differences(self, other: "CropProtocol") -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{key} {theirs[key]!r} vs {mine[key]!r}" for key in mine if mine[key] != theirs[key]]


def pfid_side_range(protocol: CropProtocol, image: ImageInfo) -> tuple[int, int] | None:
    """The range [max(P, m), min(S, M)] of the resized square's side u, or None if the image is
    smaller than a patch (patches are never upsampled)."""
    shorter = min(image.width, image.height)
    low = max(protocol.patch_size, protocol.min_size or 0)
    high = min(shorter, protocol.max_size or shorter)
    return (low, high) if low <= high else None


def fixed_span(protocol: CropProtocol, image: ImageInfo) -> int | None:
    """The fixed protocol's crop side in this image's level-0 pixels, or None if it does not fit."""
    if protocol.level is not None:
        span = round(protocol.patch_size * level_downsample(protocol.level))
    elif protocol.span is not None:
        span = protocol.span
    else:
        if image.mpp is None:
            raise UserError(f"{image.path}: resolution (mpp) unknown, so --mpp cannot be honoured; use --level")
        span = round(protocol.patch_size * protocol.mpp / image.mpp)
        if span < protocol.patch_size:
            raise UserError(f"{image.path}: --mpp {protocol.mpp:g} is finer than the image's own {image.mpp:g} µm/px; "
                            f"crops are never upsampled")
    return span if span <= min(image.width, image.height) else None


Crop = tuple[float, float, float, float, float, float, float]  # x, y, size, frame x, y, w, h


def draw_pfid_crop(image: ImageInfo, side_range: tuple[int, int], patch: int, rng: np.random.Generator) -> Crop:
    """One pfid patch as a level-0 square (x, y, size) in its square frame: the same pixels
    anyres-gan gets by square-cutting the image, resizing it whole to round(u) and cropping."""
    square = min(image.width, image.height)
    square_x = int(rng.integers(0, image.width - square + 1))
    square_y = int(rng.integers(0, image.height - square + 1))
    resized = int(np.round(rng.uniform(*side_range)))
    grid_x = int(rng.integers(0, resized - patch + 1))
    grid_y = int(rng.integers(0, resized - patch + 1))
    pixel = square / resized  # one resized pixel in source pixels
    return square_x + grid_x * pixel, square_y + grid_y * pixel, patch * pixel, square_x, square_y, square, square


def draw_fixed_crop(image: ImageInfo, span: int, rng: np.random.Generator) -> Crop:
    x, y = rng.integers(0, image.width - span + 1), rng.integers(0, image.height - span + 1)
    return x, y, span, 0, 0, image.width, image.height


def image_turns(eligible: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Which image each of n crops comes from: shuffled passes over the eligible images, cycled.

    anyres-gan feeds its patch dataset through StyleGAN's InfiniteSampler (one shuffle, cycled);
    each pass here is a fresh shuffle, which keeps the same balance: n / N crops per image, +-1.
    """
    eligible = np.asarray(eligible, dtype=np.int64)
    passes = -(-n // eligible.size)
    return np.concatenate([rng.permutation(eligible) for _ in range(passes)])[:n]


CropFilter = Callable[[int, float, float, float], bool]


def sample_crops(images: Sequence[ImageInfo], protocol: CropProtocol, n: int, seed: int,
                 accept: CropFilter | None = None) -> np.ndarray:
    """``n`` crops as a float64 (n, 8) array with columns ``CROP_COLUMNS``, sorted by image.

    Seeded: the same images, protocol, n and seed give the same crops. ``accept`` may reject a
    crop (e.g. too little tissue); a rejected crop is redrawn from the same image, so the images'
    turns stay balanced. In ``whole`` mode ``n`` images are chosen without replacement (all of
    them when there are fewer).
    """
    if n < 1:
        raise UserError("--n must be at least 1")
    if protocol.sampling != SAMPLING:
        raise UserError(f"crops can only be drawn under the current law ({SAMPLING}), not {protocol.sampling!r}")
    rng = np.random.default_rng(seed)
    if protocol.mode == "whole":
        return _whole_images(images, n, rng)

    if protocol.mode == "pfid":
        ranges = [pfid_side_range(protocol, image) for image in images]
        draw = lambda i, r: draw_pfid_crop(images[i], ranges[i], protocol.patch_size, r)  # noqa: E731
    else:
        ranges = [fixed_span(protocol, image) for image in images]
        draw = lambda i, r: draw_fixed_crop(images[i], ranges[i], r)  # noqa: E731
    eligible = [i for i, r in enumerate(ranges) if r is not None]
    if not eligible:
        sides = [min(im.width, im.height) for im in images]
        raise UserError(f"no image is large enough for {protocol.describe()} "
                        f"(largest shorter side is {max(sides)} px, smallest {min(sides)} px)")
    crops = np.empty((n, len(CROP_COLUMNS)), dtype=np.float64)
    for row, index in enumerate(image_turns(eligible, n, rng)):
        for _ in range(_MAX_REJECTIONS_PER_CROP):
            crop = draw(int(index), rng)
            if accept is None or accept(int(index), *crop[:3]):
                break
        else:
            raise UserError(f"{images[index].path}: no crop met the tissue threshold in {_MAX_REJECTIONS_PER_CROP} tries "
                            f"(each image gives n / N crops); lower --min-tissue or leave the image out")
        crops[row] = (index, *crop)
    return crops[np.argsort(crops[:, 0], kind="stable")]


def _whole_images(images: Sequence[ImageInfo], n: int, rng: np.random.Generator) -> np.ndarray:
    chosen = np.arange(len(images)) if len(images) <= n else np.sort(rng.choice(len(images), n, replace=False))
    rows = []
    for index in chosen:
        image = images[index]
        side = min(image.width, image.height)
        square = ((image.width - side) // 2, (image.height - side) // 2, side)
        rows.append((index, *square, *square, side))
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(CROP_COLUMNS))


def plain_numbers(values: Sequence[float]) -> tuple[int | float, ...]:
    """Crop-table values as plain numbers for CSV and JSON: integers where they are whole."""
    return tuple(int(v) if float(v).is_integer() else float(v) for v in values)


def crop_frame(crop: Sequence[float]) -> tuple[float, float, float, float] | None:
    """The frame (x, y, w, h) of a crop-table row; None for four-column rows (no frame)."""
    return tuple(float(v) for v in crop[4:8]) if len(crop) >= 8 else None


def derive_seed(seed: int, inputs: str) -> int:
    """A reproducible crop stream per (``--seed``, input set), from a hex fingerprint of the inputs."""
    return int(np.random.SeedSequence([seed, int(inputs, 16)]).generate_state(1)[0])

"""One side of a comparison, end to end: INPUT -> images -> crops -> features -> statistics.

INPUT is a directory, glob, list file or image (features computed now) or a ``.npz`` (statistics
loaded, and refused unless they were made under this run's protocol and extractor).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from evaluation.crops import CropProtocol, derive_seed, sample_crops
from evaluation.distributed import Ranks
from evaluation.extraction import extract_features
from evaluation.features import Extractor
from evaluation.inputs import ImageInfo, fingerprint, is_stats_spec, list_images, open_images
from evaluation.stats import FeatureStats
from urcdm.errors import UserError
from urcdm.slides import slide_tissue_mask


@dataclass
class CropPlan:
    images: list[ImageInfo]
    crops: np.ndarray
    seed: int
    fingerprint: str
    skipped: list[str]


@dataclass
class RunOptions:
    protocol: CropProtocol
    n: int
    seed: int = 0
    skip_bad: bool = False
    allow_fewer: bool = False
    batch_size: int = 64
    workers: int = 4
    ranks: Ranks = Ranks()


def plan_crops(spec: str, side: str, options: RunOptions) -> CropPlan:
    """Open the images and draw this side's seeded crops (identically on every rank)."""
    images, bad = open_images(list_images(spec), options.skip_bad, label=side)
    if bad and options.ranks.is_main:
        print(f"{side}: skipped {len(bad)} unreadable file(s) (--skip-bad)", file=sys.stderr)
    protocol = options.protocol
    if protocol.mode == "whole" and len(images) < options.n:
        if not options.allow_fewer:
            raise UserError(f"{spec}: {len(images)} images for a whole-image FID over --n {options.n}; "
                            f"add images, lower --n, or pass --allow-fewer")
        if options.ranks.is_main:
            print(f"{side}: using all {len(images)} images (fewer than --n {options.n}, --allow-fewer)", file=sys.stderr)
    accept = _tissue_filter(images, protocol.min_tissue) if protocol.min_tissue > 0 else None
    # Seeded by the inputs' content as well as --seed: the same images get the same crops whether
    # compared directly or through a saved .npz, and a set compared with itself gives exactly 0.
    inputs = fingerprint(image.path for image in images)
    seed = derive_seed(options.seed, inputs)
    try:
        crops = sample_crops(images, protocol, options.n, seed, accept)
    except UserError as error:  # which of the sets cannot give its crops
        raise UserError(f"{side} set {spec}: {error}") from None
    unused = min(len(images), options.n) - len(np.unique(crops[:, 0]))
    if protocol.mode != "whole" and unused > 0 and options.ranks.is_main:
        print(f"{side}: {unused} image(s) smaller than {protocol.name} needs were left out", file=sys.stderr)
    return CropPlan(images, crops, seed, inputs, [path for path, _ in bad])


def prepare_side(spec: str, side: str, extractor_id: str, options: RunOptions) -> FeatureStats | CropPlan:
    """Everything about one side that can fail before its features are computed: a ``.npz`` loaded
    and checked against this run, or the images opened and the crops drawn. A command prepares
    every side first, so that a fake set too small for the protocol is said before minutes of the
    real set's features, not after."""
    if is_stats_spec(spec):
        stats = FeatureStats.load(spec)
        stats.check_comparable(options.protocol, extractor_id)
        return stats
    return plan_crops(spec, side, options)


def side_statistics(spec: str, side: str, extractor: Extractor, options: RunOptions,
                    prepared: FeatureStats | CropPlan | None = None) -> FeatureStats:
    prepared = prepare_side(spec, side, extractor.id, options) if prepared is None else prepared
    if isinstance(prepared, FeatureStats):
        return prepared
    plan = prepared
    paths = [image.path for image in plan.images]
    features = extract_features(paths, plan.crops, options.protocol, extractor, options.batch_size,
                                options.workers, options.ranks, label=side)
    return FeatureStats.from_features(features, protocol=options.protocol, extractor=extractor.id,
                                      fingerprint=plan.fingerprint, seed=plan.seed, images=paths, crops=plan.crops,
                                      skipped=plan.skipped, source=spec)


def _tissue_filter(images: list[ImageInfo], min_tissue: float):
    def accept(index: int, x: int, y: int, size: int) -> bool:
        return slide_tissue_mask(images[index].path).fraction_in(x, y, size, size) >= min_tissue

    return accept

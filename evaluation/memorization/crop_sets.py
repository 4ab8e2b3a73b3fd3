"""Which crops the audit compares, per scale: the training lattice, and random synthetic and held-out crops.

Training slides are opened once; each slide's tissue mask (a thumbnail) is computed, used for every
scale's lattice, and dropped before the next slide, so a cohort of thousands of slides never holds
more than one mask. Synthetic and held-out crops are drawn by ``evaluation.pipeline.plan_crops``
under ``CropProtocol(mode="fixed", span=...)``: the same seeded law as every fixed-scale FID.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evaluation.crops import CropProtocol
from evaluation.inputs import AUDIT_READS_ALL, ImageInfo, list_images, open_images
from evaluation.memorization.lattice import lattice_crops, lattice_stride
from evaluation.pipeline import RunOptions, plan_crops
from urcdm.errors import UserError
from urcdm.slides import SlideTissueMask, open_slide


@dataclass
class CropSet:
    """Crops (a ``CROP_COLUMNS`` table) and the image paths its first column indexes."""

    paths: list[str]
    crops: np.ndarray

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def slides_used(self) -> int:
        return int(np.unique(self.crops[:, 0]).size) if len(self.crops) else 0


def scale_protocols(spans: Sequence[int], patch_size: int, image_size: int, min_tissue: float) -> list[CropProtocol]:
    """One fixed-scale protocol per span, all checked before any slide is read (a span below the
    patch size would need upsampling and is refused by ``CropProtocol``)."""
    if not spans:
        raise UserError("give at least one scale (--spans)")
    if len(set(spans)) != len(spans):
        raise UserError(f"--spans lists a span twice: {', '.join(map(str, spans))}")
    return [CropProtocol(mode="fixed", span=int(span), patch_size=patch_size, image_size=image_size, min_tissue=min_tissue)
            for span in spans]


def training_lattices(spec: str, protocols: Sequence[CropProtocol], stride_fraction: float,
                      progress: bool = True) -> list[CropSet]:
    """The tissue cells of the lattice at every scale, over every training slide."""
    images, _ = open_images(list_images(spec), label="training", skip_hint=AUDIT_READS_ALL)
    strides = [lattice_stride(p.span, stride_fraction) for p in protocols]
    tables: list[list[np.ndarray]] = [[] for _ in protocols]
    tissue_found = False
    for index, image in enumerate(images):
        with open_slide(image.path) as slide:
            mask = SlideTissueMask.from_slide(slide)
        tissue_found |= mask.fraction > 0
        accept = _tissue_accept(mask, min_tissue=protocols[0].min_tissue)
        for scale, (protocol, stride) in enumerate(zip(protocols, strides)):
            table = lattice_crops([image], protocol.span, stride, accept)
            table[:, 0] = index
            tables[scale].append(table)
        if progress and len(images) > 20 and (index + 1) % 50 == 0:
            print(f"training lattice: {index + 1}/{len(images)} slides", file=sys.stderr)
    if not tissue_found:
        raise UserError(f"{spec}: no tissue found in any of its {len(images)} training slide(s); "
                        "the audit compares synthetic tissue with training tissue")
    sets = []
    for protocol, stride, parts in zip(protocols, strides, tables):
        crops = np.concatenate(parts)
        if not len(crops):
            raise UserError(_empty_lattice_reason(spec, images, protocol, stride))
        sets.append(CropSet([image.path for image in images], crops))
    return sets


def sampled_crops(spec: str, side: str, protocol: CropProtocol, n: int, seed: int) -> CropSet:
    """``n`` seeded random crops at the protocol's scale (tissue-filtered when ``min_tissue`` > 0)."""
    plan = plan_crops(spec, side, RunOptions(protocol=protocol, n=n, seed=seed))
    return CropSet([image.path for image in plan.images], plan.crops)


def check_disjoint(training: str, heldout: str) -> None:
    """Held-out slides calibrate what *unseen* tissue scores; a training slide among them would
    pull the threshold up towards a perfect match and hide copies."""
    training_files = {os.path.realpath(p) for p in list_images(training)}
    shared = [str(p) for p in list_images(heldout) if os.path.realpath(p) in training_files]
    if shared:
        more = f" and {len(shared) - 1} more" if len(shared) > 1 else ""
        raise UserError(f"held-out {shared[0]}{more} is also a training slide; held-out slides must not be in training")


def _tissue_accept(mask: SlideTissueMask, min_tissue: float):
    if min_tissue <= 0:
        return None
    return lambda _index, x, y, size: mask.fraction_in(x, y, size, size) >= min_tissue


def _empty_lattice_reason(spec: str, images: list[ImageInfo], protocol: CropProtocol, stride: int) -> str:
    shorter = max(min(image.width, image.height) for image in images)
    if protocol.span > shorter:
        return (f"{spec}: span {protocol.span} is larger than every training slide "
                f"(largest shorter side {shorter} px)")
    return (f"{spec}: no training lattice cell of span {protocol.span} (stride {stride}) has tissue >= "
            f"{protocol.min_tissue:g}; lower --min-tissue or use smaller spans")

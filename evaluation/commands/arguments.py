"""The options of every ``urcdm-eval`` command, declared apart from the work they select: building the
parser imports only the defaults, so ``--help`` and a mistyped option answer before torch is loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.defaults import (
    AUDIT_MIN_TISSUE,
    AUDIT_PAIRS,
    COPY_QUANTILE,
    CROPS_PER_SCALE,
    CROPS_PER_SIDE,
    DENSITY_NEIGHBOURHOOD,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    METRICS,
    PRC_NEIGHBOURHOOD,
    STANDARD_EXTRACTOR,
)
from evaluation.extractors.registry import unknown_extractor_message
from urcdm.clikit import bounded_int, non_negative_int, positive_float, positive_int, random_seed, unit_fraction


def extractor_spec(text: str) -> str:
    """A registered name or ``module:factory``, checked while parsing (a typo was found after torch
    loaded and both sets were listed, seconds later)."""
    if (unknown := unknown_extractor_message(text)) is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {unknown}")
    return text


def add_crop_options(parser: argparse.ArgumentParser, command: str) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("crops")
    group.add_argument("--n", type=positive_int, default=None, help=f"crops (or whole images) per side; default {CROPS_PER_SIDE['pfid']}, "
                                                           f"{CROPS_PER_SIDE['whole']} for whole images")
    group.add_argument("--patch-size", type=positive_int, default=256, help="crop side in output pixels (default 256)")
    if command != "scales":
        group.add_argument("--min", dest="min_size", type=int, default=None,
                           help="pfid: smallest side m the (square-cut) image is resized to, as in anyres-gan's "
                                "fid-patch{P}-min{m}max{M} (default: the patch size)")
        group.add_argument("--max", dest="max_size", type=int, default=None,
                           help="pfid: largest resized-image side M; 0 or unset: the image's own shorter side (never upsampled)")
    if command not in ("pfid", "scales"):
        scale = group.add_mutually_exclusive_group()
        scale.add_argument("--whole", action="store_true", help="whole images (centred square), one per image")
        scale.add_argument("--level", type=bounded_int(0, 2), default=None, help="fixed-scale crops at URCDM magnification level 0, 1 or 2")
        scale.add_argument("--mpp", type=positive_float, default=None, help="fixed-scale crops at this many microns per pixel")
        scale.add_argument("--span", type=positive_int, default=None,
                           help="fixed-scale crops covering this many level-0 pixels (e.g. a tiny-config level's span)")
    group.add_argument("--min-tissue", type=unit_fraction, default=0.0, help="redraw crops with less tissue than this fraction (default 0: off)")
    group.add_argument("--seed", type=random_seed, default=0, help="crop sampling seed (default 0)")
    group.add_argument("--skip-bad", action="store_true", help="leave out unreadable files (reported) instead of failing")
    if command not in ("pfid", "scales"):
        group.add_argument("--allow-fewer", action="store_true", help="whole images: proceed with fewer images than --n")
    return group


def add_extractor_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("features")
    group.add_argument("--extractor", type=extractor_spec, default=STANDARD_EXTRACTOR,
                       help="a registered name (inception-v3, the default; dinov2-vitl14, clip-vitb32, uni, ...: "
                            "see the README), NAME-random for seeded random weights, or module:factory")
    group.add_argument("--weights", default=None,
                       help="the extractor's weights file (else its environment variable or the hub cache; never downloaded "
                            "except the FID Inception's)")
    group.add_argument("--image-size", type=positive_int, default=None,
                       help="resize crops to S x S before the extractor (default: crops as read for the FID Inception, "
                            "which resizes internally as anyres-gan's does; else the network's input size; whole "
                            "images: the network's input size, 299 for Inception)")
    group.add_argument("--batch-size", type=positive_int, default=64)
    group.add_argument("--workers", type=non_negative_int, default=None,
                       help="crop-reading processes (default: with a GPU, every core this process may use but one, "
                            "shared among a node's torchrun ranks; on the CPU, up to 4, the extractor using the rest)")
    group.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1 ...")


def add_metric_settings(parser: argparse.ArgumentParser, choose: bool = True) -> None:
    if choose:
        parser.add_argument("--metric", default=None, help=f"comma-separated, from {', '.join(METRICS)} "
                                                           f"(default: the command's own; all: every one the space allows)")
    parser.add_argument("--kid-subsets", type=positive_int, default=KID_SUBSETS,
                        help=f"KID: random subsets averaged (default {KID_SUBSETS})")
    # an unbiased MMD² needs two samples per side in a subset
    parser.add_argument("--kid-subset-size", type=bounded_int(2), default=KID_SUBSET_SIZE,
                        help=f"KID: samples per subset, at most --n (default {KID_SUBSET_SIZE})")
    parser.add_argument("--k", type=positive_int, default=PRC_NEIGHBOURHOOD, help="precision/recall neighbourhood (default 3)")
    parser.add_argument("--dc-k", type=positive_int, default=DENSITY_NEIGHBOURHOOD, help="density/coverage neighbourhood (default 5)")
    parser.add_argument("--cmmd-estimator", choices=("unbiased", "reference"), default="unbiased",
                        help="CMMD's MMD² estimator: the paper's unbiased one (default), or the reference code's "
                             "average over all pairs (biased by < 1.3e-3 at 30k), to match numbers published with it")


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fake", nargs="+", help="one or more synthetic sets (each a directory, glob or list file)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder to create for the table and the plot")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--labels", default=None, help="comma-separated names of the synthetic sets (default: their folders)")
    group = parser.add_argument_group("scales (one of; default --levels 0,1,2)").add_mutually_exclusive_group()
    group.add_argument("--levels", default=None, help="URCDM magnification levels of the paper, e.g. 0,1,2")
    group.add_argument("--spans", default=None, help="crop sides in level-0 pixels, e.g. 8192,2048,512")
    group.add_argument("--mpp", dest="mpps", default=None, help="resolutions in microns per pixel, e.g. 8,2,0.5")
    group.add_argument("--config", default=None, help="each level's span in a URCDM config (tiny, paper or a YAML)")
    parser.add_argument("--metric", default=None, help=f"comma-separated, from {', '.join(METRICS)} (default fd)")
    parser.add_argument("--splits", type=positive_int, default=5,
                        help="random halvings of the real crops (2n are read): the real-vs-real floor and the bars (default 5)")


def add_memorization_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("synthetic", help="synthetic slides: directory, glob or list file")
    parser.add_argument("training", help="the slides the generator was trained on")
    parser.add_argument("--heldout", required=True,
                        help="real slides NOT used in training, of the same kind: they calibrate the copy threshold")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="folder for memorization.json, montage-span{S}.png and neighbours-span{S}.csv")
    parser.add_argument("--overwrite", action="store_true")
    scales = parser.add_argument_group("scales (one of; default --levels 1,2)").add_mutually_exclusive_group()
    scales.add_argument("--levels", default=None, help="URCDM magnification levels of the paper, e.g. 1,2")
    scales.add_argument("--spans", default=None, help="crop sides in level-0 pixels, e.g. 6500,1024")
    scales.add_argument("--config", default=None, help="each level's span in a URCDM config (tiny, paper or a YAML)")
    crops = parser.add_argument_group("crops")
    crops.add_argument("--patch-size", type=positive_int, default=256, help="crop side in output pixels (default 256)")
    crops.add_argument("--n", type=positive_int, default=CROPS_PER_SCALE,
                       help=f"synthetic crops per scale (default {CROPS_PER_SCALE})")
    crops.add_argument("--n-heldout", type=positive_int, default=None, help="held-out crops per scale (default: --n)")
    crops.add_argument("--stride", type=positive_float, default=0.5,
                       help="training lattice step as a fraction of the span (default 0.5: half-overlapping cells)")
    crops.add_argument("--min-tissue", type=unit_fraction, default=AUDIT_MIN_TISSUE,
                       help=f"tissue fraction a crop or lattice cell needs (default {AUDIT_MIN_TISSUE})")
    crops.add_argument("--seed", type=random_seed, default=0)
    search = parser.add_argument_group("search")
    search.add_argument("--k", type=positive_int, default=5, help="nearest training crops kept per crop (default 5)")
    search.add_argument("--threshold-quantile", type=float, default=COPY_QUANTILE,
                        help=f"the held-out similarity quantile above which a crop counts as a copy (default {COPY_QUANTILE})")
    search.add_argument("--no-dihedral", action="store_true", help="do not search the 8 flips/quarter turns of each crop")
    search.add_argument("--backend", choices=("torch", "faiss"), default="torch",
                        help="exact search: chunked torch matmul (default), or faiss where installed")
    search.add_argument("--center", action="store_true", help="cosine about the training features' mean")
    search.add_argument("--no-verify", action="store_true",
                        help="decide copies by the feature similarity alone, without the correlation search in the "
                             "candidates' training slides (faster; misses copies off the training lattice)")
    search.add_argument("--no-authenticity", action="store_true", help="skip the training x training search it needs")
    search.add_argument("--pairs", type=non_negative_int, default=AUDIT_PAIRS, help=f"closest pairs in each montage (default {AUDIT_PAIRS})")

"""What every ``urcdm-eval`` command shares: the crop and feature options, and turning them into a
crop protocol, run options and a loaded extractor."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from evaluation.crops import CropProtocol
from evaluation.distributed import Ranks, init_process_group, resolve_device
from evaluation.features import STANDARD, Extractor, load_extractor
from evaluation.inputs import is_stats_spec, list_images
from evaluation.pipeline import RunOptions
from evaluation.report import NOT_COMPARABLE
from urcdm.clikit import positive_int
from urcdm.errors import UserError

DEFAULT_N = {"pfid": 50_000, "fixed": 50_000, "whole": 10_000}


def add_crop_options(parser: argparse.ArgumentParser, command: str) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("crops")
    group.add_argument("--n", type=int, default=None, help="crops (or whole images) per side; default 50000, 10000 for whole images")
    group.add_argument("--patch-size", type=int, default=256, help="crop side in output pixels (default 256)")
    if command != "scales":
        group.add_argument("--min", dest="min_size", type=int, default=None,
                           help="pfid: smallest side m the (square-cut) image is resized to, as in anyres-gan's "
                                "fid-patch{P}-min{m}max{M} (default: the patch size)")
        group.add_argument("--max", dest="max_size", type=int, default=None,
                           help="pfid: largest resized-image side M; 0 or unset: the image's own shorter side (never upsampled)")
    if command not in ("pfid", "scales"):
        scale = group.add_mutually_exclusive_group()
        scale.add_argument("--whole", action="store_true", help="whole images (centred square), one per image")
        scale.add_argument("--level", type=int, default=None, help="fixed-scale crops at URCDM magnification level 0, 1 or 2")
        scale.add_argument("--mpp", type=float, default=None, help="fixed-scale crops at this many microns per pixel")
        scale.add_argument("--span", type=int, default=None,
                           help="fixed-scale crops covering this many level-0 pixels (e.g. a tiny-config level's span)")
    group.add_argument("--min-tissue", type=float, default=0.0, help="redraw crops with less tissue than this fraction (default 0: off)")
    group.add_argument("--seed", type=int, default=0, help="crop sampling seed (default 0)")
    group.add_argument("--skip-bad", action="store_true", help="leave out unreadable files (reported) instead of failing")
    if command not in ("pfid", "scales"):
        group.add_argument("--allow-fewer", action="store_true", help="whole images: proceed with fewer images than --n")
    return group


def add_extractor_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("features")
    group.add_argument("--extractor", default=STANDARD,
                       help="a registered name (inception-v3, the default; dinov2-vitl14, clip-vitb32, uni, ...: "
                            "see the README), NAME-random for seeded random weights, or module:factory")
    group.add_argument("--weights", default=None,
                       help="the extractor's weights file (else its environment variable or the hub cache; never downloaded "
                            "except the FID Inception's)")
    group.add_argument("--image-size", type=positive_int, default=None,
                       help="resize crops to S x S before the extractor (default: crops as read for the FID Inception, "
                            "which resizes internally as anyres-gan's does; else the network's input size; whole "
                            "images: the network's input size, 299 for Inception)")
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--workers", type=int, default=None,
                       help="crop-reading processes (default: with a GPU, every core this process may use but one, "
                            "shared among a node's torchrun ranks; on the CPU, up to 4, the extractor using the rest)")
    group.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1 ...")


def crop_mode(args: argparse.Namespace) -> str:
    if any(getattr(args, key, None) is not None for key in ("level", "mpp", "span")):
        return "fixed"
    if getattr(args, "whole", False) or args.command == "fid":
        return "whole"
    return "pfid"


def crop_protocol(args: argparse.Namespace, image_size: int, **scale) -> CropProtocol:
    """The protocol the options describe; ``scale`` (level=, mpp= or span=) overrides theirs."""
    values = {key: getattr(args, key, None) for key in ("level", "mpp", "span")}
    if scale:
        values = {"level": None, "mpp": None, "span": None, **scale}
    mode = "fixed" if scale else crop_mode(args)
    return CropProtocol(mode=mode, patch_size=args.patch_size, image_size=image_size,
                        min_size=getattr(args, "min_size", None), max_size=getattr(args, "max_size", None),
                        min_tissue=args.min_tissue, **values)


def reading_workers(requested: int | None, device: torch.device | None) -> int:
    """Crop-reading processes: as asked, else enough to feed the extractor's device. A GPU extracts far
    faster than one core reads (a 256-px pFID crop costs a core about 20 ms: 50 a second, where an H200
    runs Inception on thousands), so every core this process may use reads, but one for the process that
    feeds the GPU, shared among the node's torchrun ranks. On the CPU the extractor needs the cores: 4."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if device is None or device.type == "cpu":
        return min(4, cores)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1)) - 1)


def run_options(args: argparse.Namespace, protocol: CropProtocol, ranks: Ranks, n: int | None = None,
                device: torch.device | None = None) -> RunOptions:
    """``device``: the extractor's, which sets how many processes read crops by default."""
    n = n if n is not None else args.n if args.n is not None else DEFAULT_N[protocol.mode]
    return RunOptions(protocol=protocol, n=n, seed=args.seed, skip_bad=args.skip_bad,
                      allow_fewer=getattr(args, "allow_fewer", False), batch_size=getattr(args, "batch_size", 64),
                      workers=reading_workers(args.workers, device), ranks=ranks)


def load_run_extractor(args: argparse.Namespace, ranks: Ranks) -> Extractor:
    device = resolve_device(args.device, ranks.local_rank)
    init_process_group(ranks, device)
    extractor = load_extractor(args.extractor, args.weights, device)
    if not extractor.standard and ranks.is_main:
        print(f"note: extractor {extractor.id} is {NOT_COMPARABLE}", file=sys.stderr)
    return extractor


def image_size_for(args: argparse.Namespace, extractor: Extractor, mode: str) -> int:
    size = args.image_size
    if size is not None and extractor.fixed_size and not extractor.resizes_internally and size != extractor.input_size:
        raise UserError(f"--image-size {size}: extractor {extractor.id} takes {extractor.input_size} px crops only "
                        f"(its position embeddings are for that grid); leave --image-size out")
    return size or extractor.default_image_size(mode, args.patch_size)


def check_inputs(*specs: str) -> None:
    # Cheap checks first, so an empty folder is reported before a minute of model loading.
    for spec in specs:
        if not is_stats_spec(spec):
            list_images(spec)

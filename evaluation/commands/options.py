"""What every ``urcdm-eval`` command shares: turning its options (declared in
:mod:`evaluation.commands.arguments`) into a crop protocol, run options and a loaded extractor."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from evaluation.crops import CropProtocol
from evaluation.defaults import CROPS_PER_SIDE
from evaluation.distributed import Ranks, init_process_group, resolve_device
from evaluation.features import Extractor, load_extractor
from evaluation.inputs import is_stats_spec, list_images
from evaluation.pipeline import RunOptions
from evaluation.report import NOT_COMPARABLE
from urcdm.errors import UserError


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
    n = n if n is not None else args.n if args.n is not None else CROPS_PER_SIDE[protocol.mode]
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

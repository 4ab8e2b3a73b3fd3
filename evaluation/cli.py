"""``urcdm-eval``: pFID, FID, KID and precision/recall between real and synthetic slides.

    urcdm-eval pfid REAL FAKE            random-scale patches (Chai et al. 2022), pFID-50k by default
    urcdm-eval fid REAL FAKE             whole images (FID-10k), or --level/--mpp fixed-scale crops
    urcdm-eval kid|prc|all REAL FAKE     KID, precision/recall, or every metric from one feature pass
    urcdm-eval stats INPUT -o real.npz   compute and save statistics once, compare many times
    urcdm-eval crops INPUT -o DIR        export a crop set (PNG + manifest.csv) for the reader study

REAL/FAKE: a directory or glob of slides/images, a text file listing paths, or a statistics .npz.
Multi-GPU / multi-node: ``torchrun --nproc-per-node N -m evaluation.cli -- pfid ...`` (results equal
one process). The ``--`` matters: without it torchrun would take ``--n`` or ``--max`` as its own options.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from evaluation.crops import CropProtocol
from evaluation.distributed import destroy_process_group, init_process_group, launched_ranks
from evaluation.export import export_crops
from evaluation.features import STANDARD, load_extractor, resolve_device
from evaluation.metrics import KID_SUBSET_SIZE, KID_SUBSETS, PRC_NEIGHBOURHOOD, frechet_distance, kernel_inception_distance, precision_recall
from evaluation.inputs import is_stats_spec, list_images
from evaluation.pipeline import RunOptions, plan_crops, side_statistics
from evaluation.report import NOT_COMPARABLE, print_result, result_dict
from urcdm.clikit import ArgumentParser, add_output_options, print_json, run_cli
from urcdm.errors import UserError

COMPARISONS = ("pfid", "fid", "kid", "prc", "all")
DEFAULT_N = {"pfid": 50_000, "fixed": 50_000, "whole": 10_000}


def _add_crop_options(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group("crops")
    group.add_argument("--n", type=int, default=None, help="crops (or whole images) per side; default 50000, 10000 for whole images")
    group.add_argument("--patch-size", type=int, default=256, help="crop side in output pixels (default 256)")
    group.add_argument("--min", dest="min_size", type=int, default=None,
                       help="pfid: smallest side m the (square-cut) image is resized to, as in anyres-gan's "
                            "fid-patch{P}-min{m}max{M} (default: the patch size)")
    group.add_argument("--max", dest="max_size", type=int, default=None,
                       help="pfid: largest resized-image side M; 0 or unset: the image's own shorter side (never upsampled)")
    if command != "pfid":
        scale = group.add_mutually_exclusive_group()
        scale.add_argument("--whole", action="store_true", help="whole images (centred square), one per image")
        scale.add_argument("--level", type=int, default=None, help="fixed-scale crops at URCDM magnification level 0, 1 or 2")
        scale.add_argument("--mpp", type=float, default=None, help="fixed-scale crops at this many microns per pixel")
        scale.add_argument("--span", type=int, default=None,
                           help="fixed-scale crops covering this many level-0 pixels (e.g. a tiny-config level's span)")
    group.add_argument("--min-tissue", type=float, default=0.0, help="redraw crops with less tissue than this fraction (default 0: off)")
    group.add_argument("--seed", type=int, default=0, help="crop sampling seed (default 0)")
    group.add_argument("--skip-bad", action="store_true", help="leave out unreadable files (reported) instead of failing")
    group.add_argument("--allow-fewer", action="store_true", help="whole images: proceed with fewer images than --n")


def _add_extractor_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("features")
    group.add_argument("--extractor", default=STANDARD, help="inception-v3 (default), inception-v3-random, or module:factory")
    group.add_argument("--weights", default=None, help="Inception weights file (else $URCDM_INCEPTION_WEIGHTS, the torch hub cache, or download)")
    group.add_argument("--image-size", type=int, default=None,
                       help="resize crops to S x S before the extractor (default: crops as read for the FID Inception, "
                            "which resizes internally as anyres-gan's does; else the plug-in's input_size; whole "
                            "images: the network's input size, 299 for Inception)")
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="crop-reading processes")
    group.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1 ...")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="urcdm-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    helps = {"pfid": "patch FID over random-scale crops", "fid": "FID over whole images or fixed-scale crops",
             "kid": "kernel inception distance", "prc": "improved precision and recall (k = 3)",
             "all": "every metric from one feature pass"}
    for name in COMPARISONS:
        sub = commands.add_parser(name, help=helps[name], description=helps[name])
        sub.add_argument("real", help="real images: directory, glob, list file, or stats .npz")
        sub.add_argument("fake", help="synthetic images: directory, glob, list file, or stats .npz")
        _add_crop_options(sub, name)
        _add_extractor_options(sub)
        sub.add_argument("--kid-subsets", type=int, default=KID_SUBSETS)
        sub.add_argument("--kid-subset-size", type=int, default=KID_SUBSET_SIZE)
        sub.add_argument("--k", type=int, default=PRC_NEIGHBOURHOOD, help="precision/recall neighbourhood (default 3)")
        add_output_options(sub)
    stats = commands.add_parser("stats", help="compute and save feature statistics", description="compute and save feature statistics")
    stats.add_argument("input", help="directory, glob or list file of images")
    stats.add_argument("-o", "--output", required=True, type=Path, help="statistics file to write (.npz)")
    stats.add_argument("--overwrite", action="store_true")
    stats.add_argument("--no-features", action="store_true", help="keep only mean/covariance (no KID or precision/recall later)")
    _add_crop_options(stats, "stats")
    _add_extractor_options(stats)
    add_output_options(stats)
    crops = commands.add_parser("crops", help="export a crop set as PNGs + manifest.csv", description="export a crop set as PNGs + manifest.csv")
    crops.add_argument("input", help="directory, glob or list file of images")
    crops.add_argument("-o", "--output", required=True, type=Path, help="directory to create")
    crops.add_argument("--overwrite", action="store_true")
    crops.add_argument("--image-size", type=int, default=None, help="whole images: side of the exported image (default 299)")
    crops.add_argument("--workers", type=int, default=2)
    _add_crop_options(crops, "crops")
    add_output_options(crops)
    return parser


def _mode(args: argparse.Namespace) -> str:
    if any(getattr(args, key, None) is not None for key in ("level", "mpp", "span")):
        return "fixed"
    if getattr(args, "whole", False) or args.command == "fid":
        return "whole"
    return "pfid"


def _protocol(args: argparse.Namespace, image_size: int) -> CropProtocol:
    return CropProtocol(mode=_mode(args), patch_size=args.patch_size, image_size=image_size, min_size=args.min_size,
                        max_size=args.max_size, level=getattr(args, "level", None), mpp=getattr(args, "mpp", None),
                        span=getattr(args, "span", None), min_tissue=args.min_tissue)


def _options(args: argparse.Namespace, protocol: CropProtocol, ranks) -> RunOptions:
    n = args.n if args.n is not None else DEFAULT_N[protocol.mode]
    return RunOptions(protocol=protocol, n=n, seed=args.seed, skip_bad=args.skip_bad, allow_fewer=args.allow_fewer,
                      batch_size=getattr(args, "batch_size", 64), workers=args.workers, ranks=ranks)


def _load(args: argparse.Namespace, ranks):
    device = resolve_device(args.device, ranks.local_rank)
    init_process_group(ranks, device)
    extractor = load_extractor(args.extractor, args.weights, device)
    if not extractor.standard and ranks.is_main:
        print(f"note: extractor {extractor.id} is {NOT_COMPARABLE}", file=sys.stderr)
    image_size = args.image_size or extractor.default_image_size(_mode(args), args.patch_size)
    return extractor, _options(args, _protocol(args, image_size), ranks)


def _check_inputs(*specs: str) -> None:
    # Cheap checks first, so an empty folder is reported before a minute of model loading.
    for spec in specs:
        if not is_stats_spec(spec):
            list_images(spec)


def cmd_compare(args: argparse.Namespace, ranks) -> int:
    started = time.perf_counter()
    _check_inputs(args.real, args.fake)
    extractor, options = _load(args, ranks)
    real = side_statistics(args.real, "real", extractor, options)
    fake = side_statistics(args.fake, "fake", extractor, options)
    if real.dim != fake.dim:
        raise UserError(f"feature dimensions differ: {real.dim} (real) vs {fake.dim} (fake)")
    if not ranks.is_main:
        return 0
    metrics: dict = {}
    if args.command in ("pfid", "fid", "all"):
        name = "pfid" if options.protocol.mode == "pfid" else "fid"
        metrics[name] = frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
    if args.command in ("kid", "all"):
        kid, kid_std, size = kernel_inception_distance(real.require_features("KID"), fake.require_features("KID"),
                                                       args.kid_subsets, args.kid_subset_size)
        metrics |= {"kid": kid, "kid_std": kid_std, "kid_subset_size": size}
    if args.command in ("prc", "all"):
        precision, recall = precision_recall(real.require_features("precision/recall"),
                                             fake.require_features("precision/recall"), args.k)
        metrics |= {"precision": precision, "recall": recall, "prc_k": args.k}
    result = result_dict(metrics, real, fake, extractor.id, extractor.standard, time.perf_counter() - started)
    print_result(result, args.json)
    return 0


def cmd_stats(args: argparse.Namespace, ranks) -> int:
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output}: already exists (use --overwrite to replace it)")
    _check_inputs(args.input)
    extractor, options = _load(args, ranks)
    stats = side_statistics(args.input, "input", extractor, options)
    if ranks.is_main:
        stats.save(args.output, overwrite=args.overwrite, keep_features=not args.no_features)
        summary = {"output": str(args.output), **stats.header()}
        summary.pop("images")
        if args.json:
            print_json(summary)
        else:
            print(f"wrote {args.output}: {stats.n} x {stats.dim} features, {options.protocol.describe()}, {extractor.id}")
    return 0


def cmd_crops(args: argparse.Namespace, ranks) -> int:
    protocol = _protocol(args, args.image_size or 299)
    plan = plan_crops(args.input, "input", _options(args, protocol, ranks))
    out = export_crops(plan, protocol, args.output, args.overwrite, args.workers)
    summary = {"output": str(out), "crops": len(plan.crops), "images": len(plan.images), "protocol": protocol.as_dict()}
    print_json(summary) if args.json else print(f"wrote {len(plan.crops)} crops to {out} ({protocol.describe()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ranks = launched_ranks()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # some launchers pass the separator through
        argv = argv[1:]

    def handler(args: argparse.Namespace) -> int:
        command = {"stats": cmd_stats, "crops": cmd_crops}.get(args.command, cmd_compare)
        try:
            return command(args, ranks)
        except UserError:
            if not ranks.is_main and not args.debug:
                return 2  # rank 0 reports the same error once
            raise
        finally:
            destroy_process_group()

    return run_cli(parser, argv, handler)


if __name__ == "__main__":
    sys.exit(main())

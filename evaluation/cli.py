"""``urcdm-eval``: pFID, FID, KID, precision/recall, CMMD and density/coverage between real and
synthetic slides, in the FID Inception's feature space or another registered one.

    urcdm-eval pfid REAL FAKE            random-scale patches (Chai et al. 2022), pFID-50k by default
    urcdm-eval fid REAL FAKE             whole images (FID-10k), or --level/--mpp/--span fixed-scale crops
    urcdm-eval kid|prc|cmmd|dc REAL FAKE one metric; --metric fd,kid,... chooses several
    urcdm-eval all REAL FAKE             every metric the feature space allows, from one feature pass
    urcdm-eval scales REAL FAKE... -o D  metrics at each magnification, with real-vs-real noise bars, and a plot
    urcdm-eval memorization SYN TRAIN --heldout HELD -o D   nearest training crops, copy rate, montages
    urcdm-eval stats INPUT -o real.npz   compute and save statistics once, compare many times
    urcdm-eval crops INPUT -o DIR        export a crop set (PNG + manifest.csv) for the reader study

REAL/FAKE: a directory or glob of slides/images, a text file listing paths, or a statistics .npz.
Multi-GPU / multi-node: ``torchrun --nproc-per-node N -m evaluation.cli -- pfid ...`` (results equal
one process). The ``--`` matters: without it torchrun would take ``--n`` or ``--max`` as its own options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from evaluation.commands.arguments import (
    add_crop_options,
    add_extractor_options,
    add_memorization_options,
    add_metric_settings,
    add_scale_options,
)
from urcdm.clikit import ArgumentParser, add_output_options, positive_int, run_cli
from urcdm.errors import UserError

COMPARISONS = {"pfid": "patch FID over random-scale crops", "fid": "FID over whole images or fixed-scale crops",
               "kid": "kernel inception distance", "prc": "improved precision and recall (k = 3)",
               "cmmd": "CLIP maximum mean discrepancy (Jayasumana et al. 2024; CLIP extractors)",
               "dc": "density and coverage (Naeem et al. 2020)", "all": "every metric from one feature pass"}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="urcdm-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for name, text in COMPARISONS.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("real", help="real images: directory, glob, list file, or stats .npz")
        sub.add_argument("fake", help="synthetic images: directory, glob, list file, or stats .npz")
        add_crop_options(sub, name)
        add_extractor_options(sub)
        add_metric_settings(sub)
        add_output_options(sub)
    text = "metrics at each magnification with real-vs-real noise bars: a table (JSON, CSV) and a plot (PNG, SVG)"
    scales = commands.add_parser("scales", help=text, description=text)
    scales.add_argument("real", help="real slides: directory, glob or list file")
    add_scale_options(scales)
    add_crop_options(scales, "scales")
    add_extractor_options(scales)
    add_metric_settings(scales, choose=False)
    add_output_options(scales)
    text = "memorisation audit: each synthetic crop's nearest training crops, a copy rate calibrated on held-out slides"
    memorization = commands.add_parser("memorization", help=text, description=text)
    add_memorization_options(memorization)
    add_extractor_options(memorization)
    add_output_options(memorization)
    stats = commands.add_parser("stats", help="compute and save feature statistics", description="compute and save feature statistics")
    stats.add_argument("input", help="directory, glob or list file of images")
    stats.add_argument("-o", "--output", required=True, type=Path, help="statistics file to write (.npz)")
    stats.add_argument("--overwrite", action="store_true")
    stats.add_argument("--no-features", action="store_true", help="keep only mean/covariance (no KID or precision/recall later)")
    add_crop_options(stats, "stats")
    add_extractor_options(stats)
    add_output_options(stats)
    crops = commands.add_parser("crops", help="export a crop set as PNGs + manifest.csv", description="export a crop set as PNGs + manifest.csv")
    crops.add_argument("input", help="directory, glob or list file of images")
    crops.add_argument("-o", "--output", required=True, type=Path, help="directory to create")
    crops.add_argument("--overwrite", action="store_true")
    crops.add_argument("--image-size", type=positive_int, default=None, help="whole images: side of the exported image (default 299)")
    crops.add_argument("--workers", type=int, default=2)
    add_crop_options(crops, "crops")
    add_output_options(crops)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # some launchers pass the separator through
        argv = argv[1:]

    def handler(args: argparse.Namespace) -> int:
        # The work, and torch with it, is imported once the options have parsed.
        from evaluation.commands.comparisons import cmd_compare, cmd_crops, cmd_stats
        from evaluation.commands.memorization import cmd_memorization
        from evaluation.commands.scales import cmd_scales
        from evaluation.distributed import destroy_process_group, launched_ranks

        ranks = launched_ranks()
        command = {"stats": cmd_stats, "crops": cmd_crops, "scales": cmd_scales,
                   "memorization": cmd_memorization}.get(args.command, cmd_compare)
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

"""``urcdm-eval memorization SYNTHETIC TRAINING --heldout HELDOUT -o DIR``: does the generator copy its
training slides? (The audit itself: :mod:`evaluation.memorization`.)"""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.commands.options import check_inputs, load_run_extractor, reading_workers
from evaluation.memorization import audit
from evaluation.memorization.audit import DEFAULT_MIN_TISSUE, DEFAULT_PAIRS
from evaluation.memorization.calibration import DEFAULT_QUANTILE
from evaluation.memorization.crop_sets import scale_protocols
from evaluation.scales import parse_scales
from urcdm.clikit import print_json, print_table
from urcdm.errors import UserError
from urcdm.magnification import level_downsample

DEFAULT_N = 10_000


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
    crops.add_argument("--patch-size", type=int, default=256, help="crop side in output pixels (default 256)")
    crops.add_argument("--n", type=int, default=DEFAULT_N, help=f"synthetic crops per scale (default {DEFAULT_N})")
    crops.add_argument("--n-heldout", type=int, default=None, help="held-out crops per scale (default: --n)")
    crops.add_argument("--stride", type=float, default=0.5,
                       help="training lattice step as a fraction of the span (default 0.5: half-overlapping cells)")
    crops.add_argument("--min-tissue", type=float, default=DEFAULT_MIN_TISSUE,
                       help=f"tissue fraction a crop or lattice cell needs (default {DEFAULT_MIN_TISSUE})")
    crops.add_argument("--seed", type=int, default=0)
    search = parser.add_argument_group("search")
    search.add_argument("--k", type=int, default=5, help="nearest training crops kept per crop (default 5)")
    search.add_argument("--threshold-quantile", type=float, default=DEFAULT_QUANTILE,
                        help=f"the held-out similarity quantile above which a crop counts as a copy (default {DEFAULT_QUANTILE})")
    search.add_argument("--no-dihedral", action="store_true", help="do not search the 8 flips/quarter turns of each crop")
    search.add_argument("--backend", choices=("torch", "faiss"), default="torch",
                        help="exact search: chunked torch matmul (default), or faiss where installed")
    search.add_argument("--center", action="store_true", help="cosine about the training features' mean")
    search.add_argument("--no-verify", action="store_true",
                        help="decide copies by the feature similarity alone, without the correlation search in the "
                             "candidates' training slides (faster; misses copies off the training lattice)")
    search.add_argument("--no-authenticity", action="store_true", help="skip the training x training search it needs")
    search.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help=f"closest pairs in each montage (default {DEFAULT_PAIRS})")


def memorization_spans(args: argparse.Namespace) -> list[int]:
    if args.config is not None:
        from urcdm.config import load_config

        return [level.span for level in load_config(args.config).levels]
    if args.spans is not None:
        return [scale.span for scale in parse_scales(spans=args.spans)]
    return [round(args.patch_size * level_downsample(scale.level)) for scale in parse_scales(levels=args.levels or "1,2")]


def cmd_memorization(args: argparse.Namespace, ranks) -> int:
    if ranks.world_size > 1:
        raise UserError("memorization runs in one process (its search uses the whole device); run it without torchrun")
    check_inputs(args.synthetic, args.training, args.heldout)
    spans = memorization_spans(args)
    scale_protocols(spans, args.patch_size, args.patch_size, args.min_tissue)  # a bad scale: said before model loading
    extractor = load_run_extractor(args, ranks)
    workers = reading_workers(args.workers, extractor.device)
    report = audit(args.synthetic, args.training, args.heldout, extractor, spans, args.patch_size, args.n, args.stride,
                   args.output, extractor.device, n_heldout=args.n_heldout, k=args.k,
                   threshold_quantile=args.threshold_quantile, min_tissue=args.min_tissue, dihedral=not args.no_dihedral,
                   seed=args.seed, batch_size=args.batch_size, workers=workers, backend=args.backend,
                   center=args.center, authenticity=not args.no_authenticity, verify=not args.no_verify, pairs=args.pairs,
                   image_size=args.image_size, overwrite=args.overwrite, progress=not args.json)
    if args.json:
        print_json(report)
        return 0
    rows = []
    for scale in report["scales"]:
        rows.append((f"span {scale['span']}: copy rate", f"{scale['copy_rate']:.4f} (threshold: {scale['copy_score']} {scale['threshold'][scale['copy_score']]:.4f}, "
                                                          f"held-out flagged {scale['threshold']['heldout_flagged']:.4f})"))
    rows += [("extractor", report["extractor"]), ("output", str(args.output)), ("time", f"{report['seconds']:.1f} s")]
    print_table(rows)
    return 0

"""``urcdm-eval memorization SYNTHETIC TRAINING --heldout HELDOUT -o DIR``: does the generator copy its
training slides? (The audit itself: :mod:`evaluation.memorization`.)"""

from __future__ import annotations

import argparse

from evaluation.commands.options import check_inputs, load_run_extractor, reading_workers
from evaluation.memorization import audit
from evaluation.memorization.crop_sets import scale_protocols
from evaluation.scales import parse_scales
from urcdm.clikit import print_json, print_table, shows_progress
from urcdm.errors import UserError
from urcdm.magnification import level_downsample


def memorization_spans(args: argparse.Namespace) -> list[int]:
    if args.config is not None:
        from urcdm.config import load_config

        return [level.span for level in load_config(args.config).levels]
    if args.spans is not None:
        return [scale.span for scale in parse_scales(spans=args.spans)]
    levels = parse_scales(levels="1,2" if args.levels is None else args.levels)
    return [round(args.patch_size * level_downsample(scale.level)) for scale in levels]


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
                   image_size=args.image_size, overwrite=args.overwrite, progress=shows_progress(args))
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

"""The comparison, ``stats`` and ``crops`` commands of ``urcdm-eval`` (parsed in :mod:`evaluation.cli`)."""

from __future__ import annotations

import argparse
import time

from evaluation.commands.options import check_inputs, crop_mode, crop_protocol, image_size_for, load_run_extractor, run_options
from evaluation.comparison import MetricSettings, compare, parse_metrics
from evaluation.export import export_crops
from evaluation.pipeline import plan_crops, side_statistics
from evaluation.report import print_result, result_dict
from urcdm.clikit import print_json
from urcdm.errors import UserError


def metric_settings(args: argparse.Namespace) -> MetricSettings:
    return MetricSettings(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, prc_k=args.k,
                          dc_k=args.dc_k, cmmd_estimator=args.cmmd_estimator)


def cmd_compare(args: argparse.Namespace, ranks) -> int:
    started = time.perf_counter()
    check_inputs(args.real, args.fake)
    extractor = load_run_extractor(args, ranks)
    metrics = parse_metrics(args.metric, args.command, extractor.space)
    options = run_options(args, crop_protocol(args, image_size_for(args, extractor, crop_mode(args))), ranks,
                          device=extractor.device)
    real = side_statistics(args.real, "real", extractor, options)
    fake = side_statistics(args.fake, "fake", extractor, options)
    if real.dim != fake.dim:
        raise UserError(f"feature dimensions differ: {real.dim} (real) vs {fake.dim} (fake)")
    if not ranks.is_main:
        return 0
    values = compare(real, fake, metrics, extractor.space, metric_settings(args))
    result = result_dict(values, real, fake, extractor.id, extractor.standard, time.perf_counter() - started,
                         space=extractor.space)
    print_result(result, args.json)
    return 0


def cmd_stats(args: argparse.Namespace, ranks) -> int:
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output}: already exists (use --overwrite to replace it)")
    check_inputs(args.input)
    extractor = load_run_extractor(args, ranks)
    options = run_options(args, crop_protocol(args, image_size_for(args, extractor, crop_mode(args))), ranks,
                          device=extractor.device)
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
    protocol = crop_protocol(args, args.image_size or 299)
    plan = plan_crops(args.input, "input", run_options(args, protocol, ranks))
    out = export_crops(plan, protocol, args.output, args.overwrite, args.workers)
    summary = {"output": str(out), "crops": len(plan.crops), "images": len(plan.images), "protocol": protocol.as_dict()}
    print_json(summary) if args.json else print(f"wrote {len(plan.crops)} crops to {out} ({protocol.describe()})")
    return 0

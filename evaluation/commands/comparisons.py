"""The comparison, ``stats`` and ``crops`` commands of ``urcdm-eval`` (parsed in :mod:`evaluation.cli`)."""

from __future__ import annotations

import argparse
import time

from evaluation.commands.options import check_inputs, crop_mode, crop_protocol, image_size_for, load_run_extractor, run_options
from evaluation.comparison import MetricSettings, compare, parse_metrics
from evaluation.export import EXPORTED_FILES, export_crops, exported_protocol
from evaluation.features import registered_space
from evaluation.pipeline import plan_crops, prepare_side, side_statistics
from evaluation.report import print_result, result_dict
from urcdm.clikit import print_json
from urcdm.errors import UserError
from urcdm.pyramid import check_output_directory, check_output_path


def metric_settings(args: argparse.Namespace) -> MetricSettings:
    return MetricSettings(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, prc_k=args.k,
                          dc_k=args.dc_k, cmmd_estimator=args.cmmd_estimator)


def check_metrics_before_loading(text: str | None, command: str, extractor_spec: str) -> None:
    """A metric the extractor's space does not allow (CMMD in Inception space), said before its
    weights are looked for, where the space is known from the name alone."""
    known_space = registered_space(extractor_spec)
    if known_space is not None:
        parse_metrics(text, command, known_space)


def cmd_compare(args: argparse.Namespace, ranks) -> int:
    started = time.perf_counter()
    check_inputs(args.real, args.fake)
    check_metrics_before_loading(args.metric, args.command, args.extractor)
    extractor = load_run_extractor(args, ranks)
    metrics = parse_metrics(args.metric, args.command, extractor.space)
    options = run_options(args, crop_protocol(args, image_size_for(args, extractor, crop_mode(args))), ranks,
                          device=extractor.device)
    prepared = {side: prepare_side(spec, side, extractor.id, options) for side, spec in (("real", args.real), ("fake", args.fake))}
    real = side_statistics(args.real, "real", extractor, options, prepared["real"])
    fake = side_statistics(args.fake, "fake", extractor, options, prepared["fake"])
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
    check_output_path(args.output, args.overwrite)  # before the features, not after
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
            kept = "mean and covariance only" if args.no_features else "features"
            print(f"wrote {args.output}: {stats.n} x {stats.dim} {kept}, {options.protocol.describe()}, {extractor.id}")
    return 0


def cmd_crops(args: argparse.Namespace, ranks) -> int:
    check_output_directory(args.output, args.overwrite, EXPORTED_FILES)  # before the crops are planned
    protocol = crop_protocol(args, args.image_size or 299)
    plan = plan_crops(args.input, "input", run_options(args, protocol, ranks))
    out = export_crops(plan, protocol, args.output, args.overwrite, args.workers)
    written = exported_protocol(protocol)  # the PNGs' own size, not an extractor's input size
    summary = {"output": str(out), "crops": len(plan.crops), "images": len(plan.images), "protocol": written.as_dict()}
    print_json(summary) if args.json else print(f"wrote {len(plan.crops)} crops to {out} ({written.describe()})")
    return 0

"""``urcdm-eval scales REAL FAKE [FAKE ...] -o DIR``: metrics at each magnification, with noise bars.

Writes ``scales.json``, ``scales.csv``, ``scales.png`` and ``scales.svg`` into a new folder that
appears only when all four are written.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from evaluation.commands.comparisons import check_metrics_before_loading, metric_settings
from evaluation.commands.options import check_inputs, crop_protocol, image_size_for, load_run_extractor, run_options
from evaluation.commands.scales_plot import plot_scales
from evaluation.comparison import parse_metrics
from evaluation.defaults import CROPS_PER_SCALE
from evaluation.inputs import is_stats_spec
from evaluation.pipeline import prepare_side, side_statistics
from evaluation.scales import REAL_VS_REAL, fake_label, parse_scales, scale_rows
from urcdm.clikit import print_json, print_table
from urcdm.errors import UserError
from urcdm.pyramid import atomic_directory, check_output_directory

SCALES_FILES = ("scales.json", "scales.csv", "scales.png", "scales.svg")
TABLE_COLUMNS = ("scale", "level", "span", "mpp", "set", "metric", "mean", "std", "n_reference", "n_compared")


def _scales(args: argparse.Namespace):
    if args.config is None:
        return parse_scales(args.levels, args.spans, args.mpps)
    from urcdm.config import load_config  # the config module only: no models are built

    config = load_config(args.config)
    return parse_scales(config_spans=tuple(level.span for level in config.levels), config_name=config.name)


def _labels(args: argparse.Namespace) -> list[str]:
    labels = [part.strip() for part in args.labels.split(",")] if args.labels else [fake_label(f) for f in args.fake]
    if len(labels) != len(args.fake):
        raise UserError(f"--labels names {len(labels)} sets for {len(args.fake)} synthetic inputs")
    if len(set(labels)) != len(labels) or REAL_VS_REAL in labels:
        raise UserError(f"synthetic sets need distinct names other than {REAL_VS_REAL!r}, got {', '.join(labels)}; pass --labels")
    return labels


def _check(args: argparse.Namespace) -> None:
    check_output_directory(args.output, args.overwrite, SCALES_FILES)  # before the features, not after
    if args.splits < 1:
        raise UserError("--splits must be at least 1")
    if args.n is not None and args.n < 2:
        raise UserError("--n must be at least 2")
    for spec in (args.real, *args.fake):
        if is_stats_spec(spec):
            raise UserError(f"{spec}: scales reads crops at every scale from the slides; a statistics file holds one scale")
    check_inputs(args.real, *args.fake)


def cmd_scales(args: argparse.Namespace, ranks) -> int:
    started = time.perf_counter()
    _check(args)
    labels, scales = _labels(args), _scales(args)
    check_metrics_before_loading(args.metric, "scales", args.extractor)
    extractor = load_run_extractor(args, ranks)
    metrics = parse_metrics(args.metric, "scales", extractor.space)
    n = args.n or CROPS_PER_SCALE
    image_size = image_size_for(args, extractor, "fixed")
    sides = [("real", args.real, 2 * n), *((label, spec, n) for label, spec in zip(labels, args.fake))]
    # Every scale's crops drawn before any features: a set too small for the largest scale is said at once.
    runs = []
    for scale in scales:
        protocol = crop_protocol(args, image_size, **scale.protocol_scale())
        options = [run_options(args, protocol, ranks, count, extractor.device) for _, _, count in sides]
        runs.append((scale, options, [prepare_side(spec, label, extractor.id, side_options)
                                      for (label, spec, _), side_options in zip(sides, options)]))
    rows = []
    for number, (scale, options, prepared) in enumerate(runs, start=1):
        if ranks.is_main:
            print(f"scale {number}/{len(scales)}: {scale.label}", file=sys.stderr)
        real, *fake_stats = (side_statistics(spec, label, extractor, side_options, plan)
                             for (label, spec, _), side_options, plan in zip(sides, options, prepared))
        fakes = dict(zip(labels, fake_stats))
        if ranks.is_main:
            rows += scale_rows(scale, real, fakes, n, args.splits, args.seed, metrics, extractor.space, metric_settings(args))
    if not ranks.is_main:
        return 0
    result = {"rows": rows, "scales": [s.label for s in scales], "sets": labels, "metrics": sorted({r["metric"] for r in rows}),
              "n": n, "n_real_read": 2 * n, "splits": args.splits, "extractor": extractor.id, "space": extractor.space,
              "standard_extractor": extractor.standard, "patch_size": args.patch_size, "image_size": image_size,
              "real": args.real, "fake": dict(zip(labels, args.fake)), "seed": args.seed}
    with atomic_directory(args.output, args.overwrite, ours=SCALES_FILES) as folder:
        _write_table(rows, folder / "scales.csv")
        plot_scales(rows, result["scales"], extractor.id, [folder / "scales.png", folder / "scales.svg"])
        result |= {"output": str(args.output), "files": list(SCALES_FILES),
                   "seconds": round(time.perf_counter() - started, 2)}
        (folder / "scales.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print_json(result)
    else:
        print_table([(f"{r['scale']} · {r['set']} · {r['metric']}", f"{r['mean']:.4f} ± {r['std']:.4f}") for r in rows]
                    + [("output", f"{args.output}/scales.{{json,csv,png,svg}}"), ("time", f"{result['seconds']:.1f} s")])
    return 0


def _write_table(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

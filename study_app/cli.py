"""``urcdm-study``: a real-vs-synthetic reader study for pathologists, scored as the paper's Table 1.

    urcdm-study prepare STUDY.yaml [--json]        render the cases (parity-encoded) into the study folder
    urcdm-study run STUDY.yaml [--port 8501]       prepare, then serve the reader app (Streamlit)
    urcdm-study demo [--out build/study-demo]      a small demo study from embedded data, served
    urcdm-study export STUDY.yaml -o ANSWERS.csv   the raw answers, as the app's organiser view exports them
    urcdm-study score ANSWERS.csv [--by arm|all] [--positive synthetic|real] [--json]
    urcdm-study mrmc RATINGS.csv [--cov jackknife|delong|unbiased] [--arm ARM] [--json]
                                                   MRMC ROC analysis of ratings or an export, any design
                                                   (OR with Hillis ddf; U-statistics; split-plot OR)
    urcdm-study power (--pilot RATINGS.csv | --components ...) (--auc A | --delta D | --margin M)
                      [--design crossed|split-plot --groups G] [--readers 3,5,10] [--cases 50,100] [--plot P.png]
                                                   power and the readers x cases that reach a target power
                                                   (Hillis, Obuchowski & Berbaum 2011)
    urcdm-study hash-secret                        hash an access code or organiser secret for the study file

ANSWERS.csv needs the columns reader,case,arm,truth,answer (truth/answer: real or synthetic) and may
carry confidence (1-5). The study file format is documented in study_app/preparation/study.py and the README.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Sequence

from study_app.access import hash_secret
from study_app.power_cli import add_power_parser, cmd_power
from study_app.statistics.scoring import score
from study_app.store.answers_csv import read_answers
from urcdm.clikit import (
    ArgumentParser,
    add_output_options,
    bounded_int,
    check_port_free,
    print_json,
    print_table,
    run_cli,
)
from urcdm.errors import UserError

DEFAULT_PORT = 8501


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="urcdm-study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    scorer = commands.add_parser("score", help="Table-1 scoring of an answers CSV", description="Table-1 scoring of an answers CSV")
    scorer.add_argument("answers", help="CSV with reader,case,arm,truth,answer[,confidence]")
    scorer.add_argument("--by", choices=("arm", "all"), default="arm", help="one table per arm (default) or all pooled")
    scorer.add_argument("--positive", choices=("synthetic", "real"), default="synthetic",
                        help="the answer counted as positive (default: synthetic, as in the paper)")
    add_output_options(scorer)

    mrmc = commands.add_parser("mrmc", help="MRMC ROC analysis of ratings, any reading design",
                               description="MRMC analysis of reader-averaged empirical AUCs: Obuchowski-Rockette with "
                                           "Hillis' ddf where every reader rated every case, the U-statistics of "
                                           "Gallas et al. for any design (beside OR where crossed), and the "
                                           "split-plot OR analysis where readers read in groups.")
    mrmc.add_argument("ratings", help="CSV with reader,arm,case,truth,rating, or an `urcdm-study export` CSV")
    mrmc.add_argument("--cov", choices=("jackknife", "delong", "unbiased"), default="jackknife",
                      help="case-level covariance estimator (default: jackknife)")
    mrmc.add_argument("--arm", help="analyse this arm alone (single-arm AUC and CI)")
    add_output_options(mrmc)

    add_power_parser(commands)

    preparer = commands.add_parser("prepare", help="render the study's cases into its folder",
                                   description="Render every case (same format, size, quality; no metadata) into the study folder.")
    preparer.add_argument("study", type=Path, help="the study YAML")
    add_output_options(preparer)

    runner = commands.add_parser("run", help="prepare, then serve the reader app", description="Prepare, then serve the reader app.")
    runner.add_argument("study", type=Path, help="the study YAML")
    _add_server_options(runner)

    demo = commands.add_parser("demo", help="build and serve a small demo study", description="Build and serve a small demo study.")
    demo.add_argument("--out", type=Path, default=Path("build/study-demo"), help="demo folder (default build/study-demo)")
    demo.add_argument("--fresh", action="store_true", help="delete an earlier demo (and its answers) first")
    demo.add_argument("--no-run", action="store_true", help="build and prepare only")
    _add_server_options(demo)

    exporter = commands.add_parser("export", help="write the raw answers as CSV", description="Write the raw answers as CSV.")
    exporter.add_argument("study", type=Path, help="the study YAML")
    exporter.add_argument("-o", "--out", type=Path, required=True, help="CSV to write (never overwritten without --overwrite)")
    exporter.add_argument("--overwrite", action="store_true")
    add_output_options(exporter, json_output=False)

    hasher = commands.add_parser("hash-secret", help="hash a code or secret for the study file",
                                 description="Read a secret (prompted, or one line on stdin) and print its scrypt hash.")
    add_output_options(hasher, json_output=False)
    return parser


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=bounded_int(1, 65535), default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a network)")
    add_output_options(parser, json_output=False)


def _fmt(value, digits: int = 3) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def _interval(rate: dict) -> str:
    if rate["estimate"] is None:
        return "undefined"
    return f"{rate['estimate']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}]"


def print_tables(result: dict) -> None:
    header = f"{'reader':<16} {'TP':>5} {'FP':>5} {'p':>9} {'|p-0.5|':>9} {'accuracy (95% CI)':>24} {'AUC':>6}"
    for arm, group in result["arms"].items():
        print(f"== {arm} (positive = answered {result['positive']})")
        print(header)
        for r in group["readers"]:
            print(f"{r['reader']:<16} {r['tp']:>5} {r['fp']:>5} {_fmt(r['p']):>9} {_fmt(r['abs_p_minus_half']):>9} "
                  f"{_interval(r['accuracy']):>24} {_fmt(r['roc_auc'], 2):>6}")
        t = group["total"]
        print(f"{'total':<16} {t['tp']:>5} {t['fp']:>5} {_fmt(t['p']):>9} {'':>9} {_interval(t['accuracy']):>24}")
        print(f"w-MAE {_fmt(t['w_mae'])}   sensitivity {_interval(t['sensitivity'])}   specificity {_interval(t['specificity'])}   "
              f"binomial p (accuracy vs 0.5) {_fmt(t['binomial_p_accuracy'], 4)}   Fleiss kappa {_fmt(t['fleiss_kappa'])}")
        print()


def cmd_score(args: argparse.Namespace) -> int:
    result = score(read_answers(args.answers), by=args.by, positive=args.positive)
    print_json(result) if args.json else print_tables(result)
    return 0


def cmd_mrmc(args: argparse.Namespace) -> int:
    from study_app.statistics.mrmc_designs import analyse_any
    from study_app.store.ratings_csv import format_report, read_design

    design = read_design(args.ratings, arm=args.arm)
    result = analyse_any(design.ratings, design.truth, args.cov, design.readers, design.arms)
    print_json(result) if args.json else print(format_report(result))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from study_app.preparation.prepare import prepare
    from study_app.preparation.study import load_study

    summary = prepare(load_study(args.study)).summary()
    if args.json:
        print_json(summary)
    else:
        print_table([(key, _readable(value)) for key, value in summary.items()])
    return 0


def _readable(value) -> str:
    """A summary value for people: {'side': 128, 'cap': 512} -> "side 128, cap 512"; nested dicts by "; "."""
    if not isinstance(value, dict):
        return str(value)
    nested = any(isinstance(item, dict) for item in value.values())
    return ("; " if nested else ", ").join(f"{key}: {_readable(item)}" if nested else f"{key} {item}"
                                           for key, item in value.items())


def cmd_run(args: argparse.Namespace) -> int:
    from study_app.preparation.prepare import prepare
    from study_app.preparation.study import load_study
    from study_app.web.server import serve

    check_port_free(args.port, args.address)  # before minutes of rendering, not after
    return serve(prepare(load_study(args.study)), args.port, args.address)


def cmd_demo(args: argparse.Namespace) -> int:
    from study_app.preparation.demo import DEMO_READERS, build_demo
    from study_app.preparation.prepare import prepare
    from study_app.preparation.study import load_study
    from study_app.web.server import serve

    if not args.no_run:
        check_port_free(args.port, args.address)  # before a new study and secret are made and printed
    study_file, secret = build_demo(args.out, fresh=args.fresh)
    prepared = prepare(load_study(study_file))
    readers = ", ".join(f"{reader} / code {code}" for reader, code in DEMO_READERS.items())
    print(f"demo study: {study_file} ({len(prepared.cases)} cases)\nreaders: {readers}\norganiser secret: {secret}",
          file=sys.stderr)
    return 0 if args.no_run else serve(prepared, args.port, args.address)


def cmd_export(args: argparse.Namespace) -> int:
    from study_app.preparation.prepared import open_prepared
    from study_app.preparation.study import load_study
    from study_app.store.database import AnswerStore
    from urcdm.pyramid import check_output_path

    check_output_path(args.out, args.overwrite)  # exists, is a folder, or cannot be written: said first
    prepared = open_prepared(load_study(args.study).workdir)
    count = AnswerStore(prepared.store_path).export_csv(args.out)  # whole or not at all, mode 0600
    print(f"{count} answers written to {args.out}", file=sys.stderr)
    return 0


def cmd_hash_secret(args: argparse.Namespace) -> int:
    secret = getpass.getpass("secret: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not secret:
        raise UserError("empty secret")
    print(hash_secret(secret))
    return 0


COMMANDS = {"score": cmd_score, "prepare": cmd_prepare, "run": cmd_run, "demo": cmd_demo, "export": cmd_export,
            "hash-secret": cmd_hash_secret, "mrmc": cmd_mrmc, "power": cmd_power}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv, lambda args: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())

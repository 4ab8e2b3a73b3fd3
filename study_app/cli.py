"""``urcdm-study``: score a real-vs-synthetic reader study as the paper's Table 1.

    urcdm-study score ANSWERS.csv [--by arm|all] [--positive synthetic|real] [--json]

ANSWERS.csv needs the columns reader,case,arm,truth,answer (truth/answer: real or synthetic) and may
carry confidence (1-5). The Streamlit reader app (``urcdm-study run``) lands with its issue.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from study_app.answers import read_answers
from study_app.scoring import score
from urcdm.clikit import ArgumentParser, add_output_options, print_json, run_cli


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="urcdm-study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    scorer = commands.add_parser("score", help="Table-1 scoring of an answers CSV", description="Table-1 scoring of an answers CSV")
    scorer.add_argument("answers", help="CSV with reader,case,arm,truth,answer[,confidence]")
    scorer.add_argument("--by", choices=("arm", "all"), default="arm", help="one table per arm (default) or all pooled")
    scorer.add_argument("--positive", choices=("synthetic", "real"), default="synthetic",
                        help="the answer counted as positive (default: synthetic, as in the paper)")
    add_output_options(scorer)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv, cmd_score)


if __name__ == "__main__":
    sys.exit(main())

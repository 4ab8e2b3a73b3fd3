"""The paper's Table 1 as answer rows, scored by the toolkit beside the printed numbers (pure).

The paper prints per reader and arm TP (synthetic images called synthetic) and FP (real images
called synthetic), with p = FP/(TP+FP) and |p - 0.5|, and per arm the weighted MAE. It prints no
TN/FN and no per-case ratings, so the rows built here are the "called synthetic" answers only:
enough for every Table-1 number (which uses only TP and FP), not for accuracy or an ROC AUC.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from scipy import stats

from study_app.statistics.records import Answer
from urcdm.errors import UserError

PRINTED_DIGITS = 4  # Table 1 prints four decimals
ANSWER_COLUMNS = ("reader", "case", "arm", "truth", "answer", "confidence")  # what `urcdm-study score` reads


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path}: no such file (the paper's tables are in ../shared/data/paper, or set URCDM_TEST_DATA)")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise UserError(f"{path}: expected the columns {', '.join(columns)}")
    return rows


def read_table1(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """(per-reader rows, per-arm total rows) of ``table1.csv`` and ``table1_totals.csv``, numbers parsed."""
    folder = Path(folder)
    readers = _read_csv(folder / "table1.csv", ("arm", "reader", "tp", "fp", "printed_p", "printed_abs_p_minus_half"))
    totals = _read_csv(folder / "table1_totals.csv", ("arm", "tp", "fp", "printed_p", "printed_w_mae"))
    for row in readers + totals:
        for key in row:
            if key not in ("arm", "reader"):
                row[key] = int(row[key]) if key in ("tp", "fp") else float(row[key])
    return readers, totals


def answers_from_counts(rows: Sequence[dict]) -> list[Answer]:
    """TP answers "synthetic" on synthetic cases and FP answers "synthetic" on real ones, per reader."""
    answers = []
    for row in rows:
        for kind, truth in (("tp", "synthetic"), ("fp", "real")):
            answers += [Answer(row["reader"], f"{row['arm']}/{row['reader']}/{kind}{i}", row["arm"], truth, "synthetic")
                        for i in range(row[kind])]
    return answers


def write_answers(answers: Sequence[Answer], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ANSWER_COLUMNS)
        writer.writerows([a.reader, a.case, a.arm, a.truth, a.answer, a.confidence or ""] for a in answers)
    return path


def _differs(ours: float | None, printed: float) -> bool:
    return ours is None or abs(round(ours, PRINTED_DIGITS) - printed) > 1e-9


def reader_comparison(result: dict, rows: Sequence[dict]) -> list[dict]:
    """Per printed reader: our counts and p beside the printed ones, the exact 95 % interval of p, the
    binomial test of p = 0.5 (the reader cannot tell), and which printed values their counts do not give."""
    table = []
    for row in rows:
        ours = next(r for r in result["arms"][row["arm"]]["readers"] if r["reader"] == row["reader"])
        called = ours["tp"] + ours["fp"]
        flags = [name for name, value, printed in (("p", ours["p"], row["printed_p"]),
                 ("|p-0.5|", ours["abs_p_minus_half"], row["printed_abs_p_minus_half"])) if _differs(value, printed)]
        table.append({"arm": row["arm"], "reader": row["reader"], "TP": ours["tp"], "FP": ours["fp"],
                      "p": ours["p"], "printed p": row["printed_p"], "|p-0.5|": ours["abs_p_minus_half"],
                      "printed |p-0.5|": row["printed_abs_p_minus_half"],
                      "p 95% low": ours["p_interval"]["low"], "p 95% high": ours["p_interval"]["high"],
                      "binomial p (p = 0.5)": float(stats.binomtest(ours["fp"], called, 0.5).pvalue) if called else None,
                      "printed differs": ", ".join(flags)})
    return table


def total_comparison(result: dict, totals: Sequence[dict]) -> list[dict]:
    table = []
    for row in totals:
        ours = result["arms"][row["arm"]]["total"]
        flags = [name for name, value, printed in (("p", ours["p"], row["printed_p"]),
                 ("w-MAE", ours["w_mae"], row["printed_w_mae"])) if _differs(value, printed)]
        if (ours["tp"], ours["fp"]) != (row["tp"], row["fp"]):
            flags.append("TP/FP totals")
        table.append({"arm": row["arm"], "TP": ours["tp"], "FP": ours["fp"], "printed TP": row["tp"],
                      "printed FP": row["fp"], "p": ours["p"], "printed p": row["printed_p"], "w-MAE": ours["w_mae"],
                      "printed w-MAE": row["printed_w_mae"], "printed differs": ", ".join(flags)})
    return table

"""Flat tables for the organiser: progress per reader and the Table-1 results (pure).

The same rows feed the organiser's screen, its CSV downloads and the plots, so what is shown is what
is exported; text a spreadsheet would run is neutralised in the CSV (``study_app.store.spreadsheet``).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Sequence

from study_app.preparation.cases import Case
from study_app.statistics.records import LABELS, Answer, natural_key
from study_app.store.database import StoredAnswer
from study_app.store.spreadsheet import neutralise

RESULT_COLUMNS = ("arm", "reader", "tp", "fp", "tn", "fn", "n", "p", "p_low", "p_high", "abs_p_minus_half",
                  "accuracy", "accuracy_low", "accuracy_high", "roc_auc", "w_mae", "binomial_p_accuracy", "fleiss_kappa")


def finished_readers(progress: Sequence[dict]) -> set[str]:
    return {row["reader"] for row in progress if row["assigned"] and row["answered"] >= row["assigned"]}


def as_answers(stored: Sequence[StoredAnswer]) -> list[Answer]:
    return [Answer(a.reader, a.case, a.arm, a.truth, a.answer, a.confidence) for a in stored]


def progress_rows(assigned: dict[str, list[Case]], stored: Sequence[StoredAnswer]) -> list[dict]:
    """One row per reader (listed or enrolled): answered of assigned, time taken, last answer."""
    rows = []
    for reader in sorted(set(assigned) | {a.reader for a in stored}, key=natural_key):
        mine = [a for a in stored if a.reader == reader]
        total = len(assigned.get(reader, [])) or len(mine)
        seconds = sorted(a.seconds for a in mine)
        rows.append({"reader": reader, "answered": len(mine), "assigned": total,
                     "done": len(mine) / total if total else 0.0,
                     "median_seconds": seconds[len(seconds) // 2] if seconds else None,
                     "last_answer": max((a.answered_at for a in mine), default=None)})
    return rows


def result_rows(result: dict) -> list[dict]:
    """Per arm: every reader, then a ``total`` row carrying the arm's w-MAE, binomial p and kappa."""
    rows = []
    for arm, group in result["arms"].items():
        readers = sorted(group["readers"], key=lambda entry: natural_key(entry["reader"]))
        for entry in [*readers, {**group["total"], "reader": "total"}]:
            rows.append({
                "arm": arm, "reader": entry["reader"], **{k: entry[k] for k in ("tp", "fp", "tn", "fn", "n", "p")},
                "p_low": entry["p_interval"]["low"], "p_high": entry["p_interval"]["high"],
                "abs_p_minus_half": entry["abs_p_minus_half"], "accuracy": entry["accuracy"]["estimate"],
                "accuracy_low": entry["accuracy"]["low"], "accuracy_high": entry["accuracy"]["high"],
                "roc_auc": entry.get("roc_auc"), "w_mae": entry.get("w_mae"),
                "binomial_p_accuracy": entry["binomial_p_accuracy"], "fleiss_kappa": entry.get("fleiss_kappa")})
    return rows


def confusion_rows(answers: Sequence[Answer]) -> list[dict]:
    """Counts per (arm, truth, answer), all four cells present even when zero."""
    rows = []
    for arm in sorted({a.arm for a in answers}):
        mine = [a for a in answers if a.arm == arm]
        for truth in LABELS:
            for answer in LABELS:
                rows.append({"arm": arm, "truth": truth, "answer": answer,
                             "count": sum(1 for a in mine if a.truth == truth and a.answer == answer)})
    return rows


def to_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: neutralise("" if row.get(k) is None else row.get(k)) for k in columns} for row in rows)
    return buffer.getvalue()



def _number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(estimate, low, high) -> str:
    if estimate is None:
        return "–"
    return f"{estimate:.2f} ({low:.2f}–{high:.2f})" if low is not None else f"{estimate:.2f}"


def display_results(rows: Sequence[dict], with_arm: bool = False) -> list[dict]:
    """``result_rows`` as the organiser reads them: intervals beside their estimates, missing values as
    "–" (never "None"), short headings, so that an arm's table fits a 1366-px window; ``with_arm``
    for a table of several arms."""
    return [{**({"arm": row["arm"]} if with_arm else {}), "reader": row["reader"], "TP": row["tp"], "FP": row["fp"], "TN": row["tn"], "FN": row["fn"], "n": row["n"],
             "p (95 % CI)": _interval(row["p"], row["p_low"], row["p_high"]),
             "|p−0.5|": _number(row["abs_p_minus_half"]),
             "accuracy (95 % CI)": _interval(row["accuracy"], row["accuracy_low"], row["accuracy_high"]),
             "ROC AUC": _number(row["roc_auc"], 2), "w-MAE": _number(row["w_mae"]),
             "binomial p": _number(row["binomial_p_accuracy"], 4), "Fleiss κ": _number(row["fleiss_kappa"])}
            for row in rows]


def display_progress(rows: Sequence[dict]) -> list[dict]:
    """``progress_rows`` for the screen: times as text, "–" before a reader's first answer."""
    def when(stamp):
        return "–" if stamp is None else datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")
    return [{"reader": row["reader"], "answered": row["answered"], "assigned": row["assigned"], "done": row["done"],
             "median s / case": _number(row["median_seconds"], 1), "last answer": when(row["last_answer"])}
            for row in rows]

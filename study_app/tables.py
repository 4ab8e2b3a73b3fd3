"""Flat tables for the organiser: progress per reader and the Table-1 results (pure).

The same rows feed the organiser's screen, its CSV downloads and the plots, so what is shown is what
is exported.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Sequence

from study_app.cases import Case
from study_app.scoring import LABELS, Answer
from study_app.store import StoredAnswer

RESULT_COLUMNS = ("arm", "reader", "tp", "fp", "tn", "fn", "n", "p", "p_low", "p_high", "abs_p_minus_half",
                  "accuracy", "accuracy_low", "accuracy_high", "roc_auc", "w_mae", "binomial_p_accuracy", "fleiss_kappa")


def natural_key(name: str) -> tuple:
    """reader-2 before reader-10: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


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
    writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in columns} for row in rows)
    return buffer.getvalue()


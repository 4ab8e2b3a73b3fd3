"""Stored answers -> per-arm MRMC designs, their analysis and per-reader ROC curves (pure).

Every answer counts. Each arm's design is [reader, case] over every reader who answered in the arm and
every case answered in it, NaN where a reader did not read a case; ``mrmc_designs.analyse_any`` then
says what the design is (crossed, split-plot, or any other pattern) and applies the analyses that fit:
Obuchowski-Rockette where crossed, the U-statistics of Gallas et al. for any pattern, and the split-plot
OR analysis where readers read in groups. Nothing is imputed and nothing is cut down to the cases every
reader shares. An arm gets no result only when no analysis can exist (``ArmSelection.reason``).

Positive class = synthetic; the rating is ``records.answer_rating`` (real-sure 1 ... synthetic-sure 10).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from study_app.statistics.mrmc_designs import analyse_any
from study_app.statistics.records import (
    POSITIVE,
    Answer,
    Design,
    answer_rating,
    natural_key,
)

MIN_PER_CLASS = 2  # the AUC's case-level variance needs 2 positives and 2 negatives
RATINGS_COLUMNS = ("reader", "arm", "case", "truth", "rating")  # what `urcdm-study mrmc` reads (ratings_csv)
RANDOM_READERS = "random readers, random cases"
FIXED_READERS = "fixed readers, random cases"


@dataclass(frozen=True)
class ArmSelection:
    """One arm's readers, its answered cases and the [reader, 1, case] design (NaN: not read)."""

    arm: str
    readers: tuple[str, ...]  # every reader with at least one answer in the arm
    cases: tuple[str, ...]  # every case answered in the arm
    answers: int  # answers given in the arm
    design: Design | None  # None when no MRMC analysis is possible
    reason: str | None  # why design is None

    @property
    def answers_used(self) -> int:
        return 0 if self.design is None else self.answers

    @property
    def answers_left_out(self) -> int:
        return self.answers - self.answers_used


def select_arm_designs(answers: Sequence[Answer]) -> list[ArmSelection]:
    """One selection per arm, arms in natural order."""
    by_arm: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        by_arm[a.arm].append(a)
    return [_select(arm, by_arm[arm]) for arm in sorted(by_arm, key=natural_key)]


def _select(arm: str, answers: list[Answer]) -> ArmSelection:
    given: dict[tuple[str, str], Answer] = {(a.reader, a.case): a for a in answers}
    truths_of: dict[str, set[str]] = defaultdict(set)
    for a in answers:
        truths_of[a.case].add(a.truth)
    readers = tuple(sorted({a.reader for a in answers}, key=natural_key))
    cases = tuple(sorted(truths_of, key=natural_key))

    def selection(design=None, reason=None):
        return ArmSelection(arm, readers, cases, len(answers), design, reason)

    mixed = [case for case in cases if len(truths_of[case]) > 1]
    if mixed:  # impossible from one prepared study; a merged or edited answers file could do it
        return selection(reason=f"case {mixed[0]!r} is recorded as both real and synthetic")
    truth = np.array([truths_of[case] == {POSITIVE} for case in cases])
    counts = {"real": int((~truth).sum()), "synthetic": int(truth.sum())}
    for label, count in counts.items():
        if count == 0:  # the plainer reason first: no ROC curve at all without both classes
            return selection(reason=f"no {label} cases answered")
    for label, count in counts.items():
        if count < MIN_PER_CLASS:
            return selection(reason=f"only {count} {label} case answered; the AUC's case variance needs at least "
                                    f"{MIN_PER_CLASS} real and {MIN_PER_CLASS} synthetic cases")
    for reader in readers:
        # A rating with confidence (1..5, 6..10) and one without (1, 2) are not on one scale, and the
        # ranking within a reader is all the AUC uses.
        if len({a.confidence is None for (who, _), a in given.items() if who == reader}) > 1:
            return selection(reason=f"reader {reader!r} gave a confidence on some answers but not on others")
    ratings = np.full((len(readers), 1, len(cases)), np.nan)
    for j, reader in enumerate(readers):
        for k, case in enumerate(cases):
            answer = given.get((reader, case))
            if answer is not None:
                ratings[j, 0, k] = answer_rating(answer.answer, answer.confidence)
    return selection(design=Design(ratings, truth, list(readers), [arm], list(cases), "answers"))


def arm_mrmc(selection: ArmSelection, method: str = "jackknife") -> dict | None:
    """The arm's reader-averaged AUC with its 95% CI and p against AUC = 0.5 (None without a design).

    Random readers and random cases is the headline (it generalises to other pathologists and images);
    with one reader only the fixed-reader analysis exists, and the notes say so.
    """
    design = selection.design
    if design is None:
        return None
    result = analyse_any(design.ratings, design.truth, method=method, readers=design.readers, arms=design.arms)
    random_readers = result["random_readers_random_cases"]
    fixed = result["fixed_readers_random_cases"]
    if random_readers is not None:
        headline, analysis = random_readers["arms"][0], RANDOM_READERS
    else:  # one reader: only the fixed-reader analysis exists
        headline, analysis = fixed["arms"][0], FIXED_READERS
    return {"arm": selection.arm, "analysis": analysis, "estimator": headline.get("analysis", "OR (Hillis ddf)"),
            "method": method, "design": result["arm_designs"][selection.arm],
            **{k: headline[k] for k in ("estimate", "se", "df", "low", "high", "p")},
            "fixed_readers": fixed["arms"][0] if fixed else None,
            "split_plot": (result["split_plot"] or {}).get(selection.arm),
            "u_statistics": result["u_statistics"]["arms_results"][0],
            "reader_auc": {reader: row[selection.arm] for reader, row in result["auc"].items()},
            "readers": len(design.readers), "cases": len(design.cases), "positives": int(design.truth.sum()),
            "negatives": int((~design.truth).sum()), "answers_used": selection.answers_used,
            "answers_left_out": selection.answers_left_out, "notes": result["notes"], "result": result}


def compare_arms(selections: Sequence[ArmSelection], method: str = "jackknife") -> tuple[dict | None, str]:
    """The arms' differences (random readers, random cases) on all their answers, else the reason.

    The same readers on the same cases in every arm: the OR analysis. Otherwise (each arm its own cases,
    or readers who read only some arms) the U-statistics, whose covariance between arms comes from the
    readers they share."""
    if len(selections) < 2:
        return None, "one arm: nothing to compare"
    without = [s.arm for s in selections if s.design is None]
    if without:
        return None, f"arm {without[0]!r} has no MRMC result, so the arms are not compared"
    readers = sorted({r for s in selections for r in s.readers}, key=natural_key)
    cases = sorted({c for s in selections for c in s.cases}, key=natural_key)
    truth_of = {}
    for s in selections:
        for case, positive in zip(s.design.cases, s.design.truth):
            if truth_of.setdefault(case, bool(positive)) != bool(positive):
                return None, "a case has a different truth in different arms, so the arms are not compared"
    ratings = np.full((len(readers), len(selections), len(cases)), np.nan)
    r_index, c_index = {r: j for j, r in enumerate(readers)}, {c: k for k, c in enumerate(cases)}
    for i, s in enumerate(selections):
        rows, cols = [r_index[r] for r in s.design.readers], [c_index[c] for c in s.design.cases]
        ratings[np.ix_(rows, [i], cols)] = s.design.ratings
    truth = np.array([truth_of[c] for c in cases])
    result = analyse_any(ratings, truth, method, readers, [s.arm for s in selections])
    how = "same readers and cases" if result["design"] == "crossed" else \
        "U-statistics (Gallas): the arms' own cases, covariance from the readers they share"
    return result, how


def roc_points(design: Design) -> list[dict]:
    """Per reader and arm, the empirical ROC curve over the cases the reader rated: (FPR, TPR) calling
    "synthetic" at rating >= threshold.

    Thresholds are the distinct ratings from the highest down, after a first point at +inf (nothing called
    synthetic, (0, 0)), as sklearn.metrics.roc_curve(drop_intermediate=False); the last is (1, 1). The
    trapezoidal area under these points is the empirical AUC with ties counted 1/2 (mrmc.auc_table).
    """
    rows = []
    for j, reader in enumerate(design.readers):
        for i, arm in enumerate(design.arms):
            rated = np.isfinite(design.ratings[j, i])
            values, truth = design.ratings[j, i][rated], design.truth[rated]
            if not truth.any() or truth.all():
                continue  # no curve from one class
            positives, negatives = values[truth], values[~truth]
            for threshold in np.concatenate([[np.inf], np.unique(values)[::-1]]):
                rows.append({"reader": reader, "arm": arm, "threshold": float(threshold),
                             "fpr": float((negatives >= threshold).mean()),
                             "tpr": float((positives >= threshold).mean())})
    return rows


def ratings_rows(selections: Sequence[ArmSelection]) -> list[dict]:
    """The ratings the analyses used, one row per answer: the ratings CSV `urcdm-study mrmc` and R (MRMCaov,
    RJafroc; iMRMC for designs that are not crossed) read; truth 1 = synthetic (positive), 0 = real."""
    rows = []
    for s in selections:
        if s.design is None:
            continue
        for j, reader in enumerate(s.design.readers):
            for k, case in enumerate(s.design.cases):
                if np.isfinite(s.design.ratings[j, 0, k]):
                    rows.append({"reader": reader, "arm": s.arm, "case": case, "truth": int(s.design.truth[k]),
                                 "rating": int(s.design.ratings[j, 0, k])})
    return rows

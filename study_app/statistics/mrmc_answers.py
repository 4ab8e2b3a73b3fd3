"""Stored answers -> per-arm MRMC designs, their OR analysis and per-reader ROC curves (pure).

The OR analysis (study_app.statistics.mrmc) needs a fully crossed design: every reader rates every case. Studies
here often give each reader only part of an arm's cases, so for each arm we keep the cases that *every*
reader of the arm (anyone with at least one answer in it) answered, analyse that sub-design and say how
many answers were left out, or say why no analysis is possible. Nothing is imputed: a reader who has
read few cases shrinks the common set rather than being padded with guesses.

Positive class = synthetic; the rating is ``mrmc_io.answer_rating`` (real-sure 1 ... synthetic-sure 10).
A case belongs to one arm in a prepared study, so arms are compared only in the rare data where they
share the same readers and cases (``compare_arms`` says so otherwise).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from study_app.statistics.mrmc import analyse
from study_app.statistics.records import Answer, Design, answer_rating, natural_key

POSITIVE = "synthetic"
MIN_PER_CLASS = 2  # mrmc.analyse: the case-level (jackknife/DeLong) variance needs 2 positives and 2 negatives
RATINGS_COLUMNS = ("reader", "arm", "case", "truth", "rating")  # what `urcdm-study mrmc` reads (mrmc_io)
RANDOM_READERS = "random readers, random cases"
FIXED_READERS = "fixed readers, random cases"


@dataclass(frozen=True)
class ArmSelection:
    """One arm's readers, the cases all of them answered, and the fully crossed design built from them."""

    arm: str
    readers: tuple[str, ...]  # every reader with at least one answer in the arm
    cases: tuple[str, ...]  # the cases every one of those readers answered
    answers: int  # answers given in the arm
    design: Design | None  # [reader, 1, case] sub-design; None when no MRMC analysis is possible
    reason: str | None  # why design is None

    @property
    def answers_used(self) -> int:
        return 0 if self.design is None else len(self.readers) * len(self.cases)

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
    given: dict[tuple[str, str], Answer] = {}
    cases_of: dict[str, set[str]] = defaultdict(set)
    truths_of: dict[str, set[str]] = defaultdict(set)
    for a in answers:
        given[a.reader, a.case] = a
        cases_of[a.reader].add(a.case)
        truths_of[a.case].add(a.truth)
    readers = tuple(sorted(cases_of, key=natural_key))
    common = tuple(sorted(set.intersection(*cases_of.values()), key=natural_key))
    shared = "in common" if len(readers) > 1 else "answered"

    def selection(design=None, reason=None):
        return ArmSelection(arm, readers, common, len(answers), design, reason)

    mixed = [case for case in common if len(truths_of[case]) > 1]
    if mixed:  # impossible from one prepared study; a merged or edited answers file could do it
        return selection(reason=f"case {mixed[0]!r} is recorded as both real and synthetic")
    if not common:
        return selection(reason=f"the {len(readers)} readers share no cases")
    truth = np.array([truths_of[case] == {POSITIVE} for case in common])
    counts = {"real": int((~truth).sum()), "synthetic": int(truth.sum())}
    for label, count in counts.items():
        if count == 0:  # the plainer reason first: no ROC curve at all without both classes
            return selection(reason=f"no {label} cases {shared}")
    for label, count in counts.items():
        if count < MIN_PER_CLASS:
            return selection(reason=f"only {count} {label} case {shared}; the AUC's case variance needs at least "
                                    f"{MIN_PER_CLASS} real and {MIN_PER_CLASS} synthetic cases")
    for reader in readers:
        # A rating with confidence (1..5, 6..10) and one without (1, 2) are not on one scale, and the
        # ranking within a reader is all the AUC uses.
        if len({given[reader, case].confidence is None for case in common}) > 1:
            return selection(reason=f"reader {reader!r} gave a confidence on some answers but not on others")
    ratings = np.array([[[answer_rating(given[reader, case].answer, given[reader, case].confidence)
                          for case in common]] for reader in readers], dtype=float)
    return selection(design=Design(ratings, truth, list(readers), [arm], list(common), "answers"))


def arm_mrmc(selection: ArmSelection, method: str = "jackknife") -> dict | None:
    """The arm's reader-averaged AUC with its 95% CI and p against AUC = 0.5 (None without a design).

    Random readers and random cases is the headline (it generalises to other pathologists and images);
    with one reader only the fixed-reader analysis exists, and the notes say so.
    """
    design = selection.design
    if design is None:
        return None
    result = analyse(design.ratings, design.truth, method=method, readers=design.readers, arms=design.arms)
    random_readers = result["random_readers_random_cases"]
    analysis, part = (RANDOM_READERS, random_readers) if random_readers else \
        (FIXED_READERS, result["fixed_readers_random_cases"])
    headline = part["arms"][0]
    return {"arm": selection.arm, "analysis": analysis, "method": method,
            **{k: headline[k] for k in ("estimate", "se", "df", "low", "high", "p")},
            "fixed_readers": result["fixed_readers_random_cases"]["arms"][0],
            "reader_auc": {reader: row[selection.arm] for reader, row in result["auc"].items()},
            "readers": len(design.readers), "cases": len(design.cases), "positives": result["positives"],
            "negatives": result["negatives"], "answers_used": selection.answers_used,
            "answers_left_out": selection.answers_left_out, "notes": result["notes"], "result": result}


def compare_arms(selections: Sequence[ArmSelection], method: str = "jackknife") -> tuple[dict | None, str]:
    """A multi-arm OR analysis when every arm has the same readers rating the same cases, else the reason."""
    if len(selections) < 2:
        return None, "one arm: nothing to compare"
    without = [s.arm for s in selections if s.design is None]
    if without:
        return None, f"arm {without[0]!r} has no MRMC result, so the arms are not compared"
    first = selections[0].design
    if not all(s.design.cases == first.cases and s.design.readers == first.readers for s in selections[1:]):
        if any(set(s.cases) & set(first.cases) for s in selections[1:]):
            return None, ("the arms share some cases but not the same readers and cases, so they are not compared "
                          "by MRMC; each arm is tested against AUC = 0.5 on its own")
        return None, ("the arms have different cases (each case is shown in one arm), so they are not compared by "
                      "MRMC: each arm is tested against AUC = 0.5 on its own, and overlapping or separate "
                      "single-arm CIs are not a test of a difference")
    if not all(np.array_equal(s.design.truth, first.truth) for s in selections[1:]):
        return None, "a case has a different truth in different arms, so the arms are not compared"
    ratings = np.concatenate([s.design.ratings for s in selections], axis=1)
    arms = [s.arm for s in selections]
    return analyse(ratings, first.truth, method=method, readers=first.readers, arms=arms), "same readers and cases"


def roc_points(design: Design) -> list[dict]:
    """Per reader and arm, the empirical ROC curve: (FPR, TPR) calling "synthetic" at rating >= threshold.

    Thresholds are the distinct ratings from the highest down, after a first point at +inf (nothing called
    synthetic, (0, 0)), as sklearn.metrics.roc_curve(drop_intermediate=False); the last is (1, 1). The
    trapezoidal area under these points is the empirical AUC with ties counted 1/2 (mrmc.auc_table).
    """
    rows = []
    positives, negatives = design.ratings[..., design.truth], design.ratings[..., ~design.truth]
    for j, reader in enumerate(design.readers):
        for i, arm in enumerate(design.arms):
            thresholds = np.concatenate([[np.inf], np.unique(design.ratings[j, i])[::-1]])
            for threshold in thresholds:
                rows.append({"reader": reader, "arm": arm, "threshold": float(threshold),
                             "fpr": float((negatives[j, i] >= threshold).mean()),
                             "tpr": float((positives[j, i] >= threshold).mean())})
    return rows


def ratings_rows(selections: Sequence[ArmSelection]) -> list[dict]:
    """The ratings the analyses used, one row per (reader, arm, case): the ratings CSV `urcdm-study mrmc`
    and R (MRMCaov, RJafroc) read; truth 1 = synthetic (positive), 0 = real."""
    rows = []
    for s in selections:
        if s.design is None:
            continue
        for j, reader in enumerate(s.design.readers):
            for k, case in enumerate(s.design.cases):
                rows.append({"reader": reader, "arm": s.arm, "case": case, "truth": int(s.design.truth[k]),
                             "rating": int(s.design.ratings[j, 0, k])})
    return rows

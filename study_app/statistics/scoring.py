"""Reader-study scoring as the paper's Table 1, plus the statistics a publication needs (pure).

Positive class = images answered ``synthetic`` (or ``real`` with ``positive="real"``):
TP = positive-truth images answered positive, FP = the other images answered positive. Per reader,
p = FP / (TP + FP) is the share of "synthetic" calls that were real images: 0.5 means the reader
could not tell. Per arm, w-MAE = sum_r n_r |p_r - 0.5| / sum_r n_r with n_r = TP_r + FP_r, which
reproduces the published table from its counts. A reader with no positive answers has p undefined
(None), not 0, and carries no weight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

from study_app.statistics.agreement import krippendorff_alpha
from study_app.statistics.records import LABELS, Answer


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def p(self) -> float | None:
        called = self.tp + self.fp
        return self.fp / called if called else None

    @property
    def abs_p_minus_half(self) -> float | None:
        return None if self.p is None else abs(self.p - 0.5)


def confusion(answers: Iterable[Answer], positive: str = "synthetic") -> Counts:
    tp = fp = tn = fn = 0
    for a in answers:
        called, truly = a.answer == positive, a.truth == positive
        tp += called and truly
        fp += called and not truly
        tn += not called and not truly
        fn += not called and truly
    return Counts(tp, fp, tn, fn)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """Exact binomial interval (scipy's ``binomtest(...).proportion_ci(method="exact")``)."""
    if trials == 0:
        return Interval(None, None, None)
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return Interval(successes / trials, float(ci.low), float(ci.high))


def accuracy_test(counts: Counts) -> float | None:
    """Two-sided binomial test of accuracy against chance (0.5)."""
    return None if counts.n == 0 else float(stats.binomtest(counts.tp + counts.tn, counts.n, 0.5).pvalue)


def weighted_mae(per_reader: Sequence[Counts]) -> float | None:
    weighted = [(c.tp + c.fp, c.abs_p_minus_half) for c in per_reader if c.p is not None]
    total = sum(n for n, _ in weighted)
    return sum(n * d for n, d in weighted) / total if total else None


def roc_auc(answers: Sequence[Answer], positive: str = "synthetic") -> float | None:
    """AUC of the reader's confidence-signed call (Mann-Whitney U / n1 n2), ties counted half."""
    rated = [a for a in answers if a.confidence is not None]
    if len(rated) < len(answers) or not rated:
        return None
    score = np.array([a.confidence if a.answer == positive else -a.confidence for a in rated], dtype=float)
    truth = np.array([a.truth == positive for a in rated])
    if truth.all() or not truth.any():
        return None
    u = stats.mannwhitneyu(score[truth], score[~truth], alternative="two-sided").statistic
    return float(u / (truth.sum() * (~truth).sum()))


def fleiss_kappa(ratings: np.ndarray) -> float | None:
    """Fleiss' kappa from a (subjects, categories) count matrix, equal raters per subject.

    Written out because scipy lacks it and statsmodels (which has it) would be a heavy dependency
    for ten lines; tested against Fleiss' worked example.
    """
    ratings = np.asarray(ratings, dtype=float)
    raters = ratings.sum(axis=1)
    if ratings.shape[0] < 1 or raters.min() < 2 or not np.all(raters == raters[0]):
        return None
    n = raters[0]
    p_category = ratings.sum(axis=0) / ratings.sum()
    agreement = ((ratings * (ratings - 1)).sum(axis=1) / (n * (n - 1))).mean()
    chance = float((p_category**2).sum())
    return None if chance == 1.0 else float((agreement - chance) / (1 - chance))


def shared_case_kappa(answers: Sequence[Answer]) -> float | None:
    """Fleiss' kappa over the cases every reader of the group answered."""
    by_case: dict[str, dict[str, str]] = defaultdict(dict)
    for a in answers:
        by_case[a.case][a.reader] = a.answer
    readers = {a.reader for a in answers}
    shared = [calls for calls in by_case.values() if set(calls) == readers]
    if len(readers) < 2 or not shared:
        return None
    return fleiss_kappa(np.array([[list(calls.values()).count(label) for label in LABELS] for calls in shared]))


def _rates(counts: Counts) -> dict:
    return {
        "accuracy": asdict(clopper_pearson(counts.tp + counts.tn, counts.n)),
        "sensitivity": asdict(clopper_pearson(counts.tp, counts.tp + counts.fn)),
        "specificity": asdict(clopper_pearson(counts.tn, counts.tn + counts.fp)),
        "binomial_p_accuracy": accuracy_test(counts),
    }


def score_group(answers: Sequence[Answer], positive: str = "synthetic") -> dict:
    """Table-1 rows for one group (an arm): per reader, then the total with the weighted MAE."""
    by_reader: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        by_reader[a.reader].append(a)
    readers, per_reader = [], []
    for reader in sorted(by_reader):
        counts = confusion(by_reader[reader], positive)
        per_reader.append(counts)
        readers.append({"reader": reader, **asdict(counts), "n": counts.n, "p": counts.p,
                        "p_interval": asdict(clopper_pearson(counts.fp, counts.tp + counts.fp)),
                        "abs_p_minus_half": counts.abs_p_minus_half, **_rates(counts),
                        "roc_auc": roc_auc(by_reader[reader], positive)})
    total = confusion(answers, positive)
    agreement = krippendorff_alpha(answers)  # nominal, all cases with >= 2 answers; kappa needs shared cases
    return {
        "readers": readers,
        "total": {**asdict(total), "n": total.n, "p": total.p,
                  "p_interval": asdict(clopper_pearson(total.fp, total.tp + total.fp)), "abs_p_minus_half": total.abs_p_minus_half,
                  "w_mae": weighted_mae(per_reader), **_rates(total), "fleiss_kappa": shared_case_kappa(answers),
                  "krippendorff_alpha": agreement.alpha, "krippendorff_units": agreement.n_units,
                  "n_readers": len(readers)},
    }


def score(answers: Sequence[Answer], by: str = "arm", positive: str = "synthetic") -> dict:
    """``{"positive": ..., "arms": {ARM: score_group(...)}}``; ``by="all"`` pools every arm as "all"."""
    if positive not in LABELS:
        raise ValueError(f"positive class must be one of {LABELS}, got {positive!r}")
    groups: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        groups[a.arm if by == "arm" else "all"].append(a)
    return {"positive": positive, "arms": {arm: score_group(groups[arm], positive) for arm in sorted(groups)}}

"""Power for any reading design from a pilot's U-statistic moments (pure maths).

The U-statistics variance of a reader-averaged AUC is sum_k C_k (M_k - M_none) over the seven kinds of
pairs of (reader, negative, positive) terms that share something (``u_statistics``). The differences
M_k - M_none belong to the readers and cases (they are (co)variances of the kernel); the weights C_k
belong to the design. So a pilot read in any design gives the differences, and the expected C_k of a
planned design - crossed, split-plot, or a random subset per reader - give its variance, as Gallas et
al. (2009) size studies in iMRMC. The power of the test against chance then follows as in Hillis,
Obuchowski & Berbaum (2011): noncentrality (AUC - 0.5)^2 / Var and Hillis' ddf from the expected
reader mean square, E[MS_R] = Var(one reader's AUC) - Cov(two readers' AUCs).

This is what plans a random-subset design, which the OR model cannot describe; on a crossed design it
agrees with the OR power of ``study_app.statistics.power`` up to how each scales the case variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from study_app.statistics.mrmc import hillis_df
from study_app.statistics.power import SampleSizeGrid, f_test_power, tost_power
from study_app.statistics.u_statistics import kernel_terms, moment_differences
from urcdm.errors import UserError

Kind = tuple[bool, bool, bool]  # shares (reader, negative, positive)
DESIGNS = ("crossed", "split-plot", "random")


@dataclass(frozen=True)
class PilotMoments:
    """M_k - M_none per kind of pair from a pilot arm, and the pilot's AUC (for the record)."""

    differences: dict[Kind, float]
    auc: float

    @classmethod
    def from_ratings(cls, ratings: np.ndarray, truth: np.ndarray) -> "PilotMoments":
        """From one arm's [reader, case] ratings (NaN: not read), any design."""
        terms = kernel_terms(ratings, truth)
        moments = moment_differences(terms, terms)
        if moments is None:
            raise UserError("the pilot has fewer than 2 readers or too few cases to estimate its moments")
        differences, _ = moments
        missing = [kind for kind in KINDS if kind not in differences]
        if missing:
            raise UserError("the pilot leaves some kind of pair unread (e.g. no reader read two cases of one "
                            "class); every reader needs at least 2 real and 2 synthetic cases")
        ws, w = terms
        return cls(differences, float(ws.sum() / w.sum()))


KINDS = [k for k in ((r, n, p) for r in (True, False) for n in (True, False) for p in (True, False))
          if k != (False, False, False)]


def _pair_counts(n0: float, n1: float, o0: float, o1: float) -> dict[Kind, float]:
    """Expected numbers of pairs of terms of two readers by what they share, when they share o0 of their
    n0 negatives and o1 of their n1 positives (for one reader with itself: o = n)."""
    return {(True, True): o0 * o1, (True, False): o0 * (n1 * n1 - o1),
            (False, True): (n0 * n0 - o0) * o1, (False, False): (n0 * n0 - o0) * (n1 * n1 - o1)}


def design_weights(design: str, readers: int, negatives: int, positives: int, groups: int = 1,
                   per_reader: int | None = None) -> tuple[dict[Kind, float], dict[Kind, float], dict[Kind, float]]:
    """Expected C_k of a design, and the weights of one reader's AUC with itself and of two readers' AUCs.

    crossed: every reader all cases; split-plot: ``groups`` equal groups, each its own block; random: each
    reader a balanced random ``per_reader`` subset (half real, half synthetic), drawn independently.
    """
    if design not in DESIGNS:
        raise UserError(f"design: expected one of {', '.join(DESIGNS)}, got {design!r}")
    if design == "random":
        if not per_reader or per_reader < 4 or per_reader % 2:
            raise UserError("a random design needs an even --per-reader of 4 or more (half real, half synthetic)")
        n0, n1 = min(per_reader // 2, negatives), min(per_reader // 2, positives)
    elif design == "split-plot":
        n0, n1 = negatives / groups, positives / groups
    else:
        n0, n1 = float(negatives), float(positives)
    same = _pair_counts(n0, n1, n0, n1)
    # ordered pairs of distinct readers and what their case sets share
    if design == "crossed":
        others = [(readers * (readers - 1), n0, n1)]
    elif design == "split-plot":
        per_group = readers / groups
        others = [(readers * (per_group - 1), n0, n1), (readers * (readers - per_group), 0.0, 0.0)]
    else:
        others = [(readers * (readers - 1), n0 * n0 / negatives, n1 * n1 / positives)]
    self_weights = {(True, *k): v / (n0 * n1) ** 2 for k, v in same.items()}
    cross_total = sum(count for count, _, _ in others)
    cross_weights = {(False, *k): 0.0 for k in same}
    for count, o0, o1 in others:
        for k, v in _pair_counts(n0, n1, o0, o1).items():
            cross_weights[(False, *k)] += count * v / (n0 * n1) ** 2 / cross_total
    # the mean of r readers' AUCs: Var = Var(one) / r + Cov(two) (r - 1) / r
    weights = {**{k: v / readers for k, v in self_weights.items()},
               **{k: v * (readers - 1) / readers for k, v in cross_weights.items()}}
    return weights, self_weights, cross_weights


def planned_variance(pilot: PilotMoments, design: str, readers: int, negatives: int, positives: int,
                     groups: int = 1, per_reader: int | None = None) -> tuple[float, float]:
    """(variance of the reader-averaged AUC, Hillis ddf) of the planned design."""
    weights, self_weights, cross_weights = design_weights(design, readers, negatives, positives, groups, per_reader)

    def combine(w: dict[Kind, float]) -> float:
        return sum(w.get(kind, 0.0) * d for kind, d in pilot.differences.items())

    variance = combine(weights)
    mean_square = combine(self_weights) - combine(cross_weights)  # E[MS_R]: one reader's var less the covariance
    ddf = max(hillis_df(readers * variance, mean_square, readers - 1), readers - 1.0)
    return float(variance), float(ddf)


def power_any(pilot: PilotMoments, test: str, effect: float, design: str, readers: int, negatives: int,
              positives: int, groups: int = 1, per_reader: int | None = None, alpha: float = 0.05,
              true_auc: float = 0.5) -> float:
    """Power of one arm's test against chance ("versus-chance", effect = the AUC) or of equivalence with chance
    ("equivalence", effect = the margin, readers' true AUC ``true_auc``) under the planned design."""
    variance, ddf = planned_variance(pilot, design, readers, negatives, positives, groups, per_reader)
    if not variance > 0:
        raise UserError("the pilot's moments give no positive variance for this design")
    if test == "versus-chance":
        return float(f_test_power(effect - 0.5, variance, ddf, alpha))
    if test == "equivalence":
        return float(tost_power(effect, true_auc, variance, ddf, alpha))
    raise UserError("a random design is planned for one arm: --auc or --margin, not --delta")


def random_design_grid(pilot: PilotMoments, test: str, effect: float, readers: Sequence[int],
                       per_reader: Sequence[int], pool: int, target: float = 0.8, alpha: float = 0.05,
                       true_auc: float = 0.5) -> SampleSizeGrid:
    """Power over readers x cases per reader for a balanced pool of ``pool`` cases, each reader their own random
    subset; per readers count the fewest (even) cases per reader up to the pool that reach ``target``."""
    if pool < 8 or pool % 2:
        raise UserError(f"--pool {pool}: an even pool of 8 or more cases (half real, half synthetic)")
    if not alpha < target < 1:
        raise UserError(f"target power must be in (alpha = {alpha}, 1), got {target}")
    too_many = [k for k in per_reader if k > pool]
    if too_many:
        raise UserError(f"{too_many[0]} cases per reader is more than the pool of {pool}")
    half = pool // 2

    def power(r: int, k: int) -> float:
        return power_any(pilot, test, effect, "random", r, half, half, per_reader=k, alpha=alpha, true_auc=true_auc)

    table = [{"readers": r, "cases": int(k), "power": power(r, k)} for r in readers for k in per_reader]
    needed = []
    for r in readers:
        reached = next((k for k in range(4, pool + 1, 2) if power(r, k) >= target), None)
        needed.append({"readers": r, "cases": reached})
    if all(row["cases"] is None for row in needed):
        best = max(power(r, pool) for r in readers)
        raise UserError(f"impossible target: power {target} is not reached with up to {max(readers)} readers each "
                        f"reading the whole pool of {pool}; the best reachable is {best:.3f}")
    return SampleSizeGrid(table, needed)

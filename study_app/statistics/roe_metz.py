"""MRMC ratings simulated from the Roe & Metz (1997) model, to calibrate the MRMC analyses (pure numpy).

The "generalised" Roe-Metz model of Gallas & Hillis (2014, J Med Imaging 1:031006): every random effect is
drawn independently per truth class d (0 = real / negative, 1 = synthetic / positive), each with its own
variance. Reader j, arm i, case k of class d:

    x = (mu + tau_i) d + R_dj + C_dk + RC_djk + TR_dij + TC_dik + TRC_dijk,     tau_0 = 0, tau_1 = tau.

The arm terms (TR, TC, TRC) are in every arm, as in Roe & Metz, so one arm on its own is the same model with
reader variance var_r + var_tr, case variance var_c + var_tc and reader x case variance var_rc + var_trc.

Defaults: one of the structures of Roe & Metz's own simulations, var_R = var_TR = 0.0055, var_C = var_TC = 0.3,
var_RC = var_TRC = 0.2 in both classes. The case terms add up to 1 per class, Roe & Metz's scale, so mu = 0.75
gives their AUC of about 0.70; the reader terms spread the readers' expected AUCs with SD 0.036
(``reader_auc_variance``), about the case-sampling SD of one reader's AUC on 100 + 100 cases, so that neither
reader nor case variability dominates an MRMC variance of a study of that size.

Population AUC (reader-averaged, one arm). Given reader j's effects, x_pos - x_neg for a random positive
and a random negative case is normal with mean mu_i + D_j, D_j = R_1j - R_0j + TR_1ij - TR_0ij, and variance
v_case = sum over both classes of var_c + var_tc + var_rc + var_trc, so reader j's AUC (the Mann-Whitney
kernel's expectation) is Phi((mu_i + D_j) / sqrt(v_case)). Averaging over D_j ~ N(0, v_reader),
v_reader = sum over both classes of var_r + var_tr: E Phi((a + D) / b) = P(b Z - D < a) = Phi(a / sqrt(b^2 +
v_reader)), so

    AUC_i = Phi(mu_i / sqrt(v_reader + v_case)),

which is also the expectation of the study's reader-averaged empirical AUC (continuous ratings: no ties),
whatever subset of cases each reader reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

Pair = tuple[float, float]  # (negative class, positive class)
_NORMAL = NormalDist()


@dataclass(frozen=True)
class RoeMetz:
    mu: float = 0.75  # separation of the positive class in arm 0
    tau: float = 0.0  # extra separation in arm 1 (arm 1's AUC is higher by ~ 0.24 tau at AUC ~ 0.7)
    var_r: Pair = (0.0055, 0.0055)
    var_c: Pair = (0.3, 0.3)
    var_rc: Pair = (0.2, 0.2)
    var_tr: Pair = (0.0055, 0.0055)
    var_tc: Pair = (0.3, 0.3)
    var_trc: Pair = (0.2, 0.2)

    def total_variance(self) -> float:
        """v_reader + v_case: the variance of x_pos - x_neg for a random reader, positive and negative."""
        return float(sum(sum(v) for v in (self.var_r, self.var_c, self.var_rc,
                                          self.var_tr, self.var_tc, self.var_trc)))


def population_auc(model: RoeMetz, arm: int = 0) -> float:
    """Phi((mu + tau arm) / sqrt(total variance)): the expected reader-averaged AUC of ``arm`` (see above)."""
    return _NORMAL.cdf((model.mu + model.tau * arm) / math.sqrt(model.total_variance()))


def mu_for_auc(model: RoeMetz, auc: float) -> float:
    """The mu that gives arm 0 the population AUC ``auc`` with the model's variances."""
    if not 0 < auc < 1:
        raise ValueError(f"AUC must be in (0, 1), got {auc}")
    return _NORMAL.inv_cdf(auc) * math.sqrt(model.total_variance())


def simulate(model: RoeMetz, readers: int, negatives: int, positives: int, rng: np.random.Generator,
             arms: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Fully crossed ratings [reader, arm, case] and truth [case] (negatives first, then positives)."""
    if arms not in (1, 2):
        raise ValueError(f"arms must be 1 or 2, got {arms}")
    counts = (negatives, positives)
    parts = []
    for d, n in enumerate(counts):
        reader = math.sqrt(model.var_r[d]) * rng.standard_normal((readers, 1, 1))
        case = math.sqrt(model.var_c[d]) * rng.standard_normal((1, 1, n))
        reader_case = math.sqrt(model.var_rc[d]) * rng.standard_normal((readers, 1, n))
        arm_reader = math.sqrt(model.var_tr[d]) * rng.standard_normal((readers, arms, 1))
        arm_case = math.sqrt(model.var_tc[d]) * rng.standard_normal((1, arms, n))
        arm_reader_case = math.sqrt(model.var_trc[d]) * rng.standard_normal((readers, arms, n))
        shift = d * (model.mu + model.tau * np.arange(arms))[None, :, None]
        parts.append(shift + reader + case + reader_case + arm_reader + arm_case + arm_reader_case)
    truth = np.repeat([False, True], counts)
    return np.concatenate(parts, axis=2), truth


def crossed_mask(readers: int, cases: int) -> np.ndarray:
    """Every reader reads every case."""
    return np.ones((readers, cases), dtype=bool)


def _split_class(indices: np.ndarray, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(indices), parts)


def split_plot_mask(readers: int, cases: int, groups: int, truth: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Split-plot: reader j in group j mod G (round-robin); each group reads its own block of cases, drawn at
    random with each class split as evenly as possible between the groups (sizes differ by at most 1)."""
    truth = np.asarray(truth, dtype=bool)
    if truth.size != cases:
        raise ValueError(f"truth has {truth.size} cases, expected {cases}")
    if not 2 <= groups <= readers:
        raise ValueError(f"{groups} groups for {readers} readers")
    negative = _split_class(np.flatnonzero(~truth), groups, rng)
    positive = _split_class(np.flatnonzero(truth), groups, rng)
    mask = np.zeros((readers, cases), dtype=bool)
    for j in range(readers):
        g = j % groups
        mask[j, negative[g]] = True
        mask[j, positive[g]] = True
    return mask


def random_subset_mask(readers: int, truth: np.ndarray, per_reader: int, rng: np.random.Generator) -> np.ndarray:
    """Each reader reads ``per_reader`` cases drawn at random, independently of the other readers: half of
    them negative (the odd one positive), so every reader's AUC has the same case mix."""
    truth = np.asarray(truth, dtype=bool)
    negative, positive = np.flatnonzero(~truth), np.flatnonzero(truth)
    want_negative = per_reader // 2
    want_positive = per_reader - want_negative
    if want_negative > negative.size or want_positive > positive.size or want_negative < 1:
        raise ValueError(f"{per_reader} cases per reader from {negative.size} negatives and {positive.size} "
                         "positives")
    mask = np.zeros((readers, truth.size), dtype=bool)
    for j in range(readers):
        mask[j, rng.choice(negative, want_negative, replace=False)] = True
        mask[j, rng.choice(positive, want_positive, replace=False)] = True
    return mask


def apply_mask(ratings: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ratings [reader, arm, case] with NaN where ``mask`` [reader, case] says the reader did not read."""
    return np.where(mask[:, None, :], ratings, np.nan)


def reader_auc_variance(model: RoeMetz, arm: int = 0, nodes: int = 64) -> float:
    """Var over readers of a reader's expected AUC Phi((mu_i + D) / sqrt(v_case)), D ~ N(0, v_reader): the OR
    model's reader variance of one arm (var_r + var_tr), by Gauss-Hermite quadrature over D."""
    v_reader = sum(model.var_r) + sum(model.var_tr)
    v_case = model.total_variance() - v_reader
    points, weights = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-z^2 / 2)
    weights = weights / weights.sum()
    cdf = np.vectorize(_NORMAL.cdf)
    aucs = cdf((model.mu + model.tau * arm + math.sqrt(v_reader) * points) / math.sqrt(v_case))
    mean = float(weights @ aucs)
    return float(weights @ (aucs - mean) ** 2)

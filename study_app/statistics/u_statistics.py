"""MRMC variance of reader-averaged ROC AUCs for any design: the U-statistics of Gallas et al. (pure maths).

Gallas (2006), Gallas, Bandos, Samuelson & Wagner (2009) and Gallas & Brown (2008) - the method of the
FDA's iMRMC - estimate the variance of the reader-averaged empirical AUC without assuming who read
what. Reader r's AUC is the mean of the kernel s(r, n, p) (1 when positive case p is rated above
negative case n, 1/2 for a tie) over the pairs that reader read; the reader-averaged AUC is the sum of
w(r, n, p) s(r, n, p) with w = 1 / (readers x that reader's pairs). Its square is a sum over *two*
such terms, and each product has the expectation of one of eight moments, by whether the two share the
reader, the negative case and the positive case. Estimating each moment by the (w w')-weighted mean of
the products of its kind, and the square of the mean by the moment that shares nothing, gives

    Var = sum over the seven sharing kinds k of  C_k (M_k - M_none),   C_k = sum of w w' over kind k,

an unbiased estimate for any pattern of reads: fully crossed, split-plot, or a random subset per reader.
The same sums over two arms' terms give their covariance, so two arms can be compared on any design.

Degrees of freedom: iMRMC's Satterthwaite-type ddf needs its full moment decomposition; here the
reader-level mean square of Hillis (2007) is used instead, ddf = (r Var)^2 / (MS_R^2 / (r - 1)), kept at
r - 1 or more as Hillis' truncation of Cov2 at 0 implies (benchmarks/bench_mrmc_calibration.py checks the
coverage this gives). The sums are done for all pairs at once by inclusion-exclusion over the eight
kinds (sums of products of marginal sums), so the cost is that of a few passes over [reader, neg, pos].
"""

from __future__ import annotations

from itertools import combinations, product

import numpy as np

from study_app.statistics.mrmc import hillis_df, t_test

# The subsets of (reader, negative, positive) a pair of terms can share; the last shares nothing.
SHARED = tuple(s for s in product((True, False), repeat=3))
NOTHING = (False, False, False)


def kernel_terms(ratings: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One arm's [reader, negative, positive] weighted kernel w*s and weights w (0 where not read).

    ``ratings`` is [reader, case] with NaN for a case the reader did not rate.
    """
    read = np.isfinite(ratings)
    neg, pos = ratings[:, ~truth], ratings[:, truth]
    pairs_read = read[:, ~truth][:, :, None] & read[:, truth][:, None, :]
    with np.errstate(invalid="ignore"):
        s = (pos[:, None, :] > neg[:, :, None]) + 0.5 * (pos[:, None, :] == neg[:, :, None])
    pairs = pairs_read.sum(axis=(1, 2))
    readers = int((pairs > 0).sum())
    w = np.zeros(pairs_read.shape)
    active = pairs > 0
    w[active] = pairs_read[active] / (readers * pairs[active])[:, None, None]
    return np.where(pairs_read, w * s, 0.0), w


def _at_least(x: np.ndarray, y: np.ndarray, shared: tuple[bool, bool, bool]) -> float:
    """Sum of x[a] y[b] over all pairs of index triples a, b that agree at least on ``shared`` axes."""
    free = tuple(axis for axis, same in enumerate(shared) if not same)
    return float((x.sum(axis=free) * y.sum(axis=free)).sum())


def _exact(x: np.ndarray, y: np.ndarray) -> dict[tuple[bool, bool, bool], float]:
    """Sum of x[a] y[b] over pairs that agree on exactly the ``shared`` axes (Moebius inversion)."""
    at_least = {s: _at_least(x, y, s) for s in SHARED}
    out = {}
    for s in SHARED:
        total = 0.0
        for t in SHARED:
            if all(ti or not si for si, ti in zip(s, t)):  # t contains s
                extra = sum(ti and not si for si, ti in zip(s, t))
                total += (-1) ** extra * at_least[t]
        out[s] = total
    return out


def moment_differences(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
                       ) -> tuple[dict[tuple[bool, bool, bool], float], dict[tuple[bool, bool, bool], float]] | None:
    """Per kind of pair (shared reader, negative, positive): M_k - M_none, the moment less the one that shares
    nothing, and C_k, the weight the design gives that kind; None when M_none cannot be estimated.

    The differences are what a study's variance is made of (``covariance``); ``study_app.statistics.
    design_power`` weighs a pilot's differences by another design's C_k to plan that design.
    """
    (ws_a, w_a), (ws_b, w_b) = a, b
    products, weights = _exact(ws_a, ws_b), _exact(w_a, w_b)
    if weights[NOTHING] <= 0:
        return None
    unshared = products[NOTHING] / weights[NOTHING]
    differences = {s: products[s] / weights[s] - unshared for s in SHARED if s != NOTHING and weights[s] > 0}
    return differences, weights


def covariance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float | None:
    """Unbiased covariance of two reader-averaged AUCs from their ``kernel_terms`` (variance when a is b).

    None when the moment that shares nothing has no terms (fewer than 2 readers, or no two pairs of
    cases apart), so the square of the mean cannot be estimated.
    """
    moments = moment_differences(a, b)
    if moments is None:
        return None
    differences, weights = moments
    return float(sum(weights[s] * d for s, d in differences.items()))


def reader_aucs(terms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Each reader's empirical AUC over the pairs they read (NaN for a reader with none)."""
    ws, w = terms
    weight = w.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, ws.sum(axis=(1, 2)) / weight, np.nan)


def _ddf(variance: float, reader_values: np.ndarray) -> float:
    """Hillis' ddf with r x Var as the denominator and the readers' spread as the mean square; at least r - 1
    (Hillis' truncation of Cov2 at 0 implies it), infinite when every reader agrees (then a z test)."""
    values = reader_values[np.isfinite(reader_values)]
    r = len(values)
    if r < 2:
        return np.inf
    return max(hillis_df(r * variance, values.var(ddof=1), r - 1), r - 1.0)


def interval(estimate: float, variance: float | None, df: float, null: float) -> dict:
    """``mrmc.t_test`` from a variance: SE and after None when the estimate is missing or not positive (an
    unbiased estimate can fall below 0)."""
    positive = variance is not None and variance > 0
    return t_test(estimate, np.sqrt(variance) if positive else np.nan, df, null)


def analyse(ratings: np.ndarray, truth: np.ndarray, readers=None, arms=None) -> dict:
    """Reader-averaged AUC per arm against 0.5 and the differences between arms, for any design.

    ``ratings`` is [reader, arm, case] with NaN where a reader did not rate a case in an arm. A reader
    counts in an arm when they read at least one (negative, positive) pair of it.
    """
    ratings = np.asarray(ratings, dtype=float)
    truth = np.asarray(truth, dtype=bool)
    r, t, _ = ratings.shape
    readers = [str(x) for x in (readers if readers is not None else range(1, r + 1))]
    arms = [str(x) for x in (arms if arms is not None else range(1, t + 1))]
    terms = [kernel_terms(ratings[:, i], truth) for i in range(t)]
    per_reader = np.array([reader_aucs(term) for term in terms])  # [arm, reader]
    estimates = np.nanmean(per_reader, axis=1)
    out = {"method": "u-statistics", "readers": readers, "arms": arms, "arms_results": [], "differences": [],
           "auc": {readers[j]: {arms[i]: (None if np.isnan(per_reader[i, j]) else float(per_reader[i, j]))
                                for i in range(t)} for j in range(r)}}
    variances = [covariance(term, term) for term in terms]
    for i in range(t):
        row = interval(estimates[i], variances[i], _ddf(variances[i] or 0.0, per_reader[i]), 0.5)
        out["arms_results"].append({"arm": arms[i], "readers": int(np.isfinite(per_reader[i]).sum()),
                                    "variance": variances[i], **row})
    for i, k in combinations(range(t), 2):
        cov = covariance(terms[i], terms[k])
        var = None if None in (variances[i], variances[k], cov) else variances[i] + variances[k] - 2 * cov
        both = np.isfinite(per_reader[i]) & np.isfinite(per_reader[k])
        ddf = _ddf(var or 0.0, (per_reader[i] - per_reader[k])[both]) if both.sum() > 1 else np.inf
        out["differences"].append({"arms": [arms[i], arms[k]], "covariance": cov, "variance": var,
                                   **interval(estimates[i] - estimates[k], var, ddf, 0.0)})
    return out

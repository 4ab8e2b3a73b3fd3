"""Obuchowski-Rockette (OR) MRMC analysis of empirical ROC AUCs, with Hillis' denominator df (pure maths).

Follows OR-DBM MRMC 2.5 / RJafroc ``StSignificanceTesting(method="OR")`` / MRMCaov ``mrmc()``:
reader x arm AUCs (trapezoidal = Mann-Whitney, ties 1/2), their error covariances over cases
(jackknife, DeLong or unbiased), then three analyses (random readers & random cases with Hillis
(2007, 2008) ddf; fixed readers & random cases; random readers & fixed cases), each with pairwise arm
differences and single-arm CIs (the single-treatment OR formulas, tested against AUC = 0.5).
Ratings are a float array ``[reader, arm, case]``; ``truth`` is a boolean ``[case]`` (True = positive).
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
from scipy import stats

from urcdm.errors import UserError

COV_METHODS = ("jackknife", "delong", "unbiased")
LEVEL = 0.95


def _psi(ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Kernel [group, positive, negative]: 1 when the positive case is rated higher, 1/2 for a tie."""
    pos, neg = ratings[:, truth][:, :, None], ratings[:, ~truth][:, None, :]
    return (pos > neg) + 0.5 * (pos == neg)


def auc_table(ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Empirical AUC per [reader, arm]."""
    r, t, c = ratings.shape
    return _psi(ratings.reshape(r * t, c), truth).mean(axis=(1, 2)).reshape(r, t)


def leave_one_out_aucs(ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """AUC [group, case] with that case left out; from row/column sums, so O(P*N) instead of O(C*P*N)."""
    psi = _psi(ratings, truth)
    n_pos, n_neg = psi.shape[1], psi.shape[2]
    total = psi.sum(axis=(1, 2))[:, None]
    out = np.empty(ratings.shape)
    out[:, truth] = (total - psi.sum(axis=2)) / ((n_pos - 1) * n_neg)
    out[:, ~truth] = (total - psi.sum(axis=1)) / (n_pos * (n_neg - 1))
    return out


def error_covariance(ratings: np.ndarray, truth: np.ndarray, method: str = "jackknife") -> np.ndarray:
    """Covariance of the AUC estimates over cases, as [reader, arm, reader, arm]."""
    r, t, c = ratings.shape
    flat = ratings.reshape(r * t, c)
    if method == "jackknife":
        loo = leave_one_out_aucs(flat, truth)
        dev = loo - loo.mean(axis=1, keepdims=True)
        cov = (c - 1) / c * dev @ dev.T
    elif method == "delong":
        psi = _psi(flat, truth)
        v10, v01 = psi.mean(axis=2), psi.mean(axis=1)  # placement values of positives / negatives
        cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    elif method == "unbiased":
        # Gallas, Pennello & Meyers (2007) U-statistic; the same algebra as MRMCaov's unbiased_balanced().
        psi = _psi(flat, truth)
        n_pos, n_neg = psi.shape[1], psi.shape[2]
        scores = psi.reshape(r * t, -1)
        pos_sums, neg_sums, sums = psi.sum(axis=2), psi.sum(axis=1), scores.sum(axis=1)
        delta = (n_pos * n_neg) ** 2 / (n_neg * (n_neg - 1) * n_pos * (n_pos - 1))
        cov = ((1 - delta) * np.outer(sums, sums)
               + delta * (pos_sums @ pos_sums.T + neg_sums @ neg_sums.T - scores @ scores.T)) / (n_pos * n_neg) ** 2
    else:
        raise UserError(f"covariance method {method!r} is not one of {', '.join(COV_METHODS)}")
    return cov.reshape(r, t, r, t)


def or_covariances(cov: np.ndarray) -> dict:
    """Var(error), Cov1 (same reader), Cov2 (same arm), Cov3 (neither), averaged over the design; None where
    the design has no such pair (Cov1/Cov3 need 2+ arms, Cov2/Cov3 need 2+ readers)."""
    r, t = cov.shape[:2]
    same_reader = np.eye(r, dtype=bool)[:, None, :, None]
    same_arm = np.eye(t, dtype=bool)[None, :, None, :]

    def mean(mask):
        mask = np.broadcast_to(mask, cov.shape)
        return float(cov[mask].mean()) if mask.any() else None

    return {"var_error": mean(same_reader & same_arm), "cov1": mean(same_reader & ~same_arm),
            "cov2": mean(~same_reader & same_arm), "cov3": mean(~same_reader & ~same_arm)}


def t_test(estimate: float, se: float, df: float, null: float = 0.0) -> dict:
    """CI and two-sided test; df = inf means normal (z) rather than t. Undefined statistics are None."""
    out = {"estimate": float(estimate), "se": None, "df": None if np.isinf(df) else float(df),
           "low": None, "high": None, "stat": None, "p": None}
    if not (np.isfinite(se) and se > 0):
        return out  # e.g. every reader gave the same AUC and the covariances vanish
    dist = stats.norm if np.isinf(df) else stats.t(df)
    half = dist.ppf(0.5 + LEVEL / 2) * se
    stat = (estimate - null) / se
    out.update(se=float(se), low=float(estimate - half), high=float(estimate + half), stat=float(stat),
               p=float(2 * dist.sf(abs(stat))))
    return out


def hillis_df(denominator: float, ms: float, df_ms: float) -> float:
    """Satterthwaite-type ddf of Hillis (2007): infinite when the mean square is 0 (then the test is a z test)."""
    return np.inf if ms <= 0 else denominator ** 2 / (ms ** 2 / df_ms)


def _global(stat: float | None, df1: int, df2: float, kind: str, **terms) -> dict:
    out = {"test": kind, "stat": stat, "df1": df1, "df2": None if np.isinf(df2) else df2, "p": None, **terms}
    if stat is not None and np.isfinite(stat):
        if kind == "chi2" or np.isinf(df2):
            out["p"] = float(stats.chi2.sf(stat * (1 if kind == "chi2" else df1), df1))
        else:
            out["p"] = float(stats.f.sf(stat, df1, df2))
    return out


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def analyse(ratings: np.ndarray, truth: np.ndarray, method: str = "jackknife",
            readers: Sequence[str] | None = None, arms: Sequence[str] | None = None) -> dict:
    ratings = np.asarray(ratings, dtype=float)
    truth = np.asarray(truth, dtype=bool)
    if ratings.ndim != 3 or truth.shape != ratings.shape[2:]:
        raise ValueError("ratings must be [reader, arm, case] and truth [case]")
    r, t, c = ratings.shape
    readers = [str(x) for x in (readers if readers is not None else range(1, r + 1))]
    arms = [str(x) for x in (arms if arms is not None else range(1, t + 1))]
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if min(n_pos, n_neg) < 2:
        raise UserError(f"{n_pos} positive and {n_neg} negative cases: the case-level variance needs at least "
                        "2 of each")
    if not np.isfinite(ratings).all():
        raise UserError("every reader must rate every case in every arm (missing or non-finite ratings)")

    auc = auc_table(ratings, truth)
    cov = error_covariance(ratings, truth, method)
    covs = or_covariances(cov)
    per_arm = [or_covariances(cov[:, i:i + 1, :, i:i + 1]) for i in range(t)]
    arm_mean, reader_mean, grand = auc.mean(axis=0), auc.mean(axis=1), auc.mean()
    ms_t = r * ((arm_mean - grand) ** 2).sum() / (t - 1) if t > 1 else None
    ms_r = t * ((reader_mean - grand) ** 2).sum() / (r - 1) if r > 1 else None
    ms_tr = (((auc - arm_mean - reader_mean[:, None] + grand) ** 2).sum() / ((t - 1) * (r - 1))
             if t > 1 and r > 1 else None)
    ms_r_arm = auc.var(axis=0, ddof=1) if r > 1 else np.full(t, np.nan)
    # The OR model truncates the reader-correlation terms at 0 (Hillis 2007): negative estimates are noise.
    cov2_arm = [max(a["cov2"], 0.0) if a["cov2"] is not None else 0.0 for a in per_arm]
    cov23 = max(covs["cov2"] - covs["cov3"], 0.0) if r > 1 and t > 1 else 0.0
    pairs = list(combinations(range(t), 2))

    def diff(i, k, se, df):
        return {"arms": [arms[i], arms[k]], **t_test(arm_mean[i] - arm_mean[k], se, df)}

    def arm_row(i, se, df, **terms):
        return {"arm": arms[i], **terms, **t_test(arm_mean[i], se, df, null=0.5)}

    results = {
        "method": method, "readers": readers, "arms": arms, "cases": c, "positives": n_pos, "negatives": n_neg,
        "auc": {readers[j]: {arms[i]: float(auc[j, i]) for i in range(t)} for j in range(r)},
        "arm_auc": {arms[i]: float(arm_mean[i]) for i in range(t)},
        "covariances": covs,
        "arm_covariances": {arms[i]: {"var_error": per_arm[i]["var_error"], "cov2": per_arm[i]["cov2"]}
                            for i in range(t)},
        "mean_squares": {"ms_t": ms_t, "ms_r": ms_r, "ms_tr": ms_tr,
                         "ms_r_arm": {arms[i]: None if r < 2 else float(ms_r_arm[i]) for i in range(t)}},
        "variance_components": _components(covs, ms_r, ms_tr, t),
        "notes": [],
    }

    # Fixed readers, random cases: only case sampling counts, so it works with a single reader.
    fixed_den = covs["var_error"] - (covs["cov1"] or 0.0) + (r - 1) * cov23
    frrc = {"global": None, "differences": [], "arms": [], "reader_differences": [], "reader_arms": []}
    if t > 1:
        frrc["global"] = _global(_ratio((t - 1) * ms_t, fixed_den), t - 1, np.inf, "chi2", denominator=fixed_den)
        frrc["differences"] = [diff(i, k, np.sqrt(2 / r * fixed_den), np.inf) for i, k in pairs]
        for j in range(r):
            for i, k in pairs:
                se = np.sqrt(max(cov[j, i, j, i] + cov[j, k, j, k] - 2 * cov[j, i, j, k], 0.0))
                frrc["reader_differences"].append({"reader": readers[j], "arms": [arms[i], arms[k]],
                                                   **t_test(auc[j, i] - auc[j, k], se, np.inf)})
    for i in range(t):
        var_i = per_arm[i]["var_error"]
        frrc["arms"].append(arm_row(i, np.sqrt((var_i + (r - 1) * cov2_arm[i]) / r), np.inf,
                                    var_error=var_i, cov2=per_arm[i]["cov2"]))
        for j in range(r):
            frrc["reader_arms"].append({"reader": readers[j], "arm": arms[i],
                                        **t_test(auc[j, i], np.sqrt(max(cov[j, i, j, i], 0.0)), np.inf, null=0.5)})
    results["fixed_readers_random_cases"] = frrc

    if r < 2:
        note = "random-reader results need 2 or more readers; only the fixed-reader analysis applies"
        results["notes"].append(note)
        results["random_readers_random_cases"] = results["random_readers_fixed_cases"] = None
        return results

    rrrc = {"global": None, "differences": [], "arms": []}
    rrfc = {"global": None, "differences": [], "arms": []}
    if t > 1:
        den = ms_tr + r * cov23
        ddf = hillis_df(den, ms_tr, (t - 1) * (r - 1))
        rrrc["global"] = _global(_ratio(ms_t, den), t - 1, ddf, "F", denominator=den)
        rrrc["differences"] = [diff(i, k, np.sqrt(2 / r * den), ddf) for i, k in pairs]
        rrfc["global"] = _global(_ratio(ms_t, ms_tr), t - 1, (t - 1) * (r - 1), "F", denominator=ms_tr)
        rrfc["differences"] = [diff(i, k, np.sqrt(2 / r * ms_tr), (t - 1) * (r - 1)) for i, k in pairs]
    for i in range(t):
        den_i = ms_r_arm[i] + r * cov2_arm[i]
        rrrc["arms"].append(arm_row(i, np.sqrt(den_i / r), hillis_df(den_i, ms_r_arm[i], r - 1),
                                    ms_r=float(ms_r_arm[i]), cov2=per_arm[i]["cov2"]))
        rrfc["arms"].append(arm_row(i, np.sqrt(ms_r_arm[i] / r), r - 1, ms_r=float(ms_r_arm[i])))
    results["random_readers_random_cases"] = rrrc
    results["random_readers_fixed_cases"] = rrfc
    return results


def _components(covs: dict, ms_r, ms_tr, t: int) -> dict:
    """OR variance components from the expected mean squares (Hillis 2005); ANOVA estimates, may be negative."""
    var, cov1, cov2, cov3 = (covs[k] for k in ("var_error", "cov1", "cov2", "cov3"))
    if ms_r is None:
        return {"var_r": None, "var_tr": None}
    if t == 1:
        return {"var_r": float(ms_r - var + cov2), "var_tr": None}
    var_tr = ms_tr - var + cov1 + cov2 - cov3
    var_r = (ms_r - var_tr - var - (t - 1) * cov1 + cov2 + (t - 1) * cov3) / t
    return {"var_r": float(var_r), "var_tr": float(var_tr)}

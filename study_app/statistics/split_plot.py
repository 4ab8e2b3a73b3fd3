"""Obuchowski-Rockette analysis of one arm read in a split-plot design (pure maths).

In a split-plot study the readers are split into groups and each group reads its own block of cases,
fully crossed within the group (Obuchowski, Gallas & Hillis 2012, Acad Radiol 19:1508-1517). The OR
model holds within every group with common reader variance, error variance and Cov2; groups share no
case, so their errors are independent. Pooling within groups:

    MS_R = sum_g sum_(j in g) (AUC_j - mean_g)^2 / (r - G),     E[MS_R] = var_R + var_error - Cov2,
    Cov2 = the within-group Cov2 estimates averaged over reader pairs, truncated at 0 (Hillis 2007),
    Var(mean AUC) = (r (var_R + var_error) + sum_g r_g (r_g - 1) Cov2) / r^2
                  = MS_R / r + Cov2 sum_g r_g^2 / r^2,

with Hillis' denominator df (r Var)^2 / (MS_R^2 / (r - G)), at least r - G. It applies when every
group has 2 or more readers and 2 or more cases of each class; ``blocks`` says what the design is.
"""

from __future__ import annotations

import numpy as np

from study_app.statistics.mrmc import (
    auc_table,
    error_covariance,
    hillis_df,
    or_covariances,
)
from study_app.statistics.u_statistics import interval


def blocks(read: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The (readers, cases) index blocks of a split-plot pattern ``read`` [reader, case], or None.

    Split-plot: the readers who read anything fall into 2 or more groups by the exact set of cases
    they read, and those sets do not overlap.
    """
    groups: dict[bytes, list[int]] = {}
    for j in np.flatnonzero(read.any(axis=1)):
        groups.setdefault(read[j].tobytes(), []).append(int(j))
    if len(groups) < 2:
        return None
    sets = [read[members[0]] for members in groups.values()]
    if np.any(np.sum(sets, axis=0) > 1):
        return None
    return [(np.array(members), np.flatnonzero(case_set)) for members, case_set in zip(groups.values(), sets)]


def why_not(parts: list[tuple[np.ndarray, np.ndarray]], truth: np.ndarray) -> str | None:
    """Why the split-plot OR analysis does not apply to these blocks (None when it does)."""
    for g, (readers, cases) in enumerate(parts, start=1):
        if len(readers) < 2:
            return f"group {g} has {len(readers)} reader; each group needs 2 or more"
        positives = int(truth[cases].sum())
        if min(positives, len(cases) - positives) < 2:
            return f"group {g} has {positives} synthetic and {len(cases) - positives} real cases; each needs 2 or more"
    return None


def analyse_arm(ratings: np.ndarray, truth: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]],
                method: str = "jackknife") -> dict:
    """One arm's reader-averaged AUC against 0.5; ``ratings`` [reader, case], ``parts`` from ``blocks``."""
    aucs, squares, cov2_sum, cov2_pairs, sizes = [], 0.0, 0.0, 0, []
    for readers, cases in parts:
        sub = ratings[np.ix_(readers, cases)][:, None, :]
        group_truth = truth[cases]
        group_aucs = auc_table(sub, group_truth)[:, 0]
        covs = or_covariances(error_covariance(sub, group_truth, method))
        r_g = len(readers)
        aucs.extend(group_aucs)
        squares += float(((group_aucs - group_aucs.mean()) ** 2).sum())
        cov2_sum += r_g * (r_g - 1) * covs["cov2"]
        cov2_pairs += r_g * (r_g - 1)
        sizes.append(r_g)
    r, groups = len(aucs), len(parts)
    ms_r = squares / (r - groups)
    cov2 = max(cov2_sum / cov2_pairs, 0.0)
    variance = ms_r / r + cov2 * sum(n * n for n in sizes) / r ** 2
    ddf = max(hillis_df(r * variance, ms_r, r - groups), r - groups)
    return {"groups": groups, "readers_per_group": sizes, "ms_r": ms_r, "cov2": cov2, "variance": variance,
            **interval(float(np.mean(aucs)), variance, ddf, 0.5)}

"""MRMC of reader-averaged ROC AUCs for any reading design: the analyses that apply, side by side (pure).

``analyse_any`` takes ratings [reader, arm, case] with NaN where a reader did not rate a case in an arm,
and says per arm what the design is:

- crossed: every reader of the arm rated every case of it. The Obuchowski-Rockette analysis
  (``study_app.statistics.mrmc``) is the headline; the U-statistics of Gallas (``u_statistics``) are
  reported beside it (on crossed data they equal OR with the unbiased covariance before truncation).
- split-plot: groups of readers, each reading its own block of cases. The U-statistics are the headline
  and the split-plot OR analysis (``split_plot``) is reported beside them where it applies.
- partial: any other pattern (each reader a random subset). The U-statistics.

When the whole array is crossed the result is exactly ``mrmc.analyse``'s, extended with ``design``,
``u_statistics`` and ``split_plot``; otherwise the same layout is filled from the analyses that apply
(``random_readers_random_cases.arms[i]`` with ``estimate``, ``se``, ``df``, ``low``, ``high``, ``p``, and the
arm differences from the U-statistics); the fixed-reader analysis holds the arms crossed on their own
(None where there are none), and the fixed-case analysis is None.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from study_app.statistics import split_plot, u_statistics
from study_app.statistics.mrmc import analyse as analyse_crossed

OR_ANALYSIS = "OR (Hillis ddf)"
U_ANALYSIS = "U-statistics (Gallas)"
SPLIT_PLOT_ANALYSIS = "split-plot OR"


def arm_design(read: np.ndarray) -> str:
    """crossed, split-plot or partial, from the arm's [reader, case] read pattern (readers and cases
    that appear in it only)."""
    read = read[read.any(axis=1)][:, read.any(axis=0)]
    if read.all():
        return "crossed"
    return "split-plot" if split_plot.blocks(read) is not None else "partial"


def analyse_any(ratings: np.ndarray, truth: np.ndarray, method: str = "jackknife",
                readers: Sequence[str] | None = None, arms: Sequence[str] | None = None) -> dict:
    ratings = np.asarray(ratings, dtype=float)
    truth = np.asarray(truth, dtype=bool)
    r, t, c = ratings.shape
    readers = [str(x) for x in (readers if readers is not None else range(1, r + 1))]
    arms = [str(x) for x in (arms if arms is not None else range(1, t + 1))]
    read = np.isfinite(ratings)
    designs = [arm_design(read[:, i]) for i in range(t)]
    ustat = u_statistics.analyse(ratings, truth, readers, arms)
    split = [_split_plot(ratings[:, i], truth, method) if designs[i] == "split-plot" else None for i in range(t)]
    whole = "crossed" if read.all() else ("split-plot" if set(designs) == {"split-plot"} else
                                          "crossed per arm" if set(designs) == {"crossed"} else "partial")
    extra = {"design": whole, "arm_designs": dict(zip(arms, designs)), "u_statistics": ustat,
             "split_plot": {arms[i]: split[i] for i in range(t) if split[i] is not None} or None}
    if read.all():
        result = analyse_crossed(ratings, truth, method, readers, arms)
        for row in result["random_readers_random_cases"]["arms"] if result["random_readers_random_cases"] else []:
            row["analysis"] = OR_ANALYSIS
        return {**result, **extra}

    arm_rows, fixed_rows, notes = [], [], []
    for i in range(t):
        if designs[i] == "crossed":
            random_row, fixed_row = _crossed_arm(ratings[:, i], truth, method, readers, arms[i])
            fixed_rows.append(fixed_row)
            if random_row is None:  # one reader: the fixed-reader row only, under its own heading
                notes.append(f"arm {arms[i]!r}: random-reader results need 2 or more readers; only the fixed-reader "
                             f"analysis applies")
                continue
            row = random_row
        else:
            row = {"arm": arms[i], "analysis": U_ANALYSIS, **_u_row(ustat["arms_results"][i])}
            if split[i] is not None and "reason" in split[i]:
                notes.append(f"arm {arms[i]!r}: split-plot OR does not apply: {split[i]['reason']}")
        arm_rows.append(row)
    if whole == "crossed per arm":
        notes.append("each arm is fully crossed on its own cases, but the arms do not share their cases (or readers): "
                     "each arm has its OR analyses, and the arms are compared by the U-statistics (Gallas) only")
    else:
        notes.append("not every reader rated every case, so the arms are compared by the U-statistics (Gallas) only; "
                     "the fixed-reader and fixed-case OR analyses need a fully crossed design (given per arm where "
                     "an arm is crossed on its own)")
    differences = [{"analysis": U_ANALYSIS, "arms": d["arms"], **_u_row(d)} for d in ustat["differences"]]
    random_part = {"global": None, "arms": arm_rows, "differences": differences} if arm_rows else None
    fixed_part = {"global": None, "arms": fixed_rows, "differences": []} if fixed_rows else None
    aucs = ustat["auc"]
    return {
        "method": method, "readers": readers, "arms": arms, "cases": c,
        "positives": int(truth.sum()), "negatives": int((~truth).sum()),
        "auc": aucs, "arm_auc": {row["arm"]: row["estimate"] for row in ustat["arms_results"]},
        "covariances": None, "arm_covariances": None, "mean_squares": None, "variance_components": None,
        "fixed_readers_random_cases": fixed_part, "random_readers_fixed_cases": None,
        "random_readers_random_cases": random_part,
        "notes": notes, **extra}


def _u_row(row: dict) -> dict:
    return {k: row[k] for k in ("estimate", "se", "df", "low", "high", "stat", "p")}


def _crossed_arm(ratings: np.ndarray, truth: np.ndarray, method: str, readers: list[str],
                 arm: str) -> tuple[dict | None, dict]:
    """The OR single-arm rows, (random readers or None with one reader, fixed readers), for an arm
    that is crossed among its own readers and cases."""
    who, which = np.isfinite(ratings).any(axis=1), np.isfinite(ratings).any(axis=0)
    sub = ratings[np.ix_(who, which)][:, None, :]
    result = analyse_crossed(sub, truth[which], method, [x for x, keep in zip(readers, who) if keep], [arm])
    fixed = {**result["fixed_readers_random_cases"]["arms"][0], "analysis": f"{OR_ANALYSIS}, fixed readers"}
    if result["random_readers_random_cases"] is None:
        return None, fixed
    return {**result["random_readers_random_cases"]["arms"][0], "analysis": OR_ANALYSIS}, fixed


def _split_plot(ratings: np.ndarray, truth: np.ndarray, method: str) -> dict:
    read = np.isfinite(ratings)
    parts = split_plot.blocks(read)
    reason = split_plot.why_not(parts, truth)
    if reason:
        return {"reason": reason}
    return {"analysis": SPLIT_PLOT_ANALYSIS, **split_plot.analyse_arm(ratings, truth, parts, method)}


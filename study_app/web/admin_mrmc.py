"""The organiser's MRMC section: per arm, the reader-averaged ROC AUC with its 95% CI, the design it used,
the readers' ROC curves, and the ratings as a CSV for `urcdm-study mrmc` or R (Streamlit; maths in
study_app.statistics.mrmc_answers and study_app.statistics.mrmc)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from study_app.statistics.mrmc import COV_METHODS
from study_app.statistics.mrmc_answers import (
    ArmSelection,
    arm_mrmc,
    compare_arms,
    roc_points,
    select_arm_designs,
)
from study_app.statistics.power import power_reached
from study_app.statistics.records import natural_key
from study_app.web.exports import DOWNLOADS, StudyResults, download_url, mrmc_answers

TITLE = "Reader-averaged ROC AUC (MRMC)"
DOWNLOAD = "mrmc-ratings.csv"


def mrmc_section(results: StudyResults, token: str) -> None:
    st.subheader(TITLE)
    st.caption("The reader-averaged empirical ROC AUC (positive = synthetic; rating = answer and confidence, "
               "real-sure 1 … synthetic-sure 10) from every answer: Obuchowski–Rockette with Hillis degrees of freedom "
               "where every reader read every case of the arm, the U-statistics of Gallas et al. (iMRMC's method) "
               "for any other design, the split-plot OR analysis beside them where readers read in groups. The "
               "test is against AUC = 0.5: readers who cannot tell real from synthetic.")
    left, right = st.columns(2)
    method = left.radio("Covariance over cases", COV_METHODS, horizontal=True, key="mrmc-cov",
                        help="jackknife (OR-DBM, RJafroc default), DeLong, or the unbiased U-statistic (MRMCaov)")
    # Every answer counts in any design; this shows the finished readers' answers alone.
    only_finished = right.checkbox("Finished readers only", key="mrmc-finished")
    used = mrmc_answers(results, only_finished)
    if not used:
        st.info("No finished reader yet.")
        return
    selections = select_arm_designs(used)
    for selection in selections:
        _arm(selection, method)
    comparison, why = compare_arms(selections, method)
    if comparison is None:
        st.caption(f"Arms compared: no; {why}.")
    else:
        _differences(comparison, why)
    if any(selection.design is not None for selection in selections):
        st.link_button(DOWNLOADS[DOWNLOAD][0], download_url(DOWNLOAD, token, finished_only=only_finished))
        st.caption("The ratings used above (reader, arm, case, truth 1 = synthetic, rating). "
                   "`urcdm-study mrmc FILE --arm ARM --cov METHOD` reproduces an arm's numbers; in R, MRMCaov's "
                   "`mrmc(empirical_auc(truth, rating), arm, reader, case, data)` takes the same table.")


def _arm(selection: ArmSelection, method: str) -> None:
    st.markdown(f"**{selection.arm}**")
    summary = arm_mrmc(selection, method)
    if summary is None:
        st.info(f"{selection.arm}: no MRMC result: {selection.reason}. {len(selection.readers)} reader(s), "
                f"{selection.answers} answers in this arm.")
        return
    cols = st.columns(3)
    cols[0].metric("Reader-averaged AUC", _fmt(summary["estimate"]), help=summary["analysis"])
    cols[1].metric("95 % CI", _ci(summary))
    cols[2].metric("p (H0: AUC = 0.5)", _fmt(summary["p"], 4))
    df = "normal (z)" if summary["df"] is None else f"df {summary['df']:.1f}"
    st.caption(f"{summary['analysis']}: {summary['estimator']}, {method} covariance, {df}. Design: {summary['design']}, "
               f"{summary['readers']} reader(s), {summary['cases']} cases ({summary['positives']} synthetic, "
               f"{summary['negatives']} real); all {summary['answers_used']} answers of the arm used.")
    beside = _beside(summary)
    if beside:
        st.caption("Beside it: " + "; ".join(beside) + ".")
    reached = power_reached(summary["se"], summary["df"])
    if reached:
        st.caption(f"Power reached with this SE: {reached['versus_chance']:.2f} to detect a true AUC of "
                   f"{reached['auc']:.2f} against chance; {reached['equivalence']:.2f} to show readers within "
                   f"±{reached['margin']:.2f} of chance if they are at chance (two one-sided tests, α "
                   f"{reached['alpha']:g}). `urcdm-study power` plans the readers and cases for a target.")
    for note in summary["notes"]:
        st.caption(f"Note: {note}.")
    st.altair_chart(roc_chart(pd.DataFrame(roc_points(selection.design)), summary))


def _beside(summary: dict) -> list[str]:
    """The other analyses of the same answers, where they apply: the U-statistics beside OR, the split-plot OR
    beside the U-statistics."""
    out = []
    ustat, split = summary["u_statistics"], summary["split_plot"]
    if not summary["estimator"].startswith("U-statistics"):
        out.append(f"U-statistics (Gallas) {_fmt(ustat['estimate'])}, 95 % CI {_ci(ustat)}")
    if split and "reason" not in split:
        out.append(f"split-plot OR ({split['groups']} groups) {_fmt(split['estimate'])}, 95 % CI {_ci(split)}")
    elif split:
        out.append(f"split-plot OR does not apply: {split['reason']}")
    return out


def roc_chart(points: pd.DataFrame, summary: dict) -> alt.LayerChart:
    """Each reader's empirical ROC curve (steps in threshold order), the chance diagonal, the AUC in the title."""
    points = points.assign(step=points.groupby("reader").cumcount(),
                           called_synthetic=[("none" if t == float("inf") else f"rating ≥ {t:g}")
                                             for t in points["threshold"]]).drop(columns=["threshold"])
    auc = {reader: round(value, 3) for reader, value in summary["reader_auc"].items()}
    points["reader_auc"] = points["reader"].map(auc)
    order = sorted(points["reader"].unique(), key=natural_key)
    axis = alt.Scale(domain=[0, 1])
    base = alt.Chart(points).encode(
        x=alt.X("fpr:Q", scale=axis, title="false positive rate (real called synthetic)"),
        y=alt.Y("tpr:Q", scale=axis, title="true positive rate (synthetic called synthetic)"),
        color=alt.Color("reader:N", sort=order), order="step:Q")
    curves = base.mark_line(interpolate="linear") + base.mark_point(filled=True).encode(
        tooltip=["reader", "reader_auc", "called_synthetic", "fpr", "tpr"])
    chance = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="grey").encode(
        x="x:Q", y="y:Q")
    title = f"{summary['arm']}: reader-averaged AUC {_fmt(summary['estimate'])}, 95 % CI {_ci(summary)}"
    return (chance + curves).properties(title=title, width=360, height=360)


def _differences(result: dict, how: str) -> None:
    st.markdown("**Arm differences**")
    st.caption(f"Random readers, random cases; {how}.")
    part = result["random_readers_random_cases"] or result["fixed_readers_random_cases"]
    st.dataframe(pd.DataFrame([{"arms": " − ".join(d["arms"]), "difference": d["estimate"], "low": d["low"],
                                "high": d["high"], "p": d["p"]} for d in part["differences"]]), hide_index=True)


def _ci(summary: dict) -> str:
    return "undefined" if summary["low"] is None else f"{summary['low']:.3f} to {summary['high']:.3f}"


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"

"""The organiser's view (behind the admin secret): progress, the Table-1 results, plots and exports.

Downloads are links to the study's own route (``study_app.web.exports``), which serves them to this
organiser session only; Streamlit's download buttons would put the truth at an open ``/media/`` address.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from study_app.preparation.prepared import PreparedStudy
from study_app.statistics.agreement import alpha_per_arm
from study_app.statistics.records import natural_key
from study_app.statistics.scoring import score
from study_app.store.database import AnswerStore
from study_app.web.admin_mrmc import mrmc_section
from study_app.web.exports import DOWNLOADS, download_url, study_results
from study_app.web.tables import (
    confusion_rows,
    display_progress,
    display_results,
    result_rows,
)


def page(prepared: PreparedStudy, store: AnswerStore, token: str) -> None:
    study = prepared.study
    st.title(f"Organiser view: {study.title}")
    positive = st.session_state.get("positive", "synthetic")
    # Totals, like the paper's, count finished readers only: a half-read study weighs readers unevenly.
    results = study_results(prepared, store, positive)
    left, middle, right = st.columns(3)
    left.metric("Answers", len(results.stored))
    middle.metric("Readers started", sum(1 for row in results.progress if row["answered"]))
    right.metric("Readers finished", len(results.finished))

    progress_tab, results_tab, plots_tab, export_tab = st.tabs(["Progress", "Results", "Plots", "Export"])
    with progress_tab:
        _progress(results.progress)
    if not results.stored:
        results_tab.info("No answers yet.")
        return
    results_tab.radio("Positive class (answered …)", ["synthetic", "real"], horizontal=True, key="positive")
    with results_tab:
        if results.result is not None:
            _results(results.result, results.rows)
        else:
            st.info("No reader has finished yet; totals count finished readers only.")
        if results.partial:
            st.subheader("Readers still reading (not in the totals)")
            partial_rows = [row for row in result_rows(score(results.partial, by="arm", positive=positive))
                            if row["reader"] != "total"]
            st.dataframe(display_results(partial_rows, with_arm=True), hide_index=True)
        _agreement(alpha_per_arm(results.every))  # over every answer: unfinished readers too
        mrmc_section(results, token)
    with plots_tab:
        if results.answers:
            _plots(results.rows, confusion_rows(results.answers))
        else:
            st.info("Plots appear when a reader has finished.")
    with export_tab:
        for name in ("answers.csv", "results.csv", "results.json") if results.result is not None else ("answers.csv",):
            st.link_button(DOWNLOADS[name][0], download_url(name, token, positive))
        st.caption(f"Answers are stored in {prepared.store_path}; `urcdm-study score` scores the raw CSV the same way. "
                   "Cells a spreadsheet would run as a formula (a comment starting with =, +, - or @) are exported "
                   "with a leading ' so that they show as text.")


def _progress(rows: list[dict]) -> None:
    if not rows:
        st.info("No readers yet.")
        return
    st.dataframe(display_progress(rows), hide_index=True, column_config={
        "done": st.column_config.ProgressColumn("done", min_value=0.0, max_value=1.0, format="percent")})


def _results(result: dict, rows: list[dict]) -> None:
    for arm, group in result["arms"].items():
        total = group["total"]
        st.subheader(arm)
        cols = st.columns(4)
        cols[0].metric("w-MAE", _fmt(total["w_mae"]))
        cols[1].metric("Accuracy", _fmt(total["accuracy"]["estimate"]),
                       help=f"95 % CI {_fmt(total['accuracy']['low'])} to {_fmt(total['accuracy']['high'])}")
        cols[2].metric("Binomial p (accuracy vs 0.5)", _fmt(total["binomial_p_accuracy"], 4))
        cols[3].metric("Fleiss κ", _fmt(total["fleiss_kappa"]))
        st.dataframe(display_results([row for row in rows if row["arm"] == arm]), hide_index=True)


def _agreement(per_arm: dict) -> None:
    st.subheader("Inter-reader agreement (all readers, finished or not)")
    for col, (arm, agreement) in zip(st.columns(len(per_arm)), per_arm.items()):
        col.metric(f"{arm}: Krippendorff α", _fmt(agreement.alpha),
                   help=f"{agreement.n_units} cases answered by two or more readers, {agreement.n_pairable} answers")
    st.caption("Krippendorff's α (nominal) includes unfinished readers and handles missing answers: readers may "
               "see different cases, and every case answered by at least two readers counts. Undefined (–) until "
               "two readers share a case, or while every shared answer is the same. Fleiss' κ above counts finished "
               "readers only, on the cases they all answered.")


def _plots(rows: list[dict], cells: list[dict]) -> None:
    readers = pd.DataFrame([row for row in rows if row["reader"] != "total" and row["p"] is not None])
    if not readers.empty:
        st.subheader("Per-reader p = FP / (TP + FP), 95 % Clopper–Pearson interval (0.5: cannot tell)")
        st.altair_chart(reader_chart(readers))
    st.subheader("Confusion matrix (all readers)")
    heat = alt.Chart().encode(x=alt.X("answer:N", title="answered"), y=alt.Y("truth:N", title="truth"))
    cells_chart = alt.layer(heat.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"))),
                            heat.mark_text(fontSize=16).encode(text="count:Q"), data=pd.DataFrame(cells))
    st.altair_chart(cells_chart.properties(width=220, height=180).facet(column="arm:N"))


def reader_chart(readers: pd.DataFrame) -> alt.FacetChart:
    """Each reader's p with its interval, readers in natural order, and the 0.5 line across each panel."""
    order = sorted(readers["reader"].unique(), key=natural_key)
    base = alt.Chart().encode(y=alt.Y("reader:N", title=None, sort=order))
    layers = alt.layer(
        base.mark_rule().encode(x=alt.X("p_low:Q", scale=alt.Scale(domain=[0, 1]), title="p"), x2="p_high:Q"),
        base.mark_point(filled=True, size=70).encode(x="p:Q", tooltip=["reader", "tp", "fp", "p", "p_low", "p_high"]),
        # No y encoding: one rule the full height of the panel, not a stub per reader.
        alt.Chart().mark_rule(strokeDash=[4, 4], color="grey").encode(x=alt.datum(0.5)),
        data=readers)
    return layers.properties(height=max(80, 28 * readers["reader"].nunique())).facet(row="arm:N")


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"

"""The organiser's view (behind the admin secret): progress, the Table-1 results, plots and exports."""

from __future__ import annotations

import json
from datetime import datetime

import altair as alt
import pandas as pd
import streamlit as st

from study_app.admin_mrmc import mrmc_section
from study_app.agreement import alpha_per_arm
from study_app.prepare import PreparedStudy
from study_app.scoring import score
from study_app.store import AnswerStore
from study_app.tables import (RESULT_COLUMNS, as_answers, confusion_rows, finished_readers, natural_key, progress_rows,
                              result_rows, to_csv)


def page(prepared: PreparedStudy, store: AnswerStore) -> None:
    study = prepared.study
    st.title(f"Organiser view: {study.title}")
    stored = store.all_answers()
    assigned = {reader: prepared.reader_cases(reader) for reader in study.readers}
    progress = progress_rows(assigned, stored)
    left, middle, right = st.columns(3)
    left.metric("Answers", len(stored))
    middle.metric("Readers started", sum(1 for row in progress if row["answered"]))
    finished = finished_readers(progress)
    right.metric("Readers finished", len(finished))

    progress_tab, results_tab, plots_tab, export_tab = st.tabs(["Progress", "Results", "Plots", "Export"])
    with progress_tab:
        _progress(progress)
    if not stored:
        results_tab.info("No answers yet.")
        return
    positive = results_tab.radio("Positive class (answered …)", ["synthetic", "real"], horizontal=True, key="positive")
    # Totals, like the paper's, count finished readers only: a half-read study weighs readers unevenly.
    every = as_answers(stored)
    answers = [a for a in every if a.reader in finished]
    partial = [a for a in every if a.reader not in finished]
    rows, result = [], None
    with results_tab:
        if answers:
            result = score(answers, by="arm", positive=positive)
            rows = result_rows(result)
            _results(result, rows)
        else:
            st.info("No reader has finished yet; totals count finished readers only.")
        if partial:
            st.subheader("Readers still reading (not in the totals)")
            partial_rows = [row for row in result_rows(score(partial, by="arm", positive=positive)) if row["reader"] != "total"]
            st.dataframe(pd.DataFrame(partial_rows), hide_index=True)
        _agreement(alpha_per_arm(every))  # over every answer: unfinished readers too
        mrmc_section(every, finished)
    with plots_tab:
        if answers:
            _plots(rows, confusion_rows(answers))
        else:
            st.info("Plots appear when a reader has finished.")
    with export_tab:
        stamp = datetime.now().strftime("%Y%m%d-%H%M")
        st.download_button("Raw answers (CSV)", store.csv_text(), f"answers-{stamp}.csv", "text/csv", key="dl-answers")
        if result is not None:
            st.download_button("Results table (CSV)", to_csv(rows, RESULT_COLUMNS), f"results-{stamp}.csv", "text/csv",
                               key="dl-results")
            st.download_button("Results (JSON)", json.dumps(result, indent=2), f"results-{stamp}.json",
                               "application/json", key="dl-json")
        st.caption(f"Answers are stored in {prepared.store_path}; `urcdm-study score` scores the raw CSV the same way.")


def _progress(rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    if frame.empty:
        st.info("No readers yet.")
        return
    frame["last_answer"] = pd.to_datetime(frame["last_answer"], unit="s")
    st.dataframe(frame, hide_index=True, column_config={
        "done": st.column_config.ProgressColumn("done", min_value=0.0, max_value=1.0, format="percent"),
        "median_seconds": st.column_config.NumberColumn("median s / case", format="%.1f")})


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
        table = pd.DataFrame([row for row in rows if row["arm"] == arm]).drop(columns=["arm"])
        st.dataframe(table, hide_index=True)


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

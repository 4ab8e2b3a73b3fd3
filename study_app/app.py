"""The reader's pages (Streamlit): log in, read the instructions, answer case after case.

Streamlit forgets everything on a refresh, so nothing the study depends on lives in the session: each
answer is committed to SQLite when its button is pressed, and the position is rebuilt from the
database on every run (the first case of the reader's order without an answer). A signed session
token in the URL lets a refreshed page carry on without logging in again. The page only ever holds
the opaque case id and its image URL: arm, truth and source stay on the server.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import streamlit as st

from study_app import admin
from study_app.access import admin_secret_ok, reader_from_token, session_token, verify_secret
from study_app.prepare import MANIFEST, PreparedStudy, open_prepared
from study_app.store import AnswerStore
from study_app.viewer import VIEWER_HEIGHT, viewer_html
from urcdm.errors import UserError

ANSWER_LABELS = {"real": "Real", "synthetic": "Synthetic"}
CONFIDENCE_HELP = "1 = guessing, 5 = certain"


@st.cache_resource(show_spinner=False)
def _prepared(workdir: str, manifest_mtime: float, study_mtime: float) -> PreparedStudy:
    return open_prepared(Path(workdir))


@st.cache_resource(show_spinner=False)
def _store(path: str) -> AnswerStore:
    return AnswerStore(path)


@st.cache_data(show_spinner=False)
def _study_file(manifest: str, manifest_mtime: float) -> str | None:
    return json.loads(Path(manifest).read_text()).get("study_file")


def _mtime(path: Path | str | None) -> float:
    return Path(path).stat().st_mtime if path and Path(path).exists() else 0.0


def _load(workdir: Path) -> PreparedStudy:
    """Reloaded when the cases or the study file change, so edited codes or instructions take effect."""
    manifest = workdir / MANIFEST
    if not manifest.exists():
        return open_prepared(workdir)  # raises the "not a prepared study" error
    study_file = _study_file(str(manifest), _mtime(manifest))
    return _prepared(str(workdir), _mtime(manifest), _mtime(study_file))


def main(workdir: Path) -> None:
    st.set_page_config(page_title="Reader study", layout="wide", initial_sidebar_state="collapsed")
    try:
        prepared = _load(workdir)
    except UserError as exc:
        st.error(f"error: {exc}")
        st.stop()
    store = _store(str(prepared.store_path))
    if st.session_state.get("admin"):
        _sidebar_logout()
        admin.page(prepared, store)
        return
    reader = _current_reader(prepared)
    if reader is None:
        login_page(prepared)
    else:
        _sidebar_logout()
        reader_page(prepared, store, reader)


def _current_reader(prepared: PreparedStudy) -> str | None:
    reader = st.session_state.get("reader")
    if reader is None and "session" in st.query_params:
        reader = reader_from_token(prepared.key, st.query_params["session"])
        if reader is not None and _reader_allowed(prepared, reader):
            st.session_state.reader = reader
        else:
            reader = None
    return reader


def _reader_allowed(prepared: PreparedStudy, reader: str) -> bool:
    return prepared.study.open_enrolment or reader in prepared.study.readers


def _sidebar_logout() -> None:
    with st.sidebar:
        if st.button("Log out", key="logout"):
            st.session_state.clear()
            st.query_params.clear()
            st.rerun()


def login_page(prepared: PreparedStudy) -> None:
    study = prepared.study
    st.title(study.title)
    reader_tab, organiser_tab = st.tabs(["Reader", "Organiser"])
    with reader_tab, st.form("login"):
        reader = st.text_input("Reader ID", key="login_reader").strip()
        code = "" if study.open_enrolment else st.text_input("Access code", type="password", key="login_code")
        if st.form_submit_button("Start", type="primary"):
            known = study.readers.get(reader)
            if reader and (study.open_enrolment or (known is not None and verify_secret(code, known))):
                st.session_state.reader = reader
                st.query_params["session"] = session_token(prepared.key, reader)
                st.rerun()
            else:
                st.error("Unknown reader ID or wrong access code.")
    with organiser_tab, st.form("admin_login"):
        secret = st.text_input("Organiser secret", type="password", key="admin_secret")
        if st.form_submit_button("Open organiser view"):
            if admin_secret_ok(secret, study.admin_secret_env, study.admin_secret_hash):
                st.session_state.admin = True
                st.rerun()
            else:
                st.error("Wrong organiser secret." if study.admin_secret_hash or _env_set(study.admin_secret_env)
                         else f"The organiser view is closed: set the environment variable {study.admin_secret_env} "
                              "where the app runs.")


def _env_set(name: str | None) -> bool:
    return bool(name and os.environ.get(name))


def _record(prepared: PreparedStudy, store: AnswerStore, reader: str, case_id: str, answer: str) -> None:
    """Button callback: runs before the page is redrawn, with the case id the button was drawn for."""
    confidence = st.session_state.get(f"confidence-{case_id}")
    if prepared.study.confidence and confidence is None:
        st.session_state.flash = ("warning", "Choose how confident you are before answering.")
        return
    case = prepared.case(case_id)
    shown_at = st.session_state.get(f"shown-{case_id}", time.time())
    new, stored = store.record(reader, case.id, case.arm, case.truth, answer, confidence, shown_at, time.time(),
                               case.image_id)
    if not new and (stored.answer != answer or stored.confidence != confidence):
        st.session_state.flash = ("info", "That case was already answered; the first answer was kept.")


def reader_page(prepared: PreparedStudy, store: AnswerStore, reader: str) -> None:
    study = prepared.study
    cases = prepared.reader_cases(reader)
    index = store.first_unanswered(reader, [case.id for case in cases])
    flash = st.session_state.pop("flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])
    if index is None:
        st.title("Thank you")
        st.success(f"All {len(cases)} cases are answered. You can close this page.")
        return
    if not st.session_state.get("started"):
        if index:  # a returning reader (refresh, new browser, restart) goes straight on to the next case
            st.session_state.started = True
            st.info(f"Welcome back. You have answered {index} of {len(cases)} cases; you continue with case {index + 1}.")
        else:
            st.title(study.title)
            st.markdown(study.instructions)
            if st.button("Begin", type="primary", key="begin"):
                st.session_state.started = True
                st.rerun()
            return

    case = cases[index]
    st.session_state.setdefault(f"shown-{case.id}", time.time())
    st.progress(index / len(cases), text=f"Case {index + 1} of {len(cases)}")
    with st.expander("Instructions"):
        st.markdown(study.instructions)
    if study.show_magnification:
        st.caption(f"Magnification: {study.arm(case.arm).magnification}")
    st.iframe(viewer_html(prepared.image_url_path(case)), height=VIEWER_HEIGHT + 10)
    if study.confidence:
        st.radio("How confident are you?", [1, 2, 3, 4, 5], index=None, horizontal=True, key=f"confidence-{case.id}",
                 help=CONFIDENCE_HELP)
    left, right, _ = st.columns([1, 1, 4])
    for column, answer in ((left, "real"), (right, "synthetic")):
        column.button(ANSWER_LABELS[answer], key=f"answer-{answer}-{case.id}", width="stretch",
                      on_click=_record, args=(prepared, store, reader, case.id, answer))

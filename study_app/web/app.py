"""The reader's pages (Streamlit): log in, read the instructions, answer case after case.

Streamlit forgets everything on a refresh, so nothing the study depends on lives in the session: each
answer is committed to SQLite when it is given, and the position is rebuilt from the database on
every run (the first case of the reader's order without an answer). The page URL carries a
server-side session (``?session=…``, ``study_app.web.sessions``), checked on every run, so a refresh
resumes, while logging out, expiry or a changed code ends it. The page only ever holds the opaque case
id and its image URL: arm, truth and source stay on the server.

Once the case reader is on the page, answers bypass Streamlit: the browser posts each one to the
study's answer route and moves on when the reply confirms it (``study_app.web.reading``), so a server
restart under an open page loses nothing and needs no reload.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from study_app.access import admin_secret_ok, verify_secret
from study_app.web import admin
from study_app.web.gate import ORGANISER, Gate, current_gate
from study_app.web.reading import reader_position
from study_app.web.sessions import ADDRESS, Session
from study_app.web.viewer import case_reader
from urcdm.errors import UserError

# Streamlit's fixed header is 3.75rem high; the page starts just below it, so the whole window is the reader's.
# Streamlit's own "Connection error" dialog ("Streamlit server is not responding. Are you connected to the
# internet?") is hidden on the reader's page: it would cover the case, and the case reader says what
# matters to a reader itself (the server is away, their place and answer are kept, no reload needed).
COMPACT_PAGE = ("<style>.block-container { padding-top: 3.9rem; padding-bottom: 0.5rem; }"
                " [data-testid='stDialog'] { display: none !important; }</style>")


def main(workdir: Path) -> None:
    st.set_page_config(page_title="Reader study", layout="wide", initial_sidebar_state="collapsed")
    try:
        gate = current_gate(workdir)
    except UserError as exc:
        st.error(f"error: {exc}")
        st.stop()
    token = st.query_params.get("session")
    session = gate.session(token)
    if session is None:
        if token:  # expired, logged out elsewhere, or opened with a code that has changed since
            st.query_params.clear()
            st.session_state.clear()
            st.session_state.flash = ("warning", "Your session has ended. Please log in again.")
        login_page(gate)
        return
    _sidebar(gate, token, session)
    if session.role == ORGANISER:
        admin.page(gate.prepared, gate.answers, token)
    else:
        reader_page(gate, session.subject, token)


def _sidebar(gate: Gate, token: str, session: Session) -> None:
    with st.sidebar:
        st.caption(f"Logged in as {session.subject}")
        if st.button("Log out", key="logout"):
            gate.sessions.revoke(token)
            st.session_state.clear()
            st.query_params.clear()
            st.rerun()
        if session.role != ORGANISER:
            st.markdown(gate.prepared.study.instructions)


def _client() -> str:
    address = st.context.ip_address  # None from localhost (and not a str under AppTest)
    return address if isinstance(address, str) else "localhost"


def _attempt(gate: Gate, check, role: str, subject: str, wrong: str) -> None:
    """One login try under the back-off (``study_app.web.sessions``): counted for this role and id, and
    for the client's address with a far higher bar; refused unread while either owes a wait."""
    keys = {role: subject, ADDRESS: _client()}
    for scope, whose in ((role, "for this reader ID" if role == "reader" else "at the organiser secret"),
                         (ADDRESS, "from this network address")):
        wait = gate.sessions.wait_seconds({scope: keys[scope]})
        if wait > 0:
            st.error(f"Too many wrong attempts {whose}. Try again in {int(wait) + 1} s.")
            return
    if not check():
        gate.sessions.failed(keys)
        st.error(wrong)
        return
    gate.sessions.succeeded(keys)
    st.query_params["session"] = gate.open_session(role, subject)
    st.rerun()


def login_page(gate: Gate) -> None:
    study = gate.prepared.study
    st.title(study.title)
    _flash()
    reader_tab, organiser_tab = st.tabs(["Reader", "Organiser"])
    with reader_tab, st.form("login"):
        reader = st.text_input("Reader ID", key="login_reader").strip()
        code = "" if study.open_enrolment else st.text_input("Access code", type="password", key="login_code")
        if st.form_submit_button("Start", type="primary"):
            known = study.readers.get(reader)
            _attempt(gate, lambda: bool(reader) and (
                study.open_enrolment or (known is not None and verify_secret(code, known))),
                "reader", reader, "Unknown reader ID or wrong access code.")
    with organiser_tab, st.form("admin_login"):
        secret = st.text_input("Organiser secret", type="password", key="admin_secret")
        if st.form_submit_button("Open organiser view"):
            if gate.credential(ORGANISER, ORGANISER) is None:
                st.error(f"The organiser view is closed: set the environment variable {study.admin_secret_env} "
                         "where the app runs.")
            else:
                _attempt(gate, lambda: admin_secret_ok(secret, study.admin_secret_env, study.admin_secret_hash),
                         ORGANISER, ORGANISER, "Wrong organiser secret.")


def _flash() -> None:
    flash = st.session_state.pop("flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])


def reader_page(gate: Gate, reader: str, token: str) -> None:
    study = gate.prepared.study
    cases = gate.reader_cases(reader)
    index = gate.answers.first_unanswered(reader, [case.id for case in cases])
    st.html(COMPACT_PAGE)
    _flash()
    if index is None:
        st.title("Thank you")
        st.success(f"All {len(cases)} cases are answered. You can close this page.")
        return
    if not st.session_state.get("started"):
        if index:  # a returning reader (refresh, new browser, restart) goes straight on to the next case
            st.session_state.started = True
            st.toast(f"Welcome back: {index} of {len(cases)} cases answered.")
        else:
            st.title(study.title)
            st.markdown(study.instructions)
            if st.button("Begin", type="primary", key="begin"):
                st.session_state.started = True
                st.rerun()
            return
    # A new page (a refresh, a new browser) shows the case afresh: its reading time starts again here.
    clock = f"shown-{cases[index].id}"
    if clock not in st.session_state:
        gate.answers.mark_shown(reader, cases[index].id, time.time(), replace=True)
        st.session_state[clock] = True
    case_reader(reader_position(gate, reader, token))

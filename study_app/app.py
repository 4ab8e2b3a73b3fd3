"""The reader's pages (Streamlit): log in, read the instructions, answer case after case.

Streamlit forgets everything on a refresh, so nothing the study depends on lives in the session: each
answer is committed to SQLite when it is given, and the position is rebuilt from the database on
every run (the first case of the reader's order without an answer). The page URL carries a
server-side session (``?session=…``, ``study_app.sessions``), checked on every run, so a refresh
resumes, while logging out, expiry or a changed code ends it. The page only ever holds the opaque case
id and its image URL: arm, truth and source stay on the server.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from study_app import admin
from study_app.access import admin_secret_ok, verify_secret
from study_app.gate import ORGANISER, Gate, current_gate
from study_app.sessions import Session
from study_app.store import AnswerStore
from study_app.viewer import case_reader, submitted_answer
from urcdm.errors import UserError

# Streamlit's fixed header is 3.75rem high; the page starts just below it, so the whole window is the reader's.
COMPACT_PAGE = "<style>.block-container { padding-top: 3.9rem; padding-bottom: 0.5rem; }</style>"


@st.cache_resource(show_spinner=False)
def _store(path: str) -> AnswerStore:
    return AnswerStore(path)


def main(workdir: Path) -> None:
    st.set_page_config(page_title="Reader study", layout="wide", initial_sidebar_state="collapsed")
    try:
        gate = current_gate(workdir)
    except UserError as exc:
        st.error(f"error: {exc}")
        st.stop()
    store = _store(str(gate.prepared.store_path))
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
        admin.page(gate.prepared, store)
    else:
        reader_page(gate, store, session.subject, token)


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


def _attempt(gate: Gate, keys: dict[str, str], check, role: str, subject: str, wrong: str) -> None:
    """One login try under the back-off: refused unread while a wait is pending."""
    wait = gate.sessions.wait_seconds(keys)
    if wait > 0:
        st.error(f"Too many wrong attempts. Try again in {int(wait) + 1} s.")
        return
    if not check():
        gate.sessions.failed(keys)
        st.error(wrong)
        return
    gate.sessions.succeeded({k: v for k, v in keys.items() if k != "client"})
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
            _attempt(gate, {"reader": reader, "client": _client()}, lambda: bool(reader) and (
                study.open_enrolment or (known is not None and verify_secret(code, known))),
                "reader", reader, "Unknown reader ID or wrong access code.")
    with organiser_tab, st.form("admin_login"):
        secret = st.text_input("Organiser secret", type="password", key="admin_secret")
        if st.form_submit_button("Open organiser view"):
            if gate.credential(ORGANISER, ORGANISER) is None:
                st.error(f"The organiser view is closed: set the environment variable {study.admin_secret_env} "
                         "where the app runs.")
            else:
                _attempt(gate, {"organiser": ORGANISER, "client": _client()},
                         lambda: admin_secret_ok(secret, study.admin_secret_env, study.admin_secret_hash),
                         ORGANISER, ORGANISER, "Wrong organiser secret.")


def _flash() -> None:
    flash = st.session_state.pop("flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])


def record_answer(gate: Gate, store: AnswerStore, reader: str, given, shown_at: float) -> str | None:
    """Store what the answer bar sent; returns a message for the reader, or None when all is well.

    Only a case of this reader's list is recorded, with a complete answer, and a second answer to a
    case (a double press, a stale second tab) never replaces the first.
    """
    if not isinstance(given, dict) or given.get("case") not in gate.assigned(reader):
        return "That case is not one of yours; the page has been brought up to date."
    answer, confidence = given.get("answer"), given.get("confidence")
    if answer not in ("real", "synthetic") or (gate.prepared.study.confidence and confidence not in (1, 2, 3, 4, 5)):
        return "Choose real or synthetic, and how sure you are (1-5)."
    case = gate.prepared.case(given["case"])
    new, stored = store.record(reader, case.id, case.arm, case.truth, answer, confidence, shown_at, time.time(),
                               case.image_id, flagged=bool(given.get("flagged")), comment=str(given.get("comment") or "")[:500],
                               max_zoom=_zoom(given.get("max_zoom")))
    if not new and (stored.answer != answer or stored.confidence != confidence):
        return "That case was already answered; the first answer was kept."
    return None


def _zoom(value) -> float | None:
    """The browser's furthest zoom, if it is a plausible number (it comes from the client)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e4:
        return float(value)
    return None


def _on_answer(gate: Gate, store: AnswerStore, reader: str) -> None:
    """The answer bar's callback: runs before the page is redrawn."""
    given = submitted_answer()
    case_id = given.get("case") if isinstance(given, dict) else None
    message = record_answer(gate, store, reader, given, st.session_state.get(f"shown-{case_id}", time.time()))
    if message:
        st.session_state.flash = ("info", message)
    elif case_id:
        # The browser shows the prefetched next case the moment it sends this answer: its reading time starts now.
        st.session_state.setdefault(f"shown-{_next_case(gate, reader, case_id)}", time.time())


def _next_case(gate: Gate, reader: str, case_id: str) -> str | None:
    order = [case.id for case in gate.reader_cases(reader)]
    position = order.index(case_id)
    return order[position + 1] if position + 1 < len(order) else None


def reader_page(gate: Gate, store: AnswerStore, reader: str, token: str) -> None:
    prepared, study = gate.prepared, gate.prepared.study
    cases = gate.reader_cases(reader)
    index = store.first_unanswered(reader, [case.id for case in cases])
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

    case = cases[index]
    st.session_state.setdefault(f"shown-{case.id}", time.time())
    if study.show_magnification:
        st.caption(f"Magnification: {study.arm(case.arm).magnification}")
    following = cases[index + 1] if index + 1 < len(cases) else None
    # A whole slide is not prefetched: its tiles are fetched as the reader pans and zooms.
    prefetch = (following.id, None if following.whole_slide else prepared.image_url_path(following, token)) if following else None
    case_reader(case.id, prepared.image_url_path(case, token), prefetch, index, len(cases), study.confidence,
                on_answer=lambda: _on_answer(gate, store, reader), slide=prepared.slide_view(case, token))

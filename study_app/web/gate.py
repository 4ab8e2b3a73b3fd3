"""Who may see what: one study's sessions checked against its current study file.

Shared by the pages (``study_app.web.app``) and the study's routes (``study_app.web.routes``: images, answers,
downloads), which run in one server process: all ask the same ``Gate`` whether a session token is
live and what it may see, and store answers through its one ``AnswerStore``.
The prepared study is reloaded when its manifest or study file changes, so an edited code or secret
takes effect (and ends the sessions opened with the old one) without restarting the server.
"""

from __future__ import annotations

import json
import os
import threading
from functools import lru_cache
from pathlib import Path

from study_app.access import credential_fingerprint
from study_app.preparation.cases import Case
from study_app.preparation.prepared import MANIFEST, PreparedStudy, open_prepared
from study_app.store.database import AnswerStore
from study_app.web.sessions import SESSIONS, Session, SessionStore

ORGANISER = "organiser"


class Gate:
    def __init__(self, prepared: PreparedStudy):
        self.prepared = prepared
        self.sessions = SessionStore(prepared.workdir / SESSIONS)
        self.answers = AnswerStore(prepared.store_path)
        self._orders: dict[str, list[Case]] = {}
        self._assigned: dict[str, frozenset[str]] = {}

    @property
    def lifetime_s(self) -> float:
        return self.prepared.study.session_hours * 3600

    def credential(self, role: str, subject: str) -> str | None:
        """The credential a session of ``subject`` depends on now; None when it may not log in at all."""
        study = self.prepared.study
        if role == ORGANISER:
            return study.admin_secret_hash or os.environ.get(study.admin_secret_env or "", "") or None
        if subject in study.readers:
            return study.readers[subject]
        return "" if study.open_enrolment else None

    def fingerprint(self, role: str, subject: str) -> str | None:
        credential = self.credential(role, subject)
        return None if credential is None else credential_fingerprint(self.prepared.key, role, subject, credential)

    def open_session(self, role: str, subject: str) -> str:
        fingerprint = self.fingerprint(role, subject)
        if fingerprint is None:
            raise ValueError(f"{role} {subject!r} may not log in")
        return self.sessions.open(role, subject, fingerprint, self.lifetime_s)

    def session(self, token: str | None) -> Session | None:
        return self.sessions.lookup(token, self.fingerprint)

    def reader_cases(self, reader: str) -> list[Case]:
        """The reader's cases in order, worked out once per study version (every page run and image asks)."""
        if reader not in self._orders:
            self._orders[reader] = self.prepared.reader_cases(reader)
            self._assigned[reader] = frozenset(case.id for case in self._orders[reader])
        return self._orders[reader]

    def assigned(self, reader: str) -> frozenset[str]:
        self.reader_cases(reader)
        return self._assigned[reader]

    def may_see(self, token: str | None, case_id: str) -> bool:
        session = self.session(token)
        return session is not None and session.role == "reader" and case_id in self.assigned(session.subject)


_lock = threading.Lock()
_gates: dict[tuple, Gate] = {}


def _mtime(path: Path | str | None) -> float:
    return Path(path).stat().st_mtime if path and Path(path).exists() else 0.0


@lru_cache(maxsize=8)
def _study_file(manifest: str, manifest_mtime: float) -> str | None:
    return json.loads(Path(manifest).read_text()).get("study_file")


def current_gate(workdir: Path) -> Gate:
    """The gate of the study as its files are now (cached until the manifest or study file changes;
    checking costs two stats, not a read of the manifest)."""
    manifest = workdir / MANIFEST
    if not manifest.exists():
        open_prepared(workdir)  # raises the "not a prepared study" error
    manifest_mtime = _mtime(manifest)
    study_file = _study_file(str(manifest), manifest_mtime)
    stamp = (str(workdir), manifest_mtime, _mtime(study_file))
    with _lock:
        gate = _gates.get(stamp)
        if gate is None:
            gate = Gate(open_prepared(workdir))
            _gates.clear()
            _gates[stamp] = gate
        return gate

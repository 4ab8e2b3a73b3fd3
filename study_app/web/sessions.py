"""Server-side sessions and login back-off, kept in SQLite beside the answers (``sessions.sqlite``).

A session is a random token in the page URL (``?session=…``) whose SHA-256 alone is stored, so a
copied database holds no live sessions. Each row carries an expiry and a fingerprint of the
credential it was opened with (the reader's stored code, or the organiser secret, keyed by the
study key): logging out revokes the row, and a changed code or secret no longer matches the
fingerprint, so every session opened with the old one ends at its next request. Nothing here is
trusted from the browser except the token.

Back-off counts wrong codes per (role, id), the organiser apart from every reader, and separately
per client address with a much higher bar (``access``): a wrong guess at one reader's code never
holds back another reader with the right one, nor the organiser. After the free tries each further
failure doubles the wait; a success clears its own (role, id) count, never the address's (one valid
code must not wipe out a record of guessing), and failures are forgotten a day after the last one.
The counts live in the database, so restarting the server does not reset them. The file holds
session hashes: it is created (and kept) mode 0600.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from study_app.access import (
    ADDRESS_FREE_TRIES,
    FORGET_AFTER_S,
    FREE_TRIES,
    backoff_seconds,
)
from study_app.store.private_files import private_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('reader', 'organiser')),
    subject     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created     REAL NOT NULL,
    expires     REAL NOT NULL,
    revoked     REAL
);
CREATE TABLE IF NOT EXISTS login_failures (
    scope    TEXT NOT NULL,
    key      TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last     REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
"""
SESSIONS = "sessions.sqlite"
ADDRESS = "address"  # the back-off scope of client addresses; every other scope is a role


@dataclass(frozen=True)
class Session:
    role: str
    subject: str  # the reader id; "organiser" for the organiser


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: str | Path):
        self.path = private_database(Path(path))
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def open(self, role: str, subject: str, fingerprint: str, lifetime_s: float, now: float | None = None) -> str:
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(24)
        self._db().execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, NULL)",
                           (_digest(token), role, subject, fingerprint, now, now + lifetime_s))
        return token

    def lookup(self, token: str | None, fingerprints, now: float | None = None) -> Session | None:
        """The live session behind ``token``, or None when unknown, expired, revoked, or opened with a
        credential that has changed since (``fingerprints(role, subject)`` gives the current one, or
        None when the subject is no longer allowed in). A stale session is revoked on the way."""
        if not token:
            return None
        now = time.time() if now is None else now
        row = self._db().execute("SELECT role, subject, fingerprint, expires, revoked FROM sessions WHERE token_hash = ?",
                                 (_digest(token),)).fetchone()
        if row is None:
            return None
        role, subject, fingerprint, expires, revoked = row
        if revoked is not None or expires <= now:
            return None
        current = fingerprints(role, subject)
        if current is None or not secrets.compare_digest(current, fingerprint):
            self.revoke(token, now)
            return None
        return Session(role, subject)

    def revoke(self, token: str | None, now: float | None = None) -> None:
        if token:
            self._db().execute("UPDATE sessions SET revoked = ? WHERE token_hash = ? AND revoked IS NULL",
                               (time.time() if now is None else now, _digest(token)))

    def wait_seconds(self, keys: dict[str, str], now: float | None = None) -> float:
        """Seconds before another login may be tried, the longest over ``{scope: key}`` (a role and
        the id, and ``address`` and the client's address)."""
        now = time.time() if now is None else now
        wait = 0.0
        for scope, key in keys.items():
            row = self._db().execute("SELECT failures, last FROM login_failures WHERE scope = ? AND key = ?",
                                     (scope, key)).fetchone()
            if row and now - row[1] < FORGET_AFTER_S:
                free = ADDRESS_FREE_TRIES if scope == ADDRESS else FREE_TRIES
                wait = max(wait, row[1] + backoff_seconds(row[0], free) - now)
        return max(wait, 0.0)

    def failed(self, keys: dict[str, str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for scope, key in keys.items():
            # A count whose last failure is forgotten starts again at one.
            self._db().execute(
                "INSERT INTO login_failures VALUES (?, ?, 1, ?) ON CONFLICT (scope, key) DO UPDATE SET"
                " failures = CASE WHEN excluded.last - last >= ? THEN 1 ELSE failures + 1 END, last = excluded.last",
                (scope, key, now, FORGET_AFTER_S))

    def succeeded(self, keys: dict[str, str]) -> None:
        """A right code clears its own (role, id) count; an address's count is never cleared by one."""
        for scope, key in keys.items():
            if scope != ADDRESS:
                self._db().execute("DELETE FROM login_failures WHERE scope = ? AND key = ?", (scope, key))

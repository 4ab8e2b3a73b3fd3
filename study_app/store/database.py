"""Answers on disk: SQLite in WAL mode, one row per answer, committed when the button is pressed.

UNIQUE(reader, case) makes a double click or a resubmitted form record one answer, never two, and
an answered case can't be silently overwritten: ``record`` reports the answer already stored.
Each thread gets its own connection (sqlite3 connections must not be shared across threads);
WAL plus a busy timeout lets many readers write at once, and ``synchronous=FULL`` means an
acknowledged answer survives the server being killed. The database holds the truth, so it is
created (and kept) mode 0600. Besides the answers it keeps when each reader was shown each case,
so a case's reading time survives a server restart. CSV exports neutralise cells a spreadsheet
would run (``study_app.store.spreadsheet``).
"""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from study_app.store.private_files import private_database, write_private
from study_app.store.spreadsheet import neutralised_row
from urcdm import __version__

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    reader      TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    arm         TEXT NOT NULL,
    truth       TEXT NOT NULL CHECK (truth IN ('real', 'synthetic')),
    answer      TEXT NOT NULL CHECK (answer IN ('real', 'synthetic')),
    confidence  INTEGER CHECK (confidence IS NULL OR confidence BETWEEN 1 AND 5),
    shown_at    REAL NOT NULL,
    answered_at REAL NOT NULL,
    image_id    TEXT NOT NULL,
    app_version TEXT NOT NULL,
    flagged     INTEGER NOT NULL DEFAULT 0,
    comment     TEXT NOT NULL DEFAULT '',
    max_zoom    REAL,
    UNIQUE (reader, case_id)
);
CREATE INDEX IF NOT EXISTS answers_by_reader ON answers (reader);
CREATE TABLE IF NOT EXISTS shown (
    reader   TEXT NOT NULL,
    case_id  TEXT NOT NULL,
    shown_at REAL NOT NULL,
    PRIMARY KEY (reader, case_id)
);
"""
EXPORT_COLUMNS = ("reader", "case", "arm", "truth", "answer", "confidence", "shown_at", "answered_at",
                  "seconds", "image_id", "app_version", "flagged", "comment", "max_zoom")
# Columns added after the first release: a study answered with an older version gains them, empty.
# max_zoom: the furthest the reader zoomed in, relative to the case fitted to the window (1 = never zoomed in).
_ADDED_COLUMNS = {"flagged": "INTEGER NOT NULL DEFAULT 0", "comment": "TEXT NOT NULL DEFAULT ''", "max_zoom": "REAL"}
_SELECT = ("SELECT reader, case_id, arm, truth, answer, confidence, shown_at, answered_at, image_id, app_version,"
           " flagged, comment, max_zoom FROM answers")
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class StoredAnswer:
    reader: str
    case: str
    arm: str
    truth: str
    answer: str
    confidence: int | None
    shown_at: float
    answered_at: float
    image_id: str
    app_version: str
    flagged: bool = False
    comment: str = ""
    max_zoom: float | None = None

    @property
    def seconds(self) -> float:
        return self.answered_at - self.shown_at


def _stored(row: tuple) -> StoredAnswer:
    return StoredAnswer(*row[:10], flagged=bool(row[10]), comment=row[11], max_zoom=row[12])


class AnswerStore:
    def __init__(self, path: str | Path):
        self.path = private_database(Path(path))
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(answers)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE answers ADD COLUMN {column} {kind}")

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.db = db
        return db

    def record(self, reader: str, case: str, arm: str, truth: str, answer: str, confidence: int | None,
               shown_at: float, answered_at: float, image_id: str, flagged: bool = False,
               comment: str = "", max_zoom: float | None = None) -> tuple[bool, StoredAnswer]:
        """Store one answer; returns (newly stored?, the stored answer: this one or the earlier one)."""
        db = self._connection()
        cursor = db.execute(
            "INSERT OR IGNORE INTO answers (reader, case_id, arm, truth, answer, confidence, shown_at, answered_at,"
            " image_id, app_version, flagged, comment, max_zoom) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (reader, case, arm, truth, answer, confidence, shown_at, answered_at, image_id, __version__, int(flagged),
             comment, max_zoom))
        return cursor.rowcount == 1, self.get(reader, case)

    def mark_shown(self, reader: str, case: str, when: float, replace: bool = False) -> None:
        """The reader's case went on screen at ``when`` (kept if already set, unless ``replace``)."""
        verb = "REPLACE" if replace else "IGNORE"
        self._connection().execute(f"INSERT OR {verb} INTO shown VALUES (?, ?, ?)", (reader, case, when))

    def shown_at(self, reader: str, case: str) -> float | None:
        row = self._connection().execute("SELECT shown_at FROM shown WHERE reader = ? AND case_id = ?",
                                         (reader, case)).fetchone()
        return row[0] if row else None

    def get(self, reader: str, case: str) -> StoredAnswer | None:
        row = self._connection().execute(_SELECT + " WHERE reader = ? AND case_id = ?", (reader, case)).fetchone()
        return _stored(row) if row else None

    def answered_cases(self, reader: str) -> set[str]:
        rows = self._connection().execute("SELECT case_id FROM answers WHERE reader = ?", (reader,))
        return {case for (case,) in rows}

    def first_unanswered(self, reader: str, cases: Iterable[str]) -> int | None:
        """Index of the first case in the reader's order without an answer (None: all done)."""
        done = self.answered_cases(reader)
        return next((i for i, case in enumerate(cases) if case not in done), None)

    def all_answers(self) -> list[StoredAnswer]:
        return [_stored(row) for row in self._connection().execute(_SELECT + " ORDER BY id")]

    def progress(self) -> dict[str, int]:
        return dict(self._connection().execute("SELECT reader, COUNT(*) FROM answers GROUP BY reader ORDER BY reader"))

    def export_csv(self, out: str | Path) -> int:
        """Write the answers (with their truth) to ``out``, created mode 0600 and renamed into place whole."""
        buffer = io.StringIO()
        count = self.write_csv(buffer)
        write_private(Path(out), buffer.getvalue())
        return count

    def csv_text(self) -> str:
        buffer = io.StringIO()
        self.write_csv(buffer)
        return buffer.getvalue()

    def write_csv(self, handle) -> int:
        answers = self.all_answers()
        writer = csv.writer(handle)
        writer.writerow(EXPORT_COLUMNS)
        for a in answers:
            writer.writerow(neutralised_row([
                a.reader, a.case, a.arm, a.truth, a.answer, "" if a.confidence is None else a.confidence,
                f"{a.shown_at:.3f}", f"{a.answered_at:.3f}", f"{a.seconds:.3f}", a.image_id, a.app_version,
                int(a.flagged), a.comment, "" if a.max_zoom is None else f"{a.max_zoom:.4g}"]))
        return len(answers)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

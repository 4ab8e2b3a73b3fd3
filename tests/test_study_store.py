"""The answer store under concurrency and sudden death: nothing acknowledged is lost or doubled."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from study_app.store.answers_csv import read_answers
from study_app.store.database import AnswerStore


def _record(store, reader, case, answer="synthetic"):
    now = time.time()
    return store.record(reader, case, "URCDM", "real", answer, 3, now - 1.0, now, f"img-{case}")


def test_double_submission_records_one_answer_and_never_overwrites(tmp_path):
    store = AnswerStore(tmp_path / "answers.sqlite")
    first, stored = _record(store, "r1", "c1", "synthetic")
    again, kept = _record(store, "r1", "c1", "real")
    assert first and not again
    assert kept.answer == "synthetic" == stored.answer and len(store.all_answers()) == 1
    assert store.first_unanswered("r1", ["c1", "c2", "c3"]) == 1
    assert store.first_unanswered("r1", ["c1"]) is None


def test_twenty_threads_two_hundred_answers_each(tmp_path):
    path = tmp_path / "answers.sqlite"
    AnswerStore(path)
    store = AnswerStore(path)
    errors = []

    def reader(index):
        try:
            for case in range(200):
                _record(store, f"r{index}", f"c{case}")
                if case % 50 == 0:  # a double click now and then
                    _record(store, f"r{index}", f"c{case}")
        except Exception as exc:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    answers = AnswerStore(path).all_answers()
    assert len(answers) == 20 * 200
    assert len({(a.reader, a.case) for a in answers}) == 20 * 200
    assert AnswerStore(path).progress() == {f"r{i}": 200 for i in range(20)}


WRITER = textwrap.dedent("""
    import sys, time
    from study_app.store.database import AnswerStore
    store = AnswerStore(sys.argv[1])
    for i in range(100000):
        now = time.time()
        store.record("r1", f"c{i}", "URCDM", "synthetic", "real", None, now, now, f"img{i}")
        print(i, flush=True)  # acknowledged only after the commit returned
""")


def test_sigkill_mid_run_keeps_every_acknowledged_answer(tmp_path):
    path = tmp_path / "answers.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    acknowledged = []
    for line in writer.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 300:
            writer.send_signal(signal.SIGKILL)
            break
    writer.wait()
    stored = {a.case for a in AnswerStore(path).all_answers()}
    assert {f"c{i}" for i in acknowledged} <= stored


def test_export_is_a_valid_answers_csv(tmp_path):
    store = AnswerStore(tmp_path / "answers.sqlite")
    for case in range(5):
        _record(store, "r1", f"c{case}", "synthetic" if case % 2 else "real")
    assert store.export_csv(tmp_path / "export.csv") == 5
    rows = read_answers(tmp_path / "export.csv")
    assert len(rows) == 5 and rows[0].confidence == 3

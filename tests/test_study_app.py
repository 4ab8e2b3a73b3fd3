"""The reader app through Streamlit's AppTest: login, sessions (expiry, logout, code change), back-off,
what the case reader is given, answering, resuming, double submission, the organiser gate.

The answer bar itself is browser code (tests/test_study_browser.py presses its keys); here answers go
through ``record_answer``, the function the answer route calls with what the bar posts.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from study_app.access import FIRST_WAIT_S, FREE_TRIES, hash_secret  # noqa: E402
from study_app.preparation.demo import DEMO_READERS  # noqa: E402
from study_app.preparation.prepare import open_prepared  # noqa: E402
from study_app.store.database import AnswerStore  # noqa: E402
from study_app.web.gate import current_gate  # noqa: E402
from study_app.web.reading import record_answer  # noqa: E402
from study_app.web.sessions import ADDRESS  # noqa: E402

READER = "reader-1"


def new_session(workdir, token: str | None = None) -> AppTest:
    app = AppTest.from_file(str(workdir / "reader_page.py"), default_timeout=60)
    if token is not None:
        app.query_params["session"] = token
    return app.run()


def log_in(app: AppTest, reader: str = READER, code: str | None = None) -> AppTest:
    app.text_input(key="login_reader").input(reader)
    app.text_input(key="login_code").input(DEMO_READERS.get(reader, "x") if code is None else code)
    return app.button(key="FormSubmitter:login-Start").click().run()


def reader_data(app: AppTest) -> dict | None:
    """What the case reader component was given on this run (None: it is not on the page)."""
    found = [e for e in app.get("bidi_component") if e.proto.component_name == "urcdm_case_reader"]
    return json.loads(found[0].proto.json) if found else None


def answer(workdir, label: str, confidence: int = 3, reader: str = READER) -> tuple[str, str | None]:
    gate = current_gate(workdir)
    store = AnswerStore(gate.prepared.store_path)
    order = [c.id for c in gate.reader_cases(reader)]
    case = order[store.first_unanswered(reader, order)]
    given = {"case": case, "answer": label, "confidence": confidence, "flagged": False, "comment": ""}
    return case, record_answer(gate, reader, given)


def texts(app: AppTest) -> list[str]:
    return [str(e.value) for kind in ("title", "markdown", "caption", "info", "success", "warning", "error")
            for e in app.get(kind)]


def sent_to_login(app: AppTest) -> bool:
    return any("session has ended" in t for t in texts(app)) and "session" not in app.query_params


def started(workdir, token=None) -> AppTest:
    app = log_in(new_session(workdir)) if token is None else new_session(workdir, token)
    return app.button(key="begin").click().run() if [b for b in app.button if b.key == "begin"] else app


def test_login_rejects_a_wrong_code_and_opens_a_server_session(study_workdir):
    app = log_in(new_session(study_workdir), code="wrong")
    assert app.error and "wrong access code" in app.error[0].value
    assert "session" not in app.query_params
    app = log_in(new_session(study_workdir))
    assert not app.exception and not app.error
    assert [b.label for b in app.button if b.key == "begin"] == ["Begin"]
    token = app.query_params["session"]
    assert current_gate(study_workdir).session(token).subject == READER
    assert READER not in token  # random, not the reader id signed


def test_the_case_reader_gets_the_case_its_authenticated_image_and_the_next_to_prefetch(study_workdir):
    prepared = open_prepared(study_workdir)
    order = [case.id for case in prepared.reader_cases(READER)]
    app = started(study_workdir)
    data, token = reader_data(app), app.query_params["session"]
    assert data["case"] == order[0] and data["next_case"] == order[1]
    assert data["image"] == f"/case-image/{order[0]}.png?session={token}"  # uncompressed: blind bytes
    assert data["next"] == f"/case-image/{order[1]}.png?session={token}"
    assert data["answer_url"] == f"/case-answer?session={token}"
    assert (data["index"], data["total"], data["confidence"]) == (0, len(order), True)


def test_answers_are_stored_with_their_truth_flag_and_comment_and_the_page_moves_on(study_workdir):
    prepared = open_prepared(study_workdir)
    order = [case.id for case in prepared.reader_cases(READER)]
    app = started(study_workdir)
    gate, store = current_gate(study_workdir), AnswerStore(prepared.store_path)
    given = {"case": order[0], "answer": "real", "confidence": 2, "flagged": True, "comment": "odd nuclei"}
    assert record_answer(gate, READER, given) is None
    for label, confidence in (("synthetic", 5), ("real", 4)):
        _, message = answer(study_workdir, label, confidence)
        assert message is None
    app = new_session(study_workdir, app.query_params["session"])
    assert reader_data(app)["case"] == order[3]
    stored = store.all_answers()
    assert [(a.case, a.answer, a.confidence) for a in stored] == list(zip(order[:3], ("real", "synthetic", "real"), (2, 5, 4)))
    assert (stored[0].flagged, stored[0].comment) == (True, "odd nuclei") and not stored[1].flagged
    for a in stored:
        case = prepared.case(a.case)
        assert (a.reader, a.arm, a.truth, a.image_id) == (READER, case.arm, case.truth, case.image_id)
        assert 0 <= a.seconds < 120
    exported = store.csv_text().splitlines()
    assert exported[0].endswith(",flagged,comment,max_zoom") and exported[1].endswith(",1,odd nuclei,")


def test_incomplete_foreign_and_repeated_answers_are_refused(study_workdir):
    prepared = open_prepared(study_workdir)
    gate, store = current_gate(study_workdir), AnswerStore(prepared.store_path)
    mine = prepared.reader_cases(READER)[0].id
    not_mine = next(c.id for c in prepared.cases if c.id not in gate.assigned(READER))
    assert "how sure" in record_answer(gate, READER, {"case": mine, "answer": "real"})
    assert "not one of yours" in record_answer(gate, READER, {"case": not_mine, "answer": "real", "confidence": 3})
    later = prepared.reader_cases(READER)[1].id  # prefetched, so its image can be had, but not yet shown
    assert "not the case on screen" in record_answer(gate, READER, {"case": later, "answer": "real", "confidence": 3})
    assert store.all_answers() == []
    # A double press, a resend after a lost reply: recorded once, quietly.
    assert record_answer(gate, READER, {"case": mine, "answer": "real", "confidence": 5}) is None
    assert record_answer(gate, READER, {"case": mine, "answer": "real", "confidence": 5}) is None
    # A stale second tab: the first answer stays.
    message = record_answer(gate, READER, {"case": mine, "answer": "synthetic", "confidence": 1})
    assert "first answer was kept" in message
    assert [(a.answer, a.confidence) for a in store.all_answers()] == [("real", 5)]


def test_a_refresh_resumes_at_the_first_unanswered_case_with_no_extra_click(study_workdir):
    order = [case.id for case in open_prepared(study_workdir).reader_cases(READER)]
    token = started(study_workdir).query_params["session"]
    for label in ("real", "synthetic", "real"):
        answer(study_workdir, label)
    refreshed = new_session(study_workdir, token)  # a refresh: a fresh session that only has the URL
    assert reader_data(refreshed)["case"] == order[3]
    assert not [b for b in refreshed.button if b.key == "begin"]
    again = log_in(new_session(study_workdir))  # a closed browser: logging in again
    assert reader_data(again)["case"] == order[3]


def test_unknown_and_forged_sessions_get_the_login_page(study_workdir):
    app = new_session(study_workdir, "0" * 32)
    assert reader_data(app) is None and app.text_input(key="login_reader") is not None and sent_to_login(app)


def test_logging_out_revokes_the_session(study_workdir):
    app = started(study_workdir)
    token = app.query_params["session"]
    app = app.button(key="logout").click().run()
    assert "session" not in app.query_params
    assert current_gate(study_workdir).session(token) is None
    assert sent_to_login(new_session(study_workdir, token))


def test_sessions_expire(study_workdir):
    gate = current_gate(study_workdir)
    token = gate.open_session("reader", READER)
    assert gate.sessions.lookup(token, gate.fingerprint, now=time.time() + gate.lifetime_s - 60) is not None
    assert gate.sessions.lookup(token, gate.fingerprint, now=time.time() + gate.lifetime_s + 1) is None


def test_a_changed_code_ends_the_sessions_opened_with_the_old_one(study_workdir):
    token = started(study_workdir).query_params["session"]
    other = started(study_workdir)
    study_file = open_prepared(study_workdir).study.path  # shared by the tests: put back afterwards
    original = study_file.read_text()
    study = yaml.safe_load(original)
    study["access"]["readers"][0]["code"] = hash_secret("a new code")
    try:
        study_file.write_text(yaml.safe_dump(study, sort_keys=False))
        assert sent_to_login(new_session(study_workdir, token))
        assert sent_to_login(new_session(study_workdir, other.query_params["session"]))
        assert "session" in log_in(new_session(study_workdir), code="a new code").query_params
    finally:
        study_file.write_text(original)


def test_wrong_codes_back_off_per_reader_not_for_everyone_at_the_address(study_workdir):
    for _ in range(FREE_TRIES):
        app = log_in(new_session(study_workdir), code="wrong")
        assert "wrong access code" in app.error[0].value
    app = log_in(new_session(study_workdir))  # the right code, during the wait: not even checked
    assert "Too many wrong attempts" in app.error[0].value and "session" not in app.query_params
    # Another reader at the same address, with the right code, is not held back.
    app = log_in(new_session(study_workdir), reader="reader-2")
    assert not app.error and "session" in app.query_params
    gate = current_gate(study_workdir)
    assert 0 < gate.sessions.wait_seconds({"reader": READER}) <= FIRST_WAIT_S
    assert gate.sessions.wait_seconds({"reader": "reader-2"}) == 0
    assert gate.sessions.wait_seconds({ADDRESS: "localhost"}) == 0  # the address is far below its bar


def test_the_reader_pages_never_show_arm_truth_or_source(study_workdir):
    prepared = open_prepared(study_workdir)
    secrets = {arm.name for arm in prepared.study.arms} | {"real.tiff", "blurred", "stain-shift", "truth"}
    secrets |= {str(study_workdir), str(prepared.study.path.parent)}
    token = started(study_workdir).query_params["session"]
    for label in ("real", "synthetic", "real", "synthetic"):
        app = new_session(study_workdir, token)
        shown = " ".join(texts(app)) + " ".join(str(b.key) + b.label for b in app.button) + json.dumps(reader_data(app))
        leaked = [s for s in secrets if s.lower() in shown.lower()]
        assert not leaked, leaked
        answer(study_workdir, label)


def organiser_login(workdir, secret: str) -> AppTest:
    app = new_session(workdir)
    app.text_input(key="admin_secret").input(secret)
    return app.button(key="FormSubmitter:admin_login-Open organiser view").click().run()


def test_the_organiser_view_needs_the_secret_and_survives_a_refresh(study_workdir, demo_study_template):
    app = organiser_login(study_workdir, "not the secret")
    assert app.error and "Wrong organiser secret" in app.error[0].value
    assert not any("Organiser view" in t.value for t in app.title)

    for label in ("real", "synthetic", "synthetic"):  # a reader part-way
        answer(study_workdir, label)
    app = organiser_login(study_workdir, demo_study_template[1])
    assert not app.exception and any("Organiser view" in t.value for t in app.title)
    token = app.query_params["session"]
    refreshed = new_session(study_workdir, token)
    assert any("Organiser view" in t.value for t in refreshed.title)
    assert [m.value for m in refreshed.metric][0] == "3"
    assert any("still reading" in h.value for h in refreshed.subheader)
    assert any("No reader has finished" in i.value for i in refreshed.info)
    assert not refreshed.get("download_button")  # Streamlit's would serve the truth from an open /media/ address
    assert {b.proto.label for b in refreshed.get("link_button")} == {"Raw answers (CSV)"}
    gate = current_gate(study_workdir)
    assert gate.sessions.lookup(token, gate.fingerprint, now=time.time() + gate.lifetime_s + 1) is None

    for _ in range(len(gate.assigned(READER)) - 3):  # the reader finishes
        answer(study_workdir, "real")
    app = new_session(study_workdir, token)
    assert not app.exception and not any("still reading" in h.value for h in app.subheader)
    assert {b.proto.label for b in app.get("link_button")} == {"Raw answers (CSV)", "Results table (CSV)", "Results (JSON)",
                                                                 "MRMC ratings (CSV)"}
    assert all(f"session={token}" in b.proto.url for b in app.get("link_button"))


def test_an_environment_secret_that_is_unset_keeps_the_organiser_view_closed(study_workdir, monkeypatch):
    from study_app.access import admin_secret_ok

    monkeypatch.delenv("URCDM_TEST_ADMIN", raising=False)
    assert not admin_secret_ok("", "URCDM_TEST_ADMIN", None)
    assert not admin_secret_ok("anything", "URCDM_TEST_ADMIN", None)
    monkeypatch.setenv("URCDM_TEST_ADMIN", "s3cret")
    assert admin_secret_ok("s3cret", "URCDM_TEST_ADMIN", None) and not admin_secret_ok("s3cre", "URCDM_TEST_ADMIN", None)

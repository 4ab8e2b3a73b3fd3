"""The reader app through Streamlit's AppTest: login, answering, resuming, double submission, admin gate."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from study_app.access import session_token  # noqa: E402
from study_app.demo import DEMO_READERS  # noqa: E402
from study_app.prepare import open_prepared  # noqa: E402
from study_app.store import AnswerStore  # noqa: E402

READER = "reader-1"


def new_session(workdir, token: str | None = None) -> AppTest:
    app = AppTest.from_file(str(workdir / "reader_app.py"), default_timeout=60)
    if token is not None:
        app.query_params["session"] = token
    return app.run()


def log_in(app: AppTest, reader: str = READER, code: str | None = None) -> AppTest:
    app.text_input(key="login_reader").input(reader)
    app.text_input(key="login_code").input(DEMO_READERS.get(reader, "x") if code is None else code)
    return app.button[0].click().run()


def current_case(app: AppTest) -> str:
    keys = [b.key for b in app.button if b.key and b.key.startswith("answer-real-")]
    assert len(keys) == 1, [b.key for b in app.button]
    return keys[0].removeprefix("answer-real-")


def answer(app: AppTest, label: str, confidence: int = 3) -> tuple[str, AppTest]:
    case = current_case(app)
    app.radio(key=f"confidence-{case}").set_value(confidence)
    return case, app.button(key=f"answer-{label}-{case}").click().run()


def texts(app: AppTest) -> list[str]:
    return [str(e.value) for kind in ("title", "markdown", "caption", "info", "success", "warning", "error")
            for e in app.get(kind)] + [str(p.proto.text) for p in app.get("progress")]


def test_login_rejects_a_wrong_code_and_accepts_the_right_one(study_workdir):
    app = log_in(new_session(study_workdir), code="wrong")
    assert app.error and "wrong access code" in app.error[0].value
    assert "session" not in app.query_params
    app = log_in(new_session(study_workdir))
    assert not app.exception and not app.error
    assert [b.label for b in app.button if b.key == "begin"] == ["Begin"]
    assert app.query_params["session"] == session_token(open_prepared(study_workdir).key, READER)


def test_answers_are_stored_with_their_truth_and_the_page_moves_on(study_workdir):
    prepared = open_prepared(study_workdir)
    order = [case.id for case in prepared.reader_cases(READER)]
    app = log_in(new_session(study_workdir)).button(key="begin").click().run()
    answered = []
    for label, confidence in (("real", 2), ("synthetic", 5), ("real", 4)):
        case, app = answer(app, label, confidence)
        answered.append((case, label, confidence))
    assert [case for case, _, _ in answered] == order[:3]
    assert f"Case 4 of {len(order)}" in texts(app)
    stored = AnswerStore(prepared.store_path).all_answers()
    assert [(a.case, a.answer, a.confidence) for a in stored] == answered
    for a in stored:
        case = prepared.case(a.case)
        assert (a.reader, a.arm, a.truth, a.image_id) == (READER, case.arm, case.truth, case.image_id)
        assert 0 <= a.seconds < 120


def test_answering_needs_a_confidence_when_the_study_collects_it(study_workdir):
    app = log_in(new_session(study_workdir)).button(key="begin").click().run()
    case = current_case(app)
    app = app.button(key=f"answer-real-{case}").click().run()
    assert app.warning and "confident" in app.warning[0].value
    assert current_case(app) == case
    assert AnswerStore(study_workdir / "answers.sqlite").all_answers() == []


def test_a_new_session_resumes_at_the_first_unanswered_case(study_workdir):
    prepared = open_prepared(study_workdir)
    order = [case.id for case in prepared.reader_cases(READER)]
    app = log_in(new_session(study_workdir)).button(key="begin").click().run()
    for label in ("real", "synthetic", "real"):
        _, app = answer(app, label)
    token = app.query_params["session"]

    # A refresh: a fresh session that only has the URL's token.
    refreshed = new_session(study_workdir, token)
    assert any("continue with case 4" in t for t in texts(refreshed))
    assert current_case(refreshed) == order[3]  # straight there: no extra click
    assert not [b for b in refreshed.button if b.key == "begin"]
    # A closed browser: a fresh session that logs in again.
    again = log_in(new_session(study_workdir))
    assert current_case(again) == order[3]


def test_a_tampered_session_token_gets_the_login_page(study_workdir):
    token = session_token(open_prepared(study_workdir).key, READER)
    forged = token.split(".")[0] + "." + "0" * 32
    app = new_session(study_workdir, forged)
    assert app.text_input(key="login_reader") is not None and not [b for b in app.button if b.key == "begin"]


def test_a_double_submission_records_one_answer_and_keeps_the_first(study_workdir):
    app = log_in(new_session(study_workdir)).button(key="begin").click().run()
    case = current_case(app)
    app.radio(key=f"confidence-{case}").set_value(3)
    app.button(key=f"answer-synthetic-{case}").click()
    app.button(key=f"answer-real-{case}").click()
    app = app.run()
    stored = AnswerStore(study_workdir / "answers.sqlite").all_answers()
    assert len(stored) == 1 and stored[0].case == case
    assert "already answered" in app.info[0].value


def test_a_stale_second_tab_cannot_overwrite_an_answer(study_workdir):
    first = log_in(new_session(study_workdir)).button(key="begin").click().run()
    second = log_in(new_session(study_workdir)).button(key="begin").click().run()
    case, first = answer(first, "real", 5)
    assert current_case(second) == case           # the second tab still shows the answered case
    second.radio(key=f"confidence-{case}").set_value(1)
    second = second.button(key=f"answer-synthetic-{case}").click().run()
    stored = AnswerStore(study_workdir / "answers.sqlite").all_answers()
    assert [(a.case, a.answer, a.confidence) for a in stored] == [(case, "real", 5)]
    assert "first answer was kept" in second.info[0].value
    assert current_case(second) != case           # and it moves on to the next unanswered case


def test_the_reader_pages_never_show_arm_truth_or_source(study_workdir):
    prepared = open_prepared(study_workdir)
    secrets = {arm.name for arm in prepared.study.arms} | {"real.tiff", "blurred", "stain-shift", "truth"}
    secrets |= {str(study_workdir), str(prepared.study.path.parent)}
    app = log_in(new_session(study_workdir)).button(key="begin").click().run()
    for label in ("real", "synthetic", "real", "synthetic"):
        shown = " ".join(texts(app)) + " ".join(str(b.key) + b.label for b in app.button)
        leaked = [s for s in secrets if s.lower() in shown.lower()]
        assert not leaked, leaked
        _, app = answer(app, label)


def test_the_organiser_view_needs_the_secret(study_workdir, demo_study_template):
    app = new_session(study_workdir)
    app.text_input(key="admin_secret").input("not the secret")
    app = app.button[1].click().run()
    assert app.error and "Wrong organiser secret" in app.error[0].value
    assert not any("Organiser view" in t.value for t in app.title)

    # Some answers, so the results and plots are drawn too.
    reader = log_in(new_session(study_workdir)).button(key="begin").click().run()
    for label in ("real", "synthetic", "synthetic"):
        _, reader = answer(reader, label)
    app = new_session(study_workdir)
    app.text_input(key="admin_secret").input(demo_study_template[1])
    app = app.button[1].click().run()
    assert not app.exception
    assert any("Organiser view" in t.value for t in app.title)
    assert [m.value for m in app.metric][0] == "3"
    # One reader part-way: shown apart, and no totals yet (they count finished readers only).
    assert any("still reading" in h.value for h in app.subheader)
    assert any("No reader has finished" in i.value for i in app.info)
    assert {d.label for d in app.get("download_button")} == {"Raw answers (CSV)"}

    for label in ("real", "synthetic") * 20:  # the reader finishes
        if not any("Case" in t for t in texts(reader)):
            break
        _, reader = answer(reader, label)
    app = new_session(study_workdir)
    app.text_input(key="admin_secret").input(demo_study_template[1])
    app = app.button[1].click().run()
    assert not app.exception and not any("still reading" in h.value for h in app.subheader)
    assert {d.label for d in app.get("download_button")} == {"Raw answers (CSV)", "Results table (CSV)", "Results (JSON)"}


def test_an_environment_secret_that_is_unset_keeps_the_organiser_view_closed(study_workdir, monkeypatch):
    from study_app.access import admin_secret_ok

    monkeypatch.delenv("URCDM_TEST_ADMIN", raising=False)
    assert not admin_secret_ok("", "URCDM_TEST_ADMIN", None)
    assert not admin_secret_ok("anything", "URCDM_TEST_ADMIN", None)
    monkeypatch.setenv("URCDM_TEST_ADMIN", "s3cret")
    assert admin_secret_ok("s3cret", "URCDM_TEST_ADMIN", None) and not admin_secret_ok("s3cre", "URCDM_TEST_ADMIN", None)

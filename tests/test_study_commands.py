"""The README's ``urcdm-study`` commands, typed as a user types them: console scripts, relative
paths, run from the folder they are documented for and from other folders."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from study_app.store.database import AnswerStore

BIN = Path(sys.executable).parent
START_S = 90


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(argv: list[str], cwd: Path, during=None) -> str:
    """Start a serving command, wait until the reader page is up, call ``during(base_url)``, stop
    it; returns its output."""
    port = _free_port()
    process = subprocess.Popen([BIN / argv[0], *argv[1:], "--port", str(port)], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + START_S
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    assert page.status == 200 and "<html" in page.read().decode().lower()
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"{' '.join(argv)} (in {cwd}) did not serve: {process.communicate()[0][-2000:]}")
            time.sleep(0.3)
        time.sleep(2)  # an app that dies after binding (a missing entry script) would be gone by now
        assert process.poll() is None, process.communicate()[0][-2000:]
        if during is not None:
            during(f"http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    return output


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / argv[0], *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_demo_run_export_and_score_with_relative_paths_from_any_folder(tmp_path):
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    # `urcdm-study demo`: its default --out build/study-demo is relative to where it is typed.
    assert "demo study: build/study-demo/study.yaml" in _serve(["urcdm-study", "demo"], cwd=work)
    study = work / "build" / "study-demo"

    # A reader answers; the study must still start however its path is spelled.
    prepared = json.loads((study / "study-run" / "cases.json").read_text())["cases"][0]
    AnswerStore(study / "study-run" / "answers.sqlite").record(
        "reader-1", prepared["id"], prepared["arm"], prepared["truth"], "real", 3, 1.0, 2.0, prepared["image_id"])
    # (`urcdm-study demo` above already served it as build/study-demo/study.yaml from `work`)
    # On every network: our two URLs, not Streamlit's banner, which asked a web service for this
    # computer's public address (a call out of a hospital network) and printed "Did not auto detect".
    output = _serve(["urcdm-study", "run", "study.yaml", "--address", "0.0.0.0"], cwd=study)
    assert f"readers on other computers open http://{socket.gethostname()}:" in output
    assert "You can now view" not in output and "external IP" not in output and "External URL" not in output
    _serve(["urcdm-study", "run", "../work/build/./study-demo/study.yaml"], cwd=other)

    exported = _run(["urcdm-study", "export", "../work/build/study-demo/study.yaml", "-o", "answers.csv"], cwd=other)
    assert exported.returncode == 0, exported.stderr
    scored = _run(["urcdm-study", "score", "answers.csv", "--json"], cwd=other)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["arms"][prepared["arm"]]["total"]["tp"] == 0


def _request(url: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), b""


def test_case_images_go_only_to_their_readers_with_one_set_of_headers_whatever_their_class(tmp_path):
    """Over HTTP: a case image answers only a live session of a reader assigned that case, with the
    same headers (Content-Length, Content-Type, caching) for every case of either class, never
    compressed on the way, no ETag or Last-Modified, no cross-origin sharing, and the security
    headers; Streamlit's metrics, media and upload routes are hidden."""
    from study_app.web.gate import current_gate

    _run(["urcdm-study", "demo", "--no-run"], cwd=tmp_path)
    workdir = tmp_path / "build" / "study-demo" / "study-run"
    gate = current_gate(workdir)
    tokens = {reader: gate.open_session("reader", reader) for reader in ("reader-1", "reader-2")}
    seen: dict[str, dict[str, set]] = {"real": {}, "synthetic": {}}
    refused: list[int] = []

    def fetch_all(base: str) -> None:
        for reader, token in tokens.items():
            for case in gate.prepared.reader_cases(reader):
                # A browser asks for gzip: the bytes must still arrive as they are, their length the file's.
                status, headers, body = _request(f"{base}case-image/{case.id}.png?session={token}",
                                                 headers={"Accept-Encoding": "gzip, deflate, br"})
                assert status == 200 and body.startswith(b"\x89PNG")
                assert body == (workdir / "static" / f"{case.id}.png").read_bytes()
                for name, value in headers.items():
                    if name.lower() != "date":
                        seen[case.truth].setdefault(name.lower(), set()).add(value)
        mine = gate.prepared.reader_cases("reader-1")[0].id
        not_mine = next(c.id for c in gate.prepared.cases if c.id not in gate.assigned("reader-1"))
        for url in (f"case-image/{mine}.png", f"case-image/{mine}.png?session=forged",
                    f"case-image/{not_mine}.png?session={tokens['reader-1']}", f"app/static/{mine}.png",
                    "_stcore/metrics", "media/0123456789abcdef.csv", "_stcore/upload_file/x/y"):
            status, headers, body = _request(base + url)
            refused.append(status)
            assert not body.startswith(b"\x89PNG") and "x-frame-options" in {k.lower() for k in headers}

    _serve(["urcdm-study", "run", "build/study-demo/study.yaml"], cwd=tmp_path, during=fetch_all)
    assert refused == [403, 403, 403, 404, 404, 404, 404]
    assert seen["real"] and seen["real"] == seen["synthetic"]
    assert all(len(values) == 1 for values in seen["real"].values()), seen["real"]
    names = set(seen["real"])
    assert {"content-security-policy", "x-frame-options", "referrer-policy"} <= names
    assert not names & {"etag", "last-modified", "access-control-allow-origin", "content-encoding"}
    assert seen["real"]["cache-control"] == {"no-store, no-transform"}
    assert "frame-ancestors 'none'" in next(iter(seen["real"]["content-security-policy"]))


def test_answers_are_posted_to_a_live_reader_session_and_downloads_go_to_the_organiser_only(tmp_path):
    """The answer route stores an answer of the session's reader and replies with the next case (a
    repeat is recorded once); the organiser's files (answers with their truth) go to a live organiser
    session only: not to no session, a forged one, or a reader's."""
    from study_app.web.gate import ORGANISER, current_gate

    _run(["urcdm-study", "demo", "--no-run"], cwd=tmp_path)
    workdir = tmp_path / "build" / "study-demo" / "study-run"
    gate = current_gate(workdir)
    reader, organiser = gate.open_session("reader", "reader-1"), gate.open_session(ORGANISER, ORGANISER)
    order = [case.id for case in gate.reader_cases("reader-1")]
    results = {}

    def exercise(base: str) -> None:
        answer = json.dumps({"case": order[0], "answer": "real", "confidence": 4, "comment": "=HYPERLINK(1)"}).encode()
        json_type = {"Content-Type": "application/json"}
        for name, token in (("forged", "forged"), ("organiser", organiser)):
            results[f"answer by {name}"] = _request(f"{base}case-answer?session={token}", answer, json_type)[0]
        for attempt in ("first", "again"):  # a reply lost on the way: the browser sends the answer again
            status, headers, body = _request(f"{base}case-answer?session={reader}", answer, json_type)
            results[f"answer {attempt}"] = (status, json.loads(body) if status == 200 else None)
        for name, token in (("none", ""), ("forged", "forged"), ("reader", reader), ("organiser", organiser)):
            status, headers, body = _request(f"{base}organiser-download/answers.csv?session={token}")
            results[f"download by {name}"] = (status, headers.get("content-disposition", ""), body)

    _serve(["urcdm-study", "run", "build/study-demo/study.yaml"], cwd=tmp_path, during=exercise)
    assert results["answer by forged"] == results["answer by organiser"] == 403
    for attempt in ("first", "again"):
        status, reply = results[f"answer {attempt}"]
        assert status == 200 and reply["message"] is None
        assert reply["position"]["case"] == order[1] and reply["position"]["index"] == 1
    assert [(a.case, a.answer, a.confidence) for a in AnswerStore(workdir / "answers.sqlite").all_answers()] == [
        (order[0], "real", 4)]
    for name in ("none", "forged", "reader"):
        assert results[f"download by {name}"][0] == 403 and not results[f"download by {name}"][2]
    status, disposition, body = results["download by organiser"]
    assert status == 200 and disposition.startswith('attachment; filename="answers-')
    exported = body.decode()
    assert order[0] in exported and "'=HYPERLINK(1)" in exported  # neutralised for spreadsheets


def test_demo_refuses_a_file_as_out_and_a_busy_port_before_building_anything(tmp_path, capsys):
    from study_app.cli import main as study_cli

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert study_cli(["demo", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a folder" in err and err.count("\n") == 1
    assert a_file.read_text() == "mine"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for argv in (["demo", "--out", str(tmp_path / "demo")], ["run", str(tmp_path / "demo" / "study.yaml")]):
            assert study_cli([*argv, "--port", str(port)]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: cannot listen") and "secret" not in err and err.count("\n") == 1
    assert not (tmp_path / "demo").exists()  # no study built, no secret made
    for port in ("70000", "-1"):  # a usage error: argparse exits with the contract's status
        with pytest.raises(SystemExit) as exited:
            study_cli(["demo", "--out", str(tmp_path / "demo"), f"--port={port}"])
        assert exited.value.code == 2
        assert capsys.readouterr().err.startswith("error: argument --port: expected an integer in 1..65535")


def test_demo_fresh_replaces_a_demo_and_never_a_folder_of_the_users(tmp_path, capsys):
    from study_app.preparation.demo import build_demo
    from urcdm.errors import OutputExistsError

    users = tmp_path / "thesis"
    users.mkdir()
    (users / "chapter-1.tex").write_text("mine")
    (users / "slides").mkdir()  # even beside a folder named as the demo's
    with pytest.raises(OutputExistsError, match="is not a demo study"):
        build_demo(users, fresh=True, crops=2)
    assert (users / "chapter-1.tex").read_text() == "mine"
    study_file, secret = build_demo(tmp_path / "demo", crops=2)
    again, fresh_secret = build_demo(tmp_path / "demo", fresh=True, crops=2)
    assert again == study_file and fresh_secret != secret

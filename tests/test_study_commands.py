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

from study_app.store import AnswerStore

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
    _serve(["urcdm-study", "run", "study.yaml"], cwd=study)
    _serve(["urcdm-study", "run", "../work/build/./study-demo/study.yaml"], cwd=other)

    exported = _run(["urcdm-study", "export", "../work/build/study-demo/study.yaml", "-o", "answers.csv"], cwd=other)
    assert exported.returncode == 0, exported.stderr
    scored = _run(["urcdm-study", "score", "answers.csv", "--json"], cwd=other)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["arms"][prepared["arm"]]["total"]["tp"] == 0


def test_case_images_go_only_to_their_readers_with_one_set_of_headers_whatever_their_class(tmp_path):
    """Over HTTP: a case image answers only a live session of a reader assigned that case, with the
    same headers (Content-Length, Content-Type, caching) for every case of either class, no ETag or
    Last-Modified, no cross-origin sharing, and the security headers; Streamlit's metrics are hidden."""
    from study_app.gate import current_gate

    _run(["urcdm-study", "demo", "--no-run"], cwd=tmp_path)
    workdir = tmp_path / "build" / "study-demo" / "study-run"
    gate = current_gate(workdir)
    tokens = {reader: gate.open_session("reader", reader) for reader in ("reader-1", "reader-2")}
    seen: dict[str, dict[str, set]] = {"real": {}, "synthetic": {}}
    refused: list[int] = []

    def get(url: str):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers.items()), b""

    def fetch_all(base: str) -> None:
        for reader, token in tokens.items():
            for case in gate.prepared.reader_cases(reader):
                status, headers, _ = get(f"{base}case-image/{case.id}.jpg?session={token}")
                assert status == 200
                for name, value in headers.items():
                    if name.lower() != "date":
                        seen[case.truth].setdefault(name.lower(), set()).add(value)
        mine = gate.prepared.reader_cases("reader-1")[0].id
        not_mine = next(c.id for c in gate.prepared.cases if c.id not in gate.assigned("reader-1"))
        for url in (f"case-image/{mine}.jpg", f"case-image/{mine}.jpg?session=forged",
                    f"case-image/{not_mine}.jpg?session={tokens['reader-1']}", f"app/static/{mine}.jpg",
                    "_stcore/metrics"):
            status, headers, body = get(base + url)
            refused.append(status)
            assert not body.startswith(b"\xff\xd8") and "x-frame-options" in {k.lower() for k in headers}

    _serve(["urcdm-study", "run", "build/study-demo/study.yaml"], cwd=tmp_path, during=fetch_all)
    assert refused == [403, 403, 403, 404, 404]
    assert seen["real"] and seen["real"] == seen["synthetic"]
    assert all(len(values) == 1 for values in seen["real"].values()), seen["real"]
    names = set(seen["real"])
    assert {"content-security-policy", "x-frame-options", "referrer-policy"} <= names
    assert not names & {"etag", "last-modified", "access-control-allow-origin"}
    assert "frame-ancestors 'none'" in next(iter(seen["real"]["content-security-policy"]))

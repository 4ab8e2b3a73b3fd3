"""The README's ``urcdm-study`` commands, typed as a user types them: console scripts, relative
paths, run from the folder they are documented for and from other folders."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
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
    _serve(["urcdm-study", "run", "study.yaml"], cwd=study)
    _serve(["urcdm-study", "run", "build/study-demo/study.yaml"], cwd=work)
    _serve(["urcdm-study", "run", "../work/build/./study-demo/study.yaml"], cwd=other)

    exported = _run(["urcdm-study", "export", "../work/build/study-demo/study.yaml", "-o", "answers.csv"], cwd=other)
    assert exported.returncode == 0, exported.stderr
    scored = _run(["urcdm-study", "score", "answers.csv", "--json"], cwd=other)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["arms"][prepared["arm"]]["total"]["tp"] == 0


def test_served_case_images_have_the_same_headers_whatever_their_class(tmp_path):
    """What the browser sees of each case image over HTTP: one Content-Length, one Last-Modified,
    one Content-Type for all; the ETag differs per file but is a content hash, blind to class."""
    _run(["urcdm-study", "demo", "--no-run"], cwd=tmp_path)
    study = tmp_path / "build" / "study-demo"
    cases = json.loads((study / "study-run" / "cases.json").read_text())["cases"]
    seen: dict[str, dict[str, set]] = {"real": {}, "synthetic": {}}

    def fetch_all(base: str) -> None:
        for case in cases:
            with urllib.request.urlopen(f"{base}app/static/{case['id']}.jpg", timeout=10) as response:
                for name, value in response.headers.items():
                    if name.lower() not in ("date", "etag"):
                        seen[case["truth"]].setdefault(name.lower(), set()).add(value)

    _serve(["urcdm-study", "run", "build/study-demo/study.yaml"], cwd=tmp_path, during=fetch_all)
    assert seen["real"] and seen["real"] == seen["synthetic"]
    assert all(len(values) == 1 for values in seen["real"].values()), seen["real"]

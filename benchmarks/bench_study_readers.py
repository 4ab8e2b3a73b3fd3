"""Answer -> next image with 1, 5 and 20 readers at once, each in a real browser. Prints JSON. Not a test.

One study server (``urcdm-study run``'s command line), N headless chromium windows at 1366x768, each
logged in as its own reader. All readers answer together, by keyboard (3 then R or S), after a short
look at each case. Per answer the page itself records (``performance.now()`` in the case reader):

- stored: key press -> the answer route's reply (the answer is in SQLite; the reply names the next case);
- shown: key press -> the next case's image painted (it was prefetched; it is shown only once the
  reply confirms the answer, and the bar unlocks with it).

Cases are served in the study's default encoding (``--format auto``: uncompressed PNG up to 2048 px,
whose bytes depend on the size alone); ``--format jpeg`` for comparison.

    python benchmarks/bench_study_readers.py [--readers 1,5,20] [--answers 10] [--display 1024] [--format auto]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "plugins"))
from browser import headless_chromium  # noqa: E402  (its own TMPDIR, removed on quit)
from study_builder import build_study as build_bench_study  # noqa: E402

from study_app.preparation.prepare import prepare  # noqa: E402
from study_app.preparation.study import load_study  # noqa: E402
from study_app.web.server import streamlit_command  # noqa: E402
from urcdm.clikit import positive_int, positive_int_list, run_script  # noqa: E402

WINDOW = (1366, 768)


def cases_per_reader(answers: int) -> int:
    """Two cases beyond the timed answers, rounded up to even: a reader's cases are half real, half synthetic."""
    return answers + 2 + (answers % 2)


def build_study(root: Path, display: int, per_reader: int, image_format: str) -> Path:
    # Full-resolution (URCDM level 2) crops: shown 1:1 at ``display`` px, as a demo or a fixed-scale study is.
    crops = {"n": per_reader, "level": 2, "size": display}
    return build_bench_study(root, 8192, display, 2 * per_reader, crops=crops, image_format=image_format,
                             cases_per_reader=per_reader, answers={"confidence": True})


def start_server(prepared) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(streamlit_command(prepared.entry.resolve(), port, "127.0.0.1"), cwd=prepared.workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "_stcore/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError("the study server did not start")


def new_browser():
    return headless_chromium(*WINDOW)


# Twenty browsers starting at once on two cores time out: they start one by one, then answer together.
_STARTING = threading.Lock()
READY = ("const r = document.querySelector('.urcdm-reader'), i = document.getElementById('case-image');"
         "return !!(r && i && !r.classList.contains('busy') && i.classList.contains('shown') && i.dataset.case"
         " && window.__urcdmShownAt && window.__urcdmConfirmedAt)")


class Reader(threading.Thread):
    def __init__(self, name: str, url: str, answers: int, look_s: float, go: threading.Barrier):
        super().__init__(daemon=True)
        self.name_, self.url, self.answers, self.look_s, self.go = name, url, answers, look_s, go
        self.shown_ms: list[float] = []
        self.stored_ms: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver = None
        try:
            with _STARTING:
                driver = new_browser()
                wait = WebDriverWait(driver, 300, poll_frequency=0.05)
                driver.get(self.url)
                wait.until(lambda d: d.find_element(By.XPATH, "//input[@aria-label='Reader ID']")).send_keys(self.name_)
                driver.find_element(By.XPATH, "//button[normalize-space(.)='Start']").click()
                wait.until(lambda d: d.find_element(By.XPATH, "//button[normalize-space(.)='Begin']")).click()
                wait.until(lambda d: d.execute_script(READY.replace(" && window.__urcdmShownAt && window.__urcdmConfirmedAt", "")))
            self.go.wait(timeout=1200)
            # Times are taken in the page; slow polling keeps twenty drivers from eating the CPU they measure.
            wait = WebDriverWait(driver, 300, poll_frequency=0.25)
            rng = random.Random(self.name_)
            for number in range(self.answers):
                time.sleep(self.look_s * rng.uniform(0.5, 1.5))
                before = driver.execute_script("return document.getElementById('case-image').dataset.case")
                ActionChains(driver).send_keys("3").send_keys("rs"[number % 2]).perform()
                wait.until(lambda d: d.execute_script(READY) and d.execute_script(
                    "return document.getElementById('case-image').dataset.case") != before
                    and d.execute_script("return window.__urcdmConfirmedAt > window.__urcdmAnsweredAt"
                                         " && window.__urcdmShownAt > window.__urcdmAnsweredAt"))
                answered, shown, stored = driver.execute_script(
                    "return [window.__urcdmAnsweredAt, window.__urcdmShownAt, window.__urcdmStoredAt]")
                self.shown_ms.append(shown - answered)
                self.stored_ms.append(stored - answered)
        except Exception as exc:  # reported in the JSON, never hidden
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.go.abort()
        finally:
            if driver is not None:
                driver.quit()


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    array = np.asarray(values)
    return {"n": len(values), "p50_ms": round(float(np.percentile(array, 50)), 1),
            "p95_ms": round(float(np.percentile(array, 95)), 1), "max_ms": round(float(array.max()), 1)}


def bench(url: str, server: psutil.Process, readers: int, answers: int, look_s: float, tag: str) -> dict:
    all_in = threading.Event()
    go = threading.Barrier(readers, action=all_in.set)
    threads = [Reader(f"{tag}-{i}", url, answers, look_s, go) for i in range(readers)]
    for thread in threads:
        thread.start()
    while not all_in.wait(0.1) and any(t.is_alive() for t in threads):
        pass
    # CPU from the moment all readers answer: the server's share against the machine's (the browsers).
    server_before, machine_before, started = sum(server.cpu_times()[:2]), psutil.cpu_times(), time.monotonic()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    machine = sum(psutil.cpu_times()[:3]) - sum(machine_before[:3])
    server_cpu = sum(server.cpu_times()[:2]) - server_before
    stored = [v for t in threads for v in t.stored_ms]
    return {"readers": readers, "answers_each": answers, "wall_s": round(seconds, 1),
            "shown": summary([v for t in threads for v in t.shown_ms]), "stored": summary(stored),
            "server_cpu_ms_per_answer": round(1000 * server_cpu / max(len(stored), 1), 1),
            "server_share_of_busy_cpu": round(server_cpu / machine, 3) if machine else None,
            "errors": [t.error for t in threads if t.error]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=positive_int_list, default="1,5,20", help="reader counts to run, one after another")
    parser.add_argument("--answers", type=positive_int, default=10, help="answers timed per reader")
    parser.add_argument("--look", type=float, default=1.0, help="mean seconds a reader looks before answering")
    parser.add_argument("--display", type=positive_int, default=1024, help="case image side (px)")
    parser.add_argument("--format", default="auto", choices=("auto", "raw", "jpeg", "png"), help="display.format")
    args = parser.parse_args()
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        json.dump({"skipped": "chromium / chromedriver not installed"}, sys.stdout)
        return
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-readers-") as tmp:
        prepared = prepare(load_study(build_study(Path(tmp), args.display, cases_per_reader(args.answers), args.format)), progress=False)
        sizes = [p.stat().st_size for p in prepared.image_folder.iterdir()]
        server, url = start_server(prepared)
        try:
            process = psutil.Process(server.pid)
            runs = [bench(url, process, int(n), args.answers, args.look, f"r{n}") for n in args.readers]
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {"window": WINDOW, "image_px": args.display, "format": prepared.encoding.format, "image_bytes": sizes[0],
              "look_s": args.look,
              "cpus": len(__import__("os").sched_getaffinity(0)), "runs": runs}
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

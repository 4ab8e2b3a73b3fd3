"""Preparing and showing reader-study cases at the sizes pathologists zoom into. Prints JSON. Not a test.

- rendering: parity-encoding cases read from a large pyramid (the crop is read from the pyramid level
  that matches the display size, never the whole slide): seconds per case, bytes per case, peak RSS.
- browser (when chromium + chromedriver are installed): the running app, a reader logged in, time
  from pressing an answer to the next case's image decoded in the pan/zoom viewer.

    python benchmarks/bench_study.py [--display 4096] [--cases 12] [--slide-size 16384]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml

from study_app.prepare import prepare
from study_app.study import load_study
from urcdm.pyramid import write_pyramid


class NoiseTissue:
    """A pixel source for a large synthetic slide that never exists in memory as a whole."""

    def __init__(self, size: int, seed: int):
        self.width = self.height = size
        self.seed = seed

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, x, y])
        base = np.array([200, 140, 190], dtype=np.int16)
        return np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_study(root: Path, slide_size: int, display: int, cases: int) -> Path:
    for name, seed in (("real", 1), ("fake", 2)):
        write_pyramid(NoiseTissue(slide_size, seed), root / f"{name}.tiff", tile=512, quality=90, mpp=0.5, overwrite=True)
    # pfid crops covering display..2*display px of the slide: the slide shrunk to a side in [S/2, S].
    crops = {"n": cases // 2, "size": display, "mode": "pfid", "min": max(display, slide_size // 2), "max": slide_size}
    study = {"title": "bench", "seed": 0, "display": {"size": display, "format": "jpeg", "quality": 92},
             "arms": [{"name": "ARM-1", "real": {"slides": str(root / "real.tiff"), "crops": crops},
                       "synthetic": {"slides": str(root / "fake.tiff"), "crops": crops}}],
             "access": {"readers": [{"id": "bench", "code": "bench"}]}, "admin": {"secret_env": "URCDM_BENCH_ADMIN"}}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def bench_rendering(study_file: Path) -> tuple[dict, object]:
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    prepared = prepare(load_study(study_file), progress=False)
    seconds = time.perf_counter() - started
    sizes = [p.stat().st_size for p in (prepared.workdir / "static").iterdir()]
    return {"cases": len(sizes), "seconds_per_case": round(seconds / len(sizes), 3),
            "mean_bytes_per_case": int(np.mean(sizes)), "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_rss_before_mb": round(rss_before, 1)}, prepared


def bench_browser(prepared, answers: int) -> dict:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        return {"skipped": "chromium / chromedriver not installed"}
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from study_app.server import streamlit_command

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(streamlit_command(prepared.entry, port, "127.0.0.1"), cwd=prepared.workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1200"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    wait = WebDriverWait(driver, 120)

    def click(label: str) -> None:
        wait.until(lambda d: d.find_element(By.XPATH, f"//button[normalize-space(.)='{label}']")).click()

    def image_shown(number: int) -> None:
        wait.until(lambda d: d.find_elements(By.XPATH, f"//*[contains(text(), 'Case {number} of')]"))
        frame = wait.until(lambda d: d.find_element(By.TAG_NAME, "iframe"))
        driver.switch_to.frame(frame)
        try:
            wait.until(lambda d: d.execute_script(
                "const i = document.getElementById('case-image'); return i && i.complete && i.naturalWidth > 0"))
        finally:
            driver.switch_to.default_content()

    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        driver.get(url)
        wait.until(lambda d: d.find_element(By.XPATH, "//input[@aria-label='Reader ID']")).send_keys("bench")
        driver.find_element(By.XPATH, "//input[@aria-label='Access code']").send_keys("bench")
        click("Start")
        click("Begin")
        image_shown(1)
        timings = []
        for number in range(1, answers + 1):
            started = time.perf_counter()
            click("Real" if number % 2 else "Synthetic")
            image_shown(number + 1)
            timings.append(time.perf_counter() - started)
        return {"answers": answers, "answer_to_next_image_s_median": round(float(np.median(timings)), 3),
                "answer_to_next_image_s_max": round(max(timings), 3)}
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--display", type=int, default=4096, help="display size of each case (px)")
    parser.add_argument("--cases", type=int, default=12, help="cases in all (half real, half synthetic)")
    parser.add_argument("--slide-size", type=int, default=16384, help="side of the two benchmark slides")
    parser.add_argument("--answers", type=int, default=5, help="answers timed in the browser")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-study-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        study_file = build_study(root, args.slide_size, args.display, args.cases)
        slides_s = time.perf_counter() - started
        rendering, prepared = bench_rendering(study_file)
        result = {"display_px": args.display, "slide_px": args.slide_size, "slide_build_s": round(slides_s, 1),
                  "rendering": rendering, "browser": bench_browser(prepared, min(args.answers, args.cases - 1))}
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()

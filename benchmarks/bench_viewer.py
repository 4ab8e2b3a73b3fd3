"""``urcdm view`` on a gigapixel pyramid: time to first view, tile latency and the server's memory.

1. A 41344 x 41344 JPEG pyramid (bench_pyramid's, unless ``--slide`` names one) is opened by
   ``urcdm view --port 0 --json``, started as a user starts it.
2. Time to first view: from starting the command until chromium (headless, 1366 x 768) has every
   tile of the first screen drawn (OpenSeadragon's fully-loaded event), and from page load alone.
3. Tile latency: random uncached tiles at every Deep Zoom level, one client and 8 at once, over HTTP.
4. Peak RSS of the server process (VmHWM), after all of it.
5. A whole-slide study's tiling of the same slide (``study_app.preparation.whole_slides.render_slide``, what
   ``urcdm-study prepare`` does per whole-slide case): seconds, tiles, bytes, this process's peak RSS.

Prints one JSON object. Not a test.
    python benchmarks/bench_viewer.py [--slide PYRAMID] [--tiles 1000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "plugins"))
from browser import headless_chromium  # noqa: E402  (its own TMPDIR, removed on quit)

from urcdm.clikit import positive_int, run_script  # noqa: E402

HERE = Path(__file__).resolve().parent


def build_pyramid(workdir: Path) -> Path:
    out = subprocess.run([sys.executable, str(HERE / "bench_pyramid.py"), "--workdir", str(workdir), "--keep",
                          "--reads", "10", "--mpp", "0.25"], check=True, capture_output=True, text=True).stdout
    return Path(json.loads(out)["kept"])


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_view_ms(url: str) -> tuple[float, float]:
    """(ms from navigation to the first screen drawn, wall seconds of the browser part)."""
    driver = headless_chromium()
    try:
        started = time.perf_counter()
        driver.get(url)
        while not driver.execute_script("return document.body.dataset.firstViewMs"):
            time.sleep(0.02)
        page_ms = float(driver.execute_script("return document.body.dataset.firstViewMs"))
        return page_ms, time.perf_counter() - started
    finally:
        driver.quit()


def tile_latencies(url: str, levels: list[tuple[int, int]], count: int, clients: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    deep = len(levels)
    picks = []
    for _ in range(count):
        level = int(rng.integers(max(0, deep - 8), deep))  # the levels people look at: the last 8 (1 to 1/128)
        cols, rows = levels[level]
        picks.append(f"{url}slide/0_files/{level}/{int(rng.integers(cols))}_{int(rng.integers(rows))}.jpeg")

    def fetch(tile_url: str) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(tile_url) as response:
            response.read()
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(fetch, picks))


def study_tiling(slide: Path, workdir: Path) -> dict:
    import os
    import resource

    from study_app.preparation.cases import Case
    from study_app.preparation.encodings import Encoding
    from study_app.preparation.whole_slides import SlideLayout, render_slide
    from urcdm.slides import open_slide

    with open_slide(slide) as opened:
        mpp, side = sum(opened.mpp) / 2, min(opened.dimensions)
    case = Case("bench", "wsi", "synthetic", str(slide), None, whole_slide=True)
    started = time.perf_counter()
    render_slide(case, SlideLayout(mpp=mpp, side=side), Encoding("jpeg", 92), workdir / "tiles")
    seconds = time.perf_counter() - started
    files = list((workdir / "tiles").rglob("*.jpg"))
    return {"side": side, "seconds": round(seconds, 1), "tiles": len(files), "tiles_per_s": round(len(files) / seconds, 1),
            "bytes": sum(f.stat().st_size for f in files), "threads": os.cpu_count(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide", type=Path, help="pyramid to view (default: build bench_pyramid's 41344^2 one)")
    parser.add_argument("--tiles", type=positive_int, default=1000, help="random tiles per client setting")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-study-tiling", action="store_true", help="skip part 5")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="urcdm-bench-view-", dir=args.workdir))
    server = None
    try:
        slide = args.slide or build_pyramid(workdir)
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "urcdm.cli", "view", str(slide), "--port", "0", "--json"],
                                  stdout=subprocess.PIPE, text=True)
        line = server.stdout.readline()
        if not line:  # the viewer refused the slide: its error line is already on stderr
            sys.exit(2)
        ready = json.loads(line)
        url = ready["url"]
        while True:
            try:
                listing = json.load(urllib.request.urlopen(url + "slides.json"))
                break
            except OSError:
                time.sleep(0.02)
        serving_s = time.perf_counter() - started
        page_ms, browser_s = first_view_ms(url)
        command_to_view_s = serving_s + browser_s

        from openslide.deepzoom import (
            DeepZoomGenerator,  # the layout only, to pick valid addresses
        )

        from urcdm.slides import open_slide
        with open_slide(slide) as opened:
            levels = list(DeepZoomGenerator(opened.openslide, 254, 1).level_tiles)
        result = {"slide": str(slide), "size": [listing[0]["width"], listing[0]["height"]],
                  "deep_zoom_levels": len(levels), "serving_after_s": round(serving_s, 2),
                  "first_view_page_ms": page_ms, "first_view_from_command_s": round(command_to_view_s, 2)}
        for clients, seed in ((1, 1), (8, 2)):
            times = np.asarray(tile_latencies(url, levels, args.tiles, clients, seed))
            result[f"tile_ms_{clients}_clients"] = {"p50": round(float(np.percentile(times, 50)), 1),
                                                    "p95": round(float(np.percentile(times, 95)), 1),
                                                    "max": round(float(times.max()), 1)}
        result["server_peak_rss_mb"] = round(vm_hwm_mb(server.pid), 1)
        server.terminate()
        if not args.no_study_tiling:
            result["study_tiling"] = study_tiling(slide, workdir)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(run_script(main))

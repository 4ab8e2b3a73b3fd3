"""Preparing and showing reader-study cases at the sizes pathologists zoom into. Prints JSON. Not a test.

- rendering: parity-encoding cases read from a large pyramid (the crop is read from the pyramid level
  that matches the display size, never the whole slide): seconds per case, bytes per case, peak RSS.
- browser (when chromium + chromedriver are installed): the running app, a reader logged in, time
  from an answer key to the next case's image painted, and to the answer stored (the bar unlocked).

    python benchmarks/bench_study.py [--display 4096] [--cases 12] [--slide-size 16384]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from study_builder import build_study

from study_app.preparation.prepare import prepare
from study_app.preparation.study import load_study
from urcdm.clikit import positive_int, run_script


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    """One reader in headless chromium (``bench_study_readers``' reader): answer -> next image shown and stored."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return {"skipped": "chromium / chromedriver not installed"}
    import threading

    from bench_study_readers import Reader, start_server, summary

    server, url = start_server(prepared)
    try:
        reader = Reader("bench", url, answers, 0.5, threading.Barrier(1))
        reader.run()
        return {"answers": answers, "shown": summary(reader.shown_ms), "stored": summary(reader.stored_ms),
                "error": reader.error}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--display", type=positive_int, default=4096, help="display size of each case (px)")
    parser.add_argument("--cases", type=positive_int, default=12, help="cases in all (half real, half synthetic)")
    parser.add_argument("--slide-size", type=positive_int, default=16384, help="side of the two benchmark slides")
    parser.add_argument("--answers", type=positive_int, default=5, help="answers timed in the browser")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-study-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        study_file = build_study(root, args.slide_size, args.display, args.cases)
        slides_s = time.perf_counter() - started
        rendering, prepared = bench_rendering(study_file)
        result = {"display_px": args.display, "slide_px": args.slide_size, "slide_build_s": round(slides_s, 1),
                  "rendering": rendering, "browser": bench_browser(prepared, min(args.answers, args.cases // 2 - 1))}
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

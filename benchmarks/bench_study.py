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


def build_study(root: Path, slide_size: int, display: int, cases: int, crops: dict | None = None,
                image_format: str = "jpeg", **settings) -> Path:
    """Two noise-tissue pyramids ("real", "fake") and a one-arm study of ``cases`` crops of them;
    ``crops`` replaces the default crop spec, ``settings`` add top-level study settings. JPEG (the
    default here, as 4096-px crops would be) is accepted although its coded length leaks: this
    measures speed, not blinding."""
    for name, seed in (("real", 1), ("fake", 2)):
        write_pyramid(NoiseTissue(slide_size, seed), root / f"{name}.tiff", tile=512, quality=90, mpp=0.5, overwrite=True)
    # pfid crops covering display..2*display px of the slide: the slide shrunk to a side in [S/2, S].
    crops = crops or {"n": cases // 2, "size": display, "mode": "pfid", "min": max(display, slide_size // 2),
                      "max": slide_size}
    shown = {"size": display, "format": image_format, "quality": 92, "parity": "warn"}
    study = {"title": "bench", "seed": 0, "display": shown, **settings,
             "arms": [{"name": "ARM-1", "real": {"slides": str(root / "real.tiff"), "crops": crops},
                       "synthetic": {"slides": str(root / "fake.tiff"), "crops": crops}}],
             "access": {"open": True}, "admin": {"secret_env": "URCDM_BENCH_ADMIN"}}
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
                  "rendering": rendering, "browser": bench_browser(prepared, min(args.answers, args.cases // 2 - 1))}
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()

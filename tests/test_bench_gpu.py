"""benchmarks/bench_gpu.py at CI size (--config tiny --device cpu --quick): the path a GPU run takes, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_runs_on_the_cpu_and_reports_every_part():
    done = subprocess.run([sys.executable, str(BENCH), "--config", "tiny", "--device", "cpu", "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["device"] == "cpu" and report["default_precision"] == "fp32" and report["peak_tflops"] > 0
    rows = report["unets"]
    assert {(r["unet"], r["batch"]) for r in rows} == {(u, b) for u in range(3) for b in (1, 2)}
    assert all(r["ms_per_sample"] > 0 and 0 < r["share_of_peak"] < 1 for r in rows)
    run = report["end_to_end"]
    assert run["patches"] == 35 and run["unet_calls"] > 0 and 0 < run["unet_seconds"] < run["wall_seconds"]
    expected = 100 * (run["wall_seconds"] - run["unet_seconds"]) / run["unet_seconds"]
    # reported from the unrounded seconds; the seconds shown are rounded to 3 decimals
    assert abs(run["overhead_percent"] - expected) < 0.1 + 0.01 * expected
    (projected,) = report["projection"]  # tiny: its own steps, no --level0
    assert projected["hours"] > 0 and projected["unet_evaluations"] == 1 * 64 + 9 * 64 + 81 * 64
    assert report["not_measured"]

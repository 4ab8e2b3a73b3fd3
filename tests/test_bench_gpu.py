"""benchmarks/bench_gpu.py at CI size (--config tiny --device cpu --quick): the path a GPU run takes, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import test_data_dir as shared_data_dir

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
    assert run["patches_diffused"] == 35  # none left out as glass: random weights say nothing of tissue
    expected = 100 * (run["wall_seconds"] - run["unet_seconds"]) / run["unet_seconds"]
    # reported from the unrounded seconds; the seconds shown are rounded to 3 decimals
    assert abs(run["overhead_percent"] - expected) < 0.1 + 0.01 * expected
    (projected,) = report["projection"]  # tiny: its own steps, no --level0
    assert projected["hours"] > 0 and projected["unet_evaluations"] == 1 * 64 + 9 * 64 + 81 * 64
    assert [row["unet"] for row in report["training"]] == [0, 1, 2]
    assert all(row["steps_per_s"] > 0 and row["batch_size"] == 2 for row in report["training"])
    pfid = report["pfid"]
    if not (shared_data_dir() / "slides").is_dir():
        assert "skipped" in pfid
        return
    assert pfid["crops"] == 16 and pfid["extractor"] == "inception-v3-random"
    assert set(pfid["crops_read_per_s_by_workers"]) == {str(w) for w in {1, min(4, os.cpu_count()), os.cpu_count()}}
    assert all(rate > 0 for rate in pfid["crops_read_per_s_by_workers"].values())
    assert 0 < pfid["device_busy_share"] <= 1 and pfid["features_per_s"] > 0
    # both projected from the pipeline's rate: 2 x 50,000 crops against 2 x 10,000
    assert pfid["projected_pfid_50k_both_sides_s"] > 0
    assert abs(pfid["projected_pfid_50k_both_sides_s"] - 5 * pfid["projected_fid_10k_both_sides_s"]) <= 0.5

"""benchmarks/bench_gpu.py at CI size (--config tiny --device cpu --quick): the path a GPU run takes, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import test_data_dir as shared_data_dir

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_runs_on_the_cpu_and_reports_every_part(tmp_path):
    written = tmp_path / "bench_gpu.json"
    done = subprocess.run([sys.executable, str(BENCH), "--config", "tiny", "--device", "cpu", "--quick", "--out", str(written)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert json.loads(written.read_text()) == report
    assert set(report["part_seconds"]) == {"peak_tflops", "unets", "end_to_end", "projection", "training", "pfid",
                                           "batch_invariance"}  # no compiled rows on the CPU by default
    invariance = report["batch_invariance"]
    assert invariance["patches_per_call"] == {"1": [1, 1, 1], "auto": [1, 4, 4]}
    assert invariance["identical"] and invariance["max_abs_difference"] == 0
    assert report["device"] == "cpu" and report["default_precision"] == "fp32" and report["peak_tflops"] > 0
    rows = report["unets"]
    assert {(r["unet"], r["batch"]) for r in rows} == {(u, b) for u in range(3) for b in (1, 2)}
    assert all(r["ms_per_sample"] > 0 and 0 < r["share_of_peak"] < 1 and r["compile"] is None for r in rows)
    run = report["end_to_end"]
    assert run["patches"] == 35 and run["unet_calls"] > 0 and 0 < run["unet_seconds"] < run["wall_seconds"]
    assert 0 < run["build_seconds"] < run["wall_seconds"] - run["unet_seconds"]  # part of the overhead
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


def test_the_compiled_projection_takes_each_unets_faster_rate_and_says_which_were_compiled(monkeypatch):
    """Projection rows with --compile auto: a unet measured compiled at its faster rate, the others eager."""
    import importlib

    from urcdm.config import tiny
    from urcdm.sampling.plan import plan_run

    monkeypatch.syspath_prepend(str(BENCH.parent))
    bench = importlib.import_module("bench_gpu")
    eager = [{"unet": u, "precision": "fp32", "compile": None, "batch": b, "ms_per_sample": ms}
             for u, b, ms in [(0, 1, 1e4), (0, 2, 8e3), (1, 2, 2e4), (2, 2, 3e4)]]  # seconds a sample: hours a slide
    compiled = [{"unet": 2, "precision": "fp32", "compile": "default", "batch": 2, "ms_per_sample": 1.5e4},
                {"unet": 1, "precision": "fp32", "compile": "default", "batch": 2, "ms_per_sample": 2.5e4}]  # slower
    plain, with_compile = bench.projection(tiny(), eager + compiled, "fp32", None, [(32, 16, 16)])
    assert plain["compile"] is None and with_compile["compile"] == "auto" and with_compile["compiled_unets"] == [1, 2]
    hours = {tuple(ms.values()): plan_run(tiny(), "urcdm", "checkerboard", 4, "fp32", measured_ms=ms)["hours"]
             for ms in ({0: 8e3, 1: 2e4, 2: 3e4}, {0: 8e3, 1: 2e4, 2: 1.5e4})}
    assert [plain["hours"], with_compile["hours"]] == [round(h, 2) for h in hours.values()]
    assert with_compile["hours"] < plain["hours"] - 1
    (only_eager,) = bench.projection(tiny(), eager, "fp32", None, [(32, 16, 16)])  # nothing compiled: one row
    assert only_eager == plain

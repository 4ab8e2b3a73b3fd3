"""Time and peak memory of CMMD and density/coverage on random features, CPU.

Both metrics do O(N² d) work over float64 row blocks (``evaluation/metrics/_blocks.py``), so their
memory should stay at the inputs plus a few blocks while the time grows as N². Each (metric, N)
runs in its own child process, so its peak RSS is its own; the peak is reset (Linux clear_refs)
after the features are made, and ``peak_above_inputs_mb`` is what the metric itself added.
Not tracemalloc: torch's allocations bypass Python's allocator and would not be counted.

``seconds`` is wall time, ``cpu_seconds`` the process's CPU time (all threads): on a shared machine
the wall time grows with other load, the CPU time much less.

Sizes predicted (from the smallest one, by the N² law) to take longer than ``--max-seconds`` are not
run; they are extrapolated from the largest size measured and listed under ``extrapolated``.
``--prdc-up-to N`` also times the authors' ``prdc.compute_prdc`` (three full N x N distance
matrices) at the sizes up to N, for comparison.

Prints one JSON object on stdout; progress goes to stderr. Not a test.
    python benchmarks/bench_metrics.py [--sizes 10000,20000,50000] [--dim 2048] [--max-seconds 180]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from evaluation.metrics import cmmd, density_coverage
from evaluation.metrics._blocks import DEFAULT_BLOCK_SIZE
from urcdm.clikit import comma_choices, non_negative_int, positive_float, positive_int, positive_int_list, run_script

METRICS = ("cmmd", "density_coverage", "prdc")
SEED = 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))


def _reset_peak_rss() -> float:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS, so the next peak read covers only what follows
    return _status_mb("VmRSS")


def _features(n: int, dim: int, shift: float, seed: int) -> np.ndarray:
    # float32 straight from the generator: no float64 temporary to inflate the baseline.
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32) + np.float32(shift)


def run_case(metric: str, n: int, dim: int) -> dict:
    """One measurement, in this (child) process."""
    real, fake = _features(n, dim, 0.0, SEED), _features(n, dim, 0.1, SEED + 1)
    baseline = _reset_peak_rss()
    cpu_started, started = time.process_time(), time.perf_counter()
    if metric == "cmmd":
        value = {"cmmd": cmmd(real, fake)}
    elif metric == "density_coverage":
        density, coverage = density_coverage(real, fake)
        value = {"density": density, "coverage": coverage}
    else:
        import prdc

        with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
            out = prdc.compute_prdc(real, fake, nearest_k=5)
        value = {"density": float(out["density"]), "coverage": float(out["coverage"])}
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = _status_mb("VmHWM")
    return {"metric": metric, "n": n, "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
            "inputs_mb": round((real.nbytes + fake.nbytes) / 2**20, 1), "rss_before_mb": round(baseline, 1),
            "peak_rss_mb": round(peak, 1), "peak_above_inputs_mb": round(peak - baseline, 1), "value": value}


def run_child(metric: str, n: int, dim: int) -> dict:
    command = [sys.executable, __file__, "--child", f"{metric}:{n}", "--dim", str(dim)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"metric": metric, "n": n, "error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout)


def extrapolate(measured: dict, n: int, dim: int) -> dict:
    """Seconds by the N² law; memory as the measured block overhead plus the larger inputs."""
    ratio = (n / measured["n"]) ** 2
    inputs_mb = 2 * n * dim * 4 / 2**20
    return {"metric": measured["metric"], "n": n, "from_n": measured["n"],
            "law": "seconds ~ N^2; memory = inputs + measured overhead",
            "seconds_estimate": round(measured["seconds"] * ratio),
            "cpu_seconds_estimate": round(measured["cpu_seconds"] * ratio), "inputs_mb": round(inputs_mb, 1),
            "peak_above_inputs_mb_estimate": measured["peak_above_inputs_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=positive_int_list, default="10000,20000,50000", help="samples per side, comma-separated, ascending")
    parser.add_argument("--dim", type=positive_int, default=2048)
    parser.add_argument("--metrics", type=comma_choices(*METRICS), default="cmmd,density_coverage")
    parser.add_argument("--max-seconds", type=positive_float, default=180.0,
                        help="skip sizes predicted to take longer (per run)")
    parser.add_argument("--prdc-up-to", type=non_negative_int, default=10000, help="also run prdc at sizes up to this (0: never)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        metric, n = args.child.split(":")
        print(json.dumps(run_case(metric, int(n), args.dim)))
        return
    sizes = sorted(args.sizes)
    metrics = [m for m in args.metrics if m != "prdc"] + (["prdc"] if args.prdc_up_to else [])
    result = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "python": platform.python_version()},
              "dim": args.dim, "block_size": DEFAULT_BLOCK_SIZE, "max_seconds": args.max_seconds,
              "measured": [], "extrapolated": []}
    for metric in metrics:
        runs: list[dict] = []
        for n in sizes:
            if metric == "prdc" and n > args.prdc_up_to:
                break
            if runs and "seconds" in runs[0] and runs[0]["seconds"] * (n / runs[0]["n"]) ** 2 > args.max_seconds:
                result["extrapolated"].append(extrapolate(runs[-1], n, args.dim))
                log(f"{metric} N={n}: predicted over {args.max_seconds:.0f} s, extrapolated from N={runs[-1]['n']}")
                continue
            log(f"{metric} N={n} ...")
            runs.append(run_child(metric, n, args.dim))
            log(f"  {runs[-1]}")
        result["measured"] += runs
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(run_script(main))

"""The sampler on a GPU, in one command: the unets' speed, a real `urcdm sample` run, and the projection to a
41344^2 slide. Prints JSON. Not a test (tests/test_bench_gpu.py runs it with --config tiny --device cpu).

1. Peak: a large matmul in the run's precision (8192^3 bf16 on CUDA), the yardstick for the shares below.
2. Per unet (level 1, with context; random weights, speed does not depend on them): precisions x batch
   sizes -> ms per sample, TFLOP/s (FLOPs from urcdm.sampling.cost) and share of the measured peak.
3. `urcdm sample`'s own path (sample_slide with the diffusion backend and fresh cascades built per level)
   on the 35-patch geometry (levels span 4096 / 2048 / 1024 slide px, grids 1 / 3 / 5) at the defaults
   (precision auto, batch auto): wall time, the sum of the unets' call time (CUDA-synchronised per call),
   the overhead over it, peak GPU memory and peak host RSS (of the whole process so far). With
   --memory-cap-gb 24 the run is repeated with the process capped (torch.cuda.set_per_process_memory_fraction)
   as on a 24 GB card, and the cap lifted after it.
4. The projection to the paper geometry (41344^2: 1 + 49 + 2116 patches) with the measured ms per sample
   at the best batch of the default precision, for the paper's steps, 256/64/64 and 64/32/32, with the
   white skip judged on --level0 when given (the TCGA layout: 669 of 2116 last-level patches over glass).

5. Training: steps/s and peak GPU memory of each unet at its configured batch (bf16 autocast on CUDA).
6. pFID at its real size (``gpu_parts.pfid_rates``) on the real slides (--slides, default
   $URCDM_TEST_DATA/slides): crops read per second with 1, 4 and all cores, the Inception graph's
   features per second (random weights where the real ones are absent), the whole pipeline's rate and
   its share of the extractor's (how busy the GPU is kept), and pFID-50k (both sides) and FID-10k
   projected from it; --pfid-full 50000 times `urcdm-eval pfid` itself at that size.

    python benchmarks/bench_gpu.py                                   # paper config on CUDA (< 8 min on an H200)
    python benchmarks/bench_gpu.py --config tiny --device cpu --quick   # the same path on a CPU (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from gpu_parts import pfid_rates, training_rates

from urcdm.config import LevelSpec, load_config, method_levels
from urcdm.sample_cli import batch_size_option, fresh_cascade, resolve_precision
from urcdm.sampling import held_dtype
from urcdm.sampling.backends import DiffusionBackend
from urcdm.sampling.cost import forward_flops
from urcdm.sampling.plan import plan_run, timed_ms
from urcdm.sampling.sampler import level0_from_slide, sample_slide

DEFAULT_SLIDES = Path(os.environ.get("URCDM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "slides"
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs"}
SMALL_GEOMETRY = (LevelSpec(4096, 1), LevelSpec(2048, 3), LevelSpec(1024, 5))  # 1 + 9 + 25 patches
STEP_PLANS = {"paper": [(1024, 256, 256), (256, 64, 64), (64, 32, 32)]}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, precision: str, quick: bool) -> float:
    """FLOP/s of a large matmul in the precision the unets run in."""
    dtype = held_dtype(precision) or torch.float32
    n = 8192 if device.type == "cuda" and not quick else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronise(device)
    repeats = 10 if device.type == "cuda" else 3
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronise(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - started)


def unet_table(config, device: torch.device, precisions, batches, peak: float) -> list[dict]:
    rows = []
    for index, spec in enumerate(config.unets):
        flops = forward_flops(config, 1, index)
        for precision in precisions:
            for batch in batches:
                try:
                    ms = timed_ms(config, 1, index, "urcdm", precision, batch, str(device))
                except torch.cuda.OutOfMemoryError:
                    rows.append({"unet": index, "size": spec.image_size, "precision": precision, "batch": batch,
                                 "ms_per_sample": None, "note": "out of memory"})
                    torch.cuda.empty_cache()
                    continue
                rate = flops / (ms / 1e3)
                rows.append({"unet": index, "size": spec.image_size, "precision": precision, "batch": batch,
                             "ms_per_sample": round(ms, 3), "tflops": round(rate / 1e12, 3),
                             "share_of_peak": round(rate / peak, 4)})
    return rows


class TimedForwards:
    """Wraps every unet's forward of each cascade the backend builds, summing their (synchronised) time."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.calls = device, 0.0, 0

    def wrap(self, imagen):
        for unet in imagen.unets:
            forward = unet.forward

            def timed(*args, _forward=forward, **kwargs):
                synchronise(self.device)
                started = time.perf_counter()
                out = _forward(*args, **kwargs)
                synchronise(self.device)
                self.seconds += time.perf_counter() - started
                self.calls += 1
                return out

            unet.forward = timed
        return imagen


def end_to_end(config, device: torch.device, precision: str, steps, batch_size: int | None, cap_gb: float | None) -> dict:
    config = replace(config, levels=SMALL_GEOMETRY,
                     unets=tuple(replace(u, sample_steps=s) for u, s in zip(config.unets, steps)))
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        # Capped as a card of cap_gb would be (batch auto sizes itself from what the cap leaves); the
        # uncapped run resets a cap an earlier run set.
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * 2 ** 30 / total) if cap_gb else 1.0, device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    timer = TimedForwards(device)
    cascades = {level: (lambda level=level, **place: timer.wrap(fresh_cascade(config, level, "urcdm", 0, **place)))
                for level in method_levels(config, "urcdm")}
    backend = DiffusionBackend(cascades, device, precision=precision, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        # Every patch diffused: random weights make "glass" of any level, and white skip would then leave
        # the last level (the 1024-px unet's share, most of a real slide's time) out of the measurement.
        manifest = sample_slide(config, backend, Path(folder) / "slide.tiff", seed=0, batch_size=batch_size,
                                progress=False, white_skip=False)
        wall = time.perf_counter() - started
    backend.release()
    return {"patches": sum(entry["patches"] for entry in manifest["levels"]),
            "patches_diffused": sum(entry.get("patches_diffused", entry["patches"]) for entry in manifest["levels"]),
            "steps": list(steps),
            "batch_size": batch_size or "auto", "patches_per_call": [entry.get("batch_size", 1) for entry in manifest["levels"]],
            "precision": precision, "wall_seconds": round(wall, 3),
            "unet_seconds": round(timer.seconds, 3), "unet_calls": timer.calls,
            "overhead_percent": round(100 * (wall - timer.seconds) / max(timer.seconds, 1e-9), 1),
            "unet_batches": manifest["unet_batches"], "memory_cap_gb": cap_gb,
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if device.type == "cuda" else None,
            "peak_host_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}


def projection(config, table: list[dict], precision: str, overview, plans) -> list[dict]:
    best = {}
    for row in table:
        if row["precision"] == precision and row["ms_per_sample"] is not None:
            best[row["unet"]] = min(best.get(row["unet"], float("inf")), row["ms_per_sample"])
    out = []
    for steps in plans:
        planned = replace(config, unets=tuple(replace(u, sample_steps=s) for u, s in zip(config.unets, steps)))
        for skip in ((False, True) if overview is not None else (False,)):
            plan = plan_run(planned, "urcdm", "checkerboard", 4, precision, white_skip=skip,
                            overview=overview if skip else None, measured_ms=best)
            out.append({"steps": list(steps), "white_skip": skip, "hours": round(plan["hours"], 2),
                        "unet_evaluations": plan["unet_evaluations"], "eflop": round(plan["flops"] / 1e18, 3)})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", help="default: bf16,fp32 on CUDA; fp32 on the CPU")
    parser.add_argument("--batches", help="default: 1,4,16,64 on CUDA; 1,2 on the CPU")
    parser.add_argument("--steps", default=None, help="end-to-end steps per unet (default 32,8,8; 2,1,1 with --quick)")
    parser.add_argument("--batch-size", type=batch_size_option, default=None, metavar="auto|N",
                        help="end-to-end patches per call (default auto, as urcdm sample)")
    parser.add_argument("--memory-cap-gb", type=float, help="cap the process's GPU memory, e.g. 24")
    parser.add_argument("--level0", type=Path, help="a slide whose layout judges the white skip (e.g. the TCGA slide)")
    parser.add_argument("--slides", type=Path, default=DEFAULT_SLIDES, help="real slides for the pFID part")
    parser.add_argument("--pfid-n", type=int, help="crops in the pFID rate measurement (default 4096 on CUDA, 16 on the CPU)")
    parser.add_argument("--pfid-full", type=int, help="also time `urcdm-eval pfid` with this many crops a side (e.g. 50000)")
    parser.add_argument("--train-steps", type=int, help="timed training steps per unet (default 20 on CUDA, 1 on the CPU)")
    parser.add_argument("--quick", action="store_true", help="small peak matmul, fewest timings (CI-sized)")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = load_config(args.config)
    cuda = device.type == "cuda"
    precision = resolve_precision("auto", str(device))
    precisions = args.precisions.split(",") if args.precisions else (["bf16", "fp32"] if cuda else ["fp32"])
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([1, 4, 16, 64] if cuda else [1, 2])
    steps = tuple(int(s) for s in (args.steps or ("2,1,1" if args.quick else "32,8,8")).split(","))
    started = time.perf_counter()
    peak = matmul_peak(device, precision, args.quick)
    table = unet_table(config, device, precisions, batches, peak)
    report = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "config": config.name,
              "default_precision": precision, "peak_tflops": round(peak / 1e12, 2), "unets": table,
              "end_to_end": end_to_end(config, device, precision, steps, args.batch_size, None)}
    if args.memory_cap_gb:
        report["end_to_end_capped"] = end_to_end(config, device, precision, steps, args.batch_size, args.memory_cap_gb)
        if cuda:  # lifted for the parts after it
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    overview = level0_from_slide(args.level0, config) if args.level0 else None
    plans = STEP_PLANS.get(config.name, [tuple(u.sample_steps or u.timesteps for u in config.unets)])
    report["projection"] = projection(config, table, precision, overview, plans)
    report["training"] = training_rates(config, device, args.train_steps or (20 if cuda else 1),
                                        None if cuda else [2] * len(config.unets))
    slides = sorted(p for p in args.slides.glob("*") if p.suffix in SLIDE_SUFFIXES and p.name != "broken.svs") \
        if args.slides.is_dir() else []
    workers = sorted({1, min(4, os.cpu_count() or 1), os.cpu_count() or 1})
    report["pfid"] = pfid_rates(slides, device, args.pfid_n or (4096 if cuda else 16), 256 if cuda else 8, workers,
                                args.pfid_full) if slides else {"skipped": f"no slides in {args.slides}"}
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

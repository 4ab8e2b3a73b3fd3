"""The sampler on a GPU, in one command: the unets' speed, a real `urcdm sample` run, and the projection to a
41344^2 slide. Prints JSON. Not a test (tests/test_bench_gpu.py runs it with --config tiny --device cpu).

1. Peak: a large matmul in the run's precision (8192^3 bf16 on CUDA), the yardstick for the shares below.
2. Per unet (level 1, with context; random weights, speed does not depend on them): precisions x batch
   sizes -> ms per sample, TFLOP/s (FLOPs from urcdm.sampling.cost) and share of the measured peak.
3. `urcdm sample`'s own path (sample_slide with the diffusion backend and fresh cascades built per level)
   on the 35-patch geometry (levels span 4096 / 2048 / 1024 slide px, grids 1 / 3 / 5) at the defaults
   (precision auto, batch auto): wall time, the sum of the unets' call time (CUDA-synchronised per call),
   the overhead over it (and the seconds of it spent building the three cascades), peak GPU memory
   and peak host RSS (of the whole process so far). With --memory-cap-gb 24 the run is repeated with
   the process capped (torch.cuda.set_per_process_memory_fraction) as on a 24 GB card, and the cap
   lifted after it.
4. The projection to the paper geometry (41344^2: 1 + 49 + 2116 patches) with the measured ms per sample
   at the best batch of the default precision, for the paper's steps, 256/64/64 and 64/32/32, with the
   white skip judged on --level0 when given (the TCGA layout: 669 of 2116 last-level patches over glass);
   once the compiled rows (8) are in, also with `--compile auto`.
5. Training: steps/s and peak GPU memory of each unet at its configured batch (bf16 autocast on CUDA).
6. pFID at its real size (``gpu_parts.pfid_rates``) on the real slides (--slides, default
   $URCDM_TEST_DATA/slides): crops read per second with 1, 4 and all cores, the Inception graph's
   features per second (random weights where the real ones are absent), the whole pipeline's rate and
   its share of the extractor's (how busy the GPU is kept), and pFID-50k (both sides) and FID-10k
   projected from it; --pfid-full 50000 times `urcdm-eval pfid` itself at that size.
7. Batch invariance on this device: the 35-patch run at 2/1/1 steps, one patch per call against
   `--batch-size auto`, compared pixel for pixel (the sampler's noise is per patch; this asks whether
   the device's kernels also give a sample the same result in any batch).
8. Compiled unets (--compile auto, the default on CUDA): each unet compiled as `urcdm sample --compile
   auto` compiles it, at its fastest eager batch: ms per sample and the compile's seconds.

The parts run in this order, and --out rewrites the whole report after each: a run cut short keeps
what it measured.

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

import numpy as np
import torch
from gpu_parts import pfid_rates, training_rates

from urcdm.clikit import positive_float, positive_int, run_script
from urcdm.config import LevelSpec, load_config, method_levels
from urcdm.pyramid import check_output_path
from urcdm.sample_cli import batch_size_option, fresh_cascade, resolve_precision
from urcdm.sampling import held_dtype
from urcdm.sampling.backends import DiffusionBackend
from urcdm.sampling.cost import forward_flops
from urcdm.sampling.plan import plan_run, unet_timing
from urcdm.sampling.sampler import level0_from_slide, sample_slide
from urcdm.sampling.unet_batches import compile_mode_for
from urcdm.slides import open_slide

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


def unet_row(config, device: torch.device, index: int, precision: str, batch: int, peak: float,
             compile_mode: str | None = None) -> dict:
    row = {"unet": index, "size": config.unets[index].image_size, "precision": precision, "compile": compile_mode,
           "batch": batch}
    try:
        timing = unet_timing(config, 1, index, "urcdm", precision, batch, str(device), compile_mode=compile_mode)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {**row, "ms_per_sample": None, "note": "out of memory"}
    except Exception as exc:
        if not compile_mode:
            raise
        # a compiler failing on this node is a finding to report, not the end of the run
        lines = str(exc).strip().splitlines()
        return {**row, "ms_per_sample": None, "note": f"{type(exc).__name__}: {lines[0] if lines else ''}"}
    rate = forward_flops(config, 1, index) / (timing.ms_per_sample / 1e3)
    row.update(ms_per_sample=round(timing.ms_per_sample, 3), tflops=round(rate / 1e12, 3), share_of_peak=round(rate / peak, 4))
    if compile_mode:
        row["compile_seconds"] = round(timing.first_call_s, 1)
    return row


def unet_table(config, device: torch.device, precisions, batches, peak: float) -> list[dict]:
    """Eager: precisions x batches."""
    return [unet_row(config, device, index, p, batch, peak)
            for index in range(len(config.unets)) for p in precisions for batch in batches]


def compiled_row(config, device: torch.device, table: list[dict], index: int, precision: str, peak: float,
                 compile: str) -> dict:
    """Unet ``index`` compiled as ``urcdm sample --compile`` would (``compile_mode_for``), in the default
    ``precision`` at the batch that was its fastest eager; ``compile_seconds`` is the first call."""
    eager = [r for r in table if r["unet"] == index and r["precision"] == precision and r["ms_per_sample"]]
    batch = min(eager, key=lambda r: r["ms_per_sample"])["batch"] if eager else 1
    mode = compile_mode_for(compile, config.unets[index].image_size, config.unets[-1].image_size, device.type)
    return unet_row(config, device, index, precision, batch, peak, mode)


class TimedForwards:
    """Wraps every unet's forward of each cascade the backend builds, summing their (synchronised) time;
    ``built`` times the building of each cascade (random weights here; a real run loads checkpoints)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.calls, self.build_seconds = device, 0.0, 0, 0.0

    def built(self, build):
        synchronise(self.device)
        started = time.perf_counter()
        imagen = build()
        synchronise(self.device)
        self.build_seconds += time.perf_counter() - started
        return self.wrap(imagen)

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


def small_run(config, device: torch.device, precision: str, steps, batch_size: int | None, out: Path,
              timer: TimedForwards | None = None) -> tuple[dict, float]:
    """`urcdm sample`'s own path on the 35-patch geometry with fresh (random) cascades built per level:
    the manifest and the wall seconds. Every patch diffused: random weights make "glass" of any level,
    and white skip would then leave the last level (the 1024-px unet's share, most of a real slide's
    time) out of the measurement."""
    config = replace(config, levels=SMALL_GEOMETRY,
                     unets=tuple(replace(u, sample_steps=s) for u, s in zip(config.unets, steps)))
    built = timer.built if timer else (lambda build: build())
    cascades = {level: (lambda level=level, **place: built(lambda: fresh_cascade(config, level, "urcdm", 0, **place)))
                for level in method_levels(config, "urcdm")}
    backend = DiffusionBackend(cascades, device, precision=precision, batch_size=batch_size)
    started = time.perf_counter()
    manifest = sample_slide(config, backend, out, seed=0, batch_size=batch_size, progress=False, white_skip=False)
    wall = time.perf_counter() - started
    backend.release()
    return manifest, wall


def level_batches(manifest: dict) -> list[int]:
    """Patches per cascade call at each level, as the run's manifest records them."""
    return [entry.get("batch_size", 1) for entry in manifest["levels"]]


def end_to_end(config, device: torch.device, precision: str, steps, batch_size: int | None, cap_gb: float | None) -> dict:
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        # Capped as a card of cap_gb would be (batch auto sizes itself from what the cap leaves); the
        # uncapped run resets a cap an earlier run set.
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * 2 ** 30 / total) if cap_gb else 1.0, device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    timer = TimedForwards(device)
    with tempfile.TemporaryDirectory() as folder:
        manifest, wall = small_run(config, device, precision, steps, batch_size, Path(folder) / "slide.tiff", timer)
    return {"patches": sum(entry["patches"] for entry in manifest["levels"]),
            "patches_diffused": sum(entry.get("patches_diffused", entry["patches"]) for entry in manifest["levels"]),
            "steps": list(steps),
            "batch_size": batch_size or "auto", "patches_per_call": level_batches(manifest),
            "precision": precision, "wall_seconds": round(wall, 3),
            "unet_seconds": round(timer.seconds, 3), "unet_calls": timer.calls,
            "overhead_percent": round(100 * (wall - timer.seconds) / max(timer.seconds, 1e-9), 1),
            # of that overhead, building three random cascades (a real run loads checkpoints instead)
            "build_seconds": round(timer.build_seconds, 3),
            "unet_batches": manifest["unet_batches"], "memory_cap_gb": cap_gb,
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if device.type == "cuda" else None,
            "peak_host_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}


def batch_invariance(config, device: torch.device, precision: str, steps) -> dict:
    """The 35-patch run twice from one seed, one patch per call and ``--batch-size auto``: whether this
    device's kernels give each patch the same pixels in any batch (the CPU tests prove the sampler does)."""
    slides, per_call = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for size in (1, None):
            out = Path(folder) / f"batch-{size or 'auto'}.tiff"
            manifest, _ = small_run(config, device, precision, steps, size, out)
            per_call[size or "auto"] = level_batches(manifest)
            with open_slide(out) as slide:
                slides[size] = slide.read_level_window(0, 0, 0, *slide.dimensions).astype(np.int16)
    difference = np.abs(slides[1] - slides[None])
    return {"steps": list(steps), "precision": precision, "patches_per_call": per_call,
            "identical": bool(difference.max() == 0), "max_abs_difference": int(difference.max()),
            "differing_pixel_share": round(float((difference.max(axis=-1) > 0).mean()), 6)}


def best_ms(table: list[dict], precision: str, compiled: bool) -> dict[int, float]:
    """Each unet's fastest ms per sample in ``precision``: eager, or with ``compiled`` the faster of
    eager and compiled (``--compile`` is the user's choice; its rows are at one batch)."""
    best: dict[int, float] = {}
    for row in table:
        if row["precision"] == precision and row["ms_per_sample"] is not None and (compiled or not row["compile"]):
            best[row["unet"]] = min(best.get(row["unet"], float("inf")), row["ms_per_sample"])
    return best


def projection(config, table: list[dict], precision: str, overview, plans) -> list[dict]:
    """Hours of one paper-geometry slide at the measured rates: at the defaults (eager, best batch as
    ``--batch-size auto`` approaches it) and, where compiled rows were measured, with ``--compile auto``
    (``compiled_unets``: those measured compiled; the others at their eager rate)."""
    out, compiled_unets = [], sorted({row["unet"] for row in table if row["compile"] and row["ms_per_sample"]})
    for compiled in (False, True) if compiled_unets else (False,):
        best = best_ms(table, precision, compiled)
        for steps in plans:
            planned = replace(config, unets=tuple(replace(u, sample_steps=s) for u, s in zip(config.unets, steps)))
            for skip in ((False, True) if overview is not None else (False,)):
                plan = plan_run(planned, "urcdm", "checkerboard", 4, precision, white_skip=skip,
                                overview=overview if skip else None, measured_ms=best)
                out.append({"steps": list(steps), "compile": "auto" if compiled else None,
                            "compiled_unets": compiled_unets if compiled else [], "white_skip": skip,
                            "hours": round(plan["hours"], 2), "unet_evaluations": plan["unet_evaluations"],
                            "eflop": round(plan["flops"] / 1e18, 3)})
    return out


class Report(dict):
    """The JSON report, written whole to ``path`` after every part: a run cut short by a node's time limit
    keeps what it measured. Each part's seconds go to ``part_seconds``."""

    def __init__(self, path: Path | None, **fields):
        super().__init__(fields, part_seconds={})
        self.path = path

    def part(self, name: str, measure):
        started = time.perf_counter()
        self[name] = measure()
        seconds = round(time.perf_counter() - started, 1)
        self["part_seconds"][name] = round(self["part_seconds"].get(name, 0) + seconds, 1)  # a part redone adds up
        print(f"bench_gpu: {name} in {seconds} s", file=sys.stderr, flush=True)
        self.save()

    def save(self) -> None:
        if self.path:
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(self, indent=1))
            partial.replace(self.path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", help="default: bf16,fp32 on CUDA; fp32 on the CPU")
    parser.add_argument("--batches", help="default: 1,4,16,64 on CUDA; 1,2 on the CPU")
    parser.add_argument("--compile", choices=["auto", "none"], help="compiled rows as `urcdm sample --compile auto` "
                        "compiles each unet, at its best eager batch (default: auto on CUDA, none on the CPU)")
    parser.add_argument("--steps", default=None, help="end-to-end steps per unet (default 32,8,8; 2,1,1 with --quick)")
    parser.add_argument("--batch-size", type=batch_size_option, default=None, metavar="auto|N",
                        help="end-to-end patches per call (default auto, as urcdm sample)")
    parser.add_argument("--memory-cap-gb", type=positive_float, help="cap the process's GPU memory, e.g. 24")
    parser.add_argument("--level0", type=Path, help="a slide whose layout judges the white skip (e.g. the TCGA slide)")
    parser.add_argument("--slides", type=Path, default=DEFAULT_SLIDES, help="real slides for the pFID part")
    parser.add_argument("--pfid-n", type=positive_int, help="crops in the pFID rate measurement (default 4096 on CUDA, 16 on the CPU)")
    parser.add_argument("--pfid-full", type=positive_int, help="also time `urcdm-eval pfid` with this many crops a side (e.g. 50000)")
    parser.add_argument("--train-steps", type=positive_int, help="timed training steps per unet (default 20 on CUDA, 1 on the CPU)")
    parser.add_argument("--quick", action="store_true", help="small peak matmul, fewest timings (CI-sized)")
    parser.add_argument("--out", type=Path, help="also write the report here, after every part (a new file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args()
    if args.out is not None:
        check_output_path(args.out, args.overwrite)  # a report is not written over one already there
    device = torch.device(args.device)
    config = load_config(args.config)
    cuda = device.type == "cuda"
    precision = resolve_precision("auto", str(device))
    precisions = args.precisions.split(",") if args.precisions else (["bf16", "fp32"] if cuda else ["fp32"])
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([1, 4, 16, 64] if cuda else [1, 2])
    compile = {"auto": "auto", "none": None}[args.compile or ("auto" if cuda else "none")]
    steps = tuple(int(s) for s in (args.steps or ("2,1,1" if args.quick else "32,8,8")).split(","))
    overview = level0_from_slide(args.level0, config) if args.level0 else None
    plans = STEP_PLANS.get(config.name, [tuple(u.sample_steps or u.timesteps for u in config.unets)])
    slides = sorted(p for p in args.slides.glob("*") if p.suffix in SLIDE_SUFFIXES and p.name != "broken.svs") \
        if args.slides.is_dir() else []
    workers = sorted({1, min(4, os.cpu_count() or 1), os.cpu_count() or 1})
    started = time.perf_counter()
    report = Report(args.out, device=torch.cuda.get_device_name(device) if cuda else "cpu", config=config.name,
                    default_precision=precision)
    # The figures first; the costliest extras (compiling every paper unet) last.
    report.part("peak_tflops", lambda: round(matmul_peak(device, precision, args.quick) / 1e12, 2))
    peak = report["peak_tflops"] * 1e12
    report.part("unets", lambda: unet_table(config, device, precisions, batches, peak))
    report.part("end_to_end", lambda: end_to_end(config, device, precision, steps, args.batch_size, None))
    if args.memory_cap_gb:
        report.part("end_to_end_capped",
                    lambda: end_to_end(config, device, precision, steps, args.batch_size, args.memory_cap_gb))
        if cuda:  # lifted for the parts after it
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    report.part("projection", lambda: projection(config, report["unets"], precision, overview, plans))
    report.part("pfid", lambda: pfid_rates(slides, device, args.pfid_n or (4096 if cuda else 16), 256 if cuda else 8,
                                           workers, args.pfid_full) if slides else {"skipped": f"no slides in {args.slides}"})
    report.part("training", lambda: training_rates(config, device, args.train_steps or (20 if cuda else 1),
                                                    None if cuda else [2] * len(config.unets)))
    report.part("batch_invariance", lambda: batch_invariance(config, device, precision, (2, 1, 1)))
    if compile:
        report["unets_compiled"] = []
        for index in reversed(range(len(config.unets))):  # the 1024-px unet first: most of a slide's time
            report.part("unets_compiled", lambda: report["unets_compiled"]
                        + [compiled_row(config, device, report["unets"], index, precision, peak, compile)])
            report.part("projection", lambda: projection(config, report["unets"] + report["unets_compiled"],
                                                         precision, overview, plans))
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    report.save()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))

"""A sampling run's plan before the run: what `urcdm sample --dry-run` prints.

Per level: the unets' parameters and the bytes they hold at the run's precision (built on the ``meta``
device, so nothing is allocated: the paper's nine unets plan in seconds), the patches, waves and model
batches, the last-level patches the white skip will upsample (judged on the ``--level0`` layout as the
sampler judges contexts), the unet evaluations and their FLOPs (``urcdm.sampling.cost``), and the hours
they project to. On a CUDA device the projection times a few calls of each unet; elsewhere it plans for
an H200: batches as ``--batch-size auto`` would size them there, each unet at the rate the paper unet
of its size reached on one at that batch (``../shared/gpu/README.md``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from urcdm.config import URCDMConfig, has_context, method_levels
from urcdm.sampling import held_dtype
from urcdm.sampling.cost import forward_flops
from urcdm.sampling.geometry import LevelGrid, patch_context
from urcdm.sampling.schedule import batches, waves
from urcdm.sampling.unet_batches import AUTO_CPU, free_gpu_memory, patches_per_call

BYTES_PER_PARAMETER = {"fp32": 4, "bf16": 2, "fp16": 2}
# Measured on one H200 on 2026-12-04 (../shared/gpu/README.md): ms per sample of each paper unet (by the px it works at, with its GFLOP per sample) at 1, 4, 8 and 16
# samples per call, eager; fp32 with TF32 off, as PyTorch defaults. fp16 is taken to run as bf16.
H200_MEMORY = 139 * 2 ** 30  # what the card offers a process
H200_GFLOP = {64: 1002, 256: 785, 1024: 12498}
H200_MS = {"bf16": {64: {1: 59.6, 4: 15.4, 8: 7.9, 16: 4.4}, 256: {1: 61.1, 4: 16.0, 8: 9.2, 16: 5.7},
                    1024: {1: 91.2, 4: 83.7, 8: 82.9, 16: 82.2}},
           "fp32": {64: {1: 63.0, 4: 120.6, 8: 52.8, 16: 48.1}, 256: {1: 59.3, 4: 32.3, 8: 30.9, 16: 44.5},
                    1024: {1: 4634.7, 4: 462.5, 8: 459.0, 16: 459.1}}}
H200_MS["fp16"] = H200_MS["bf16"]
# Samples per call a dry run times each unet at on a GPU (fewer where asked, or where they do not fit):
# on an H200-class card auto gives each paper unet at least this many, and its per-sample rates have
# flattened by then.
TIMED_BATCH = 16
H200_SOURCE = ("projected from the H200 measured on 2026-12-04 (FLOPs at the rate of the paper unet of that size "
               "at that batch)")


@dataclass(frozen=True)
class UnetPlan:
    level: int
    unet: int
    size: int               # px a side the unet works at
    parameters: int
    resident_bytes: int     # its weights at the run's precision
    steps: int
    evaluations: int        # of one patch, over the slide
    flops_per_evaluation: float
    ms_per_sample: float    # projected
    hours: float


def unet_parameters(config: URCDMConfig, level: int, unet: int, method: str) -> int:
    import torch

    from urcdm.models import build_unet

    with torch.device("meta"):
        return sum(p.numel() for p in build_unet(config, level, unet, method).parameters())


def glass_map(config: URCDMConfig, overview: np.ndarray) -> dict:
    """Last-level patch -> whether its context is mostly glass, judged on ``overview``: the level-0 square
    (any side) as ``--level0`` lays it out. Glass vs tissue needs no detail, so a small overview serves."""
    from urcdm.sampling.sampler import is_mostly_glass

    last = len(config.levels) - 1
    grid, previous = LevelGrid.of(config, last), LevelGrid.of(config, last - 1)
    to_view = overview.shape[0] / config.levels[0].span
    glass = {}
    for patch in grid.patches:
        cx, cy, side = patch_context(config, last, patch)  # in the previous level's image pixels
        x0, y0 = (previous.origin + cx * previous.scale) * to_view, (previous.origin + cy * previous.scale) * to_view
        reach = side * previous.scale * to_view
        box = overview[max(0, round(y0)):max(0, round(y0 + reach)), max(0, round(x0)):max(0, round(x0 + reach))]
        glass[patch] = box.size == 0 or is_mostly_glass(np.ascontiguousarray(box), config.white_threshold)
    return glass


def glass_patches(config: URCDMConfig, overview: np.ndarray) -> int:
    """How many last-level patches the white skip will upsample (``glass_map``)."""
    return sum(glass_map(config, overview).values())


def projected_ms(flops: float, size: int, precision: str, samples_per_call: int | None = None) -> float:
    """ms per sample on the H200: ``flops`` at the rate (FLOP/s) that the paper unet nearest in
    size reached there with as many samples per call: the largest measured batch not above it, or with
    None (``--batch-size auto``, which gives each paper unet at least 16 on that card) the largest."""
    measured = H200_MS[precision]
    nearest = min(measured, key=lambda s: abs(np.log(s / size)))
    by_batch = measured[nearest]
    batch = max((b for b in by_batch if samples_per_call is None or b <= samples_per_call), default=min(by_batch))
    return by_batch[batch] * flops / (H200_GFLOP[nearest] * 1e9)


@dataclass(frozen=True)
class UnetTiming:
    ms_per_sample: float
    first_call_s: float  # the warm-up: with torch.compile, the compile time


def unet_timing(config: URCDMConfig, level: int, unet: int, method: str, precision: str, batch: int,
                device: str, calls: int = 3, compile_mode: str | None = None) -> UnetTiming:
    """A few forward calls of the real unet (random weights) at ``batch`` samples per call, after a
    warm-up (CUDA-synchronised), eager or compiled in ``compile_mode`` as ``--compile`` compiles it."""
    import torch

    from urcdm.models import build_unet

    device = torch.device(device)
    dtype = held_dtype(precision)
    network = build_unet(config, level, unet, method, device, dtype).eval()
    forward = network if compile_mode is None else torch.compile(network, mode=compile_mode, dynamic=False)
    size = config.unets[unet].image_size
    inputs = {"lowres_cond_img": torch.rand(batch, 3, size, size, device=device),
              "lowres_noise_times": torch.rand(batch, device=device)} if unet else {}
    if has_context(method, level):
        inputs["cond_images"] = torch.rand(batch, 3, size, size, device=device)
    image, times = torch.rand(batch, 3, size, size, device=device), torch.rand(batch, device=device)

    def call():
        if compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        forward(image, times, **inputs)

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        started = time.perf_counter()
        call()
        synchronise()
        first = time.perf_counter() - started
        for _ in range(2 if compile_mode else 0):  # CUDA graphs record on a later call than the compile's
            call()
        synchronise()
        started = time.perf_counter()
        for _ in range(calls):
            call()
        synchronise()
    elapsed = (time.perf_counter() - started) / calls / batch * 1e3
    network = forward = None  # dropped before the cache is emptied
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return UnetTiming(elapsed, first)


def timed_ms(config: URCDMConfig, level: int, unet: int, method: str, precision: str, batch: int,
             device: str, calls: int = 3) -> float:
    """ms per sample on ``device`` of the eager unet (``unet_timing``) at ``batch`` samples per call or,
    where that runs out of GPU memory, at the largest halving of it that fits, as the sampler's chunks do."""
    import torch

    while True:
        try:
            return unet_timing(config, level, unet, method, precision, batch, device, calls).ms_per_sample
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
        batch //= 2  # outside the handler: the failed call's tensors are freed with its traceback
        torch.cuda.empty_cache()


def _auto_patches_per_call(config: URCDMConfig, device: str, weights: int, on_h200: bool) -> int:
    """What ``--batch-size auto`` will choose: from the GPU's free memory less the level's weights (the
    H200's when the plan is projected for it)."""
    if on_h200:
        return patches_per_call(max(0, H200_MEMORY - weights), config.patch_px)
    if not str(device).startswith("cuda"):
        return AUTO_CPU
    return patches_per_call(max(0, free_gpu_memory(device) - weights), config.patch_px)


def plan_run(config: URCDMConfig, method: str, scheduler: str, batch_size: int | None, precision: str,
             white_skip: bool = True, overview: np.ndarray | None = None, device: str = "cpu",
             measured_ms: dict[int, float] | None = None, progress: bool = False) -> dict:
    """The run's plan per level and in total (see the module docstring); builds no real unet off CUDA.
    ``measured_ms``: ms per sample by unet index, measured elsewhere (benchmarks/bench_gpu.py), instead.
    ``progress``: a bar on stderr over the (level, unet) pairs, seconds each for the paper's unets."""
    from tqdm import tqdm

    levels = method_levels(config, method)
    bar = tqdm(total=len(levels) * len(config.unets), desc="planning", unit="unet", disable=not progress)
    last = levels[-1]
    timing = str(device).startswith("cuda") and measured_ms is None
    for_h200 = measured_ms is None and not timing
    flops_of: dict[tuple, float] = {}
    rows, per_level = [], []
    for level in levels:
        grid = LevelGrid.of(config, level)
        schedule = waves(grid, scheduler)
        skipped = 0
        if level == last and white_skip and method == "urcdm" and overview is not None:
            skipped = glass_patches(config, overview)
        diffused = len(grid.patches) - skipped
        level_rows = []
        for index, spec in enumerate(config.unets):
            key = (index, has_context(method, level))
            if key not in flops_of:
                flops_of[key] = forward_flops(config, level, index, method)
            steps = spec.sample_steps or spec.timesteps
            parameters = unet_parameters(config, level, index, method)
            if measured_ms is not None:
                ms = measured_ms[index]
            elif timing:
                ms = timed_ms(config, level, index, method, precision, min(batch_size or TIMED_BATCH, TIMED_BATCH),
                              device)
            else:
                ms = projected_ms(flops_of[key], spec.image_size, precision, batch_size)
            level_rows.append(UnetPlan(level, index, spec.image_size, parameters,
                                       parameters * BYTES_PER_PARAMETER[precision], steps, diffused * steps,
                                       flops_of[key], round(ms, 3), diffused * steps * ms / 3.6e6))
            bar.update()
        rows += level_rows
        per_call = batch_size or _auto_patches_per_call(config, device, sum(r.resident_bytes for r in level_rows),
                                                        on_h200=for_h200)
        per_level.append({"level": level, "grid": grid.grid, "patches": len(grid.patches), "waves": len(schedule),
                          "batch_size": per_call, "batches": sum(len(batches(wave, per_call)) for wave in schedule),
                          "white_skip_patches": skipped if level == last and overview is not None else None,
                          "resident_bytes": sum(r.resident_bytes for r in level_rows),
                          "unet_evaluations": sum(r.evaluations for r in level_rows),
                          "flops": sum(r.evaluations * r.flops_per_evaluation for r in level_rows),
                          "hours": sum(r.hours for r in level_rows), "unets": [asdict(r) for r in level_rows]})
    bar.close()
    return {"config": config.name, "method": method, "scheduler": scheduler, "batch_size": batch_size or "auto",
            "precision": precision, "device": str(device),
            "projection": H200_SOURCE if for_h200 else f"timed on {device}" if timing else "measured ms per sample",
            "white_skip": "judged on --level0" if overview is not None else "unknown without --level0 (none assumed)",
            "levels": per_level,
            "peak_resident_bytes": max(entry["resident_bytes"] for entry in per_level),
            "all_levels_bytes": sum(entry["resident_bytes"] for entry in per_level),
            "unet_evaluations": sum(entry["unet_evaluations"] for entry in per_level),
            "flops": sum(entry["flops"] for entry in per_level),
            "hours": sum(entry["hours"] for entry in per_level)}

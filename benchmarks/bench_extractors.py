"""Throughput of each registered feature extractor: images/s through preprocessing and the network.

Every extractor runs as its ``NAME-random`` twin (the same graph at its real size, seeded random
weights: nothing to download), on uint8 crops already at the network's input size, so the figure
is the network's cost, not crop reading. CPU always; CUDA too when available (fp32, as the
extractors run). The giant models (over half a billion parameters: DINOv2 ViT-g/14, H-optimus-0,
Virchow2) take minutes on a CPU and several GB of memory: they run with ``--all`` only.

Prints one JSON object on stdout: per device, per extractor: parameters (M), feature dimension,
input size, build seconds (random init), batch size and images/s. Progress goes to stderr. Not a test.
    python benchmarks/bench_extractors.py [--all] [--only uni,conch] [--cpu-batch 4] [--gpu-batch 64]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

import torch

from evaluation.extractors.registry import FOUNDATION_MODELS
from evaluation.features import load_extractor
from urcdm.clikit import positive_float, positive_int, run_script
from urcdm.errors import UserError

GIANT = ("dinov2-vitg14", "h-optimus-0", "virchow2")
REFERENCE = ("inception-v3",)  # the FID Inception, for scale


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, device: torch.device, batch: int, min_seconds: float, max_batches: int) -> dict:
    started = time.perf_counter()
    extractor = load_extractor(f"{name}-random", device=device)
    build_seconds = time.perf_counter() - started
    module = extractor.fn if isinstance(extractor.fn, torch.nn.Module) else None
    params = sum(p.numel() for p in module.parameters()) / 1e6 if module is not None else None
    size = extractor.input_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    if device.type == "cuda":
        images = images.pin_memory()
        torch.cuda.reset_peak_memory_stats(device)
    features = extractor(images)  # warm-up: lazy initialisation, cuDNN autotuning, allocator
    _synchronise(device)
    count, elapsed = 0, 0.0
    while count < max_batches and (elapsed < min_seconds or count == 0):
        tick = time.perf_counter()
        extractor(images)
        _synchronise(device)
        elapsed += time.perf_counter() - tick
        count += 1
    result = {"params_m": round(params, 1) if params is not None else None, "dim": int(features.shape[1]),
              "input_size": size, "build_s": round(build_seconds, 2), "batch": batch, "batches": count,
              "images_per_s": round(count * batch / elapsed, 2)}
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    del extractor, module, features
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help=f"include the giant models ({', '.join(GIANT)})")
    parser.add_argument("--only", default=None, help="comma-separated registry names (without -random)")
    parser.add_argument("--cpu-batch", type=positive_int, default=4)
    parser.add_argument("--gpu-batch", type=positive_int, default=64)
    parser.add_argument("--min-seconds", type=positive_float, default=3.0, help="timed batches run at least this long")
    parser.add_argument("--max-batches", type=positive_int, default=5)
    parser.add_argument("--no-gpu", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    names = [*REFERENCE, *FOUNDATION_MODELS]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise UserError(f"unknown extractor(s): {', '.join(unknown)}; known: {', '.join(names)}")
        names = wanted
    elif not args.all:
        names = [n for n in names if n not in GIANT]
    devices = [("cpu", torch.device("cpu"), args.cpu_batch)]
    if torch.cuda.is_available() and not args.no_gpu:
        devices.append(("cuda", torch.device("cuda"), args.gpu_batch))
    result = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "python": platform.python_version(),
                          "gpu": torch.cuda.get_device_name(0) if len(devices) > 1 else None,
                          # other work on a shared machine skews every figure: say how busy it was
                          "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
              "skipped": [n for n in GIANT if n not in names]}
    for label, device, batch in devices:
        section = result[label] = {}
        for name in names:
            log(f"{label}: {name} ...")
            section[name] = measure(name, device, batch, args.min_seconds, args.max_batches)
            log(f"{label}: {name}: {section[name]}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(run_script(main))

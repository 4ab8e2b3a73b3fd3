"""Training throughput and memory. Prints JSON. Not a test.

- tiny_cpu: steps/s and peak RSS of each of the nine ``tiny`` unets on the real slides (each job in its
  own process, so every peak is that job's alone);
- loader: training pairs/s read from the real slides, for the paper's and tiny's geometry, with 0 and 2
  DataLoader workers;
- paper_gpu (only where CUDA is present): steps/s and peak GPU memory of each paper unet at its batch
  size, on random tensors (the data path is measured by ``loader``).

    python benchmarks/bench_train.py [--steps 30] [--data ../shared/data/slides] [--only tiny_cpu,loader,paper_gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from gpu_parts import training_rates
from urcdm.clikit import comma_choices, positive_int, run_script
from urcdm.errors import UserError
from urcdm.config import load_config, paper, tiny
from urcdm.training.index import build_index, list_slides
from urcdm.training.pairs import LevelWindows, SlidePairs, StepBatches
from urcdm.training.loop import Job, train

DEFAULT_DATA = Path(os.environ.get("URCDM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "slides"


def one_tiny_job(level: int, unet: int, data: Path, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        warm = train(Job(tiny(), level, unet, data, Path(out), steps=5, progress=False))
        started = time.perf_counter()
        result = train(Job(tiny(), level, unet, data, Path(out), steps=5 + steps, progress=False))
        seconds = time.perf_counter() - started
    return {"level": level, "unet": unet, "steps_per_s": round(steps / seconds, 2), "warmup_s": warm["seconds"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "first_loss": round(result["losses"][0], 4), "last_loss": round(result["losses"][-1], 4)}


def bench_tiny_cpu(data: Path, steps: int) -> list[dict]:
    rows = []
    for level in range(3):
        for unet in range(3):
            out = subprocess.run([sys.executable, __file__, "--job", f"{level},{unet}", "--data", str(data), "--steps", str(steps)],
                                 check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout))
    return rows


def bench_loader(data: Path) -> list[dict]:
    rows = []
    for name in ("paper", "tiny"):
        config = load_config(name)
        for level in (1, 2):
            windows = LevelWindows.of(config, level)
            paths, positions = build_index(list_slides(data), windows.span, config.white_threshold)
            pairs = SlidePairs(paths, positions, windows)
            # The test slides have no deep pyramid (JPEG 2000, downsample 2 at most), so a paper-scale
            # window costs seconds to decode: a few batches give the rate.
            batch, batches = (8, 3) if name == "paper" else (32, 20)
            for workers in (0, 2):
                loader = DataLoader(pairs, batch_sampler=StepBatches(0, 0, batches, batch, len(positions)), num_workers=workers)
                started = time.perf_counter()
                count = sum(len(target) for target, _ in loader)
                rows.append({"config": name, "level": level, "patch_px": config.patch_px, "workers": workers,
                             "pairs_per_s": round(count / (time.perf_counter() - started), 1), "positions": len(positions)})
    return rows


def bench_paper_gpu(steps: int) -> list[dict] | dict:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    return training_rates(paper(), torch.device("cuda"), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=30)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", type=comma_choices("tiny_cpu", "loader", "paper_gpu"), default="tiny_cpu,loader,paper_gpu")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        level, unet = (int(v) for v in args.job.split(","))
        json.dump(one_tiny_job(level, unet, args.data, args.steps), sys.stdout)
        return
    if not args.data.is_dir():
        raise UserError(f"{args.data}: no slides (set URCDM_TEST_DATA or --data)")
    sections = {"tiny_cpu": lambda: bench_tiny_cpu(args.data, args.steps), "loader": lambda: bench_loader(args.data),
                "paper_gpu": lambda: bench_paper_gpu(args.steps)}
    result = {"torch_threads": torch.get_num_threads()}
    for name in args.only:
        result[name] = sections[name]()
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

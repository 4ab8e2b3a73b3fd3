"""Training pairs from zarr shards (``urcdm prepare-pairs``) against the direct slide reader. Prints JSON.
Not a test.

- prepare: writing a level's pairs once, 2 reading workers: pairs/s, disk bytes, and the peak RSS of
  the writer (parent) and of its largest worker (sampled), against the bytes written (streaming: the
  peak must not grow with the number of pairs);
- read: pairs/s as training reads them (``StepBatches`` of 8, dihedral transform and float tensors
  included), from shards and from the slides, with 0 and 2 DataLoader workers, and whether the two
  sources gave identical batches.

    python benchmarks/bench_pair_shards.py [--data ../shared/data/slides] [--out /tmp/pair-shards]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch
from torch.utils.data import DataLoader

from urcdm.clikit import run_script
from urcdm.config import load_config
from urcdm.training.index import build_index, list_slides
from urcdm.training.pairs import LevelWindows, SlidePairs, StepBatches
from urcdm.training.shards import ShardPairs, prepare_pairs

DEFAULT_DATA = Path(os.environ.get("URCDM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "slides"
CASES = [("paper", 1), ("paper", 2), ("tiny", 2)]


class PeakMemory(threading.Thread):
    """Peak RSS of this process and of its largest child, sampled every 20 ms. Not ru_maxrss: Linux
    carries a forking parent's high-water mark into the child, so a benchmark's subprocess would
    report the benchmark's own peak."""

    def __init__(self):
        super().__init__(daemon=True)
        self.process, self.peak, self.child_peak, self.running = psutil.Process(), 0, 0, True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
                self.child_peak = max([self.child_peak] + [c.memory_info().rss for c in self.process.children()])
            except psutil.Error:
                pass
            time.sleep(0.02)


def one_preparation(config_name: str, level: int, data: Path, out: Path) -> dict:
    sampler = PeakMemory()
    sampler.start()
    result = prepare_pairs(load_config(config_name), level, "urcdm", data, out, workers=2, progress=False)
    sampler.running = False
    sampler.join()
    result["peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    result["worker_peak_rss_mb"] = round(sampler.child_peak / 2**20, 1)
    return result


def read_rate(pairs, batches: StepBatches, workers: int) -> tuple[float, list]:
    loader = DataLoader(pairs, batch_sampler=batches, num_workers=workers)
    started, seen = time.perf_counter(), []
    for target, context in loader:
        seen.append((target, context))
    return sum(len(t) for t, _ in seen) / (time.perf_counter() - started), seen


def bench_case(config_name: str, level: int, data: Path, out: Path) -> dict:
    folder = out / f"{config_name}-level{level}"
    shutil.rmtree(folder, ignore_errors=True)
    run = subprocess.run([sys.executable, __file__, "--job", f"{config_name},{level}", "--data", str(data), "--out", str(folder)],
                         check=True, capture_output=True, text=True)
    prepared = json.loads(run.stdout)

    config = load_config(config_name)
    windows = LevelWindows.of(config, level)
    paths, positions = build_index(list_slides(data), windows.span, config.white_threshold)
    direct, shards = SlidePairs(paths, positions, windows), ShardPairs.open(folder, config, level, "urcdm")
    row = {"config": config_name, "level": level, "patch_px": config.patch_px, "pairs": prepared["pairs"],
           "prepare_pairs_per_s": prepared["pairs_per_s"], "prepare_seconds": prepared["seconds"],
           "disk_mb": round(prepared["bytes"] / 1e6, 1),
           "raw_mb": round(prepared["pairs"] * 2 * config.patch_px ** 2 * 3 / 1e6, 1),
           "writer_peak_rss_mb": prepared["peak_rss_mb"], "worker_peak_rss_mb": prepared["worker_peak_rss_mb"]}
    # Slides at paper scale decode seconds per pair: a few batches give their rate.
    direct_batches = 2 if config_name == "paper" else 20
    for workers in (0, 2):
        from_shards, shard_seen = read_rate(shards, StepBatches(0, 0, 40, 8, len(positions)), workers)
        from_slides, slide_seen = read_rate(direct, StepBatches(0, 0, direct_batches, 8, len(positions)), workers)
        identical = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(shard_seen, slide_seen))
        row[f"shards_pairs_per_s_w{workers}"] = round(from_shards, 1)
        row[f"slides_pairs_per_s_w{workers}"] = round(from_slides, 1)
        row[f"identical_w{workers}"] = identical
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pair-shards"))
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        name, level = args.job.split(",")
        json.dump(one_preparation(name, int(level), args.data, args.out), sys.stdout)
        return
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: no slides (set URCDM_TEST_DATA or --data)")
    result = {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "cases": [bench_case(name, level, args.data, args.out) for name, level in CASES]}
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

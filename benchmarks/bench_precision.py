"""What bf16 does to the images: the same patches, seed for seed, sampled in fp32 and in bf16 (the GPU
default of ``urcdm sample``: autocast over the unets, weights held in bf16, the sampler's arithmetic in
fp32), on the tiny unets trained on the real slides. Prints JSON; not a test.

Through ``urcdm sample``'s own backend (``DiffusionBackend``), imagen-pytorch's ancestral sampler at the
reference steps of ``bench_solvers`` (64/16/16). Per level (0: from noise; 2: each patch conditioned on
a real context window) and precision:
- the Frechet distance to as many real windows of that level, in ``bench_solvers``' two extractor
  spaces, and between the fp32 and bf16 sets themselves;
- the pixel difference of bf16 against fp32 for the same patch seed (mean, 99th percentile, PSNR),
  beside the difference between two fp32 seeds (what "another sample" looks like).

    python benchmarks/bench_precision.py [--train-steps 300] [--n 48] [--models DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_solvers import (  # noqa: E402
    DEFAULT_DATA,
    EXTRACTORS,
    FULL_STEPS,
    TIMESTEPS,
    features,
    frechet,
    real_windows,
    trained_tiny,
)

from urcdm.clikit import positive_int, run_script  # noqa: E402
from urcdm.config import run_folder, tiny  # noqa: E402
from urcdm.models import load_cascade  # noqa: E402
from urcdm.sampling.backends import DiffusionBackend  # noqa: E402
from urcdm.training.index import list_slides  # noqa: E402


def as_bytes(images: torch.Tensor) -> np.ndarray:
    """[0, 1] float (N, 3, S, S) -> uint8 (N, S, S, 3)."""
    return images.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()


def pixel_difference(a: np.ndarray, b: np.ndarray) -> dict:
    difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float(np.mean(difference.astype(np.float64) ** 2))
    return {"mean_abs": round(float(difference.mean()), 3), "p99_abs": int(np.percentile(difference, 99)),
            "max_abs": int(difference.max()), "identical_fraction": round(float((difference == 0).mean()), 4),
            "psnr_db": round(10 * np.log10(255 ** 2 / mse), 2) if mse else None}


def sample_patches(backend: DiffusionBackend, level: int, contexts: np.ndarray | None, seeds: list[int],
                   patch_px: int, batch: int) -> np.ndarray:
    out = []
    for start in range(0, len(seeds), batch):
        chunk = seeds[start:start + batch]
        known = np.zeros((len(chunk), patch_px, patch_px, 3), np.uint8)
        masks = np.zeros((len(chunk), patch_px, patch_px), bool)
        out.append(backend.generate(level, None if contexts is None else contexts[start:start + len(chunk)],
                                    known, masks, chunk))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=positive_int, default=300, help="training steps per unet")
    parser.add_argument("--n", type=positive_int, default=48, help="patches per level and precision")
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", type=Path, help="keep the trained models here (reused when present)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    config = replace(tiny(), name="tiny-solvers",
                     unets=tuple(replace(u, timesteps=t, sample_steps=s) for u, t, s in zip(tiny().unets, TIMESTEPS, FULL_STEPS)))
    result: dict = {"config": "tiny with timesteps " + "/".join(map(str, TIMESTEPS)), "sampler": "ancestral "
                    + "/".join(map(str, FULL_STEPS)), "train_steps_per_unet": args.train_steps, "n": args.n,
                    "device": "cpu", "torch": torch.__version__, "levels": {}}
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-precision-") as tmp:
        slides, models, config, _ = trained_tiny(config, args.data, args.models, Path(tmp), args.train_steps)

        def cascade(level):
            return partial(load_cascade, config, level, {u: models / run_folder("urcdm", level, u) / "checkpoint.pt"
                                                         for u in range(3)})

        for level in (0, 2):
            targets, contexts = real_windows(config, list_slides(slides), level, args.n, seed=1234 + level)
            real = features(targets)
            contexts = None if contexts is None else as_bytes(contexts)
            made, entry = {}, {}
            for name, precision, seeds in (("fp32", "fp32", range(args.n)), ("bf16", "bf16", range(args.n)),
                                           ("fp32_other_seeds", "fp32", range(10_000, 10_000 + args.n))):
                backend = DiffusionBackend({level: cascade(level)}, "cpu", precision=precision)
                started = time.perf_counter()
                made[name] = sample_patches(backend, level, contexts, list(seeds), config.patch_px, args.batch)
                seconds = (time.perf_counter() - started) / args.n
                backend.release()
                fake = features(torch.from_numpy(made[name]).permute(0, 3, 1, 2).float() / 255)
                entry[name] = {f"fd_{space}": round(frechet(real[space], fake[space]), 4) for space in EXTRACTORS}
                entry[name]["seconds_per_patch"] = round(seconds, 3)
                print(json.dumps({"level": level, name: entry[name]}), file=sys.stderr)
            fp32, bf16 = (features(torch.from_numpy(made[k]).permute(0, 3, 1, 2).float() / 255) for k in ("fp32", "bf16"))
            entry["fd_fp32_vs_bf16"] = {space: round(frechet(fp32[space], bf16[space]), 4) for space in EXTRACTORS}
            entry["pixels_bf16_vs_fp32_same_seed"] = pixel_difference(made["bf16"], made["fp32"])
            entry["pixels_fp32_other_seed"] = pixel_difference(made["fp32_other_seeds"], made["fp32"])
            result["levels"][f"level{level}"] = entry
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

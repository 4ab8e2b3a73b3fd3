"""Sampling cost: seconds per patch for each unet of a cascade, and the projected hours for one slide.
Prints JSON. Not a test.

Each unet's cost per denoising step is isolated by sampling the level-1 cascade (context as
``cond_images``, a neighbour's strip kept by inpainting, as in ``urcdm sample``) twice with that
unet at two step counts and every other unet at one step: the difference over the extra steps is the
unet's alone, without model loading or the other unets. Per patch = per step x steps / batch.

The projection multiplies by the patches one slide diffuses (level 0: 1, level 1: 7 x 7, level 2:
46 x 46 = 2116, or 1402 with white skip on the TCGA tissue layout, see bench_sampler.py) for the
paper's steps (1024 / 256 / 256) and fewer.

    python benchmarks/bench_sample_speed.py                       # paper config on CUDA
    python benchmarks/bench_sample_speed.py --config tiny --device cpu   # the same path on a CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import torch

from urcdm.clikit import positive_int, positive_int_list, run_script
from urcdm.config import load_config
from urcdm.models import build_imagen, sample
from urcdm.sampling.geometry import LevelGrid

STEP_PLANS = {"paper": [(1024, 256, 256), (256, 64, 64), (64, 32, 32)], "tiny": [(32, 16, 16), (8, 4, 4)]}
PATCHES_WITH_WHITE_SKIP_L2 = 1402  # paper config on the TCGA tissue layout (bench_sampler.py --level0)


def timed_sample(config, unet: int, steps: int, batch: int, device: torch.device, repeats: int) -> float:
    plan = [steps if i == unet else 1 for i in range(len(config.unets))]
    config = replace(config, unets=tuple(replace(u, sample_steps=s) for u, s in zip(config.unets, plan)))
    torch.manual_seed(0)
    imagen = build_imagen(config, 1, sampling=True, device=device).eval()
    size = config.patch_px
    context = torch.rand(batch, 3, size, size, device=device)
    known = torch.rand_like(context)
    mask = torch.zeros(batch, size, size, dtype=torch.bool, device=device)
    mask[:, :, : size - config.stride] = True  # the strip a left-hand neighbour made
    times = []
    for _ in range(1 + repeats):  # the first is a warm-up (allocator, cuDNN autotuning)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        sample(imagen, batch, cond_images=context, stop_at_unet=unet + 1, inpaint_images=known, inpaint_masks=mask)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times[1:])  # the least disturbed run: other load only ever adds time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=positive_int_list, default="1,4,8")
    parser.add_argument("--steps", type=positive_int, nargs=2, default=(2, 10), metavar=("FEW", "MORE"),
                        help="the two step counts whose difference is timed (default 2 10)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per measurement; the fastest counts")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = load_config(args.config)
    if device.type == "cpu" and config.name == "paper":
        json.dump({"skipped": "the paper config needs a CUDA device (use --config tiny to check the path on a CPU)"},
                  sys.stdout)
        print()
        return
    few, more = args.steps
    rows = []
    for batch in args.batch_sizes:
        for unet, spec in enumerate(config.unets):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            per_step = (timed_sample(config, unet, more, batch, device, args.repeats)
                        - timed_sample(config, unet, few, batch, device, args.repeats)) / (more - few)
            rows.append({"batch": batch, "unet": unet, "image_size": spec.image_size,
                         "seconds_per_step": round(per_step, 4), "seconds_per_patch_step": round(per_step / batch, 5),
                         "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if device.type == "cuda" else None})
    patches = {"without_white_skip": 1 + LevelGrid.of(config, 1).grid ** 2 + LevelGrid.of(config, 2).grid ** 2}
    if config.name == "paper":
        patches["with_white_skip_tcga"] = 1 + LevelGrid.of(config, 1).grid ** 2 + PATCHES_WITH_WHITE_SKIP_L2
    projections = []
    for batch in sorted({r["batch"] for r in rows}):
        per_patch_step = [r["seconds_per_patch_step"] for r in rows if r["batch"] == batch]
        for plan in STEP_PLANS.get(config.name, [tuple(u.timesteps for u in config.unets)]):
            seconds_per_patch = sum(t * s for t, s in zip(per_patch_step, plan))
            projections.append({"batch": batch, "steps": "/".join(map(str, plan)),
                                "seconds_per_patch": round(seconds_per_patch, 2),
                                **{f"hours_{k}": round(seconds_per_patch * n / 3600, 3) for k, n in patches.items()}})
    json.dump({"config": config.name, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
               "torch": torch.__version__, "per_unet": rows, "patches_per_slide": patches,
               "projection_one_gpu": projections}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

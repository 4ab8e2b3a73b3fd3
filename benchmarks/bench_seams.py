"""Seam scores of tiny-model slides: URCDM with and without cross-fading, against the outpainting
baseline. Prints JSON. Not a test.

Trains the nine tiny URCDM unets and the three tiny outpainting unets on the real slides (``--steps``
each), samples ``--seeds`` slides per variant through ``urcdm sample``, scores each with ``urcdm seams``
(mean luminance step across the stitching lines / elsewhere; 1.0 = invisible), and scores 512^2
crops of the real slides on the same lines as the control.

    python benchmarks/bench_seams.py [--steps 300] [--seeds 3] [--data ../shared/data/slides] [--montage seams.png]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from urcdm.clikit import positive_int, run_script
from urcdm.config import tiny
from urcdm.sampling.geometry import LevelGrid
from urcdm.sampling.seams import seam_score
from urcdm.slides import open_slide

DEFAULT_DATA = Path(os.environ.get("URCDM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "slides"
TRAINING_SLIDES = ("cmu-1-small-region.svs", "tcga-cr-7395-01a-01-ts1.svs", "kidney-48-5.tif")
VARIANTS = {  # name: extra `urcdm sample` arguments
    "urcdm_blend4": ["--method", "urcdm", "--blend", "4"],
    "urcdm_blend0": ["--method", "urcdm", "--blend", "0"],
    "urcdm_raster_blend4": ["--method", "urcdm", "--blend", "4", "--scheduler", "raster"],
    "outpaint_blend4": ["--method", "outpaint", "--blend", "4"],
    "outpaint_blend0": ["--method", "outpaint", "--blend", "0"],
}


def urcdm(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "urcdm.cli", *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def real_crops_score(data: Path, grid: LevelGrid) -> dict:
    """The control: real tissue has no seams, so its score on the same lines is the floor."""
    scores = {}
    for name in TRAINING_SLIDES:
        with open_slide(data / name) as slide:
            width, height = slide.dimensions
            crop = slide.read_region((width - grid.size) // 2, (height - grid.size) // 2, grid.size, grid.size)
        scores[name] = round(seam_score(crop, grid), 4)
    return scores


def save_montage(slides: list[Path], out: Path, gap: int = 16) -> None:
    from PIL import Image, ImageDraw

    images = []
    for path in slides:
        with open_slide(path) as slide:
            images.append(Image.fromarray(slide.read_region(0, 0, *slide.dimensions)))
    width, height = images[0].size
    montage = Image.new("RGB", (len(images) * (width + gap) - gap, height + 20), "white")
    for i, (path, image) in enumerate(zip(slides, images)):
        montage.paste(image, (i * (width + gap), 20))
        ImageDraw.Draw(montage).text((i * (width + gap) + 4, 4), path.stem.rsplit("-", 1)[0], fill="black")
    montage.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=300, help="training steps per unet")
    parser.add_argument("--seeds", type=positive_int, default=3, help="slides sampled per variant")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--montage", type=Path, help="also save seed 0 of every variant side by side as this PNG")
    args = parser.parse_args()
    grid = LevelGrid.of(tiny(), 2)
    result: dict = {"config": "tiny", "grid": grid.grid, "patch": grid.patch, "overlap": grid.patch - grid.stride,
                    "train_steps_per_unet": args.steps, "seeds": args.seeds}
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-seams-") as tmp:
        slides, models = Path(tmp) / "slides", Path(tmp) / "models"
        slides.mkdir()
        for name in TRAINING_SLIDES:
            os.symlink(args.data / name, slides / name)
        started = time.perf_counter()
        for method in ("urcdm", "outpaint"):
            runs = urcdm("train-all", "--config", "tiny", "--method", method, "--data", str(slides), "--out", str(models),
                         "--steps", str(args.steps))
            result[f"{method}_last_losses"] = [round(run["last_loss"], 4) for run in runs]
        result["train_s"] = round(time.perf_counter() - started, 1)
        for name, extra in VARIANTS.items():
            scores, seconds = [], []
            for seed in range(args.seeds):
                out = Path(tmp) / f"{name}-{seed}.tiff"
                manifest = urcdm("sample", "--models", str(models), "--out", str(out), "--seed", str(seed), *extra)
                seconds.append(manifest["seconds"])
                scores.append(urcdm("seams", str(out))["seam_score"])
            result[name] = {"seam_score_mean": round(float(np.mean(scores)), 4), "seam_scores": scores,
                            "sample_s_mean": round(float(np.mean(seconds)), 1),
                            "scheduler": manifest["scheduler"], "model_calls": manifest["model_calls"]}
        if args.montage:
            save_montage([Path(tmp) / f"{name}-0.tiff" for name in VARIANTS], args.montage)
    result["real_tissue_control"] = real_crops_score(args.data, grid)
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

"""Quality against cost of the solvers: ancestral at full steps against DPM-Solver++, Heun, Euler and
Euler-ancestral at fewer steps, on tiny unets trained on the real slides. Prints JSON; not a test.

The tiny cascade is trained on the real slides; the reference is ancestral sampling at 64/16/16 steps (the
paper's 1024/256/256 ratio at a sixteenth). Then, per
solver, step count and seed:
- level 0: ``--n`` level-0 images from noise;
- level 2: ``--n`` full-resolution patches, each conditioned on a real context window;
both scored by Frechet distance against as many real training windows of the same level, in the
spaces of two small plug-in extractors (colour layout/texture, and detail energy), with unet
evaluations per image and seconds. The seam score of one whole slide per solver (at its fewest matched
steps, else its best level-2 run) comes from ``urcdm sample --solver`` and ``urcdm seams``.

    python benchmarks/bench_solvers.py [--train-steps 300] [--n 48] [--seeds 2] [--models DIR] [--plot solvers.png]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "plugins"))
from tiny_extractors import colour_texture, detail_energy  # noqa: E402

from evaluation.metrics import frechet_distance  # noqa: E402
from urcdm.clikit import positive_int, run_script  # noqa: E402
from urcdm.config import load_config, run_folder, tiny  # noqa: E402
from urcdm.training.index import build_index, list_slides  # noqa: E402
from urcdm.training.pairs import LevelWindows, SlidePairs, unit_float  # noqa: E402
from urcdm.models import load_cascade, sample  # noqa: E402
from urcdm.sampling.cascade import sample_cascade  # noqa: E402
from urcdm.sampling.solvers import unet_evaluations  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("URCDM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "slides"
TRAINING_SLIDES = ("cmu-1-small-region.svs", "tcga-cr-7395-01a-01-ts1.svs", "kidney-48-5.tif")
# The models' timesteps (the paper's 1024/256/256 ratio at an eighth; imagen-pytorch trains in continuous
# time, so only sampling uses them), and the reference: ancestral at 64/16/16. Sized for 2 CPU cores:
# the 64-px unet is most of the cost (0.06 s per evaluation per image), so the reference takes 1.45 s
# an image.
TIMESTEPS = (128, 32, 32)
FULL_STEPS = (64, 16, 16)
# (solver, steps per unet), the reference first
RUNS = [("ancestral", FULL_STEPS), ("ancestral", (16, 4, 4)),
        ("dpmpp_2m", (8, 4, 4)), ("dpmpp_2m", (4, 2, 2)), ("dpmpp_2m_sde", (8, 4, 4)), ("dpmpp_2m_sde", (4, 2, 2)),
        ("heun", (4, 2, 2)), ("euler_a", (8, 4, 4))]
EXTRACTORS = {"colour_texture": colour_texture(), "detail_energy": detail_energy()}


def urcdm(*args: str) -> dict | list:
    done = subprocess.run([sys.executable, "-m", "urcdm.cli", *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def trained_tiny(config, data: Path, models: Path | None, workdir: Path, steps: int) -> tuple:
    """(slides folder, models folder, config as saved, training seconds): the training slides linked into
    ``workdir``, and the nine unets trained ``steps`` each unless ``models`` already holds them."""
    slides = workdir / "slides"
    slides.mkdir()
    for name in TRAINING_SLIDES:
        os.symlink(data / name, slides / name)
    models = models or workdir / "models"
    config_file = workdir / f"{config.name}.yaml"
    config.save(config_file)
    started = time.perf_counter()
    if not (models / run_folder("urcdm", 2, 2) / "checkpoint.pt").exists():
        urcdm("train-all", "--config", str(config_file), "--data", str(slides), "--out", str(models), "--steps", str(steps))
    return slides, models, load_config(config_file), round(time.perf_counter() - started, 1)


def features(images: torch.Tensor) -> dict[str, np.ndarray]:
    """images: float [0, 1], (N, 3, S, S)."""
    as_bytes = images.clamp(0, 1).mul(255).round().byte()
    return {name: extract(as_bytes).double().numpy() for name, extract in EXTRACTORS.items()}


def frechet(real: np.ndarray, fake: np.ndarray) -> float:
    return float(frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)))


def real_windows(config, slides: list[Path], level: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    windows = LevelWindows.of(config, level)
    paths, positions = build_index(slides, windows.span, config.white_threshold)
    pairs = SlidePairs(paths, positions, windows)
    codes = np.random.default_rng(seed).choice(len(pairs), size=n, replace=len(pairs) < n)
    targets, contexts = zip(*(pairs[int(code)] for code in codes))
    return unit_float(torch.stack(targets)), (unit_float(torch.stack(contexts)) if level else None)


def generate(imagen, solver: str, steps, contexts: torch.Tensor | None, n: int, seed: int, batch: int) -> torch.Tensor:
    images = []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        cond = None if contexts is None else contexts[start:start + size]
        torch.manual_seed(seed * 100_003 + start)
        if solver == "ancestral":
            images.append(sample(imagen, size, cond_images=cond))
        else:
            generator = torch.Generator().manual_seed(seed * 100_003 + start)
            images.append(sample_cascade(imagen, solver, steps, size, cond, generator=generator))
    return torch.cat(images)


def with_steps(imagen, steps) -> None:
    """imagen-pytorch's ancestral sampler takes its steps from each noise scheduler."""
    for scheduler, count in zip(imagen.noise_schedulers, steps):
        scheduler.num_timesteps = count


def fewest_matched(rows: list[dict]) -> dict:
    """Per solver, the fewest unet evaluations whose distances are all within the seed spread of
    ancestral at full steps (its mean + 1 s.d. over seeds)."""
    reference = rows[0]
    limits = {key: reference[key]["mean"] + reference[key]["sd"] for key in reference if key.startswith("fd_")}
    matched = {}
    for row in rows[1:]:
        if all(row[key]["mean"] <= limit for key, limit in limits.items()):
            best = matched.get(row["solver"])
            if best is None or row["unet_evaluations"] < best["unet_evaluations"]:
                matched[row["solver"]] = {"steps": row["steps"], "unet_evaluations": row["unet_evaluations"],
                                          "fewer_than_full": round(reference["unet_evaluations"] / row["unet_evaluations"], 1)}
    return matched


def seam_settings(rows: list[dict]) -> dict[str, str]:
    """Per solver, the steps whose slide is scored for seams: its fewest matched evaluations, else the
    run with the lowest level-2 distances (summed over the extractors)."""
    matched = fewest_matched(rows)
    chosen = {}
    for row in rows[1:]:
        if row["solver"] == "ancestral":
            continue
        if row["solver"] in matched:
            chosen[row["solver"]] = matched[row["solver"]]["steps"]
            continue
        score = sum(value["mean"] for key, value in row.items() if key.startswith("fd_level2"))
        best = chosen.get(row["solver"])
        if best is None or score < best[1]:
            chosen[row["solver"]] = (row["steps"], score)
    return {solver: value if isinstance(value, str) else value[0] for solver, value in chosen.items()}


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [key for key in rows[0] if key.startswith("fd_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8))
    for ax, key in zip(np.atleast_1d(axes), keys):
        for solver in dict.fromkeys(row["solver"] for row in rows):
            mine = sorted((row for row in rows if row["solver"] == solver), key=lambda row: row["unet_evaluations"])
            ax.errorbar([r["unet_evaluations"] for r in mine], [r[key]["mean"] for r in mine],
                        yerr=[r[key]["sd"] for r in mine], marker="o", capsize=3, label=solver)
        reference = rows[0][key]
        ax.axhspan(reference["mean"] - reference["sd"], reference["mean"] + reference["sd"], color="grey", alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("unet evaluations per image (3 unets)")
        ax.set_title(key.replace("fd_", "FD, ").replace("__", ", "), fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("Frechet distance to real windows")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.suptitle(f"grey: ancestral at full steps ({rows[0]['steps']}), mean +- s.d. over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    fig.savefig(out.with_suffix(".svg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=positive_int, default=300, help="training steps per unet")
    parser.add_argument("--n", type=positive_int, default=48, help="images per level, solver, steps and seed")
    parser.add_argument("--seeds", type=positive_int, default=2)
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", type=Path, help="keep the trained models here (reused when present)")
    parser.add_argument("--plot", type=Path, help="FD against unet evaluations, PNG (and SVG beside it)")
    parser.add_argument("--no-seams", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    config = replace(tiny(), name="tiny-solvers",
                     unets=tuple(replace(u, timesteps=t) for u, t in zip(tiny().unets, TIMESTEPS)))
    result: dict = {"config": "tiny with timesteps " + "/".join(map(str, TIMESTEPS)), "reference": "ancestral "
                    + "/".join(map(str, FULL_STEPS)), "train_steps_per_unet": args.train_steps, "n": args.n,
                    "seeds": args.seeds, "extractors": list(EXTRACTORS)}
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-solvers-") as tmp:
        slides, models, config, result["train_s"] = trained_tiny(config, args.data, args.models, Path(tmp),
                                                                 args.train_steps)
        levels = {level: load_cascade(config, level, {u: models / run_folder("urcdm", level, u) / "checkpoint.pt"
                                                       for u in range(3)})
                  for level in (0, 2)}
        real = {level: real_windows(config, list_slides(slides), level, args.n, seed=1234 + level) for level in (0, 2)}
        real_features = {level: features(real[level][0]) for level in (0, 2)}
        rows = []
        for solver, steps in RUNS:
            row = {"solver": solver, "steps": "/".join(map(str, steps)),
                   "unet_evaluations": sum(unet_evaluations(solver, s) for s in steps)}
            scores: dict[str, list[float]] = {}
            seconds = []
            for seed in range(args.seeds):
                begun = time.perf_counter()
                for level, imagen in levels.items():
                    with_steps(imagen, steps)
                    fake = features(generate(imagen, solver, steps, real[level][1], args.n, seed, args.batch))
                    for name in EXTRACTORS:
                        scores.setdefault(f"fd_level{level}__{name}", []).append(frechet(real_features[level][name], fake[name]))
                seconds.append((time.perf_counter() - begun) / (2 * args.n))
            row |= {key: {"mean": round(float(np.mean(v)), 4), "sd": round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 4),
                          "seeds": [round(x, 4) for x in v]} for key, v in scores.items()}
            row["seconds_per_image"] = round(float(np.mean(seconds)), 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        result["runs"] = rows
        result["fewest_matched"] = fewest_matched(rows)
        if not args.no_seams:
            result["seams"] = {}
            seam_runs = [("ancestral", FULL_STEPS)] + [(solver, tuple(int(s) for s in steps.split("/")))
                                                         for solver, steps in seam_settings(rows).items()]
            for solver, steps in seam_runs:
                out = Path(tmp) / f"{solver}.tiff"
                manifest = urcdm("sample", "--models", str(models), "--out", str(out), "--seed", "0", "--solver", solver,
                                 "--steps", ",".join(map(str, steps)))
                result["seams"][f"{solver} {'/'.join(map(str, steps))}"] = {
                    "seam_score": urcdm("seams", str(out))["seam_score"], "slide_s": manifest["seconds"],
                    "unet_evaluations": manifest["unet_evaluations"]}
    if args.plot:
        plot(rows, args.plot)
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # FID and pFID: URCDM against the outpainting baseline
#
# The paper reports FID-10k of the level-0 (whole-slide view) outputs (LRDM 10.35, StyleGAN3 38.62)
# and pFID-50k of whole slides (URCDM 39.52, outpainting 150.15). This notebook runs the same chain on
# this machine: it trains the URCDM cascade and the outpainting baseline on the real slides, samples
# slides with each, and computes pFID against real slides, FID of the level-0 outputs, and FID at each
# level's magnification, where the paper gives one number per method. Everything goes through the
# toolkit's command lines (`urcdm train-all`, `urcdm sample`, `urcdm-eval`), run in this process.
#
# The defaults use the `tiny` config (64-px unets, 512-px slides) so the notebook runs on a 2-core CPU.
# With `config="paper"`, a models folder, `extractor="inception-v3"` with its weights and a GPU it
# computes the paper's numbers. Work is cached in `build`: a rerun skips finished training and samples.

# %% tags=["parameters"]
data_dir = None          # the real-data folder; default $URCDM_TEST_DATA or ../shared/data beside the repository
build = "build"          # models, samples and real regions go in build/<config>; reused by reruns and notebooks 03, 04
config = "tiny"          # tiny | paper | a config YAML
train_steps = 200        # training steps per unet (the paper trained for days; tiny: a few minutes)
slides_per_method = 3    # slides sampled with each method
sample_steps = "16,8,8"  # sampling steps per unet (the paper: 1024,256,256)
real_regions = 24        # real reference images: tissue regions of the real slides at the sampled slides' size
n_pfid = 200             # pFID patches per side (the paper: 50000); Inception runs ~3.4 crops/s on 2 CPU cores
n_scale = 100            # synthetic crops per method at each level's magnification (twice as many real: the noise floor)
patch = 64               # pFID / FID crop side (the paper's pFID: 256 on 41344-px slides)
extractor = None         # None: the standard FID Inception if its weights are found, else inception-v3-random
weights = None           # Inception weights file (pt_inception-2015-12-05)
workers = 2              # crop-reading processes
figures = "figures"

# %%
import json
import os
import shutil
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from evaluation.cli import main as urcdm_eval
from evaluation.demo_data import best_extractor
from urcdm.cli import main as urcdm
from urcdm.config import load_config
from urcdm.notebook import check_models_folder, cli, shared_data, user_errors

# The two tissue slides (the kidney image in the data folder is 0.3 % tissue).
TRAINING_SLIDES = ("cmu-1-small-region.svs", "tcga-cr-7395-01a-01-ts1.svs")
with user_errors():
    data = shared_data(data_dir, need="slides")
    settings = load_config(config)
    root = Path(build) / settings.name
    models, samples, real, regions = root / "models", root / "samples", root / "real-slides", root / "real-regions"
    check_models_folder(models, settings)
    paper_metrics = pd.read_csv(shared_data(data_dir, need="paper/metrics.csv") / "paper" / "metrics.csv")
    chosen = extractor or best_extractor()
    standard = chosen == "inception-v3"
    extractor_args = ["--extractor", chosen] + (["--weights", weights] if weights else [])
real.mkdir(parents=True, exist_ok=True)
for name in TRAINING_SLIDES:
    if not (real / name).exists():
        os.symlink(data / "slides" / name, real / name)
slide_side = settings.levels[0].span  # the sampled slide's side in pixels
spans = [level.span for level in settings.levels]
figure_dir = Path(figures)
figure_dir.mkdir(parents=True, exist_ok=True)
print(f"config {settings.name}: slides of {slide_side} px, level spans {spans}; extractor {chosen}; build {root}")

# %% [markdown]
# ## Train the URCDM cascade and the outpainting baseline
#
# Nine unets for URCDM (three per magnification level), three for the baseline, which outpaints the
# slide at the highest magnification alone. `urcdm train-all` resumes each from its checkpoint.

# %%
runs = []
for method in ("urcdm", "outpaint"):
    for run in cli(urcdm, "train-all", "--config", config, "--method", method, "--data", real, "--out", models,
                   "--steps", train_steps):
        runs.append({"method": method, "level": run["level"], "unet": run["unet"], "steps": run["steps"],
                     "trained now": run["trained_steps"], "last loss": run["last_loss"], "seconds": run["seconds"]})
pd.DataFrame(runs).round(4)

# %% [markdown]
# ## Sample slides with each method

# %%
sampled = []
for method in ("urcdm", "outpaint"):
    for seed in range(slides_per_method):
        out = samples / method / f"seed{seed}.tiff"
        if not out.exists():  # written only when complete
            out.parent.mkdir(parents=True, exist_ok=True)
            manifest = cli(urcdm, "sample", "--models", models, "--out", out, "--seed", seed, "--method", method,
                           "--steps", sample_steps)
            sampled.append({"method": method, "slide": out.name, "seconds": manifest["seconds"],
                            "model calls": manifest["model_calls"]})
        else:
            sampled.append({"method": method, "slide": out.name, "seconds": None, "model calls": "cached"})
pd.DataFrame(sampled)

# %% [markdown]
# ## The real reference at the same scale
#
# A sampled slide covers `slide_side` level-0 pixels of tissue. Whole real slides are larger, so the
# reference is tissue regions of that size cut from them at full resolution (`urcdm-eval crops`
# with `--span`), the way the paper compares 41344-px samples with 41344-px regions.

# %%
if not regions.exists():
    cli(urcdm_eval, "crops", real, "-o", regions, "--span", slide_side, "--patch-size", slide_side, "--n", real_regions,
        "--min-tissue", 0.5, "--seed", 1, "--workers", 0)
print(len(list(regions.glob("*.png"))), "real regions of", slide_side, "px in", regions)

# %% [markdown]
# ## pFID and FID of the level-0 outputs

# %%
def metric(command: str, fake: str, *options) -> dict:
    return cli(urcdm_eval, command, regions, fake, *options, *extractor_args, "--workers", workers)


def fd_key(result: dict) -> str:
    """pfid/fid in Inception space; pfd_<space>/fd_<space> in another extractor's."""
    return result["metrics"][0]


pfid = {m: metric("pfid", str(samples / m / "*.tiff"), "--n", n_pfid, "--patch-size", patch) for m in ("urcdm", "outpaint")}
# Level 0 is the whole slide seen at patch_px: both sides are shrunk to it before Inception's own resize.
level0 = metric("fid", str(samples / "urcdm" / "*.level0.png"), "--whole", "--image-size", settings.patch_px,
                "--n", slides_per_method, "--allow-fewer")
pd.DataFrame([{"method": m, fd_key(pfid[m]): pfid[m][fd_key(pfid[m])]} for m in pfid]
             + [{"method": "urcdm level-0 outputs", fd_key(level0): level0[fd_key(level0)]}]).round(3)

# %% [markdown]
# ## FID against magnification
#
# `urcdm-eval scales` reads crops at each level's span from both methods' slides and from the real
# regions. The real side gets twice the crops: split in half at random five times, one half is the
# reference and the other is compared with it as well. That real-vs-real value (grey) is what FID reads
# when only the sample differs: a method is worse than real tissue at a scale only where it stands
# clear of the band. The bars are the spread over the five halvings.
#
# At level 0 the band sits near 0 by construction, not because level 0 is easy: a level-0 crop is a
# whole region, and the real side has only as many distinct level-0 views as regions, so both halves
# hold near-identical images. There the floor says nothing about sampling noise; read level 0 from
# the methods' distances alone, and the finer levels against the band.

# %%
by_scale = cli(urcdm_eval, "scales", regions, samples / "urcdm" / "*.tiff", samples / "outpaint" / "*.tiff",
               "-o", root / "scales", "--overwrite", "--labels", "urcdm,outpaint", "--config", config,
               "--patch-size", patch, "--n", n_scale, *extractor_args, "--workers", workers)
shutil.copy(root / "scales" / "scales.png", figure_dir / "fid_by_magnification.png")
display(Image(filename=str(figure_dir / "fid_by_magnification.png")))
pd.DataFrame(by_scale["rows"])[["scale", "set", "metric", "mean", "std"]].round(3)

# %% [markdown]
# ## Beside the paper
#
# **Not comparable** unless this run used the paper's settings: say which differ. The paper's numbers
# come from the paper config (1024-px unets trained for days, 41344-px slides), the standard FID
# Inception, 50,000 pFID patches and 10,000 level-0 images; StyleGAN3 is not part of this toolkit.

# %%
differences = [text for text, differs in [
    (f"config {settings.name} (paper: paper)", settings.name != "paper"),
    (f"extractor {chosen} (paper: the standard FID Inception)", not standard),
    (f"{n_pfid} pFID patches (paper: 50000)", n_pfid != 50000),
    (f"{slides_per_method} level-0 images (paper: 10000)", slides_per_method < 10000),
    (f"{train_steps} training steps per unet", settings.name != "paper")] if differs]
ours = {("pFID-50k", "URCDM"): pfid["urcdm"][fd_key(pfid["urcdm"])], ("pFID-50k", "Outpainting"): pfid["outpaint"][fd_key(pfid["outpaint"])],
        ("FID-10k", "LRDM (level-0 cascade alone)"): level0[fd_key(level0)]}
table = paper_metrics.assign(ours=[ours.get((r.metric, r.model)) for r in paper_metrics.itertuples()])
table["comparable"] = "yes" if not differences else "no"
print("ours differs from the paper in:", "; ".join(differences) if differences else "nothing")
# Everything computed here, for scripts and the tests (a rerun with other parameters replaces it).
(root / "results.json").write_text(json.dumps({"pfid": pfid, "level0": level0, "scales": by_scale, "training": runs,
                                               "differences": differences}, indent=1, default=str))
table[["metric", "model", "value", "ours", "comparable"]].rename(columns={"value": "paper"}).round(2)

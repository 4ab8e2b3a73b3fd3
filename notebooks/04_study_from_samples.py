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
# # From sampled slides to a reader study
#
# The paper's Table 1 comes from pathologists judging crops of real and synthetic slides. This
# notebook turns notebook 02's sampled slides and real regions into such a study: a study YAML with
# one arm per generator, crops at full resolution drawn by the toolkit, rendered and checked by
# `urcdm-study prepare`. It then lists what readers will see: the cases, the parity checks that
# the served files tell nothing but the tissue, and each reader's assignment. It stops where a person
# must answer (`urcdm-study run`); it never invents answers.

# %% tags=["parameters"]
build = "build"         # notebook 02's build folder (sampled slides and real regions)
config = "tiny"         # the config the slides were sampled with
crops_per_side = 8      # crops per arm and class
crop_level = 2          # the magnification level the crops are cut at (its span, at the config's patch size)
readers = 3             # reader ids reader-1 ... reader-N, each with a generated access code
cases_per_reader = 8    # per arm (even: as many real as synthetic)
seed = 7

# %%
import json
import secrets
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import yaml
from PIL import Image

from study_app.access import hash_secret
from study_app.cli import main as urcdm_study
from study_app.preparation.prepare import open_prepared
from study_app.preparation.study import load_study
from urcdm.config import load_config
from urcdm.errors import UserError
from urcdm.notebook import cli, user_errors

with user_errors():
    settings = load_config(config)
    root = Path(build).resolve() / settings.name
    regions = root / "real-regions"
    arms = {"URCDM": root / "samples" / "urcdm", "Outpainting": root / "samples" / "outpaint"}
    if not regions.is_dir() or not all(list(folder.glob("*.tiff")) for folder in arms.values()):
        raise UserError(f"{root}: no sampled slides or real regions; run notebooks/02_fid_pfid first (same build)")
study_dir = root / "study"
study_dir.mkdir(parents=True, exist_ok=True)
span, size = settings.levels[crop_level].span, settings.patch_px
crop = {"n": crops_per_side, "span": span, "size": size}
codes = {f"reader-{i + 1}": secrets.token_urlsafe(8) for i in range(readers)}
study = {
    "title": "Real or synthetic?",
    "instructions": "Each image is a crop of an H&E slide at full resolution. Decide whether it is real or generated.",
    "seed": seed, "cases_per_reader": cases_per_reader, "answers": {"confidence": True},
    "shared_images": "split",  # both arms draw their real crops from the same regions
    "arms": [{"name": name, "real": {"slides": str(regions), "crops": crop},
              "synthetic": {"slides": str(folder / "*.tiff"), "crops": crop}} for name, folder in arms.items()],
    "access": {"readers": [{"id": reader, "code": hash_secret(code)} for reader, code in codes.items()]},
    "admin": {"secret_env": "URCDM_STUDY_ADMIN"},
    "workdir": "run",
}
study_file = study_dir / "study.yaml"
study_file.write_text(yaml.safe_dump(study, sort_keys=False))
(study_dir / "reader-codes.txt").write_text("".join(f"{r} {c}\n" for r, c in codes.items()))
print(f"{study_file}: crops of {span} slide px shown at {size} px; reader codes in {study_dir / 'reader-codes.txt'}")

# %% [markdown]
# ## `urcdm-study prepare`: render, balance, check parity

# %%
summary = cli(urcdm_study, "prepare", study_file)
prepared = open_prepared(load_study(study_file).workdir)
pd.DataFrame([{"arm": arm, **counts} for arm, counts in summary["arms"].items()])

# %%
cases = pd.DataFrame([{"case": c.id, "arm": c.arm, "truth": c.truth, "source": Path(c.source).name,
                       "crop x, y, side": ", ".join(f"{v:.0f}" for v in c.crop[:3]), "image id": c.image_id}
                      for c in prepared.cases])
cases.head(12)

# %% [markdown]
# ## Parity: what a served file shows besides its pixels
#
# A browser receives every byte of a case image, and a script can parse it. No attribute of the
# file (byte length, every segment's length, the coded length, size, format, tables, structure)
# may tell the classes apart: the best one-rule classifier on it stays at the base rate, and its
# AUC at 0.5. The crops here are served uncompressed (`display.format: auto` up to 2048 px), whose
# bytes depend on the image size alone, so every attribute is the same in every file.

# %%
parity = json.loads((prepared.workdir / "parity.json").read_text())
pd.DataFrame([{"attribute": name, "same in every file": a["constant"], "one-rule accuracy": a["accuracy"],
               "AUC": a["auc"], "base rate": parity["base_rate"], "separates classes": a["separates"]}
              for name, a in parity["attributes"].items()])

# %% [markdown]
# ## Who reads what
#
# Each reader gets a balanced, deterministic shuffle; with `shared_images: split` an image both arms
# share is shown to each reader in one arm only. Below: the first reader's cases as they will see them.

# %%
assignment = pd.DataFrame([{"reader": reader, "arm": arm, "real": sum(c.truth == "real" for c in mine if c.arm == arm),
                            "synthetic": sum(c.truth == "synthetic" for c in mine if c.arm == arm)}
                           for reader in codes for mine in [prepared.reader_cases(reader)] for arm in arms])
first = prepared.reader_cases("reader-1")
fig, axes = plt.subplots(1, min(8, len(first)), figsize=(14, 2.2))
for ax, case in zip(axes, first):
    ax.imshow(Image.open(prepared.image_folder / f"{case.id}{prepared.encoding.suffix}"))
    ax.set_title(case.id[:8], fontsize=8)
    ax.set_axis_off()
fig.suptitle("reader-1's first cases, as served (no arm or truth reaches the browser)", fontsize=10)
assignment

# %% [markdown]
# The study is ready. A person must answer it: `urcdm-study run` with the study file above, then
# `urcdm-study export` and notebook 01 with `answers=` for its Table 1 and MRMC analysis.

# %%
print(f"urcdm-study run {study_file}")

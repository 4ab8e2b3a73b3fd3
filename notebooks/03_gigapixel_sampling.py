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
# # How a gigapixel slide is made (the paper's Figures 1 and 2)
#
# URCDM makes a 41344 x 41344 slide in three magnification levels. Level 0 is the whole slide at
# 1024 px. Each level-1 patch is generated from a context window of level 0 around it, and each
# level-2 patch (full resolution) from a window of level 1. Neighbouring patches overlap by 12.5 %.
# Patches run in four checkerboard waves, so that every patch keeps the finished strips of its
# earlier neighbours by inpainting. This notebook draws that geometry on a real slide, shows a
# sampled slide at three zooms, maps the glass patches the white skip upsamples, scores the seams,
# and projects what one paper-scale slide costs.

# %% tags=["parameters"]
data_dir = None             # the real-data folder; default $URCDM_TEST_DATA or ../shared/data
build = "build"             # notebook 02's build folder: its models and sampled slides are used here
config = "tiny"             # the config the slides in `build` were sampled with
layout_slide = "tcga-cr-7395-01a-01-ts1.svs"  # the real slide the paper geometry is drawn on
sample_steps = "16,8,8"     # sampling steps for the no-cross-fade slides sampled here (as notebook 02's)
gpu = "NVIDIA H200"         # the GPU the paper-scale cost is projected for
peak_tflops = 989.0         # its dense bf16 peak (H200 SXM: 989 TFLOP/s)
utilisation = 0.4           # the share of that peak the sampler is assumed to reach
view_side = 1000            # px of the real-slide overview the geometry is drawn and judged on
figures = "figures"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Rectangle
from matplotlib_inline.backend_inline import set_matplotlib_formats

from urcdm.cli import main as urcdm
from urcdm.config import load_config, paper
from urcdm.sampling.cost import gpu_hours, unet_calls, with_flops
from urcdm.sampling.geometry import LevelGrid, patch_context
from urcdm.notebook import check_models_folder, cli, shared_data, user_errors
from urcdm.sampling.plan import glass_map
from urcdm.sampling.schedule import waves
from urcdm.slides import open_slide
from urcdm.errors import UserError

with user_errors():
    data = shared_data(data_dir, need=f"slides/{layout_slide}")
    settings = load_config(config)
    root = Path(build) / settings.name
    check_models_folder(root / "models", settings)
    sampled = sorted((root / "samples" / "urcdm").glob("*.tiff"))
    outpainted = sorted((root / "samples" / "outpaint").glob("*.tiff"))
    if not sampled or not outpainted:
        raise UserError(f"{root / 'samples'}: no sampled slides; run notebooks/02_fid_pfid first (same build)")
figure_dir = Path(figures)
figure_dir.mkdir(parents=True, exist_ok=True)
set_matplotlib_formats("jpeg")  # photographs of tissue: inline PNGs made this notebook 2.4 MB
geometry = paper()
print(f"paper geometry: level spans {[l.span for l in geometry.levels]} px, grids {[l.grid for l in geometry.levels]}, "
      f"{geometry.patch_px}-px patches, stride {geometry.stride}")

# %% [markdown]
# ## The geometry on a real slide
#
# The real slide stands in for level 0: its longer side is scaled to the level-0 span (40000 slide
# pixels), as `urcdm sample --level0` does. Left: the 7 x 7 level-1 patches, coloured by checkerboard
# wave, with one patch's context window (the level-0 area it sees). Right: the 46 x 46 level-2
# patches by wave; grey ones lie over glass (their context is at least 90 % background), so the
# white skip upsamples them instead of running three unets.

# %%
span0 = geometry.levels[0].span
with open_slide(data / "slides" / layout_slide) as slide:
    width, height = slide.dimensions
    frame = max(width, height)  # the level-0 square, centred on the slide; outside it is glass
    view = slide.read_region((width - frame) / 2, (height - frame) / 2, frame, frame, out_size=(view_side, view_side))
to_view = view_side / span0  # view pixels per level-0 frame pixel

# Each level-2 patch's context (the level-1 area it sees), judged as the sampler judges it, on the
# overview (`urcdm sample --dry-run --level0` counts the same): glass vs tissue needs no detail.
level2, level1 = LevelGrid.of(geometry, 2), LevelGrid.of(geometry, 1)
glass = glass_map(geometry, view)

colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
for ax, grid in zip(axes, (level1, level2)):
    ax.imshow(view)
    for wave, patches in enumerate(waves(grid, "checkerboard")):
        for patch in patches:
            x, y, side = grid.slide_box(patch)
            if grid.level == 2 and glass[patch]:
                face, alpha = "#999999", 0.55
            else:
                face, alpha = colours[wave], 0.35 if grid.level == 2 else 0.25
            ax.add_patch(Rectangle((x * to_view, y * to_view), side * to_view, side * to_view, facecolor=face,
                                   edgecolor=colours[wave], lw=0.3 if grid.level == 2 else 1.2, alpha=alpha))
    ax.set_axis_off()
centre = (3, 3)
x, y, side = level1.slide_box(centre)
context = LevelGrid.of(geometry, 0)
cx, cy, cside = patch_context(geometry, 1, centre)
axes[0].add_patch(Rectangle(((context.origin + cx * context.scale) * to_view, (context.origin + cy * context.scale) * to_view),
                            cside * context.scale * to_view, cside * context.scale * to_view, fill=False, ec="black",
                            lw=2, ls="--", label="context of the centre patch"))
axes[0].add_patch(Rectangle((x * to_view, y * to_view), side * to_view, side * to_view, fill=False, ec="black", lw=2))
axes[0].legend(loc="lower right", fontsize=8)
axes[0].set_title("level 1: 7 x 7 patches, 4 checkerboard waves")
skipped = sum(glass.values())
axes[1].set_title(f"level 2: 46 x 46 patches; grey: {skipped} over glass (white skip)")
fig.tight_layout()
fig.savefig(figure_dir / "geometry_on_a_real_slide.png", dpi=100)
glass_fraction = skipped / len(glass)

# %% [markdown]
# ## A sampled slide at three zooms (Figure 2)
#
# The whole slide, a crop the size of a level-1 patch, and a crop the size of a level-2 patch at
# full resolution, from a slide that notebook 02 sampled (config `config`).

# %%
spans = [level.span for level in settings.levels]
with open_slide(sampled[0]) as slide:
    side = min(slide.dimensions)
    whole = slide.read_region(0, 0, side, side, out_size=(512, 512))
    cx = cy = side / 2
    medium = slide.read_region(cx - spans[1] / 2, cy - spans[1] / 2, spans[1], spans[1], out_size=(512, 512))
    native = slide.read_region(cx - spans[2] / 2, cy - spans[2] / 2, spans[2], spans[2])
fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
for ax, image, title in zip(axes, (whole, medium, native),
                            (f"whole slide ({side} px)", f"level-1 span ({spans[1]} px)", f"level-2 span ({spans[2]} px, 1:1)")):
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
for ax, inner, outer in ((axes[0], spans[1], side), (axes[1], spans[2], spans[1])):
    scale = 512 / outer
    ax.add_patch(Rectangle((256 - inner * scale / 2, 256 - inner * scale / 2), inner * scale, inner * scale,
                           fill=False, ec="black", lw=1.5))
fig.suptitle(f"{sampled[0].name}: {settings.name} config, sampled by URCDM", fontsize=10)
fig.tight_layout()
fig.savefig(figure_dir / "sampled_slide_three_zooms.png", dpi=100)

# %% [markdown]
# ## Seams: URCDM against outpainting, with and without the cross-fade
#
# `urcdm seams` divides the mean luminance step across the stitching lines by the mean step
# elsewhere: 1.0 is invisible. The slides without the cross-fade are sampled here (`--blend 0`).

# %%
rows = []
for method, slides in (("urcdm", sampled), ("outpaint", outpainted)):
    plain = root / "samples" / f"{method}-blend0" / "seed0.tiff"
    if not plain.exists():
        plain.parent.mkdir(parents=True, exist_ok=True)
        cli(urcdm, "sample", "--models", root / "models", "--out", plain, "--seed", 0, "--method", method,
            "--steps", sample_steps, "--blend", 0)
    for label, slide in (("cross-fade (default)", slides[0]), ("no cross-fade", plain)):
        rows.append({"method": method, "stitching": label, "slide": slide.name,
                     "seam score": cli(urcdm, "seams", slide)["seam_score"]})
pd.DataFrame(rows).round(4)

# %% [markdown]
# ## What one paper-scale slide costs
#
# Unet evaluations follow from the paper config's geometry and steps (1024 / 256 / 256). FLOPs per
# evaluation are counted on the real imagen-pytorch unets, built on the meta device. The glass share
# of level 2 is the one measured on the real slide above.

# %%
costs = with_flops(unet_calls(geometry, glass_fraction=glass_fraction), geometry)
no_skip = unet_calls(geometry)
table = pd.DataFrame([{"level": c.level, "unet": c.unet, "px": c.size, "patches": c.patches, "steps": c.steps,
                       "evaluations": c.calls, "TFLOP / evaluation": c.flops_per_call / 1e12,
                       "PFLOP": c.flops / 1e15} for c in costs])
total = sum(c.flops for c in costs)
print(f"one {LevelGrid.of(geometry, 2).size}^2 slide: {sum(c.calls for c in costs):,} unet evaluations "
      f"({sum(c.calls for c in no_skip):,} without the white skip), {total / 1e18:.2f} EFLOP; "
      f"{gpu_hours(total, peak_tflops * 1e12, utilisation):.1f} h on one {gpu} at {utilisation:.0%} of its "
      f"{peak_tflops:g} TFLOP/s bf16 peak ({gpu_hours(total, peak_tflops * 1e12, 1.0):.2f} h at 100 %)")
table.round(3)

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
# # Table 1: can pathologists tell URCDM's images from real ones?
#
# The paper's Table 1 (human evaluation) gives, per reader and arm, TP (synthetic images called
# synthetic) and FP (real images called synthetic), with p = FP / (TP + FP): the share of "synthetic"
# calls that were real. p = 0.5 means the reader could not tell; the arm's weighted MAE is the mean
# of |p - 0.5| weighted by each reader's number of calls.
#
# This notebook rebuilds the table from the printed counts with the toolkit's own scorer (the code
# path of `urcdm-study score`), sets it beside the printed numbers cell by cell, and adds what the
# paper lacks: exact intervals of each reader's p, a binomial test against 0.5, a plot, and the
# reader-averaged ROC AUC with its MRMC confidence interval where ratings per case exist.
#
# With `answers=` set to an `urcdm-study export` CSV, the same notebook gives a real study's table.

# %% tags=["parameters"]
data_dir = None        # the real-data folder; default $URCDM_TEST_DATA or ../shared/data beside the repository
answers = None         # an `urcdm-study export` CSV: score that study instead of the paper's counts
positive = "synthetic"  # the class whose calls are counted (the paper: synthetic)
mrmc_cov = "jackknife"  # MRMC covariance estimator: jackknife | delong | unbiased
out_dir = "build/01_table1"  # the answers CSV and results JSON this run scored
figures = "figures"    # PNGs for the README

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from study_app.statistics.mrmc_designs import analyse_any
from study_app.statistics.mrmc_answers import arm_mrmc, roc_points, select_arm_designs
from study_app.statistics.paper_table import (
    answers_from_counts,
    read_table1,
    reader_comparison,
    total_comparison,
    write_answers,
)
from study_app.statistics.records import natural_key
from study_app.statistics.scoring import score
from study_app.store.answers_csv import read_answers
from study_app.store.ratings_csv import read_design
from urcdm.notebook import shared_data, user_errors

pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)
with user_errors():
    data = shared_data(data_dir, need="paper/table1.csv")
    if positive not in ("synthetic", "real"):
        raise ValueError(f"positive must be synthetic or real, got {positive!r}")
    study_answers = read_answers(answers) if answers else None  # a bad file stops the notebook here
out, figure_dir = Path(out_dir), Path(figures)
out.mkdir(parents=True, exist_ok=True)
figure_dir.mkdir(parents=True, exist_ok=True)
print("data:", data, "| answers:", answers or "the paper's printed counts")

# %% [markdown]
# ## The table, scored by the toolkit
#
# The printed counts become answer rows (TP "synthetic" answers on synthetic cases, FP "synthetic"
# answers on real ones), written as an answers CSV and scored exactly as `urcdm-study score` scores
# one. The paper prints no TN or FN, so accuracy and specificity cannot be recomputed.

# %%
printed_readers, printed_totals = read_table1(data / "paper")
if study_answers is None:
    scored_csv = write_answers(answers_from_counts(printed_readers), out / "answers.csv")
    rows = read_answers(scored_csv)
else:
    scored_csv, rows = Path(answers), study_answers
result = score(rows, by="arm", positive=positive)
(out / "result.json").write_text(json.dumps(result, indent=1))
print(f"scored {len(rows)} answers from {scored_csv}; result in {out / 'result.json'}")

table = pd.DataFrame([{"arm": arm, "reader": r["reader"], "TP": r["tp"], "FP": r["fp"], "p": r["p"],
                       "|p-0.5|": r["abs_p_minus_half"], "p 95% low": r["p_interval"]["low"],
                       "p 95% high": r["p_interval"]["high"]}
                      for arm, group in result["arms"].items() for r in group["readers"]])
totals = pd.DataFrame([{"arm": arm, "TP": g["total"]["tp"], "FP": g["total"]["fp"], "p": g["total"]["p"],
                        "w-MAE": g["total"]["w_mae"], "readers": g["total"]["n_readers"]}
                       for arm, group in result["arms"].items() for g in [group]])
table.round(4)

# %%
totals.round(4)

# %% [markdown]
# ## Ours beside the printed table
#
# Each printed value is compared with ours rounded to the four printed decimals; "printed differs"
# names every printed value that its own counts do not give. The binomial test asks whether a
# reader's p differs from 0.5 (p < 0.05: the reader's "synthetic" calls were not a coin toss).

# %%
if study_answers is None and positive == "synthetic":
    readers_vs_printed = pd.DataFrame(reader_comparison(result, printed_readers))
    totals_vs_printed = pd.DataFrame(total_comparison(result, printed_totals))
    flagged = readers_vs_printed[readers_vs_printed["printed differs"] != ""]
    for _, row in flagged.iterrows():
        print(f"printed value not given by its counts: {row['arm']} {row['reader']}: {row['printed differs']} "
              f"(counts {row['TP']}/{row['FP']} give p {row['p']:.4f}, |p-0.5| {row['|p-0.5|']:.4f}; "
              f"printed {row['printed p']:.4f}, {row['printed |p-0.5|']:.4f})")
    display(readers_vs_printed.round(4))
    display(totals_vs_printed.round(4))
else:
    print("a real study (or another positive class): there is no printed table to compare with")

# %% [markdown]
# ## p per reader with its 95 % interval
#
# Readers whose interval misses 0.5 told the classes apart better (or worse) than chance.

# %%
arms = list(result["arms"])
every_reader = sorted(set(table["reader"]), key=natural_key)  # one row per reader in every panel
fig, axes = plt.subplots(1, len(arms), figsize=(5.5 * len(arms), 3.8), sharey=True, squeeze=False)
for ax, arm in zip(axes[0], arms):
    shown = table[table["arm"] == arm].dropna(subset=["p"]).reset_index(drop=True)
    y = [every_reader.index(reader) for reader in shown["reader"]]
    ax.errorbar(shown["p"], y, xerr=[shown["p"] - shown["p 95% low"], shown["p 95% high"] - shown["p"]],
                fmt="o", color="#2a7ab9", ecolor="#7fa9cf", capsize=3)
    ax.axvline(0.5, color="#b22", lw=1, ls="--", label="p = 0.5: cannot tell")
    ax.set_yticks(range(len(every_reader)), every_reader)
    ax.set_xlim(0, 1)
    ax.set_xlabel("p = FP / (TP + FP), 95 % Clopper-Pearson")
    ax.set_title(f"{arm}: w-MAE {result['arms'][arm]['total']['w_mae']:.4f}")
axes[0][0].invert_yaxis()
axes[0][0].legend(loc="lower right", fontsize=8)
fig.tight_layout()
fig.savefig(figure_dir / "table1_p_per_reader.png", dpi=110)

# %% [markdown]
# ## Reader-averaged ROC AUC (MRMC)
#
# Table 1 asks about each reader; an organiser who publishes needs the question for readers and
# images in general: can pathologists tell real from synthetic, AUC > 0.5? `urcdm-study mrmc` answers it
# with a CI that accounts for both reader and case variability, from every answer and for any reading
# design: the Obuchowski-Rockette analysis with Hillis' degrees of freedom where every reader read every
# case of an arm, the U-statistics of Gallas et al. (iMRMC's method) for any other pattern (a random
# subset per reader, a split-plot), with the split-plot OR analysis beside them where readers read in
# groups. It needs each reader's rating of each case they read. **The paper prints none** (only TP/FP
# totals), so its readers' AUCs cannot be computed. With `answers=` the study's own answers are
# analysed (answer and confidence become one 10-point rating). Without it, the analysis is shown on the
# Van Dyke data, the field's standard worked example, so that what the organiser will get is visible;
# those numbers are radiology readers, not this paper's.

# %%
if study_answers is not None:
    selections = select_arm_designs(study_answers)
    mrmc = {s.arm: arm_mrmc(s, mrmc_cov) for s in selections}
    designs = {s.arm: s.design for s in selections}
    for s in selections:
        if s.design is None:
            print(f"{s.arm}: no MRMC result: {s.reason}")
    source = f"{answers} (positive = synthetic)"
else:
    with user_errors():
        vandyke = read_design(data / "mrmc" / "vandyke.csv")
    full = analyse_any(vandyke.ratings, vandyke.truth, mrmc_cov, vandyke.readers, vandyke.arms)
    mrmc, designs = {}, {}
    for i, arm in enumerate(vandyke.arms):
        part = full["random_readers_random_cases"]["arms"][i]
        mrmc[f"treatment {arm}"] = {**part, "analysis": "random readers, random cases", "estimator": part["analysis"],
                                    "design": full["design"], "u_statistics": full["u_statistics"]["arms_results"][i],
                                    "readers": len(vandyke.readers), "cases": len(vandyke.cases),
                                    "reader_auc": {r: full["auc"][r][arm] for r in vandyke.readers}}
        designs[f"treatment {arm}"] = vandyke.__class__(vandyke.ratings[:, i:i + 1], vandyke.truth, vandyke.readers,
                                                        [f"treatment {arm}"], vandyke.cases, vandyke.source)
    source = "Van Dyke et al. (1993): 5 readers x 114 cases, 2 modalities (the reference example)"
summary = pd.DataFrame([{"arm": arm, "design": m["design"], "estimator": m["estimator"], "readers": m["readers"],
                         "cases": m["cases"], "AUC": m["estimate"], "95% low": m["low"], "95% high": m["high"],
                         "p (AUC = 0.5)": m["p"], "U-statistics 95% low": m["u_statistics"]["low"],
                         "U-statistics 95% high": m["u_statistics"]["high"]}
                        for arm, m in mrmc.items() if m])
print("MRMC source:", source, "| covariance:", mrmc_cov)
summary.round(4)

# %%
shown = [(arm, design) for arm, design in designs.items() if design is not None and mrmc.get(arm)]
if shown:
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4), squeeze=False)
    for ax, (arm, design) in zip(axes[0], shown):
        points = pd.DataFrame(roc_points(design))
        for reader, curve in points.groupby("reader", sort=False):
            ax.plot(curve["fpr"], curve["tpr"], marker=".", lw=1,
                    label=f"{reader}: {mrmc[arm]['reader_auc'][reader]:.3f}")
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
        m = mrmc[arm]
        ax.set_title(f"{arm}\nAUC {m['estimate']:.3f} (95% CI {m['low']:.3f} to {m['high']:.3f})", fontsize=10)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right", title="reader: AUC", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(figure_dir / "table1_mrmc_roc.png", dpi=110)

# %% [markdown]
# ## How many pathologists and images? Power before recruiting
#
# The organiser's first question is how many readers and cases the next study needs to show that readers
# cannot tell real from synthetic. `urcdm-study power` answers it with Hillis, Obuchowski & Berbaum (2011):
# the OR variance components of a crossed pilot (here the Van Dyke data, or the study's own answers when
# they are crossed), scaled to other numbers of cases. The table is the power of two one-sided tests to
# show readers within 0.1 AUC of chance when they are at chance, crossed design; the line below it, the
# fewest cases that reach 0.8 for each number of readers.

# %%
from study_app.statistics.mrmc import analyse  # noqa: E402  (the pilot's OR components)
from study_app.statistics.power import components_from_result, sample_size_grid  # noqa: E402

with user_errors():
    pilot = read_design(data / "mrmc" / "vandyke.csv")
pilot_components = components_from_result(analyse(pilot.ratings, pilot.truth, mrmc_cov, pilot.readers, pilot.arms))
grid = sample_size_grid(pilot_components, "equivalence", 0.1, readers=(3, 5, 10, 20), cases=(50, 100, 200, 400))
power_table = pd.DataFrame(grid.power).pivot(index="readers", columns="cases", values="power")
print("cases needed for power 0.8:", {row["readers"]: row["cases"] for row in grid.needed})
power_table.round(3)

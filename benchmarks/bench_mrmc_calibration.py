"""Calibration of the MRMC analyses by simulation from the Roe & Metz model. Prints JSON. Not a test.

Studies are simulated from ``study_app.statistics.roe_metz`` (the Roe & Metz 1997 variance structure, one
arm) and analysed by ``mrmc_designs.analyse_any``, as ``urcdm-study mrmc`` would, under three reading designs:
crossed (every reader reads every case), split-plot (readers dealt round-robin into --groups groups, each
group its own balanced block of cases) and random (each reader a balanced random subset of --per-reader
cases). Per design:

- coverage of the 95 % CIs for the population reader-averaged AUC (--auc, default 0.75) of the headline
  row (``random_readers_random_cases.arms[0]``: OR for crossed, U-statistics otherwise), and separately of
  the U-statistics row and, for split-plot, of the split-plot OR row; exact binomial 95 % interval on each
  coverage, and the mean variance estimate over the empirical variance of the estimates (1 = unbiased);
- type-I error at AUC 0.5: the rate of p < 0.05;
- power at --power-auc (default 0.6): the simulated rate of p < 0.05 beside the power that
  ``study_app.statistics.power`` predicts (Hillis, Obuchowski & Berbaum 2011) for the crossed and split-plot
  designs. Its OR components are the average over --pilots crossed pilots of 10 readers x 400 cases simulated
  from the same model at the same AUC: one pilot's var_r rests on 9 df (relative SD ~ 50 %), so a single pilot
  would test the pilot's luck rather than the formulas; the spread of the power predicted from single pilots
  is reported beside. Every design, the random-subset one included (which the OR model cannot describe), is
  also predicted from the pilots' U-statistic moments (``study_app.statistics.design_power``);
- seconds per study (simulation + analysis, one core), and the run time of ``analyse_any`` and of the
  ``urcdm-study mrmc --json`` command on 10 readers x 400 cases under each design.

    .venv/bin/python benchmarks/bench_mrmc_calibration.py [--studies 2000] [--readers 8] [--cases 200]
        [--seed 1] [--designs crossed,split-plot,random] [--fast]

Typical figures (defaults: 8 readers x 200 cases, 2 split-plot groups, 100 cases per reader in the random
design, 2,000 studies per design and AUC, 200 pilots, seed 1; 2 cores: 200 s wall in all, --fast 40 s):

    design      coverage at 0.75 (95 % CI)        type-I            power at 0.6: predicted / simulated
    crossed     OR 95.1 % (94.0-96.0)             5.5 %             82.2 / 81.1 %
    split-plot  U 94.4 % (93.3-95.4),             U 5.1 %, OR 5.2 % 79.1 / 77.3 % (U), 77.5 % (OR)
                split-plot OR 94.5 % (93.4-95.4)
    random      U 94.4 % (93.3-95.4)              6.0 % (5.0-7.1)   - / 71.9 %

    seconds per study 0.015-0.025 (one core); analyse_any on 10 x 400: 0.025-0.037 s per design;
    urcdm-study mrmc --json on 10 x 400: ~1.3 s, of which ~1.15 s is the command's start-up.

With more studies (--designs random --studies 8000 --seed 7; 6,000 split-plot studies likewise) the
U-statistics CIs of the split-plot and random designs cover 94.1-94.4 % and reject 5.4-5.9 % under the null:
a little liberal. Their variance is unbiased (mean estimate / empirical variance 0.97-0.99), so it is the
ddf (median 53-64 for 8 readers): with df = r - 1 they cover 97 %.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy import stats

from study_app.statistics import power
from study_app.statistics.design_power import KINDS, PilotMoments, power_any
from study_app.statistics.mrmc_designs import analyse_any
from study_app.statistics.roe_metz import (
    RoeMetz,
    apply_mask,
    crossed_mask,
    mu_for_auc,
    population_auc,
    random_subset_mask,
    reader_auc_variance,
    simulate,
    split_plot_mask,
)
from urcdm.clikit import bounded_int, comma_choices, positive_int, random_seed, run_script

DESIGNS = ("crossed", "split-plot", "random")
FIELDS = ("estimate", "variance", "df", "low", "high", "p")
TARGET = (0.935, 0.965)  # 95 +- 1.5 % coverage
POWER_TOLERANCE = 0.03
CHUNK = 25  # studies per pool task
PILOT_SIZE = (10, 400)  # readers, cases of each pilot
TIMING_SIZE = (10, 400, 100)  # readers, cases, cases per reader in the random design


@dataclass(frozen=True)
class Sizes:
    readers: int
    cases: int
    groups: int
    per_reader: int


def model_at(auc: float) -> RoeMetz:
    base = RoeMetz()
    return replace(base, mu=mu_for_auc(base, auc))


def design_mask(design: str, sizes: Sizes, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if design == "crossed":
        return crossed_mask(sizes.readers, sizes.cases)
    if design == "split-plot":
        return split_plot_mask(sizes.readers, sizes.cases, sizes.groups, truth, rng)
    return random_subset_mask(sizes.readers, truth, sizes.per_reader, rng)


def study(design: str, model: RoeMetz, sizes: Sizes, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    negatives = sizes.cases // 2
    ratings, truth = simulate(model, sizes.readers, negatives, sizes.cases - negatives, rng)
    return apply_mask(ratings, design_mask(design, sizes, truth, rng)), truth


def result_rows(result: dict) -> dict[str, dict]:
    """The rows whose calibration we measure: the headline, the U-statistics, the split-plot OR."""
    headline = result["random_readers_random_cases"]["arms"][0]
    rows = {"headline": {**headline, "variance": None if headline["se"] is None else headline["se"] ** 2},
            "u_statistics": result["u_statistics"]["arms_results"][0]}
    for row in (result["split_plot"] or {}).values():
        if "reason" not in row:
            rows["split_plot_or"] = row
    return rows


def run_chunk(task: tuple) -> dict:
    """``studies`` simulated studies of one design at one AUC; per row an array [study, FIELDS] (NaN = None)."""
    design, purpose, auc, studies, seed, sizes = task
    rng = np.random.default_rng(seed)
    model = model_at(auc)
    rows: dict[str, list] = {}
    labels: dict[str, int] = {}
    seconds = 0.0
    for _ in range(studies):
        started = time.perf_counter()
        ratings, truth = study(design, model, sizes, rng)
        result = analyse_any(ratings, truth)
        seconds += time.perf_counter() - started
        labels[result["design"]] = labels.get(result["design"], 0) + 1
        for name, row in result_rows(result).items():
            rows.setdefault(name, []).append([np.nan if row.get(f) is None else row[f] for f in FIELDS])
    return {"key": (design, purpose), "rows": {k: np.array(v) for k, v in rows.items()}, "seconds": seconds,
            "labels": labels}


def run_pilot(task: tuple) -> list[tuple[float, ...]]:
    """(var_r, var_error, cov2, then the U-statistic moment differences in KINDS order) of crossed pilots of
    PILOT_SIZE, as ``power.components_from_result`` and ``design_power.PilotMoments`` read them."""
    auc, pilots, seed = task
    rng = np.random.default_rng(seed)
    model, (readers, cases) = model_at(auc), PILOT_SIZE
    out = []
    for _ in range(pilots):
        ratings, truth = simulate(model, readers, cases // 2, cases - cases // 2, rng)
        c = power.components_from_result(analyse_any(ratings, truth))
        moments = PilotMoments.from_ratings(ratings[:, 0], truth).differences
        out.append((c.var_r, c.var_error, c.cov2, *(moments[k] for k in KINDS)))
    return out


def binomial(hits: int, n: int) -> dict:
    ci = stats.binomtest(hits, n).proportion_ci(0.95, method="exact") if n else None
    return {"rate": round(hits / n, 4) if n else None, "n": n,
            "ci95": None if ci is None else [round(ci.low, 4), round(ci.high, 4)]}


def coverage(rows: np.ndarray, auc: float) -> dict:
    est, var, df, low, high = (rows[:, FIELDS.index(f)] for f in ("estimate", "variance", "df", "low", "high"))
    covered = (low <= auc) & (auc <= high)
    out = binomial(int(covered.sum()), len(rows))
    out.update(within_target=bool(out["rate"] is not None and TARGET[0] <= out["rate"] <= TARGET[1]),
               undefined=int(np.isnan(low).sum()), misses_below=int((high < auc).sum()),
               misses_above=int((low > auc).sum()), bias=round(float(est.mean() - auc), 5),
               empirical_sd=round(float(est.std(ddof=1)), 5),
               mean_variance_over_empirical=round(float(np.nanmean(var) / est.var(ddof=1)), 3),
               median_df=None if np.isnan(df).all() else round(float(np.nanmedian(df)), 1))
    return out


def rejections(rows: np.ndarray) -> dict:
    p = rows[:, FIELDS.index("p")]
    return {**binomial(int((p < 0.05).sum()), len(rows)), "undefined": int(np.isnan(p).sum())}


def pilot_components(auc: float, pilots: int, seed: int, pool: Pool
                     ) -> tuple[power.ORComponents, PilotMoments, np.ndarray]:
    per_task = max(1, pilots // 8)
    tasks = [(auc, min(per_task, pilots - k), np.random.SeedSequence(seed, spawn_key=(99, k)))
             for k in range(0, pilots, per_task)]
    values = np.array([v for chunk in pool.map(run_pilot, tasks) for v in chunk])
    var_r, var_error, cov2, *moments = values.mean(axis=0)
    components = power.ORComponents(float(var_r), None, float(var_error), None, float(cov2), None, PILOT_SIZE[1])
    return components, PilotMoments(dict(zip(KINDS, map(float, moments))), auc), values[:, :3]


def predicted_power(components: power.ORComponents, design: str, sizes: Sizes, auc: float) -> float | None:
    """HOB 2011 from the OR components (crossed and split-plot; the OR model has no random-subset design)."""
    if design == "crossed":
        return power.power_versus_chance(components, sizes.readers, sizes.cases, auc)
    if design == "split-plot":
        return power.power_versus_chance(components, sizes.readers, sizes.cases, auc, design="split-plot",
                                         groups=sizes.groups)
    return None


def predicted_power_from_moments(moments: PilotMoments, design: str, sizes: Sizes, auc: float) -> float:
    """From the pilots' U-statistic moments (study_app.statistics.design_power): any design."""
    half = sizes.cases // 2
    return power_any(moments, "versus-chance", auc, design, sizes.readers, half, sizes.cases - half,
                     groups=sizes.groups, per_reader=sizes.per_reader)


def single_pilot_spread(values: np.ndarray, design: str, sizes: Sizes, auc: float) -> dict | None:
    """How far the power predicted from one pilot alone strays (the pilots one by one)."""
    powers = []
    for var_r, var_error, cov2 in values:
        if var_error > 0:
            one = power.ORComponents(float(var_r), None, float(var_error), None, float(cov2), None, PILOT_SIZE[1])
            powers.append(predicted_power(one, design, sizes, auc))
    if design == "random" or not powers:
        return None
    powers = np.array(powers)
    return {"pilots": len(powers), "mean": round(float(powers.mean()), 4), "sd": round(float(powers.std()), 4),
            "p5_p95": [round(float(q), 4) for q in np.quantile(powers, [0.05, 0.95])]}


def write_ratings_csv(path: Path, ratings: np.ndarray, truth: np.ndarray) -> None:
    """reader,arm,case,truth,rating; a case the reader did not read has no row."""
    lines = ["reader,arm,case,truth,rating"]
    for j, k in zip(*np.nonzero(np.isfinite(ratings[:, 0]))):
        lines.append(f"r{j + 1},A,c{k + 1},{int(truth[k])},{ratings[j, 0, k]:.6f}")
    path.write_text("\n".join(lines) + "\n")


def timings(seed: int) -> dict:
    """analyse_any and ``urcdm-study mrmc --json`` on 10 readers x 400 cases under each design."""
    readers, cases, per_reader = TIMING_SIZE
    sizes = Sizes(readers, cases, 2, per_reader)
    rng = np.random.default_rng(seed)
    cli = Path(sys.executable).with_name("urcdm-study")
    out = {"readers": readers, "cases": cases, "split_plot_groups": 2, "random_cases_per_reader": per_reader}
    with tempfile.TemporaryDirectory() as tmp:
        for design in DESIGNS:
            ratings, truth = study(design, model_at(0.75), sizes, rng)
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                result = analyse_any(ratings, truth)
                runs.append(time.perf_counter() - started)
            row = {"analyse_any_seconds": round(float(np.median(runs)), 4), "detected": result["design"]}
            path = Path(tmp) / f"{design}.csv"
            write_ratings_csv(path, ratings, truth)
            started = time.perf_counter()
            done = subprocess.run([str(cli), "mrmc", str(path), "--json"], capture_output=True, text=True)
            row["cli_seconds"] = round(time.perf_counter() - started, 3)
            row["cli_exit"] = done.returncode
            if done.returncode:
                row["cli_error"] = (done.stderr.strip().splitlines() or [""])[-1][:300]
            else:
                headline = json.loads(done.stdout)["random_readers_random_cases"]["arms"][0]
                row["cli_headline"] = headline.get("analysis")
            out[design] = row
        started = time.perf_counter()
        subprocess.run([str(cli), "--help"], capture_output=True)
        out["cli_startup_seconds"] = round(time.perf_counter() - started, 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=positive_int, default=None, help="simulated studies per design and AUC (default 2000; --fast 300)")
    parser.add_argument("--readers", type=bounded_int(2), default=8)
    parser.add_argument("--cases", type=bounded_int(4), default=200, help="half negative, half positive")
    parser.add_argument("--groups", type=bounded_int(2), default=2, help="split-plot groups")
    parser.add_argument("--per-reader", type=bounded_int(4), help="cases per reader, random design (default: cases / 2)")
    parser.add_argument("--auc", type=float, default=0.75, help="population AUC for the coverage")
    parser.add_argument("--power-auc", type=float, default=0.6)
    parser.add_argument("--pilots", type=positive_int, default=None, help="10 x 400 crossed pilots averaged for power (default 200; --fast 50)")
    parser.add_argument("--seed", type=random_seed, default=1)
    parser.add_argument("--designs", type=comma_choices(*DESIGNS), default=",".join(DESIGNS))
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1)
    parser.add_argument("--fast", action="store_true", help="300 studies per design and AUC, 50 pilots, unless given")
    parser.add_argument("--no-timing", action="store_true", help="skip the 10 x 400 and CLI timings")
    args = parser.parse_args()
    designs = args.designs
    for name in ("auc", "power_auc"):
        if not 0 < getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1, got {getattr(args, name)}")
    if "split-plot" in designs and args.readers % args.groups:  # said now, not after the other designs' studies
        parser.error(f"split-plot with {args.groups} groups: {args.readers} readers do not make {args.groups} equal groups")
    studies = args.studies or (300 if args.fast else 2000)
    pilots = args.pilots or (50 if args.fast else 200)
    sizes = Sizes(args.readers, args.cases, args.groups, args.per_reader or args.cases // 2)
    aucs = {"coverage": args.auc, "type_I": 0.5, "power": args.power_auc}

    started = time.perf_counter()
    tasks = [(design, purpose, auc, min(CHUNK, studies - k),
              np.random.SeedSequence(args.seed, spawn_key=(DESIGNS.index(design), a, k)), sizes)
             for design in designs for a, (purpose, auc) in enumerate(aucs.items()) for k in range(0, studies, CHUNK)]
    with Pool(args.workers) as pool:
        chunks = pool.map(run_chunk, tasks, chunksize=1)
        components, moments, pilot_values = pilot_components(args.power_auc, pilots, args.seed, pool)
    simulation_seconds = time.perf_counter() - started

    merged: dict = {}
    for chunk in chunks:
        entry = merged.setdefault(chunk["key"], {"rows": {}, "seconds": 0.0, "labels": {}})
        entry["seconds"] += chunk["seconds"]
        for name, rows in chunk["rows"].items():
            entry["rows"].setdefault(name, []).append(rows)
        for label, count in chunk["labels"].items():
            entry["labels"][label] = entry["labels"].get(label, 0) + count
    model = model_at(args.power_auc)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": {**{k: v for k, v in asdict(RoeMetz()).items() if k != "mu"},
                  "mu_by_auc": {str(auc): round(mu_for_auc(RoeMetz(), auc), 5) for auc in sorted(set(aucs.values()))}},
        "sizes": sizes.__dict__, "studies_per_design_and_auc": studies, "workers": args.workers,
        "pilot": {"readers": PILOT_SIZE[0], "cases": PILOT_SIZE[1], "pilots": len(pilot_values),
                  "auc": args.power_auc, "mean_components": {"var_r": components.var_r,
                                                             "var_error": components.var_error,
                                                             "cov2": components.cov2},
                  "var_r_of_the_model": reader_auc_variance(model),
                  "population_auc": population_auc(model)},
        "designs": {},
    }
    for design in designs:
        out = {}
        seconds, count = 0.0, 0
        for purpose, auc in aucs.items():
            entry = merged[(design, purpose)]
            seconds += entry["seconds"]
            count += studies
            rows = {name: np.concatenate(parts) for name, parts in entry["rows"].items()}
            if purpose == "coverage":
                out["coverage"] = {"auc": auc, **{name: coverage(r, auc) for name, r in rows.items()}}
                out["detected_design"] = entry["labels"]
            elif purpose == "type_I":
                out["type_I"] = {name: rejections(r) for name, r in rows.items()}
            else:
                predicted = predicted_power(components, design, sizes, auc)
                from_moments = predicted_power_from_moments(moments, design, sizes, auc)
                simulated = {name: rejections(r) for name, r in rows.items()}
                out["power"] = {
                    "auc": auc, "predicted": None if predicted is None else round(predicted, 4),
                    "predicted_from_moments": round(from_moments, 4),
                    "simulated": simulated,
                    "predicted_minus_simulated_points": None if predicted is None else {
                        name: round(100 * (predicted - s["rate"]), 2) for name, s in simulated.items()},
                    "moments_minus_simulated_points": {
                        name: round(100 * (from_moments - s["rate"]), 2) for name, s in simulated.items()},
                    "single_pilot_prediction": single_pilot_spread(pilot_values, design, sizes, auc)}
                if predicted is None:
                    out["power"]["note"] = ("the OR model (HOB 2011) has no random-subset design; predicted from "
                                            "the pilots' U-statistic moments (design_power)")
        out["seconds_per_study"] = round(seconds / count, 5)
        report["designs"][design] = out
    report["simulation_wall_seconds"] = round(simulation_seconds, 1)
    if not args.no_timing:
        report["timing_10x400"] = timings(args.seed)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))

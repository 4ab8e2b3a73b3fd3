"""``urcdm-study power``: power and sample size of an MRMC reader study from a pilot (Hillis, Obuchowski &
Berbaum 2011, Acad Radiol 18:129-142; the maths is study_app/statistics/power.py).

    urcdm-study power --pilot RATINGS.csv --delta 0.05 [--readers 4,6,10] [--cases 100,200] [--json]
    urcdm-study power --pilot RATINGS.csv --arm A --auc 0.65 --plot power.png
    urcdm-study power --components var_r=0.0015,var_error=0.0008,cov2=0.0003 --pilot-cases 114 --margin 0.1
    urcdm-study power --pilot EXPORT.csv --arm A --margin 0.1 --design random --pool 400 --cases 40,80,160

A random design (each reader their own random subset of a pool) has no OR model; it is planned from the
pilot's U-statistic moments (study_app/statistics/design_power.py), from a pilot read in any design.

The command line is parsed into PowerOptions here; nothing past ``options_from_args`` sees argparse.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from study_app.statistics.design_power import PilotMoments, random_design_grid
from study_app.statistics.power import (
    COMPONENT_NAMES,
    DEFAULT_CASES,
    MAX_CASES,
    ORComponents,
    SampleSizeGrid,
    components_from_result,
    default_readers,
    sample_size_grid,
)
from urcdm.clikit import add_output_options, positive_int, positive_int_list, print_json
from urcdm.errors import UserError
from urcdm.pyramid import atomic_output, check_output_path

COV_METHODS = ("jackknife", "delong", "unbiased")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
TEST_TITLES = {"versus-chance": "an arm's AUC against chance (AUC {effect:g} vs 0.5)",
               "difference": "the difference of two arms (delta {effect:g})",
               "equivalence": "equivalence with chance (margin {effect:g}, true AUC {true_auc:g})"}


@dataclass(frozen=True)
class PowerOptions:
    test: str  # versus-chance, difference or equivalence
    effect: float  # the AUC, the difference or the margin
    true_auc: float
    design: str
    groups: int
    readers: tuple[int, ...] | None  # None: power.default_readers
    cases: tuple[int, ...]
    target: float
    alpha: float
    pilot: Path | None = None
    arm: str | None = None
    cov: str = "jackknife"
    components: dict[str, float] | None = None
    pilot_cases: int | None = None
    pool: int | None = None  # random design: the balanced pool the readers' subsets are drawn from
    json: bool = False
    plot: Path | None = None


def add_power_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "power", help="power and sample size of an MRMC reader study from a pilot",
        description="Power and cases needed for an OR MRMC reader study (Hillis, Obuchowski & Berbaum 2011), "
                    "from a pilot's ratings or from given OR variance components.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pilot", type=Path, metavar="FILE",
                        help="pilot CSV: reader,arm,case,truth,rating or an `urcdm-study export` CSV")
    source.add_argument("--components", metavar="NAME=VALUE,...",
                        help="OR components, e.g. var_r=0.0015,var_tr=0.0002,var_error=0.0008,cov1=0.00035,"
                             "cov2=0.00034,cov3=0.00024 (needs --pilot-cases)")
    parser.add_argument("--arm", help="use this arm of the pilot alone")
    parser.add_argument("--cov", choices=COV_METHODS, help="pilot covariance estimator (default: jackknife)")
    parser.add_argument("--pilot-cases", type=positive_int, metavar="N",
                        help="the number of cases the --components were estimated on")
    question = parser.add_mutually_exclusive_group(required=True)
    question.add_argument("--auc", type=float, help="power to detect this AUC against chance (0.5), one arm")
    question.add_argument("--delta", type=float, help="power to detect this AUC difference between two arms")
    question.add_argument("--margin", type=float, help="power to show the AUC is within this margin of 0.5")
    parser.add_argument("--true-auc", type=float, help="with --margin: the readers' true AUC (default 0.5)")
    parser.add_argument("--design", choices=("crossed", "split-plot", "random"), default="crossed",
                        help="crossed (every reader reads every case, default), split-plot, or random (each "
                             "reader a random subset of --pool cases; --cases are then cases per reader)")
    parser.add_argument("--pool", type=positive_int, metavar="N", help="random design: the cases in the pool")
    parser.add_argument("--groups", type=positive_int, help="split-plot groups (default 2)")
    parser.add_argument("--readers", type=positive_int_list, help="readers counts (default 3..20)")
    parser.add_argument("--cases", type=positive_int_list, default=DEFAULT_CASES,
                        help=f"cases counts of the power table (default {','.join(map(str, DEFAULT_CASES))})")
    parser.add_argument("--target", type=float, default=0.8, help="target power (default 0.8)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="plot power against readers")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    add_output_options(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> PowerOptions:
    test, effect = next((name, value) for name, value in (("versus-chance", args.auc), ("difference", args.delta),
                                                          ("equivalence", args.margin)) if value is not None)
    if not 0 < args.alpha < 0.5:  # before the target, whose range depends on it
        raise UserError(f"--alpha must be in (0, 0.5), got {args.alpha:g}")
    if args.true_auc is not None and test != "equivalence":
        raise UserError("--true-auc goes with --margin")
    components = None
    if args.components is not None:
        if args.pilot_cases is None:
            raise UserError("--components needs --pilot-cases (the cases the components were estimated on)")
        if args.arm is not None or args.cov is not None:
            raise UserError("--arm and --cov are for --pilot, not --components")
        components = parse_components(args.components)
    elif args.pilot_cases is not None:
        raise UserError("--pilot-cases goes with --components; a pilot's cases are counted from the file")
    if args.design != "split-plot" and args.groups not in (None, 1):
        raise UserError("--groups goes with --design split-plot")
    if (args.design == "random") != (args.pool is not None):
        raise UserError("--design random needs --pool N (the cases the readers' subsets are drawn from), and "
                        "--pool goes with --design random only")
    if args.design == "random" and args.pilot is None:
        raise UserError("--design random is planned from a pilot's ratings (--pilot), not from OR components")
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"--plot {args.plot}: the file name must end in {', '.join(PLOT_SUFFIXES)}")
    if args.plot is not None:
        check_output_path(args.plot, args.overwrite)  # a user's figure is not replaced unasked
    groups = (args.groups or 2) if args.design == "split-plot" else 1
    return PowerOptions(test=test, effect=effect, true_auc=0.5 if args.true_auc is None else args.true_auc,
                        design=args.design, groups=groups, readers=args.readers, cases=tuple(args.cases),
                        target=args.target, alpha=args.alpha, pilot=args.pilot, arm=args.arm,
                        cov=args.cov or "jackknife", components=components, pilot_cases=args.pilot_cases,
                        pool=args.pool, json=args.json, plot=args.plot)


def parse_components(text: str) -> dict[str, float]:
    values = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in COMPONENT_NAMES:
            raise UserError(f"--components: {name!r} is not one of {', '.join(COMPONENT_NAMES)}")
        try:
            values[name] = float(value)
        except ValueError:
            raise UserError(f"--components: {name}={value!r} is not a number") from None
    if "var_error" not in values:
        raise UserError("--components: var_error is required")
    return values


def load_components(options: PowerOptions) -> ORComponents:
    if options.components is not None:
        given = {name: options.components.get(name) for name in COMPONENT_NAMES}
        return ORComponents(**given, cases=options.pilot_cases)
    return pilot_components(options.pilot, options.arm, options.cov)


def pilot_components(path: Path, arm: str | None, cov: str) -> ORComponents:
    """The pilot's OR components; every arm used must be fully crossed (the OR covariances need it)."""
    from study_app.statistics.mrmc import analyse
    from study_app.store.ratings_csv import read_design

    from study_app.statistics.mrmc_designs import arm_design

    design = read_design(path, arm=arm)
    read = np.isfinite(design.ratings)
    if len(design.arms) > 1 and not read.all() and all(arm_design(read[:, i]) == "crossed" for i in range(len(design.arms))):
        raise UserError(f"{path}: arms {', '.join(design.arms)} are each fully crossed, but on their own cases: the OR "
                        f"components of a pilot need the arms read on the same cases; plan one arm with --arm "
                        f"{design.arms[0]}")
    for i, name in enumerate(design.arms):
        missing = int((~read[:, i, :]).sum())
        if missing:
            hint = "; choose a crossed arm with --arm" if len(design.arms) > 1 else ""
            raise UserError(f"{path}: arm {name!r} is not fully crossed ({missing} of {design.ratings[:, i].size} "
                            f"reader-case ratings missing); a power pilot needs every reader to rate every case{hint}")
    result = analyse(design.ratings, design.truth, cov, design.readers, design.arms)
    return components_from_result(result)


def pilot_moments(path: Path, arm: str | None) -> PilotMoments:
    """One arm's U-statistic moments, from a pilot read in any design."""
    from study_app.store.ratings_csv import read_design

    design = read_design(path, arm=arm)
    if len(design.arms) > 1:
        raise UserError(f"{path}: {len(design.arms)} arms; a random design is planned for one arm (--arm ARM)")
    return PilotMoments.from_ratings(design.ratings[:, 0], design.truth)


def cmd_power(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if options.design == "random":
        return _random_design(options)
    components = load_components(options)
    grid = sample_size_grid(components, options.test, options.effect, options.readers, options.cases,
                            options.target, options.design, options.groups, options.alpha, options.true_auc)
    if options.plot is not None:
        plot_power(grid, options, options.plot)
    if options.json:
        print_json(report(options, components, grid))
    else:
        print(format_report(options, components, grid))
    return 0


def _random_design(options: PowerOptions) -> int:
    pilot = pilot_moments(options.pilot, options.arm)
    readers = options.readers or default_readers()
    grid = random_design_grid(pilot, options.test, options.effect, readers, options.cases, options.pool,
                              options.target, options.alpha, options.true_auc)
    if options.plot is not None:
        plot_power(grid, options, options.plot)
    if options.json:
        moments = {"pilot_auc": pilot.auc, "moment_differences": {
            "/".join(name for name, shared in zip(("reader", "negative", "positive"), kind) if shared): value
            for kind, value in pilot.differences.items()}}
        print_json({**report(options, None, grid), "pool": options.pool, "pilot": moments})
    else:
        print(format_report(options, None, grid, pilot))
    return 0


def report(options: PowerOptions, components: ORComponents | None, grid: SampleSizeGrid) -> dict:
    effect = {"versus-chance": {"auc": options.effect}, "difference": {"delta": options.effect},
              "equivalence": {"margin": options.effect, "true_auc": options.true_auc}}[options.test]
    return {"test": options.test, "effect": effect, "design": options.design, "groups": options.groups,
            "alpha": options.alpha, "target": options.target,
            "components": None if components is None else asdict(components),
            "power": grid.power, "needed": grid.needed}


def format_report(options: PowerOptions, components: ORComponents | None, grid: SampleSizeGrid,
                  pilot: PilotMoments | None = None) -> str:
    design = {"crossed": "crossed", "split-plot": f"split-plot, {options.groups} groups",
              "random": f"random subsets of a pool of {options.pool} cases"}[options.design]
    title = TEST_TITLES[options.test].format(effect=options.effect, true_auc=options.true_auc)
    cases = list(dict.fromkeys(row["cases"] for row in grid.power))
    power = {(row["readers"], row["cases"]): row["power"] for row in grid.power}
    if components is None:  # a random design, from the pilot's U-statistic moments
        lines = [f"power of the test of {title}; {design} design; alpha {options.alpha:g}",
                 f"variance from the pilot's U-statistic moments (Gallas et al. 2009; pilot AUC {pilot.auc:.3f}); "
                 "cases are cases per reader"]
    else:
        values = "  ".join(f"{name} {getattr(components, name):.8f}" for name in COMPONENT_NAMES
                           if getattr(components, name) is not None)
        lines = [f"power of the OR test of {title}; {design} design; alpha {options.alpha:g}",
                 f"pilot components at {components.cases} cases: {values}"]
    if components is not None and options.test != "difference" and components.var_tr is not None:
        lines.append("(components pooled over the pilot's arms; one arm's reader variance is var_r + var_tr; "
                     "--arm ARM uses one arm's own)")
    lines += ["", f"{'power':<11}" + "".join(f"{f'{c} cases':>12}" for c in cases)]
    for row in grid.needed:
        r = row["readers"]
        lines.append(f"{f'{r} readers':<11}" + "".join(f"{power[r, c]:>12.3f}" for c in cases))
    lines += ["", f"cases needed for power {options.target:g}:"]
    most = f"the pool of {options.pool}" if options.design == "random" else f"{MAX_CASES} cases"
    lines += [f"{row['readers']:>4} readers: " + (f"not reached within {most}" if row["cases"] is None
                                                   else str(row["cases"])) for row in grid.needed]
    return "\n".join(lines)


def plot_power(grid: SampleSizeGrid, options: PowerOptions, path: Path) -> None:
    """Power against readers, a line per cases count, the target dashed."""
    import matplotlib

    matplotlib.use("Agg")  # files only: a cluster node has no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for cases in dict.fromkeys(row["cases"] for row in grid.power):
        rows = [row for row in grid.power if row["cases"] == cases]
        ax.plot([row["readers"] for row in rows], [row["power"] for row in rows], marker="o", label=f"{cases} cases")
    ax.axhline(options.target, color="0.4", linestyle="--", label=f"target {options.target:g}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # readers come whole
    ax.set_xlabel("readers")
    ax.set_ylabel("power")
    ax.set_ylim(0, 1.02)
    title = TEST_TITLES[options.test].format(effect=options.effect, true_auc=options.true_auc)
    ax.set_title(f"{title}\n{options.design} design, alpha {options.alpha:g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(Path(path), overwrite=True) as temp:  # whole or not at all; checked at the edge
        fig.savefig(temp, dpi=120, format=path.suffix.lower().lstrip("."))
    plt.close(fig)

"""Power and sample size for OR MRMC reader studies (study_app.statistics.power, study_app.power_cli).

References: RJafroc's own tests of SsPowerGivenJK / SsSampleSizeKGivenJ (method "ORH", Van Dyke = dataset02),
which implement Hillis, Obuchowski & Berbaum (2011); a direct numerical integration of the noncentral F; and a
Monte-Carlo simulation of the OR model with the analysis the power formulas approximate.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from study_app.power_cli import add_power_parser, cmd_power
from study_app.statistics.mrmc import analyse
from study_app.statistics.power import (
    ORComponents,
    components_from_result,
    design_variance,
    f_test_power,
    power_difference,
    power_equivalence,
    power_function,
    power_versus_chance,
    sample_size_grid,
)
from study_app.statistics.records import Design
from study_app.store import ratings_csv
from urcdm.clikit import ArgumentParser, run_cli
from urcdm.errors import UserError

DATA = Path(os.environ.get("URCDM_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
VANDYKE = DATA / "mrmc" / "vandyke.csv"  # as in tests/test_study_mrmc.py
needs_vandyke = pytest.mark.skipif(not VANDYKE.is_file(), reason=f"Van Dyke data not found at {VANDYKE} "
                                   "(set URCDM_TEST_DATA)")

# Van Dyke jackknife components as published by OR-DBM MRMC 2.51 (tests/test_study_mrmc.py), 114 pilot cases;
# hard-coded so that the maths tests run without the data file.
VD = ORComponents(var_r=0.00153500, var_tr=0.00020040, var_error=0.00080229, cov1=0.00034661, cov2=0.00034407,
                  cov3=0.00023903, cases=114)
# Van Dyke arm 1 alone: MS_R(arm) 0.00308263, Var 0.00101410, Cov2 0.00048396 -> var_r = MS_R - Var + Cov2.
ARM = ORComponents(var_r=0.00308263 - 0.00101410 + 0.00048396, var_tr=None, var_error=0.00101410, cov1=None,
                   cov2=0.00048396, cov3=None, cases=114)


@pytest.fixture(scope="module")
def vandyke_result():
    if not VANDYKE.is_file():
        pytest.skip(f"Van Dyke data not found at {VANDYKE}")
    design = ratings_csv.read_design(VANDYKE)
    return analyse(design.ratings, design.truth, "jackknife", design.readers, design.arms), design


# --- published reference -------------------------------------------------------------------------------------

@needs_vandyke
def test_matches_rjafroc_or_power_for_vandyke(vandyke_result):
    """RJafroc's testthat suite: SsPowerGivenJK(dataset02, J = 6, K = 111, method = "ORH")$powerRRRC = 0.5526116
    at the observed effect, and SsSampleSizeKGivenJ(dataset02, J = 6, method = "ORH")$KRRRC = 251 (power 0.801)."""
    result, _ = vandyke_result
    components = components_from_result(result)
    effect = result["arm_auc"]["1"] - result["arm_auc"]["2"]
    assert power_difference(components, 6, 111, effect) == pytest.approx(0.5526116, abs=5e-8)
    grid = sample_size_grid(components, "difference", effect, readers=[6], cases=[251])
    assert grid.needed == [{"readers": 6, "cases": 251}] and round(grid.power[0]["power"], 3) == 0.801


def test_difference_formula_by_hand():
    """HOB 2011 with the pilot's 114 cases scaled to 111: D, noncentrality and ddf spelled out."""
    r, c, delta = 6, 111, 0.0438
    s = 114 / c
    den = 0.00020040 + s * (0.00080229 - 0.00034661 + (r - 1) * (0.00034407 - 0.00023903))
    ms_tr = 0.00020040 + s * (0.00080229 - 0.00034661 - (0.00034407 - 0.00023903))
    variance, ddf = design_variance(VD, "difference", r, c)
    assert variance == pytest.approx(2 * den / r) and ddf == pytest.approx(den ** 2 / (ms_tr ** 2 / (r - 1)))
    expected = stats.ncf.sf(stats.f.ppf(0.95, 1, ddf), 1, ddf, r * delta ** 2 / (2 * den))
    assert power_difference(VD, r, c, delta) == pytest.approx(expected, rel=1e-12)


def _ncf_power_by_integration(noncentrality: float, ddf: float, alpha: float) -> float:
    """P(F > F_crit) with F = (Z + sqrt(lambda))^2 / (W / ddf), W ~ chi2(ddf), integrated over W."""
    crit, root = stats.f.isf(alpha, 1, ddf), math.sqrt(noncentrality)

    def given_w(w):
        bound = math.sqrt(crit * w / ddf)
        return (stats.norm.sf(bound - root) + stats.norm.cdf(-bound - root)) * stats.chi2.pdf(w, ddf)

    return integrate.quad(given_w, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("effect,variance,ddf,alpha", [(0.05, 4e-4, 15.3, 0.05), (0.03, 1e-4, 3.2, 0.05),
                                                       (0.1, 2e-3, 60.0, 0.01), (0.02, 1e-3, 7.5, 0.1)])
def test_noncentral_f_power_matches_numerical_integration(effect, variance, ddf, alpha):
    assert f_test_power(effect, variance, ddf, alpha) == pytest.approx(
        _ncf_power_by_integration(effect ** 2 / variance, ddf, alpha), abs=1e-7)


# --- behaviour ------------------------------------------------------------------------------------------------

def test_power_tends_to_alpha_as_the_effect_vanishes():
    assert power_difference(VD, 5, 100, 1e-7) == pytest.approx(0.05, abs=1e-6)
    assert power_versus_chance(ARM, 5, 100, 0.5 + 1e-7) == pytest.approx(0.05, abs=1e-6)
    assert power_difference(VD, 5, 100, 1e-7, alpha=0.01) == pytest.approx(0.01, abs=1e-6)
    assert power_difference(VD, 5, 100, 0.05) == pytest.approx(power_difference(VD, 5, 100, -0.05))


@pytest.mark.parametrize("test,components,effect", [("difference", VD, 0.05), ("versus-chance", ARM, 0.6),
                                                    ("versus-chance", VD, 0.6), ("equivalence", ARM, 0.1)])
def test_monotone_in_readers_and_in_cases_with_enough_readers(test, components, effect):
    power = power_function(test, effect)
    for cases in (30, 100, 400):
        by_readers = [float(power(components, r, cases)) for r in range(2, 31)]
        assert np.all(np.diff(by_readers) >= -1e-12), by_readers
    for readers in (6, 10, 20):
        by_cases = power(components, readers, np.arange(4, 5001))
        assert np.all(np.diff(by_cases) >= -1e-9)


def test_few_readers_power_peaks_then_falls_and_the_search_still_finds_the_fewest_cases():
    """With 3 readers the Hillis ddf falls towards r - 1 = 2 as cases grow, so power peaks (0.528 at 191 cases
    here) and falls (0.470 at 5000): a search that assumed monotone power would say the target is unreachable."""
    power = power_function("versus-chance", 0.6)
    curve = power(ARM, 3, np.arange(4, 5001))
    assert curve.argmax() + 4 == 191 and curve[-1] < 0.5 < curve.max()
    needed = sample_size_grid(ARM, "versus-chance", 0.6, readers=[3], cases=[100], target=0.5).needed[0]["cases"]
    assert power_versus_chance(ARM, 3, needed - 1, 0.6) < 0.5 <= power_versus_chance(ARM, 3, needed, 0.6)


def test_split_plot_variance_is_one_group_crossed_divided_by_groups():
    for test, readers, cases, groups in [("difference", 6, 120, 2), ("versus-chance", 9, 150, 3),
                                         ("difference", 12, 400, 4)]:
        split = design_variance(VD, test, readers, cases, "split-plot", groups)
        group = design_variance(VD, test, readers // groups, cases / groups)
        assert split[0] == pytest.approx(group[0] / groups) and split[1] == pytest.approx(groups * group[1])
    # the crossed design shares readers' case-correlation across all cases, so it is never less powerful
    assert power_difference(VD, 8, 200, 0.05) > power_difference(VD, 8, 200, 0.05, design="split-plot", groups=2)


# --- Monte Carlo of the OR model --------------------------------------------------------------------------------

def _simulate_two_arms(c: ORComponents, readers: int, cases: float, delta: float, n: int, rng) -> np.ndarray:
    """[study, reader, arm] AUCs from the OR model: reader and arm-by-reader effects plus case-sampling errors
    correlated as Var/Cov1/Cov2/Cov3, scaled to ``cases``; arm 0 is better by ``delta``."""
    s = c.cases / cases
    same_r, same_t = np.eye(readers, dtype=bool)[:, None, :, None], np.eye(2, dtype=bool)[None, :, None, :]
    cov = np.select([same_r & same_t, same_r & ~same_t, ~same_r & same_t], [c.var_error, c.cov1, c.cov2], c.cov3)
    cov = s * cov.reshape(2 * readers, 2 * readers)
    return (np.array([0.8 + delta, 0.8]) + rng.normal(0, math.sqrt(c.var_r), (n, readers, 1))
            + rng.normal(0, math.sqrt(c.var_tr), (n, readers, 2))
            + rng.multivariate_normal(np.zeros(2 * readers), cov, size=n).reshape(n, readers, 2))


def _simulate_difference(c: ORComponents, readers: int, cases: float, delta: float, n: int, rng):
    """The OR analysis of simulated studies with the true covariances: (estimate, estimated variance, Hillis ddf)."""
    y = _simulate_two_arms(c, readers, cases, delta, n, rng)
    arm_mean, reader_mean, grand = y.mean(1), y.mean(2), y.mean((1, 2))
    ms_tr = ((y - arm_mean[:, None] - reader_mean[:, :, None] + grand[:, None, None]) ** 2).sum((1, 2)) / (readers - 1)
    den = ms_tr + readers * c.cases / cases * max(c.cov2 - c.cov3, 0)
    return arm_mean[:, 0] - arm_mean[:, 1], 2 * den / readers, den ** 2 / (ms_tr ** 2 / (readers - 1))


def _simulate_single(c: ORComponents, readers: int, cases: float, auc: float, n: int, rng):
    s = c.cases / cases
    cov = s * np.where(np.eye(readers, dtype=bool), c.var_error, c.cov2)
    y = auc + rng.normal(0, math.sqrt(c.var_r), (n, readers)) + rng.multivariate_normal(np.zeros(readers), cov, n)
    ms_r = y.var(axis=1, ddof=1)
    den = ms_r + readers * s * c.cov2
    return y.mean(axis=1), den / readers, den ** 2 / (ms_r ** 2 / (readers - 1))


def _rejects(estimate, variance, ddf, null=0.0, alpha=0.05):
    return float(((estimate - null) ** 2 / variance > stats.f.isf(alpha, 1, ddf)).mean())


N_SIMULATIONS = 20000  # Monte-Carlo SE of a power near 0.5: 0.0035


@pytest.mark.parametrize("readers,cases,delta", [(5, 100, 0.05), (4, 60, 0.06), (10, 200, 0.03)])
def test_difference_power_matches_simulated_or_model(readers, cases, delta):
    simulated = _rejects(*_simulate_difference(VD, readers, cases, delta, N_SIMULATIONS, np.random.default_rng(1)))
    assert simulated == pytest.approx(power_difference(VD, readers, cases, delta), abs=0.025)


@pytest.mark.parametrize("readers,cases,auc", [(4, 60, 0.56), (5, 100, 0.55), (10, 50, 0.53)])
def test_versus_chance_power_matches_simulated_or_model(readers, cases, auc):
    simulated = _rejects(*_simulate_single(ARM, readers, cases, auc, N_SIMULATIONS, np.random.default_rng(2)),
                         null=0.5)
    assert simulated == pytest.approx(power_versus_chance(ARM, readers, cases, auc), abs=0.025)


@pytest.mark.parametrize("readers,cases,auc", [(10, 400, 0.54), (10, 1000, 0.53)])
def test_versus_chance_from_a_two_arm_pilot_matches_one_simulated_arm(readers, cases, auc):
    """With two-arm components an arm's readers differ by R and T*R: simulate the two-arm model, test arm 1 alone.
    (Leaving var_tr out would give 0.653 and 0.510 here, 0.035-0.04 too high.)"""
    rng = np.random.default_rng(5)
    y = _simulate_two_arms(VD, readers, cases, auc - 0.8, N_SIMULATIONS, rng)[:, :, 0]
    ms_r = y.var(axis=1, ddof=1)
    den = ms_r + readers * VD.cases / cases * VD.cov2
    simulated = _rejects(y.mean(axis=1), den / readers, den ** 2 / (ms_r ** 2 / (readers - 1)), null=0.5)
    assert simulated == pytest.approx(power_versus_chance(VD, readers, cases, auc), abs=0.015)


@pytest.mark.parametrize("readers,cases,groups", [(6, 120, 2), (8, 200, 2)])
def test_split_plot_power_matches_simulated_groups(readers, cases, groups):
    """Each group an independent crossed OR study; the overall estimate is their mean, its variance estimate the
    sum of the groups' over G^2, its ddf by Satterthwaite."""
    rng = np.random.default_rng(3)
    parts = [_simulate_difference(VD, readers // groups, cases / groups, 0.05, N_SIMULATIONS, rng)
             for _ in range(groups)]
    estimate = np.mean([p[0] for p in parts], axis=0)
    variance = sum(p[1] for p in parts) / groups ** 2
    ddf = sum(p[1] for p in parts) ** 2 / sum(p[1] ** 2 / p[2] for p in parts)
    expected = power_difference(VD, readers, cases, 0.05, design="split-plot", groups=groups)
    # The prediction (expected mean squares, no spread of the Satterthwaite ddf) is optimistic with few
    # readers a group: over 8 seeds 2.5 points at 3 a group, 1.5 at 4. Held to the 3 points the
    # calibration asks of every design (issue 27).
    assert _rejects(estimate, variance, ddf) == pytest.approx(expected, abs=0.03)


@pytest.mark.parametrize("readers,cases,margin,auc", [(5, 100, 0.1, 0.5), (10, 200, 0.06, 0.52)])
def test_equivalence_power_matches_simulated_tost(readers, cases, margin, auc):
    estimate, variance, ddf = _simulate_single(ARM, readers, cases, auc, N_SIMULATIONS, np.random.default_rng(4))
    se, crit = np.sqrt(variance), stats.t.isf(0.05, ddf)
    simulated = (((estimate - 0.5 + margin) / se > crit) & ((estimate - 0.5 - margin) / se < -crit)).mean()
    assert simulated == pytest.approx(power_equivalence(ARM, readers, cases, margin, auc), abs=0.025)


# --- equivalence -----------------------------------------------------------------------------------------------

def test_equivalence_bounds():
    for readers, cases, auc in [(5, 100, 0.5), (10, 300, 0.53), (4, 60, 0.45)]:
        tost = power_equivalence(ARM, readers, cases, 0.1, auc)
        variance, ddf = design_variance(ARM, "equivalence", readers, cases)
        se, crit = math.sqrt(variance), stats.t.isf(0.05, ddf)
        one_sided = [stats.t.cdf((0.1 - d) / se - crit, ddf) for d in (auc - 0.5, 0.5 - auc)]
        assert 0 <= tost <= min(one_sided)  # both tests must reject: never more power than either alone
        assert tost == pytest.approx(power_equivalence(ARM, readers, cases, 0.1, 1 - auc))  # symmetric about 0.5
    # at the margin itself H0 holds: power is at most alpha, and reaches it as the SE vanishes
    assert power_equivalence(ARM, 10, 200, 0.1, 0.6) <= 0.05
    assert power_equivalence(ARM, 20, 5000, 0.1, 0.6) == pytest.approx(0.05, abs=0.005)
    # margin below t * SE: no estimate can pass both tests
    variance, ddf = design_variance(ARM, "equivalence", 3, 10)
    assert 0.01 < stats.t.isf(0.05, ddf) * math.sqrt(variance)
    assert power_equivalence(ARM, 3, 10, 0.01) == 0.0


# --- components -------------------------------------------------------------------------------------------------

@needs_vandyke
def test_components_from_result(vandyke_result):
    result, design = vandyke_result
    pooled = components_from_result(result)
    assert (pooled.var_r, pooled.cases) == (result["variance_components"]["var_r"], 114)
    assert pooled.positive_fraction == pytest.approx(45 / 114)
    for i, arm in enumerate(design.arms):
        alone = analyse(design.ratings[:, i:i + 1], design.truth, "jackknife", design.readers, [arm])
        one, sliced = components_from_result(alone), components_from_result(result, arm)
        assert one.var_tr is None and one.cov1 is None and one.cov3 is None
        for name in ("var_r", "var_error", "cov2"):
            assert getattr(sliced, name) == pytest.approx(getattr(one, name), rel=1e-12)
    assert components_from_result(result, "1").var_r == pytest.approx(ARM.var_r, abs=1e-8)
    with pytest.raises(UserError, match="arm 'X' is not in the pilot"):
        components_from_result(result, "X")


def test_one_reader_pilot_refused():
    rng = np.random.default_rng(0)
    truth = np.arange(12) % 2 == 1
    result = analyse(rng.normal(size=(1, 1, 12)) + truth, truth)
    with pytest.raises(UserError, match="a pilot with one reader has no reader variance"):
        components_from_result(result)


BAD_CALLS = [
    (lambda: power_difference(VD, 5, 100, 0.0), "non-zero"),
    (lambda: power_versus_chance(ARM, 5, 100, 0.5), "effect to detect is 0"),
    (lambda: power_versus_chance(ARM, 5, 100, 1.2), "AUC must be in (0, 1)"),
    (lambda: power_equivalence(ARM, 5, 100, 0.6), "margin must be in (0, 0.5)"),
    (lambda: power_equivalence(ARM, 5, 100, 0.0), "margin must be in (0, 0.5)"),
    (lambda: power_equivalence(ARM, 5, 100, 0.1, auc=1.0), "true AUC must be in (0, 1)"),
    (lambda: power_difference(VD, 1, 100, 0.05), "at least 2 readers"),
    (lambda: power_difference(VD, 5, 3, 0.05), "at least 4 cases"),
    (lambda: power_difference(VD, 5, 100, 0.05, alpha=0.7), "alpha must be in"),
    (lambda: power_difference(ARM, 5, 100, 0.05), "var_tr, cov1, cov3 (a pilot with two arms)"),
    (lambda: power_difference(VD, 5, 100, 0.05, design="split-plot", groups=2), "equal groups of at least 2"),
    (lambda: power_difference(VD, 2, 100, 0.05, design="split-plot", groups=2), "equal groups of at least 2"),
    (lambda: power_difference(VD, 6, 6, 0.05, design="split-plot", groups=2), "fewer than 2 cases per class"),
    (lambda: power_difference(VD, 6, 100, 0.05, design="split-plot", groups=1), "2 or more groups"),
    (lambda: power_difference(VD, 6, 100, 0.05, groups=2), "groups are for the split-plot"),
    (lambda: sample_size_grid(VD, "difference", 0.05, target=1.2), "target power must be in"),
    (lambda: sample_size_grid(VD, "difference", 0.05, target=0.03), "target power must be in"),
    (lambda: sample_size_grid(VD, "difference", 0.001, readers=[3, 5]), "impossible target"),
    (lambda: sample_size_grid(VD, "difference", 0.05, readers=[1]), "at least 2 readers"),
    (lambda: sample_size_grid(VD, "difference", 0.05, cases=[2]), "at least 4 cases"),
    (lambda: replace(VD, var_error=0.0), "var_error must be > 0"),
    (lambda: replace(VD, cov1=math.nan), "cov1 must be finite"),
]


@pytest.mark.parametrize("call,message", BAD_CALLS)
def test_bad_input_is_one_user_error(call, message):
    with pytest.raises(UserError) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_impossible_target_names_the_best_reachable_power():
    with pytest.raises(UserError, match=r"best reachable is 0\.\d{3} \(20 readers, \d+ cases\)"):
        sample_size_grid(VD, "difference", 0.001)


def test_grid_layout_and_split_plot_cases_are_multiples_of_groups():
    grid = sample_size_grid(VD, "difference", 0.05, cases=[100, 200])
    assert [row["readers"] for row in grid.needed] == list(range(3, 21)) and len(grid.power) == 36
    assert grid.needed[0]["cases"] is None and grid.needed[-1]["cases"] == 95
    split = sample_size_grid(VD, "difference", 0.05, cases=[100, 200], design="split-plot", groups=3)
    assert [row["readers"] for row in split.needed] == [6, 9, 12, 15, 18]
    assert all(row["cases"] % 3 == 0 for row in split.needed if row["cases"] is not None)


# --- command line -----------------------------------------------------------------------------------------------

def run_power(argv) -> int:
    parser = ArgumentParser(prog="urcdm-study")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    add_power_parser(commands)
    return run_cli(parser, ["power", *argv], cmd_power)


def write_pilot(path: Path, readers=("r1", "r2", "r3", "r4"), arms=("A", "B"), cases=40, seed=5) -> str:
    """A crossed pilot from a binormal model with reader and arm effects, ratings rounded like a 100-point scale."""
    rng = np.random.default_rng(seed)
    truth = np.arange(cases) % 2
    lines = ["reader,arm,case,truth,rating"]
    case_effect = rng.normal(size=cases)
    for reader in readers:
        skill = 1.2 + 0.4 * rng.normal()
        for i, arm in enumerate(arms):
            scores = truth * (skill + 0.3 * i) + 0.6 * case_effect + rng.normal(size=cases)
            lines += [f"{reader},{arm},c{k},{truth[k]},{round(scores[k], 2)}" for k in range(cases)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_cli_json_layout(tmp_path, capsys):
    pilot = write_pilot(tmp_path / "pilot.csv")
    assert run_power(["--pilot", pilot, "--delta", "0.1", "--readers", "4,6", "--cases", "50,100,200",
                      "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"test", "design", "groups", "alpha", "target", "components", "power", "needed"} <= set(out)
    assert (out["test"], out["design"], out["groups"], out["alpha"], out["target"]) == ("difference", "crossed",
                                                                                        1, 0.05, 0.8)
    assert out["components"]["cases"] == 40 and {"var_r", "var_tr", "var_error", "cov1", "cov2",
                                                  "cov3"} <= set(out["components"])
    assert [(row["readers"], row["cases"]) for row in out["power"]] == [(r, c) for r in (4, 6) for c in (50, 100, 200)]
    assert all(0 <= row["power"] <= 1 for row in out["power"])
    assert [row["readers"] for row in out["needed"]] == [4, 6] and set(out["needed"][0]) == {"readers", "cases"}


def test_cli_components_text_and_plot(tmp_path, capsys):
    plot = tmp_path / "power.png"
    argv = ["--components", "var_r=0.0025525,var_error=0.0010141,cov2=0.00048396", "--pilot-cases", "114",
            "--auc", "0.6", "--readers", "3,5,10", "--cases", "20,50", "--plot", str(plot)]
    assert run_power(argv) == 0
    out = capsys.readouterr().out
    assert "AUC 0.6 vs 0.5" in out and "cases needed for power 0.8" in out
    assert "5 readers: 119" in out and "10 readers: 62" in out and "3 readers: not reached within 5000 cases" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
    plot.write_bytes(b"the user's own figure")  # replaced only when asked
    assert run_power(argv) == 2
    assert capsys.readouterr().err == f"error: {plot}: already exists (use --overwrite to replace it)\n"
    assert plot.read_bytes() == b"the user's own figure"
    assert run_power([*argv, "--overwrite"]) == 0 and plot.read_bytes()[:4] == b"\x89PNG"


@needs_vandyke
def test_cli_vandyke_split_plot(capsys):
    assert run_power(["--pilot", str(VANDYKE), "--delta", "0.05", "--design", "split-plot", "--readers", "6,10",
                      "--cases", "100,200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["groups"] == 2 and out["needed"] == [{"readers": 6, "cases": 270}, {"readers": 10, "cases": 154}]


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    pilot = write_pilot(tmp_path / "pilot.csv")
    single = write_pilot(tmp_path / "single.csv", readers=("only",))
    cases = [(["--pilot", pilot, "--auc", "0.5"], "effect to detect is 0"),
             (["--pilot", pilot, "--margin", "0.6"], "margin must be in (0, 0.5)"),
             (["--pilot", pilot, "--delta", "0.1", "--target", "1.2"], "target power must be in"),
             (["--pilot", single, "--delta", "0.1"], "a pilot with one reader has no reader variance"),
             (["--pilot", pilot, "--arm", "A", "--delta", "0.1"], "a pilot with two arms"),
             (["--pilot", pilot, "--auc", "0.7", "--true-auc", "0.6"], "--true-auc goes with --margin"),
             (["--components", "var_error=0.001,cov2=0.0004,var_r=0.001", "--auc", "0.7"], "needs --pilot-cases"),
             (["--components", "var_eror=0.001", "--pilot-cases", "50", "--auc", "0.7"], "'var_eror' is not one"),
             (["--pilot", pilot, "--auc", "0.7", "--plot", str(tmp_path / "power.txt")], "must end in"),
             (["--pilot", pilot, "--auc", "0.7", "--groups", "2"], "--groups goes with --design split-plot"),
             (["--pilot", pilot, "--auc", "0.7", "--alpha", "1"], "--alpha must be in (0, 0.5), got 1"),
             (["--components", "var_error=0.0008,cov2=0.005,var_r=0.001", "--pilot-cases", "50", "--auc", "0.7"],
              "cov2 = 0.005 exceeds var_error = 0.0008"),
             (["--pilot", str(tmp_path), "--auc", "0.7"], "is a folder, not a CSV file")]
    for argv, expected in cases:
        assert run_power(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1, err


def test_cli_refuses_a_pilot_arm_that_is_not_crossed(tmp_path, capsys, monkeypatch):
    """read_design may return NaN where a reader skipped a case; the power command checks each arm itself."""
    truth = np.arange(12) % 2 == 1
    ratings = np.random.default_rng(0).normal(size=(3, 2, 12)) + truth
    ratings[1, 1, 4] = np.nan
    design = Design(ratings, truth, ["r1", "r2", "r3"], ["A", "B"], [f"c{k}" for k in range(12)], "ratings")
    monkeypatch.setattr(ratings_csv, "read_design", lambda path, arm=None: design)
    assert run_power(["--pilot", str(tmp_path / "any.csv"), "--delta", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "arm 'B' is not fully crossed (1 of 36" in err and "--arm" in err


def test_cli_names_arms_crossed_on_their_own_cases_as_such(tmp_path, capsys, monkeypatch):
    """The demo's layout: each arm fully crossed, on cases of its own. Not 'not fully crossed'."""
    truth = np.arange(16) % 2 == 1
    ratings = np.random.default_rng(1).normal(size=(2, 2, 16)) + truth
    ratings[:, 0, 8:] = np.nan  # arm A: cases 0-7; arm B: cases 8-15
    ratings[:, 1, :8] = np.nan
    design = Design(ratings, truth, ["r1", "r2"], ["A", "B"], [f"c{k}" for k in range(16)], "ratings")
    monkeypatch.setattr(ratings_csv, "read_design", lambda path, arm=None: design)
    assert run_power(["--pilot", str(tmp_path / "any.csv"), "--auc", "0.7"]) == 2
    err = capsys.readouterr().err
    assert "arms A, B are each fully crossed, but on their own cases" in err and "--arm A" in err


def test_power_reached_is_the_f_test_and_tost_power_at_the_observed_se():
    from study_app.statistics.power import power_reached

    assert power_reached(None, 5.0) is None and power_reached(0.0, 5.0) is None
    reached = power_reached(0.03, 12.0, auc=0.6, margin=0.1)
    noncentrality = (0.1 / 0.03) ** 2
    assert reached["versus_chance"] == pytest.approx(stats.ncf.sf(stats.f.isf(0.05, 1, 12), 1, 12, noncentrality))
    critical = stats.t.isf(0.05, 12)
    assert reached["equivalence"] == pytest.approx(2 * stats.t.cdf(0.1 / 0.03 - critical, 12) - 1)
    assert power_reached(0.01, None)["versus_chance"] > reached["versus_chance"]

"""Power for any design from a pilot's U-statistic moments (study_app.statistics.design_power): the planned
variance of the pilot's own design is its U-statistics variance, the expected design weights are those of real
split-plot and random read patterns, crossed plans agree with Hillis-Obuchowski-Berbaum on the same pilot, and
`urcdm-study power --design random` plans a random-subset study."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_study_mrmc import VANDYKE, needs_vandyke

from study_app.cli import main
from study_app.statistics import u_statistics
from study_app.statistics.design_power import PilotMoments, design_weights, planned_variance, power_any
from study_app.statistics.mrmc import analyse
from study_app.statistics.power import components_from_result, design_variance, power_equivalence
from study_app.statistics.roe_metz import (
    RoeMetz,
    apply_mask,
    random_subset_mask,
    simulate,
    split_plot_mask,
)
from study_app.store.ratings_csv import read_design
from urcdm.errors import UserError


@pytest.fixture(scope="module")
def pilot():
    ratings, truth = simulate(RoeMetz(), 6, 30, 30, np.random.default_rng(4))
    return ratings[:, 0], truth


def test_the_pilots_own_crossed_design_plans_its_own_u_statistics_variance(pilot):
    ratings, truth = pilot
    terms = u_statistics.kernel_terms(ratings, truth)
    variance, _ = planned_variance(PilotMoments.from_ratings(ratings, truth), "crossed", 6, 30, 30)
    assert variance == pytest.approx(u_statistics.covariance(terms, terms), rel=1e-12)


def test_expected_weights_are_those_of_real_read_patterns(pilot):
    ratings, truth = pilot
    rng = np.random.default_rng(1)
    mask = split_plot_mask(6, 60, 3, truth, rng)
    _, w = u_statistics.kernel_terms(apply_mask(ratings[:, None], mask)[:, 0], truth)
    expected, _, _ = design_weights("split-plot", 6, 30, 30, groups=3)
    actual = u_statistics._exact(w, w)
    assert all(actual[k] == pytest.approx(v, abs=1e-15) for k, v in expected.items())
    draws = 400
    mean = dict.fromkeys(expected, 0.0)
    for _ in range(draws):
        _, w = u_statistics.kernel_terms(apply_mask(ratings[:, None], random_subset_mask(6, truth, 20, rng))[:, 0],
                                         truth)
        for k, v in u_statistics._exact(w, w).items():
            mean[k] += v / draws
    expected, _, _ = design_weights("random", 6, 30, 30, per_reader=20)
    assert sum(expected.values()) == pytest.approx(1.0)
    for k, v in expected.items():  # the overlap terms vary from draw to draw; the rest are fixed
        assert mean[k] == pytest.approx(v, rel=0.03, abs=1e-6), k


@needs_vandyke
@pytest.mark.parametrize("readers, cases", [(5, 114), (10, 228), (4, 456)])
def test_crossed_plans_agree_with_hob_from_the_same_pilot(readers, cases):
    design = read_design(VANDYKE, arm="1")
    moments = PilotMoments.from_ratings(design.ratings[:, 0], design.truth)
    components = components_from_result(analyse(design.ratings, design.truth, "unbiased"))
    factor = cases // len(design.truth)
    positives = int(design.truth.sum())
    ours = planned_variance(moments, "crossed", readers, factor * (len(design.truth) - positives), factor * positives)
    hob = design_variance(components, "versus-chance", readers, cases)
    assert ours[0] == pytest.approx(float(hob[0]), rel=2e-3) and ours[1] == pytest.approx(float(hob[1]), rel=2e-3)
    negatives = factor * (len(design.truth) - positives)
    assert power_any(moments, "equivalence", 0.1, "crossed", readers, negatives, factor * positives,
                     true_auc=0.9) == pytest.approx(power_equivalence(components, readers, cases, 0.1, auc=0.9),
                                                    abs=2e-3)


def test_reading_more_of_a_pool_raises_power_and_bad_requests_are_refused(pilot):
    moments = PilotMoments.from_ratings(*pilot)
    powers = [power_any(moments, "versus-chance", 0.6, "random", 8, 100, 100, per_reader=k) for k in (20, 60, 200)]
    assert powers == sorted(powers) and powers[-1] == pytest.approx(
        power_any(moments, "versus-chance", 0.6, "crossed", 8, 100, 100))  # every case: crossed
    for kwargs, message in (({"per_reader": 3}, "even --per-reader"), ({"per_reader": None}, "even --per-reader")):
        with pytest.raises(UserError, match=message):
            power_any(moments, "versus-chance", 0.6, "random", 8, 100, 100, **kwargs)
    with pytest.raises(UserError, match="one arm"):
        power_any(moments, "difference", 0.05, "random", 8, 100, 100, per_reader=20)


def run_power(capsys, *argv):
    code = main(["power", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _pilot_csv(tmp_path, pilot):
    ratings, truth = pilot
    lines = ["reader,arm,case,truth,rating"] + [f"r{j},A,c{k},{int(truth[k])},{ratings[j, k]:.5f}"
                                               for j in range(ratings.shape[0]) for k in range(len(truth))
                                               if k % 3 != j % 3]  # a pilot that is not crossed
    path = tmp_path / "pilot.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_plans_a_random_design_from_a_pilot_that_is_not_crossed(tmp_path, capsys, pilot):
    path = _pilot_csv(tmp_path, pilot)
    code, out, _ = run_power(capsys, "--pilot", str(path), "--margin", "0.1", "--design", "random", "--pool", "400",
                             "--cases", "40,80", "--readers", "5,10", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["design"] == "random" and result["pool"] == 400 and result["components"] is None
    assert [(row["readers"], row["cases"]) for row in result["power"]] == [(5, 40), (5, 80), (10, 40), (10, 80)]
    assert set(result["pilot"]["moment_differences"]) == {"reader/negative/positive", "reader/negative",
                                                          "reader/positive", "reader", "negative/positive",
                                                          "negative", "positive"}
    code, _, err = run_power(capsys, "--pilot", str(path), "--margin", "0.1", "--design", "random")
    assert code == 2 and err.startswith("error: --design random needs --pool")
    code, _, err = run_power(capsys, "--components", "var_r=0.001,var_error=0.001,cov2=0.0005", "--pilot-cases",
                             "100", "--margin", "0.1", "--design", "random", "--pool", "200")
    assert code == 2 and "planned from a pilot's ratings" in err

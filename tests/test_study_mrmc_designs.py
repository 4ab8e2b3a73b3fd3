"""MRMC for any reading design: the U-statistics of Gallas et al. against a brute-force sum over every pair
of terms and against MRMCaov's published unbiased analysis of Van Dyke, the split-plot OR analysis against
per-group OR analyses, and `urcdm-study mrmc` on designs that are not fully crossed."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from test_study_mrmc import MRMCAOV, VANDYKE, _write, assert_matches, match, needs_vandyke

from study_app.cli import main
from study_app.statistics import split_plot, u_statistics
from study_app.statistics.mrmc import analyse, auc_table
from study_app.statistics.mrmc_designs import analyse_any, arm_design
from study_app.store.ratings_csv import read_design


def brute_force_covariance(a, b):
    """The estimator as Gallas et al. define it: every product of two terms, sorted by what they share."""
    (ws_a, w_a), (ws_b, w_b) = a, b
    cells_a = [(idx, ws_a[idx], w_a[idx]) for idx in zip(*np.nonzero(w_a))]
    cells_b = [(idx, ws_b[idx], w_b[idx]) for idx in zip(*np.nonzero(w_b))]
    products, weights = {}, {}
    for (i, sa, wa), (k, sb, wb) in itertools.product(cells_a, cells_b):
        kind = tuple(x == y for x, y in zip(i, k))
        products[kind] = products.get(kind, 0.0) + sa * sb
        weights[kind] = weights.get(kind, 0.0) + wa * wb
    nothing = (False, False, False)
    unshared = products[nothing] / weights[nothing]
    return sum(weights[k] * (products[k] / weights[k] - unshared) for k in weights if k != nothing)


def partial_design(seed, readers=4, cases=12, keep=0.7, levels=None):
    rng = np.random.default_rng(seed)
    truth = np.arange(cases) % 2 == 1
    ratings = rng.normal(size=(readers, 2, cases)) + truth
    if levels:
        ratings = np.digitize(ratings, np.linspace(-1, 2, levels)).astype(float)  # ties, as 1..10 ratings have
    return np.where(rng.random(ratings.shape) < keep, ratings, np.nan), truth


@pytest.mark.parametrize("seed", range(4))
def test_u_statistic_sums_equal_the_brute_force_sum_over_every_pair(seed):
    ratings, truth = partial_design(seed, levels=5 if seed % 2 else None)
    terms = [u_statistics.kernel_terms(ratings[:, i], truth) for i in range(2)]
    for a, b in ((terms[0], terms[0]), (terms[1], terms[1]), (terms[0], terms[1])):
        assert u_statistics.covariance(a, b) == pytest.approx(brute_force_covariance(a, b), rel=1e-10, abs=1e-14)


def test_u_statistic_reader_aucs_and_mean_are_the_empirical_aucs_of_what_each_reader_read():
    ratings, truth = partial_design(7)
    result = u_statistics.analyse(ratings, truth)
    for j in range(ratings.shape[0]):
        read = np.isfinite(ratings[j, 0])
        own = auc_table(ratings[j:j + 1, :1, read], truth[read])[0, 0]
        assert result["auc"][str(j + 1)]["1"] == pytest.approx(own)
    assert result["arms_results"][0]["estimate"] == pytest.approx(np.mean([r["1"] for r in result["auc"].values()]))


@needs_vandyke
def test_on_van_dyke_the_u_statistics_reproduce_mrmcaov_unbiased():
    """Crossed data: Gallas' U-statistics with Hillis-type df give MRMCaov's published unbiased OR results
    (Cov2 is positive on Van Dyke, so OR's truncation does not bind)."""
    design = read_design(VANDYKE)
    ustat = analyse_any(design.ratings, design.truth, "jackknife", design.readers, design.arms)["u_statistics"]
    _, _, _, diff, arms = MRMCAOV["unbiased"]
    d = ustat["differences"][0]
    assert_matches([("diff se", d["se"], diff[0]), ("diff low", d["low"], diff[1]), ("diff high", d["high"], diff[2])])
    for row, (_, se, df, low, high) in zip(ustat["arms_results"], arms):
        assert_matches([("se", row["se"], se), ("df", row["df"], df), ("low", row["low"], low),
                        ("high", row["high"], high)])


@needs_vandyke
def test_on_crossed_data_analyse_any_is_the_or_analysis_extended():
    design = read_design(VANDYKE)
    result = analyse_any(design.ratings, design.truth, "jackknife", design.readers, design.arms)
    plain = analyse(design.ratings, design.truth, "jackknife", design.readers, design.arms)
    assert result["design"] == "crossed" and result["split_plot"] is None
    assert result["covariances"] == plain["covariances"]
    for ours, theirs in zip(result["random_readers_random_cases"]["arms"], plain["random_readers_random_cases"]["arms"]):
        assert ours["analysis"].startswith("OR") and {k: ours[k] for k in theirs} == theirs
    assert match(result["random_readers_random_cases"]["global"]["df2"], "15.26")  # OR-DBM's, unchanged


def split_plot_design(seed, groups=3, per_group=3, cases_per_group=10):
    rng = np.random.default_rng(seed)
    readers, cases = groups * per_group, groups * cases_per_group
    truth = np.arange(cases) % 2 == 1
    ratings = np.full((readers, 1, cases), np.nan)
    for g in range(groups):
        rows, cols = slice(g * per_group, (g + 1) * per_group), slice(g * cases_per_group, (g + 1) * cases_per_group)
        ratings[rows, 0, cols] = rng.normal(size=(per_group, cases_per_group)) + truth[cols] * 0.7
    return ratings, truth


def test_split_plot_or_pools_the_per_group_or_analyses():
    ratings, truth = split_plot_design(3)
    parts = split_plot.blocks(np.isfinite(ratings[:, 0]))
    assert [len(r) for r, _ in parts] == [3, 3, 3] and split_plot.why_not(parts, truth) is None
    row = split_plot.analyse_arm(ratings[:, 0], truth, parts, "jackknife")
    groups = [analyse(ratings[np.ix_(r, [0], c)], truth[c]) for r, c in parts]
    ms = sum(2 * g["mean_squares"]["ms_r_arm"]["1"] for g in groups) / (9 - 3)  # (r_g - 1) = 2 per group
    cov2 = max(np.mean([g["covariances"]["cov2"] for g in groups]), 0.0)
    assert row["ms_r"] == pytest.approx(ms) and row["cov2"] == pytest.approx(cov2)
    assert row["variance"] == pytest.approx(ms / 9 + cov2 / 3)
    assert row["estimate"] == pytest.approx(np.mean([g["arm_auc"]["1"] for g in groups]))
    assert row["df"] >= 6


def test_designs_are_recognised_and_a_group_of_one_reader_is_named():
    ratings, truth = split_plot_design(4)
    assert arm_design(np.isfinite(ratings[:, 0])) == "split-plot"
    assert arm_design(np.ones((3, 8), bool)) == "crossed"
    assert arm_design(np.isfinite(partial_design(1)[0][:, 0])) == "partial"
    lonely = ratings.copy()
    lonely[1:3] = np.nan  # group 1 keeps one reader
    parts = split_plot.blocks(np.isfinite(lonely[:, 0]))
    assert "has 1 reader" in split_plot.why_not(parts, truth)
    result = analyse_any(lonely, truth)
    assert any("split-plot OR does not apply" in note for note in result["notes"])
    assert result["random_readers_random_cases"]["arms"][0]["analysis"].startswith("U-statistics")


def _csv(ratings, truth, arms=("A", "B")):
    lines = ["reader,arm,case,truth,rating"]
    for j, i, k in zip(*np.nonzero(np.isfinite(ratings))):
        lines.append(f"r{j},{arms[i]},c{k},{int(truth[k])},{ratings[j, i, k]:.6f}")
    return "\n".join(lines) + "\n"


def test_cli_analyses_a_random_subset_design_with_the_u_statistics(tmp_path, capsys):
    ratings, truth = partial_design(11, readers=5, cases=30)
    path = _write(tmp_path, _csv(ratings, truth))
    assert main(["mrmc", path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["design"] == "partial" and result["fixed_readers_random_cases"] is None
    rows = result["random_readers_random_cases"]["arms"]
    assert [r["analysis"] for r in rows] == ["U-statistics (Gallas)"] * 2
    assert all(r["low"] < r["estimate"] < r["high"] for r in rows)
    assert result["random_readers_random_cases"]["differences"][0]["arms"] == ["A", "B"]
    assert main(["mrmc", path]) == 0
    text = capsys.readouterr().out
    assert "design: A partial, B partial" in text and "== U-statistics" in text


def test_cli_split_plot_file_reports_split_plot_or_beside_the_u_statistics(tmp_path, capsys):
    ratings, truth = split_plot_design(5, groups=2)
    path = _write(tmp_path, _csv(ratings, truth, arms=("A",)))
    assert main(["mrmc", path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["design"] == "split-plot" and result["split_plot"]["A"]["groups"] == 2
    assert main(["mrmc", path]) == 0
    assert "== split-plot OR" in capsys.readouterr().out


def test_cli_arms_with_their_own_cases_are_each_analysed_by_or(tmp_path, capsys):
    rng = np.random.default_rng(2)
    lines = ["reader,arm,case,truth,rating"]
    for reader in ("r1", "r2", "r3"):
        for arm in ("A", "B"):
            lines += [f"{reader},{arm},{arm}{k},{k % 2},{rng.normal() + k % 2:.5f}" for k in range(8)]
    assert main(["mrmc", _write(tmp_path, "\n".join(lines) + "\n"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["design"] == "crossed per arm"
    assert [r["analysis"] for r in result["random_readers_random_cases"]["arms"]] == ["OR (Hillis ddf)"] * 2
    # each arm's own fixed-reader analysis, as mrmc.analyse gives it for that arm alone
    fixed = result["fixed_readers_random_cases"]["arms"]
    for row, arm in zip(fixed, ("A", "B")):
        ratings = np.array([[float(line.split(",")[4]) for line in lines[1:] if line.split(",")[:2] == [r, arm]]
                            for r in ("r1", "r2", "r3")])
        truth = np.arange(8) % 2 == 1
        alone = analyse(ratings[:, None, :], truth)["fixed_readers_random_cases"]["arms"][0]
        assert row["estimate"] == pytest.approx(alone["estimate"]) and row["se"] == pytest.approx(alone["se"])
    assert main(["mrmc", _write(tmp_path, "\n".join(lines) + "\n")]) == 0
    text = capsys.readouterr().out
    assert "each arm is fully crossed on its own cases" in text and "not every reader rated every case" not in text
    fixed_section = text.split("== fixed readers, random cases")[1].split("==")[0]
    assert "arm A (H0 AUC=0.5)" in fixed_section and "not available" not in fixed_section


def test_one_reader_on_arms_of_their_own_is_reported_as_fixed_readers_only(tmp_path, capsys):
    rng = np.random.default_rng(3)
    lines = ["reader,arm,case,truth,rating"]
    for arm in ("A", "B"):
        lines += [f"r1,{arm},{arm}{k},{k % 2},{rng.normal() + k % 2:.5f}" for k in range(8)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    assert main(["mrmc", path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["random_readers_random_cases"] is None
    assert [row["arm"] for row in result["fixed_readers_random_cases"]["arms"]] == ["A", "B"]
    assert main(["mrmc", path]) == 0
    text = capsys.readouterr().out
    assert text.split("== random readers, random cases (Hillis ddf)")[1].split("==")[0].strip() == \
        "not available: needs 2 or more readers"

"""MRMC analyses calibrated by simulation from the Roe & Metz model (study_app.statistics.roe_metz).

The simulator itself (its closed-form population AUC, the inverse, the design masks), then small, fast
versions of ``benchmarks/bench_mrmc_calibration.py``: CI coverage and type-I error of ``analyse_any`` per
design, and the U-statistics variance being unbiased where it is the only analysis (split-plot, random
subsets). Fixed seeds; the tolerances are binomial / chi-square ones that a correct method passes and one
whose SE is halved fails by far (checked by halving it).
"""

from __future__ import annotations

from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from study_app.statistics import split_plot, u_statistics
from study_app.statistics.mrmc_designs import analyse_any, arm_design
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

# A model with a large reader variance, so that leaving it out of the population AUC would show.
WIDE_READERS = RoeMetz(mu=1.0, tau=0.4, var_r=(0.2, 0.3), var_tr=(0.05, 0.0), var_c=(0.4, 0.2), var_rc=(0.1, 0.3))


def rank_aucs(ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of every row of ratings [..., case] through ranks (no ties in continuous ratings)."""
    ranks = stats.rankdata(ratings, axis=-1)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    return (ranks[..., truth].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@pytest.mark.parametrize("arm", [0, 1])
def test_population_auc_is_the_mean_reader_auc_of_simulated_studies(arm):
    rng = np.random.default_rng(11)
    study_means = []
    for _ in range(200):  # independent studies: the case effects shared by a study's readers average out
        ratings, truth = simulate(WIDE_READERS, 40, 250, 250, rng, arms=2)
        study_means.append(rank_aucs(ratings[:, arm], truth).mean())
    mean, se = np.mean(study_means), np.std(study_means, ddof=1) / np.sqrt(len(study_means))
    expected = population_auc(WIDE_READERS, arm)
    assert abs(mean - expected) < 4 * se, (mean, expected, se)
    # Without the reader variance in the denominator the formula would be off by far more than that.
    v_reader = sum(WIDE_READERS.var_r) + sum(WIDE_READERS.var_tr)
    mu = WIDE_READERS.mu + WIDE_READERS.tau * arm
    no_readers = NormalDist().cdf(mu / np.sqrt(WIDE_READERS.total_variance() - v_reader))
    assert abs(mean - no_readers) > 10 * se


def test_mu_for_auc_inverts_population_auc():
    for model in (RoeMetz(), WIDE_READERS):
        for auc in (0.5, 0.6, 0.75, 0.9, 0.99):
            assert population_auc(replace(model, mu=mu_for_auc(model, auc))) == pytest.approx(auc, abs=1e-12)
    assert mu_for_auc(RoeMetz(), 0.5) == 0.0
    with pytest.raises(ValueError):
        mu_for_auc(RoeMetz(), 1.0)


def test_reader_auc_variance_matches_readers_drawn_at_random():
    rng = np.random.default_rng(3)
    model = WIDE_READERS
    v_reader = sum(model.var_r) + sum(model.var_tr)
    shift = rng.normal(0, np.sqrt(v_reader), 400_000)
    aucs = stats.norm.cdf((model.mu + shift) / np.sqrt(model.total_variance() - v_reader))
    assert reader_auc_variance(model) == pytest.approx(aucs.var(), rel=0.01)
    assert np.sqrt(reader_auc_variance(RoeMetz())) == pytest.approx(0.036, abs=0.001)  # as the module says


def test_simulate_layout_and_arm_shift():
    ratings, truth = simulate(RoeMetz(tau=1.0), 3, 4, 5, np.random.default_rng(0), arms=2)
    assert ratings.shape == (3, 2, 9) and truth.tolist() == [False] * 4 + [True] * 5
    assert np.isfinite(ratings).all()
    one, _ = simulate(RoeMetz(), 3, 4, 5, np.random.default_rng(0))
    assert one.shape == (3, 1, 9)
    assert population_auc(RoeMetz(tau=1.0), 1) > population_auc(RoeMetz(tau=1.0), 0)
    with pytest.raises(ValueError):
        simulate(RoeMetz(), 3, 4, 5, np.random.default_rng(0), arms=3)


def test_crossed_mask():
    assert crossed_mask(3, 7).all() and crossed_mask(3, 7).shape == (3, 7)


def test_split_plot_mask_disjoint_balanced_blocks():
    truth = np.array([False] * 31 + [True] * 29)
    mask = split_plot_mask(7, truth.size, 3, truth, np.random.default_rng(5))
    for j in range(7):  # round-robin: reader j reads exactly what reader j mod 3 reads
        assert (mask[j] == mask[j % 3]).all()
    blocks = mask[:3]
    assert (blocks.sum(axis=0) == 1).all()  # disjoint, and every case is read by one group
    negatives, positives = blocks[:, ~truth].sum(axis=1), blocks[:, truth].sum(axis=1)
    assert negatives.max() - negatives.min() <= 1 and positives.max() - positives.min() <= 1
    parts = split_plot.blocks(mask)
    assert len(parts) == 3 and sorted(len(readers) for readers, _ in parts) == [2, 2, 3]
    assert arm_design(mask) == "split-plot"
    with pytest.raises(ValueError):
        split_plot_mask(2, truth.size, 3, truth, np.random.default_rng(5))


def test_random_subset_mask_reads_balanced_subsets():
    truth = np.array([False] * 50 + [True] * 40)
    mask = random_subset_mask(6, truth, 21, np.random.default_rng(8))
    assert mask.shape == (6, 90) and (mask.sum(axis=1) == 21).all()
    assert (mask[:, ~truth].sum(axis=1) == 10).all() and (mask[:, truth].sum(axis=1) == 11).all()
    assert len({row.tobytes() for row in mask}) == 6  # drawn independently per reader
    assert arm_design(mask) == "partial"
    with pytest.raises(ValueError):
        random_subset_mask(2, truth, 90, np.random.default_rng(8))
    ratings = apply_mask(np.ones((6, 1, 90)), mask)
    assert (np.isfinite(ratings[:, 0]) == mask).all()


READERS, NEGATIVES, POSITIVES, GROUPS = 6, 40, 40, 2


def design_mask(design: str, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if design == "crossed":
        return crossed_mask(READERS, truth.size)
    if design == "split-plot":
        return split_plot_mask(READERS, truth.size, GROUPS, truth, rng)
    return random_subset_mask(READERS, truth, truth.size // 2, rng)


def simulated_rows(design: str, auc: float, studies: int, seed: int) -> dict[str, list[dict]]:
    """The headline row (and the split-plot OR row) of ``analyse_any`` on ``studies`` simulated studies."""
    rng = np.random.default_rng(seed)
    base = RoeMetz()
    model = replace(base, mu=mu_for_auc(base, auc))
    rows: dict[str, list[dict]] = {"headline": [], "split_plot_or": []}
    for _ in range(studies):
        ratings, truth = simulate(model, READERS, NEGATIVES, POSITIVES, rng)
        result = analyse_any(apply_mask(ratings, design_mask(design, truth, rng)), truth)
        rows["headline"].append(result["random_readers_random_cases"]["arms"][0])
        for row in (result["split_plot"] or {}).values():
            rows["split_plot_or"].append(row)
    return {name: found for name, found in rows.items() if found}


@pytest.mark.parametrize("design", ["crossed", "split-plot", "random"])
def test_coverage_and_type_one_error_per_design(design):
    studies = 200
    for name, rows in simulated_rows(design, 0.75, studies, seed=2024).items():
        covered = sum(r["low"] is not None and r["low"] <= 0.75 <= r["high"] for r in rows)
        # Two-sided exact binomial test against 95 %: 200 studies put a correct method at p > 0.001 (here 94-97 %);
        # halving the SE drops coverage to ~70 % (p ~ 1e-30).
        assert len(rows) == studies and stats.binomtest(covered, studies, 0.95).pvalue > 0.001, (name, covered)
    for name, rows in simulated_rows(design, 0.5, studies, seed=2025).items():
        rejected = sum(r["p"] is not None and r["p"] < 0.05 for r in rows)
        assert stats.binomtest(rejected, studies, 0.05).pvalue > 0.001, (name, rejected)


@pytest.mark.parametrize("design", ["split-plot", "random"])
def test_u_statistics_variance_is_unbiased(design):
    """Mean of the U-statistics variance estimates = the variance of the estimates over studies."""
    rng = np.random.default_rng(77 if design == "split-plot" else 78)
    model = replace(RoeMetz(), mu=mu_for_auc(RoeMetz(), 0.75))
    estimates, variances = [], []
    for _ in range(1500):
        ratings, truth = simulate(model, READERS, NEGATIVES, POSITIVES, rng)
        row = u_statistics.analyse(apply_mask(ratings, design_mask(design, truth, rng)), truth)["arms_results"][0]
        estimates.append(row["estimate"])
        variances.append(row["variance"])
    n = len(estimates)
    empirical = np.var(estimates, ddof=1)
    mean_estimate = np.mean(variances)
    # The empirical variance is ~ chi-square: relative SE sqrt(2 / (n - 1)) (with the estimates' kurtosis);
    # the mean of the variance estimates adds its own, smaller, Monte-Carlo error.
    kurtosis = stats.kurtosis(estimates)
    relative_se = np.sqrt((2 + kurtosis) / (n - 1) + np.var(variances, ddof=1) / n / mean_estimate ** 2)
    assert abs(mean_estimate / empirical - 1) < 3.5 * relative_se, (mean_estimate, empirical, relative_se)

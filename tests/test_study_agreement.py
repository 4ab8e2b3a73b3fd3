"""Krippendorff's alpha (nominal): Krippendorff's worked example with missing data, a brute-force
pairwise count on random incomplete data, the undefined cases, and its place in scoring and on the
organiser's page."""

import itertools

import numpy as np
import pytest

from study_app.statistics.agreement import (
    alpha_from_table,
    alpha_per_arm,
    krippendorff_alpha,
)
from study_app.statistics.scoring import Answer, score

S, R = "synthetic", "real"
_ = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: observers A-D (columns)
# by units 1-12 (rows), missing values blank. Nominal alpha 0.743 from n = 40 pairable values; unit 12
# has one value only and is dropped.
KRIPPENDORFF_2011 = [[1, 1, _, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
                     [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [_, 5, 5, 5], [_, _, 1, 1], [_, 3, _, _]]


def _as_answers(table, arm="X"):
    return [Answer(f"r{j}", f"c{i}", arm, S, str(value)) for i, row in enumerate(table)
            for j, value in enumerate(row) if value is not None]


def test_krippendorffs_worked_example_with_missing_data():
    for agreement in (alpha_from_table(KRIPPENDORFF_2011), krippendorff_alpha(_as_answers(KRIPPENDORFF_2011))):
        assert agreement.alpha == pytest.approx(0.743, abs=5e-4)
        assert (agreement.n_units, agreement.n_pairable) == (11, 40)
    # Exactly, from the paper's coincidence matrix: value totals n_c = 9, 13, 10, 5, 3 and off-diagonal
    # coincidences summing to 8, so alpha = 1 - (n - 1) * 8 / (n^2 - sum n_c^2) with n = 40.
    assert alpha_from_table(KRIPPENDORFF_2011).alpha == pytest.approx(1 - 39 * 8 / (40**2 - (81 + 169 + 100 + 25 + 9)),
                                                                      rel=1e-12)


def _brute_force(table):
    """alpha = 1 - D_o / D_e counted over ordered pairs of values: within units (each unit's pairs
    weighted 1 / (m_u - 1)) for D_o, across all pairable values for D_e."""
    units = [[v for v in row if v is not None] for row in table]
    units = [values for values in units if len(values) >= 2]
    pooled = [v for values in units for v in values]
    n = len(pooled)
    observed = sum(sum(a != b for a, b in itertools.permutations(values, 2)) / (len(values) - 1)
                   for values in units) / n
    expected = sum(a != b for a, b in itertools.permutations(pooled, 2)) / (n * (n - 1))
    return 1 - observed / expected, len(units), n


@pytest.mark.parametrize("seed", range(6))
def test_against_brute_force_pairs_on_incomplete_random_data(seed):
    rng = np.random.default_rng(seed)
    readers, cases = rng.integers(2, 7), rng.integers(5, 25)
    labels = [R, S] if seed % 2 else ["a", "b", "c"]
    table = [[labels[rng.integers(len(labels))] if rng.random() > 0.4 else None for _ in range(readers)]
             for _ in range(cases)]
    table[0][:2] = [labels[0], labels[1]]  # at least one disagreement: alpha is defined
    alpha, n_units, n_pairable = _brute_force(table)
    for agreement in (alpha_from_table(table), krippendorff_alpha(_as_answers(table))):
        assert agreement.alpha == pytest.approx(alpha, rel=1e-9, abs=1e-12)
        assert (agreement.n_units, agreement.n_pairable) == (n_units, n_pairable)


def test_perfect_agreement_is_one_and_undefined_is_none():
    perfect = [[S, S, _], [R, R, R], [S, _, S], [R, _, _]]
    assert alpha_from_table(perfect).alpha == pytest.approx(1.0)
    assert (alpha_from_table(perfect).n_units, alpha_from_table(perfect).n_pairable) == (3, 7)
    # No disagreement possible: every pairable value the same (expected disagreement 0).
    assert alpha_from_table([[S, S], [S, S], [R, _]]).alpha is None
    # Fewer than two pairable values: nobody shares a case, or no answers at all.
    alone = alpha_from_table([[S, _], [_, R], [R, _]])
    assert (alone.alpha, alone.n_units, alone.n_pairable) == (None, 0, 0)
    assert krippendorff_alpha([]).alpha is None
    # Systematic disagreement is below zero.
    assert alpha_from_table([[S, R], [R, S], [S, R]]).alpha < 0


def test_a_repeated_answer_counts_once_and_arms_keep_their_cases_apart():
    answers = [Answer("a", "c1", "X", S, S), Answer("a", "c1", "X", S, R), Answer("b", "c1", "X", S, R),
               Answer("a", "c2", "X", R, S), Answer("b", "c2", "X", R, S), Answer("a", "c3", "X", R, R)]
    assert krippendorff_alpha(answers).n_pairable == 4  # reader a's later answer to c1 replaces the first
    assert krippendorff_alpha(answers).alpha == pytest.approx(1.0)
    # Same case id in two arms: two units of one answer each, nothing pairable.
    assert krippendorff_alpha([Answer("a", "c1", "X", S, S), Answer("b", "c1", "Y", S, R)]).n_units == 0


def test_arm_totals_carry_alpha_beside_kappa():
    table = [[S, S, R], [R, R, _], [S, _, S], [R, R, R], [_, S, S]]
    answers = _as_answers(table, "URCDM") + _as_answers([[S, S], [R, R]], "LRDM")
    arms = score(answers)["arms"]
    total = arms["URCDM"]["total"]
    assert total["krippendorff_alpha"] == pytest.approx(_brute_force(table)[0])
    assert total["krippendorff_units"] == 5
    assert "fleiss_kappa" in total
    assert arms["LRDM"]["total"]["krippendorff_alpha"] == pytest.approx(1.0)
    assert score(answers, by="all")["arms"]["all"]["total"]["krippendorff_units"] == 7


def test_alpha_per_arm_counts_unfinished_readers_too():
    # Reader r1 stopped after two cases (the organiser's page passes every answer, finished or not).
    answers = _as_answers([[S, S], [R, S], [S, _], [R, _]], "URCDM") + _as_answers([[R, R]], "LRDM")
    per_arm = alpha_per_arm(answers)
    assert list(per_arm) == ["LRDM", "URCDM"]
    assert per_arm["URCDM"].alpha == pytest.approx(_brute_force([[S, S], [R, S]])[0])
    assert (per_arm["URCDM"].n_units, per_arm["URCDM"].n_pairable) == (2, 4)
    assert per_arm["LRDM"].alpha is None and per_arm["LRDM"].n_units == 1

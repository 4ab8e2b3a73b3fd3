"""Table-1 scoring against hand-computed confusion matrices; intervals and tests against scipy's
distributions; Fleiss' kappa against Fleiss' worked example; ``urcdm-study score`` on bad rows."""

import itertools
import json

import numpy as np
import pytest
from scipy import stats

from study_app.cli import main
from study_app.statistics.scoring import (
    Answer,
    clopper_pearson,
    fleiss_kappa,
    roc_auc,
    score,
)


def _answers(reader, arm, calls):
    """calls: list of (truth, answer) pairs; case ids shared across readers by position."""
    return [Answer(reader, f"c{i}", arm, truth, answer) for i, (truth, answer) in enumerate(calls)]


S, R = "synthetic", "real"


def test_table_one_counts_p_and_weighted_mae():
    # reader a: synthetic->synthetic x3, real->synthetic x1, real->real x2, synthetic->real x1
    a = _answers("a", "URCDM", [(S, S)] * 3 + [(R, S)] + [(R, R)] * 2 + [(S, R)])
    # reader b: calls everything synthetic: TP 2, FP 2
    b = _answers("b", "URCDM", [(S, S), (S, S), (R, S), (R, S)])
    # reader c: never answers synthetic: p undefined, no weight
    c = _answers("c", "URCDM", [(S, R), (R, R)])
    table = score(a + b + c)["arms"]["URCDM"]
    rows = {r["reader"]: r for r in table["readers"]}
    assert (rows["a"]["tp"], rows["a"]["fp"], rows["a"]["tn"], rows["a"]["fn"]) == (3, 1, 2, 1)
    assert rows["a"]["p"] == pytest.approx(1 / 4) and rows["a"]["abs_p_minus_half"] == pytest.approx(0.25)
    assert rows["b"]["p"] == pytest.approx(0.5) and rows["b"]["abs_p_minus_half"] == pytest.approx(0.0)
    assert rows["c"]["p"] is None and rows["c"]["abs_p_minus_half"] is None
    total = table["total"]
    assert (total["tp"], total["fp"], total["tn"], total["fn"]) == (5, 3, 3, 2)
    assert total["p"] == pytest.approx(3 / 8)
    assert total["w_mae"] == pytest.approx((4 * 0.25 + 4 * 0.0) / 8)


def test_positive_real_swaps_the_roles():
    a = _answers("a", "LRDM", [(S, S)] * 3 + [(R, S)] + [(R, R)] * 2 + [(S, R)])
    row = score(a, positive="real")["arms"]["LRDM"]["readers"][0]
    assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (2, 1, 3, 1)
    assert row["p"] == pytest.approx(1 / 3)


def test_arms_are_scored_separately_or_pooled():
    data = _answers("a", "LRDM", [(S, S), (R, R)]) + _answers("a", "URCDM", [(S, R), (R, S)])
    assert set(score(data)["arms"]) == {"LRDM", "URCDM"}
    pooled = score(data, by="all")["arms"]["all"]["total"]
    assert (pooled["tp"], pooled["fp"]) == (1, 1)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (57, 120)])
def test_clopper_pearson_against_beta_quantiles(k, n):
    interval = clopper_pearson(k, n)
    low = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-9)


def test_binomial_test_against_the_binomial_distribution():
    calls = [(S, S)] * 14 + [(R, R)] * 4 + [(R, S)] * 2  # 18 of 20 right
    total = score(_answers("a", "X", calls))["arms"]["X"]["total"]
    # Two-sided under a symmetric null: twice the upper tail.
    assert total["binomial_p_accuracy"] == pytest.approx(2 * stats.binom.sf(17, 20, 0.5), rel=1e-9)


def test_fleiss_kappa_reproduces_fleiss_worked_example():
    # Fleiss (1971)-style example as usually tabulated: 10 subjects, 14 raters, 5 categories; kappa 0.210.
    ratings = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
               [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(np.array(ratings)) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)


def test_kappa_uses_only_cases_every_reader_answered():
    a = _answers("a", "X", [(S, S), (R, R), (S, S)])
    b = _answers("b", "X", [(S, S), (R, R)])  # agrees on both shared cases
    assert score(a + b)["arms"]["X"]["total"]["fleiss_kappa"] == pytest.approx(1.0)


def test_roc_auc_against_pairwise_counting():
    rng = np.random.default_rng(0)
    answers = []
    for i in range(40):
        truth = S if i % 2 else R
        answer = S if rng.random() < (0.7 if truth == S else 0.3) else R
        answers.append(Answer("a", f"c{i}", "X", truth, answer, int(rng.integers(1, 6))))
    signed = {a.case: (a.confidence if a.answer == S else -a.confidence) for a in answers}
    positives = [signed[a.case] for a in answers if a.truth == S]
    negatives = [signed[a.case] for a in answers if a.truth == R]
    pairs = [(p > q) + 0.5 * (p == q) for p, q in itertools.product(positives, negatives)]
    assert roc_auc(answers) == pytest.approx(np.mean(pairs))
    assert roc_auc([Answer("a", "c", "X", S, S)]) is None  # no confidence collected


def _csv(tmp_path, text):
    path = tmp_path / "answers.csv"
    path.write_text(text)
    return str(path)


def test_score_cli_json(tmp_path, capsys):
    path = _csv(tmp_path, "reader,case,arm,truth,answer,confidence\nr1,c1,URCDM,synthetic,synthetic,4\n"
                          "r1,c2,URCDM,real,synthetic,2\nr1,c3,URCDM,real,real,5\nr2,c1,URCDM,synthetic,real,1\n")
    assert main(["score", path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    readers = result["arms"]["URCDM"]["readers"]
    assert [(r["reader"], r["tp"], r["fp"], r["p"]) for r in readers] == [("r1", 1, 1, 0.5), ("r2", 0, 0, None)]
    assert result["arms"]["URCDM"]["total"]["w_mae"] == pytest.approx(0.0)
    assert main(["score", path]) == 0 and "undefined" in capsys.readouterr().out


@pytest.mark.parametrize("text,expected", [
    ("reader,case,arm,truth\nr1,c1,A,real\n", "missing column(s) answer"),
    ("reader,case,arm,truth,answer\nr1,c1,A,real,maybe\n", "answers.csv:2: answer 'maybe'"),
    ("reader,case,arm,truth,answer\nr1,c1,A,real,real\nr1,c1,A,real,synthetic\n", "answers.csv:3: reader 'r1' answered case 'c1' twice"),
    ("reader,case,arm,truth,answer,confidence\nr1,c1,A,real,real,9\n", "answers.csv:2: confidence '9'"),
    ("reader,case,arm,truth,answer\n", "no answers"),
    ("", "empty file (need a header line"),
    ("reader,case,arm,truth,answer\nr1,c1,A,re", "answers.csv:2: empty answer"),
])
def test_score_cli_bad_rows(tmp_path, capsys, text, expected):
    assert main(["score", _csv(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1


def test_score_cli_binary_junk(tmp_path, capsys):
    junk = tmp_path / "answers.csv"
    junk.write_bytes(bytes(range(256)) * 8)
    assert main(["score", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a UTF-8 CSV text file" in err and "Traceback" not in err

"""Stored answers -> per-arm MRMC designs (study_app.statistics.mrmc_answers): every answer in the design and the
reasons when no analysis exists, agreement with mrmc.analyse on crossed matrices and with the U-statistics on
partial ones, ROC points, the ratings CSV, and the organiser page's MRMC section (AppTest)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from study_app.statistics.mrmc import COV_METHODS, analyse, auc_table
from study_app.statistics.mrmc_answers import (
    FIXED_READERS,
    RANDOM_READERS,
    RATINGS_COLUMNS,
    arm_mrmc,
    compare_arms,
    ratings_rows,
    roc_points,
    select_arm_designs,
)
from study_app.statistics.mrmc_designs import analyse_any
from study_app.statistics.power import power_reached
from study_app.statistics.scoring import Answer
from study_app.store.ratings_csv import answer_rating, read_design
from study_app.web.tables import to_csv

# rating 1..10 back to (answer, confidence): the inverse of mrmc_io.answer_rating
FROM_RATING = {answer_rating(label, c): (label, c) for label in ("real", "synthetic") for c in range(1, 6)}


def given(reader, case, truth, rating, arm="A"):
    label, confidence = FROM_RATING[rating]
    return Answer(reader, case, arm, truth, label, confidence)


def crossed_answers(ratings, truth, arm="A", cases=None):
    """Answers for a fully crossed [reader, case] rating matrix."""
    cases = cases or [f"c{k + 1}" for k in range(len(truth))]
    return [given(f"reader-{j + 1}", case, "synthetic" if truth[k] else "real", int(ratings[j, k]), arm)
            for j in range(ratings.shape[0]) for k, case in enumerate(cases)]


def random_study(seed, readers=4, cases=12):
    rng = np.random.default_rng(seed)
    truth = np.arange(cases) % 2 == 0
    # Synthetic cases drift upwards, so the AUC is away from 0.5 and readers differ.
    ratings = np.clip(np.round(rng.normal(5 + 2 * truth, 2.5, size=(readers, cases))), 1, 10).astype(int)
    return ratings, truth


def test_partial_assignment_keeps_every_answer_of_the_arm():
    ratings = {"r1": 3, "r2": 5, "r3": 1, "s1": 8, "s2": 6, "s3": 9}
    read = {"reader-1": ["r1", "r2", "r3", "s1", "s2", "s3"], "reader-2": ["r1", "r2", "s1", "s2", "s3"],
            "reader-10": ["s2", "r2", "r1", "r3", "s1"]}
    answers = [given(reader, case, "real" if case[0] == "r" else "synthetic", ratings[case] + j % 2)
               for j, (reader, cases) in enumerate(read.items()) for case in cases]
    answers.append(given("reader-1", "x1", "real", 2, arm="B"))  # another arm does not count here
    (a, b) = select_arm_designs(answers)
    assert a.arm == "A" and b.arm == "B"
    assert a.readers == ("reader-1", "reader-2", "reader-10") and a.cases == ("r1", "r2", "r3", "s1", "s2", "s3")
    assert (a.answers, a.answers_used, a.answers_left_out, a.reason) == (16, 16, 0, None)
    design = a.design
    assert design.truth.tolist() == [False, False, False, True, True, True] and design.arms == ["A"]
    nan = np.nan
    assert np.array_equal(design.ratings[:, 0, :], [[3, 5, 1, 8, 6, 9], [4, 6, nan, 9, 7, 10], [3, 5, 1, 8, 6, nan]],
                          equal_nan=True)
    summary = arm_mrmc(a)
    assert summary["design"] == "partial" and summary["estimator"] == "U-statistics (Gallas)"
    assert summary["estimate"] == pytest.approx(np.mean([auc_table(design.ratings[j:j + 1][..., np.isfinite(
        design.ratings[j, 0])], design.truth[np.isfinite(design.ratings[j, 0])])[0, 0] for j in range(3)]))
    assert b.design is None and b.reason == "no synthetic cases answered" and b.answers_left_out == 1


@pytest.mark.parametrize("read, reason", [
    ({"reader-1": ["r1", "s1", "s2"], "reader-2": ["s1", "s2"]}, "only 1 real case answered"),
    ({"reader-1": ["s1", "s2"], "reader-2": ["s3", "s2"]}, "no real cases answered"),
    ({"reader-1": ["r1", "r2", "s1"]}, "only 1 synthetic case answered"),
])
def test_an_arm_without_an_analysis_says_why(read, reason):
    answers = [given(reader, case, "real" if case[0] == "r" else "synthetic", 7)
               for reader, cases in read.items() for case in cases]
    (selection,) = select_arm_designs(answers)
    assert selection.design is None and selection.reason.startswith(reason)
    assert selection.answers_used == 0 and selection.answers_left_out == len(answers)
    assert arm_mrmc(selection) is None and ratings_rows([selection]) == []


def test_a_reader_mixing_answers_with_and_without_confidence_is_refused():
    answers = [given("reader-1", c, t, r) for c, t, r in (("r1", "real", 2), ("r2", "real", 4), ("s1", "synthetic", 9))]
    answers.append(Answer("reader-1", "s2", "A", "synthetic", "synthetic", None))
    (selection,) = select_arm_designs(answers)
    assert selection.design is None and "some answers but not on others" in selection.reason
    # Without confidence throughout, the answers are a 2-level rating (real 1, synthetic 2) and are analysed.
    plain = [Answer(a.reader, a.case, a.arm, a.truth, a.answer, None) for a in answers]
    (selection,) = select_arm_designs(plain)
    assert selection.design.ratings[0, 0].tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize("method", COV_METHODS)
def test_a_fully_crossed_arm_gives_what_mrmc_analyse_gives_on_the_same_matrix(method):
    ratings, truth = random_study(seed=3)
    answers = crossed_answers(ratings, truth)
    (selection,) = select_arm_designs(answers[::-1])  # answer order must not matter
    assert selection.answers_left_out == 0 and selection.cases == tuple(f"c{k}" for k in range(1, 13))
    summary = arm_mrmc(selection, method)
    direct = analyse(ratings[:, None, :], truth, method=method)
    expected = direct["random_readers_random_cases"]["arms"][0]
    assert summary["analysis"] == RANDOM_READERS and summary["method"] == method
    for key in ("estimate", "se", "df", "low", "high", "p"):
        assert summary[key] == pytest.approx(expected[key], rel=1e-12), key
    assert summary["low"] < summary["estimate"] < summary["high"] and summary["estimate"] > 0.6
    assert list(summary["reader_auc"].values()) == pytest.approx(auc_table(ratings[:, None, :], truth)[:, 0])
    assert summary["fixed_readers"] == direct["fixed_readers_random_cases"]["arms"][0] | {"arm": "A"}


def test_one_reader_gets_the_fixed_reader_result_and_a_note():
    ratings, truth = random_study(seed=5, readers=1)
    (selection,) = select_arm_designs(crossed_answers(ratings, truth))
    summary = arm_mrmc(selection)
    expected = analyse(ratings[:, None, :], truth)["fixed_readers_random_cases"]["arms"][0]
    assert summary["analysis"] == FIXED_READERS and summary["readers"] == 1
    assert (summary["estimate"], summary["low"], summary["p"]) == (expected["estimate"], expected["low"], expected["p"])
    assert summary["df"] is None and any("2 or more readers" in note for note in summary["notes"])


def test_arms_are_compared_by_or_on_the_same_readers_and_cases_and_by_u_statistics_otherwise():
    ratings, truth = random_study(seed=7, readers=3, cases=8)
    other = np.clip(ratings + np.arange(8) % 3 - 1, 1, 10)
    separate = crossed_answers(ratings, truth, "A") + crossed_answers(other, truth, "B", [f"d{k}" for k in range(8)])
    result, why = compare_arms(select_arm_designs(separate))
    assert result["design"] == "crossed per arm" and "U-statistics" in why
    difference = result["random_readers_random_cases"]["differences"][0]
    assert difference["estimate"] == pytest.approx(auc_table(ratings[:, None], truth).mean()
                                                   - auc_table(other[:, None], truth).mean())
    same = crossed_answers(ratings, truth, "A") + crossed_answers(other, truth, "B")
    result, why = compare_arms(select_arm_designs(same), "delong")
    direct = analyse(np.stack([ratings, other], axis=1), truth, method="delong", arms=["A", "B"])
    assert result["random_readers_random_cases"]["differences"] == direct["random_readers_random_cases"]["differences"]
    dropped = [a for a in same if not (a.arm == "B" and a.reader == "reader-2" and a.case == "c1")]
    result, why = compare_arms(select_arm_designs(dropped))
    assert result["design"] == "partial" and result["random_readers_random_cases"]["differences"][0]["se"] > 0


def roc_by_counting(scores, truth):
    """The textbook walk: cases sorted by rating, highest first, one ROC point per distinct rating."""
    order = np.argsort(-scores, kind="stable")
    points, tp, fp = [(0.0, 0.0)], 0, 0
    for position, k in enumerate(order):
        tp, fp = tp + truth[k], fp + (not truth[k])
        if position == len(order) - 1 or scores[order[position + 1]] != scores[k]:
            points.append((fp / (~truth).sum(), tp / truth.sum()))
    return points


def test_roc_points_are_the_empirical_curve_and_their_area_is_the_auc():
    ratings, truth = random_study(seed=11, readers=3, cases=15)
    (selection,) = select_arm_designs(crossed_answers(ratings, truth))
    points = roc_points(selection.design)
    try:
        from sklearn.metrics import roc_curve
    except ImportError:
        roc_curve = None
    aucs = auc_table(ratings[:, None, :], truth)[:, 0]
    for j, reader in enumerate(selection.readers):
        mine = [p for p in points if p["reader"] == reader]
        ours = np.array([(p["fpr"], p["tpr"]) for p in mine])
        if roc_curve is not None:
            fpr, tpr, thresholds = roc_curve(truth, ratings[j], drop_intermediate=False)
            assert np.allclose(ours, np.column_stack([fpr, tpr]))
            assert [p["threshold"] for p in mine][1:] == list(thresholds[1:])
        assert ours.shape == (len(np.unique(ratings[j])) + 1, 2)
        assert np.allclose(ours, roc_by_counting(ratings[j], truth))
        assert ours[0].tolist() == [0, 0] and ours[-1].tolist() == [1, 1] and mine[0]["threshold"] == np.inf
        fpr, tpr = ours.T
        assert np.trapezoid(tpr, fpr) == pytest.approx(aucs[j])  # ties count 1/2: the diagonal steps


def test_the_ratings_csv_reproduces_the_arm_result_through_urcdm_study_mrmc_reading(tmp_path):
    ratings, truth = random_study(seed=13, readers=3, cases=10)
    answers = crossed_answers(ratings, truth, "A") + crossed_answers(ratings[:, ::-1], truth, "B", list("abcdefghij"))
    answers = [a for a in answers if (a.reader, a.case) != ("reader-3", "c4")]  # left out of arm A's design
    selections = select_arm_designs(answers)
    csv_file = tmp_path / "ratings.csv"
    csv_file.write_text(to_csv(ratings_rows(selections), RATINGS_COLUMNS))
    assert csv_file.read_text().splitlines()[0] == "reader,arm,case,truth,rating"
    for selection in selections:
        design = read_design(csv_file, arm=selection.arm)
        assert design.cases == selection.design.cases and design.readers == selection.design.readers
        direct = analyse_any(design.ratings, design.truth)["random_readers_random_cases"]["arms"][0]
        assert arm_mrmc(selection)["estimate"] == pytest.approx(direct["estimate"])
        assert arm_mrmc(selection)["low"] == pytest.approx(direct["low"])
    assert len(selections[0].cases) == 10 and len(selections[1].cases) == 10
    assert [arm_mrmc(s)["design"] for s in selections] == ["partial", "crossed"]


def test_the_organiser_view_shows_each_arms_mrmc_result(study_workdir, demo_study_template):
    pytest.importorskip("streamlit")
    from test_study_app import new_session, organiser_login

    from study_app.store.database import AnswerStore
    from study_app.web.gate import current_gate
    from study_app.web.reading import record_answer
    from study_app.web.tables import as_answers

    gate = current_gate(study_workdir)
    store = AnswerStore(gate.prepared.store_path)
    for case in gate.reader_cases("reader-1")[:3]:  # part-way: too few cases of each class in any arm
        assert record_answer(gate, "reader-1", {"case": case.id, "answer": "real", "confidence": 3}) is None
    app = organiser_login(study_workdir, demo_study_template[1])
    assert not app.exception and any(h.value == "Reader-averaged ROC AUC (MRMC)" for h in app.subheader)
    assert any("no MRMC result" in i.value for i in app.info)
    assert "MRMC ratings (CSV)" not in {b.proto.label for b in app.get("link_button")}

    # Every case of both arms read by both readers (straight into the store: the demo assigns each reader
    # only some of an arm's cases). Both miss the same cases, and reader-2 some more, so the readers'
    # errors correlate (Cov2 > 0) and the covariance method changes the CI.
    for j, reader in enumerate(("reader-1", "reader-2")):
        for n, case in enumerate(gate.prepared.cases):
            wrong = n % 4 == 3 or (j == 1 and n % 7 == 1)
            label = ("real" if case.truth == "synthetic" else "synthetic") if wrong else case.truth
            store.record(reader, case.id, case.arm, case.truth, label, 1 + (n + j) % 5, time.time() - 2, time.time(),
                         case.image_id)
    app = new_session(study_workdir, app.query_params["session"])
    assert not app.exception and not app.info
    selections = select_arm_designs(as_answers(store.all_answers()))
    assert [(len(s.readers), s.answers_left_out) for s in selections] == [(2, 0), (2, 0)]
    cis = {}
    for method in ("jackknife", "delong"):
        if method != "jackknife":
            app = app.radio(key="mrmc-cov").set_value(method).run()
        shown = {m.label: [] for m in app.metric}
        for m in app.metric:
            shown[m.label].append(m.value)
        expected = [arm_mrmc(s, method) for s in selections]
        assert shown["Reader-averaged AUC"] == [f"{e['estimate']:.3f}" for e in expected]
        assert shown["95 % CI"] == [f"{e['low']:.3f} to {e['high']:.3f}" for e in expected]
        assert shown["p (H0: AUC = 0.5)"] == [f"{e['p']:.4f}" for e in expected]
        cis[method] = shown["95 % CI"]
    assert cis["jackknife"] != cis["delong"]  # else this would not show that the choice reaches the analysis
    charts = [json.loads(c.proto.spec) for c in app.get("vega_lite_chart")]
    titles = [c["title"] for c in charts if "reader-averaged AUC" in str(c.get("title"))]
    assert titles == [f"{s.arm}: reader-averaged AUC {e['estimate']:.3f}, 95 % CI {e['low']:.3f} to {e['high']:.3f}"
                      for s, e in zip(selections, expected)]
    assert "MRMC ratings (CSV)" in {b.proto.label for b in app.get("link_button")}
    assert any("U-statistics (Gallas): the arms' own cases" in c.value for c in app.caption)
    for e in expected:  # the power each arm has reached, from the SE it shows
        reached = power_reached(e["se"], e["df"])
        assert any(f"Power reached with this SE: {reached['versus_chance']:.2f}" in c.value for c in app.caption)

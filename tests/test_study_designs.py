"""Reading designs in the study file: crossed, split-plot and random assignments have the structure they
promise, prepare refuses a design whose analysable units are too small, and answers given under each
design are analysed as designed (no case dropped, the analysis the design allows)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from test_study_definition import VALID, parse

from study_app.cli import main
from study_app.preparation.cases import Case
from study_app.preparation.designs import design_report
from study_app.preparation.prepared import reader_assignment, study_design
from study_app.statistics.mrmc_answers import arm_mrmc, select_arm_designs
from study_app.statistics.records import Answer
from urcdm.errors import UserError

READERS = [f"path-{k:02d}" for k in range(1, 7)]


def study(design: str, groups=None, readers=READERS, cases_per_reader=None, **extra):
    values = copy.deepcopy(VALID)
    values.pop("cases_per_reader")
    values.update({"design": design, **({"groups": groups} if groups else {}), **extra})
    values["arms"] = [{**values["arms"][0], "name": name} for name in ("A", "B")]
    if cases_per_reader:
        values["cases_per_reader"] = cases_per_reader
    values["access"] = {"readers": [{"id": r, "code": "x"} for r in readers]}
    return parse(values)


def pool(arms=("A", "B"), per_class=12):
    return [Case(f"{arm}-{truth}-{k}", arm, truth, f"{truth}.tiff", (k, 0, 64))
            for arm in arms for truth in ("real", "synthetic") for k in range(per_class)]


def test_split_plot_groups_read_disjoint_balanced_blocks_crossed_within_the_group():
    s, cases = study("split-plot", groups=3), pool()
    shown = {reader: reader_assignment(s, cases, reader) for reader in READERS}
    groups = [READERS[g::3] for g in range(3)]  # dealt in the order listed
    blocks = []
    for members in groups:
        sets = {frozenset(c.id for c in shown[r]) for r in members}
        assert len(sets) == 1  # crossed within the group
        assert len({tuple(c.id for c in shown[r]) for r in members}) == len(members)  # each their own order
        blocks.append(next(iter(sets)))
    assert not (blocks[0] & blocks[1] or blocks[0] & blocks[2] or blocks[1] & blocks[2])
    assert set().union(*blocks) == {c.id for c in cases}  # every case read by one group
    for reader in READERS:
        for arm in ("A", "B"):
            truths = [c.truth for c in shown[reader] if c.arm == arm]
            assert truths.count("real") == truths.count("synthetic") == 4
    report = study_design(s, cases)
    assert report["design"] == "split-plot, 3 groups" and report["groups"]["group 1"] == "path-01, path-04"
    assert "split-plot" in report["mrmc"]


def answers_for(s, cases):
    """Everyone answers what they were shown; synthetic cases get higher ratings, readers differ a little."""
    out = []
    for j, reader in enumerate(s.readers):
        for n, case in enumerate(reader_assignment(s, cases, reader)):
            synthetic = case.truth == "synthetic"
            sure = 1 + (n * 7 + j * 3) % 5
            wrong = (n + j) % 4 == 0
            answer = ("real" if synthetic else "synthetic") if wrong else case.truth
            out.append(Answer(reader, case.id, case.arm, case.truth, answer, sure))
    return out


@pytest.mark.parametrize("design, groups, per_reader, expected", [
    ("crossed", None, None, "crossed"),
    ("split-plot", 2, None, "split-plot"),
    ("random", None, 8, "partial"),
])
def test_answers_under_each_design_are_analysed_as_designed_with_every_answer(design, groups, per_reader, expected):
    s, cases = study(design, groups=groups, cases_per_reader=per_reader), pool()
    answers = answers_for(s, cases)
    for selection in select_arm_designs(answers):
        summary = arm_mrmc(selection)
        assert summary["design"] == expected and summary["answers_left_out"] == 0
        assert summary["answers_used"] == sum(a.arm == selection.arm for a in answers)
        assert summary["se"] is not None and summary["low"] < summary["estimate"] < summary["high"]
        if design == "split-plot":
            assert summary["split_plot"]["groups"] == 2 and summary["split_plot"]["se"] > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"design": "split-plot", "groups": 4}, "leaves group 3 with 1 reader(s) of the 6 listed"),
    ({"design": "crossed", "readers": ["solo"]}, "crossed with 1 listed reader"),
    ({"design": "split-plot", "groups": 3, "per_class": 4}, "gets 1 real and 1 synthetic cases of arm 'A'"),
    ({"design": "random", "cases_per_reader": 2}, None),  # one of each class: an AUC, and the U-statistics
])
def test_a_design_with_too_small_analysable_units_is_refused_before_anyone_reads(kwargs, message):
    per_class = kwargs.pop("per_class", 12)
    s, cases = study(**kwargs), pool(per_class=per_class)
    if message is None:
        assert study_design(s, cases)["design"] == "random"
        return
    with pytest.raises(UserError) as error:
        study_design(s, cases)
    assert message in str(error.value) and str(error.value).startswith("design:")


@pytest.mark.parametrize("change, message", [
    ({"design": "latin-square"}, "design: expected one of crossed, split-plot, random"),
    ({"design": "crossed", "groups": 2}, "groups: only for design: split-plot"),
    ({"design": "split-plot"}, "groups: design: split-plot needs groups: 2 or more"),
    ({"design": "split-plot", "groups": 1}, "groups: design: split-plot needs groups: 2 or more"),
    ({"design": "split-plot", "groups": 2, "access": {"open": True}}, "design: split-plot needs the `access.readers`"),
    ({"design": "crossed", "shared_cases": False}, "shared_cases: false contradicts design: crossed"),
])
def test_bad_designs_are_one_error_naming_the_field(change, message):
    values = copy.deepcopy(VALID)
    values.update(change)
    with pytest.raises(UserError) as error:
        parse(values)
    assert str(error.value).startswith(message)


def test_shared_cases_false_still_means_a_random_design():
    values = copy.deepcopy(VALID)
    values["shared_cases"] = False
    assert parse(values).design == "random" and not parse(values).shared_cases
    assert parse(copy.deepcopy(VALID)).design == "crossed"


def test_prepare_prints_what_a_split_plot_demo_allows_and_refuses_one_it_cannot_analyse(
        demo_study_template, tmp_path, capsys):
    folder = tmp_path / "demo"
    shutil.copytree(demo_study_template[0], folder)
    study_file = folder / "study.yaml"
    values = yaml.safe_load(study_file.read_text())
    values.pop("cases_per_reader")
    values.update({"design": "split-plot", "groups": 2})
    values["access"]["readers"] = [{"id": f"reader-{k}", "code": "demo"} for k in range(1, 5)]
    study_file.write_text(yaml.safe_dump(values))
    assert main(["prepare", str(study_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["design"] == "split-plot, 2 groups" and report["readers"] == 4
    assert report["groups"] == {"group 1": "reader-1, reader-3", "group 2": "reader-2, reader-4"}
    assert report["cases_per_reader"] == "BLURRED-ARM: 3 real + 3 synthetic; STAIN-ARM: 3 real + 3 synthetic"
    values["groups"] = 3
    study_file.write_text(yaml.safe_dump(values))
    assert main(["prepare", str(study_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "group 2 with 1 reader(s)" in err[0]


def test_design_report_with_open_enrolment_notes_the_readers_it_needs():
    cases = pool(arms=("A",), per_class=4)
    assigned = {"any reader": cases}
    report = design_report("crossed", None, ["A"], [], assigned)
    assert report["readers"] == "open enrolment" and "2 or more readers" in report["note"]



def shared_pool(per_class):
    """Two arms whose real crops are the same images (one content id each), synthetic ones their own."""
    return [Case(f"{arm}-{truth}-{k}", arm, truth, f"{truth}.tiff", (k, 0, 64),
                 content_id=f"real-{k}" if truth == "real" else f"{arm}-{k}")
            for arm in ("A", "B") for truth in ("real", "synthetic") for k in range(per_class)]


def test_shared_images_split_make_each_arm_a_unit_across_its_readers():
    s = study("crossed", shared_images="split")
    report = study_design(s, shared_pool(12))
    assert report["mrmc"].startswith("U-statistics") and "shared images are split" in report["mrmc"]
    few = study("crossed", readers=READERS[:2], shared_images="split")
    with pytest.raises(UserError) as error:
        study_design(few, shared_pool(1))  # one real image, two arms: each reader meets it in one arm only
    assert str(error.value).startswith("shared_images: split leaves 1 reader(s) with both real and synthetic")

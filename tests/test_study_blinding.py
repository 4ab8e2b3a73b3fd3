"""Blinding beyond metadata: no image is shown to a reader twice, and nothing served (byte length,
format, tables, structure) separates real from synthetic; the parity report says so, per attribute."""

from __future__ import annotations

import io
import json
from itertools import product

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter

from conftest import tissue_image
from study_app.cases import assign_cases, repeated_content
from study_app.demo import build_demo
from study_app.parity import parity_report, served_attributes, trivial_accuracy
from study_app.prepare import PARITY, STATIC, prepare
from study_app.study import load_study
from urcdm.errors import UserError


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    """The embedded demo: both arms draw their real crops from one slide, so they share images."""
    return build_demo(tmp_path_factory.mktemp("blinding") / "demo", crops=6)[0]


def test_a_reader_never_sees_the_same_image_twice(demo_study):
    prepared = prepare(load_study(demo_study), progress=False)
    assert repeated_content(prepared.cases), "the demo's arms share real images: the check needs them"
    for reader in [f"reader-{i}" for i in range(40)]:
        shown = prepared.reader_cases(reader)
        contents = [case.content_id for case in shown]
        assert len(contents) == len(set(contents)), reader
        for arm in {case.arm for case in shown}:  # each arm stays balanced for the reader
            truths = [case.truth for case in shown if case.arm == arm]
            assert truths.count("real") == truths.count("synthetic") > 0
    # Across readers, an image that two arms would both show goes to each arm for some readers.
    study, arms_per_content, shared = prepared.study, {}, set()
    for reader in [f"reader-{i}" for i in range(40)]:
        unsplit = assign_cases(prepared.cases, reader, study.seed, study.cases_per_reader, study.balance, study.shared_cases)
        shared |= set(repeated_content(unsplit))
        for case in prepared.reader_cases(reader):
            arms_per_content.setdefault(case.content_id, set()).add(case.arm)
    assert shared and all(len(arms_per_content[content]) == 2 for content in shared)


def test_shared_images_are_refused_unless_split(demo_study, tmp_path):
    values = yaml.safe_load(demo_study.read_text())
    del values["shared_images"]
    values["workdir"] = str(tmp_path / "run")
    values["arms"] = [{**arm, **{t: {**arm[t], "slides": str(demo_study.parent / arm[t]["slides"])} for t in ("real", "synthetic")}}
                      for arm in values["arms"]]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(values))
    with pytest.raises(UserError, match="share an image .*`shared_images: split`"):
        prepare(load_study(study), progress=False)


def test_the_same_image_twice_in_one_arm_is_refused(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    pixels = tissue_image(300, 300, seed=1)
    Image.fromarray(pixels).save(folder / "a.png")
    Image.fromarray(pixels).save(folder / "b-renamed-copy.png")  # same pixels, another name
    fakes = tmp_path / "fake"
    fakes.mkdir()
    for i in range(2):
        Image.fromarray(tissue_image(300, 300, seed=10 + i)).save(fakes / f"{i}.png")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"title": "t", "display": {"size": 256}, "access": {"open": True},
                                     "admin": {"secret_env": "X"},
                                     "arms": [{"name": "A", "real": {"images": str(folder)}, "synthetic": {"images": str(fakes)}}]}))
    with pytest.raises(UserError, match="the same image content more than once"):
        prepare(load_study(study), progress=False)


def test_served_files_have_one_length_and_the_parity_report_finds_nothing(demo_study):
    prepared = prepare(load_study(demo_study), progress=False)
    files = [prepared.workdir / STATIC / f"{case.id}.jpg" for case in prepared.cases]
    assert len({f.stat().st_size for f in files}) == 1
    report = json.loads((prepared.workdir / PARITY).read_text())
    assert report["separating"] == [] and report["cases"] == len(prepared.cases)
    for name, attribute in report["attributes"].items():
        if attribute["served"]:
            assert attribute["accuracy"] == pytest.approx(report["base_rate"]), name
    # Recomputed here from the served bytes, independently of the report.
    truths = [case.truth for case in prepared.cases]
    for name in ("bytes", "width", "quantization", "structure"):
        values = [served_attributes(f.read_bytes())[name] for f in files]
        assert trivial_accuracy(values, truths) == pytest.approx(0.5), name
    # What padding hides is real: the blurred arm's coded data is far smaller, and the report says so.
    blurred = [c for c in prepared.cases if c.arm == "BLURRED-ARM"]
    blurred_files = [prepared.workdir / STATIC / f"{c.id}.jpg" for c in blurred]
    coded = [served_attributes(f.read_bytes())["coded_bytes"] for f in blurred_files]
    assert trivial_accuracy(coded, [c.truth for c in blurred]) == 1.0


def test_the_parity_report_catches_a_leak():
    def jpeg(pixels, quality=90):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()

    real = [jpeg(tissue_image(128, 128, seed=s)) for s in range(4)]
    blurred = [jpeg(np.asarray(Image.fromarray(tissue_image(128, 128, seed=s + 9)).filter(ImageFilter.GaussianBlur(2))))
               for s in range(4)]
    report = parity_report([("real", served_attributes(d)) for d in real] + [("synthetic", served_attributes(d)) for d in blurred])
    assert "bytes" in report["separating"]
    other_quality = [jpeg(tissue_image(128, 128, seed=s), quality=80) for s in range(4)]
    report = parity_report([("real", served_attributes(d)) for d in real] + [("synthetic", served_attributes(d)) for d in other_quality])
    assert "quantization" in report["separating"]


def test_trivial_accuracy_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.integers(0, 6, size=12).tolist()
        labels = rng.choice(["real", "synthetic"], size=12).tolist()
        best = max(labels.count("real"), labels.count("synthetic")) / 12
        for threshold, low in product(range(-1, 7), ("real", "synthetic")):
            high = "synthetic" if low == "real" else "real"
            best = max(best, np.mean([(low if v <= threshold else high) == label for v, label in zip(values, labels)]))
        assert trivial_accuracy(values, labels) == pytest.approx(best)

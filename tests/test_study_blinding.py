"""Blinding beyond metadata: no image is shown to a reader twice, and nothing served (byte length,
every segment's length, the coded length, format, tables, structure) separates real from synthetic;
the parity report says so, per attribute and per arm, and a study whose bytes leak is refused."""

from __future__ import annotations

import io
import json
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tissue_image
from PIL import Image, ImageFilter

from study_app.preparation.cases import assign_cases, repeated_content
from study_app.preparation.demo import build_demo
from study_app.preparation.parity import (
    parity_report,
    separation_auc,
    served_attributes,
    trivial_accuracy,
)
from study_app.preparation.prepare import PARITY, STATIC, prepare
from study_app.preparation.study import load_study
from urcdm.errors import UserError


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    """The embedded demo: each side of each arm from its own quadrant of the micrograph."""
    return build_demo(tmp_path_factory.mktemp("blinding") / "demo", crops=6)[0]


def variant(demo_study, folder, **changes) -> Path:
    """The demo study with ``changes`` (top-level fields; ``arms`` a function of the arms), as its own study."""
    values = yaml.safe_load(demo_study.read_text())
    arms = changes.pop("arms", None)
    values.update(changes)
    values["workdir"] = str(folder / "run")
    values["arms"] = [{**arm, **{t: {**arm[t], "slides": str(demo_study.parent / arm[t]["slides"])}
                                 for t in ("real", "synthetic")}} for arm in values["arms"]]
    if arms:
        values["arms"] = arms(values["arms"])
    study = folder / "study.yaml"
    study.write_text(yaml.safe_dump(values))
    return study


def one_real_slide(arms):
    """Both arms draw their real crops from the same slide, so they share images."""
    return [arms[0], {**arms[1], "real": arms[0]["real"]}]


def test_a_reader_never_sees_the_same_image_twice(demo_study, tmp_path, capsys):
    study = variant(demo_study, tmp_path, arms=one_real_slide, shared_images="split")
    prepared = prepare(load_study(study), progress=False)
    assert repeated_content(prepared.cases), "the arms share real images: the check needs them"
    # Readers then get fewer cases than cases_per_reader promises, and prepare says why.
    assert "not cases_per_reader: 8: with shared_images: split" in capsys.readouterr().err
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
    study = variant(demo_study, tmp_path, arms=one_real_slide)
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


def served_files(prepared) -> list[Path]:
    return [prepared.workdir / STATIC / f"{case.id}{prepared.encoding.suffix}" for case in prepared.cases]


def test_the_demo_serves_bytes_that_depend_on_the_image_size_alone(demo_study):
    prepared = prepare(load_study(demo_study), progress=False)
    assert prepared.encoding.format == "raw"
    files = served_files(prepared)
    report = json.loads((prepared.workdir / PARITY).read_text())
    assert report["separating"] == [] and report["cases"] == len(prepared.cases)
    for table in [report, *report["arms"].values()]:
        for name, attribute in table["attributes"].items():  # every attribute the same in every file
            assert attribute["constant"] and attribute["accuracy"] == pytest.approx(table["base_rate"]), name
    # Recomputed here from the served bytes, independently of the report: every byte that is not a
    # pixel (or a checksum of the pixels) is the same in every file.
    attributes = [served_attributes(f.read_bytes()) for f in files]
    assert all(a == attributes[0] for a in attributes) and attributes[0]["bytes"] == files[0].stat().st_size
    skeletons = {_skeleton(f.read_bytes()) for f in files}
    assert len(skeletons) == 1


def _skeleton(data: bytes) -> bytes:
    """A PNG with its pixel data and checksums blanked: what is left is what the bytes say besides the image."""
    out, position = bytearray(data[:8]), 8
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        if kind == b"IDAT":
            body = bytes(len(body))  # deflate's stored-block headers are in here too: their lengths are fixed
        out += data[position:position + 8] + body + bytes(4)
        position += 12 + length
    return bytes(out)


def test_a_compressed_encoding_is_refused_unless_the_study_accepts_it(demo_study, tmp_path, capsys):
    study = variant(demo_study, tmp_path, display={"size": 512, "format": "jpeg", "quality": 92})
    with pytest.raises(UserError, match="differ by class in .*coded_bytes.*display.format: raw.*display.parity: warn"):
        prepare(load_study(study), progress=False)
    workdir = load_study(study).workdir
    assert not (workdir / STATIC).exists() and not (workdir / "cases.json").exists()  # nothing half-made
    assert not (workdir / "study.key").exists()  # nor its key: only the report that says why
    assert json.loads((workdir / PARITY).read_text())["separating"]  # the report is there to read

    accepted = variant(demo_study, tmp_path, display={"size": 512, "format": "jpeg", "quality": 92, "parity": "warn"})
    prepared = prepare(load_study(accepted), progress=False)
    assert "accepted because the study sets display.parity: warn" in capsys.readouterr().err
    files = served_files(prepared)
    assert len({f.stat().st_size for f in files}) == 1  # padded: Content-Length alone says nothing ...
    blurred = [(c, f) for c, f in zip(prepared.cases, files) if c.arm == "BLURRED-ARM"]
    truths = [c.truth for c, _ in blurred]
    for name in ("coded_bytes", "segment 0 FE"):  # ... but what a parser reads does, in the blurred arm
        values = [served_attributes(f.read_bytes())[name] for _, f in blurred]
        assert trivial_accuracy(values, truths) == 1.0 and separation_auc(values, truths) in (0.0, 1.0), name
    report = json.loads((prepared.workdir / PARITY).read_text())
    assert "coded_bytes (arm BLURRED-ARM)" in report["separating"]
    assert report["arms"]["BLURRED-ARM"]["attributes"]["coded_bytes"]["auc"] == 0.0  # blurred: fewer coded bytes


def test_separation_auc_is_the_mann_whitney_area():
    rng = np.random.default_rng(1)
    for _ in range(20):
        values = rng.integers(0, 5, size=14).tolist()
        labels = rng.choice(["real", "synthetic"], size=14).tolist()
        if len(set(labels)) < 2:
            continue
        pairs = [(s, r) for s, ls in zip(values, labels) if ls == "synthetic" for r, lr in zip(values, labels) if lr == "real"]
        expected = np.mean([1.0 if s > r else 0.5 if s == r else 0.0 for s, r in pairs])
        assert separation_auc(values, labels) == pytest.approx(expected)


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

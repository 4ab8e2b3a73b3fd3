"""Preparing a study: parity encoding of real and synthetic images, the study folder, and its guards."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image, PngImagePlugin

from study_app.cli import main
from study_app.prepare import STATIC, open_prepared, prepare
from study_app.rendering import SERVED_MTIME
from study_app.store import AnswerStore
from study_app.study import load_study
from urcdm.errors import UserError
from urcdm.pyramid import ArraySource, write_pyramid

from conftest import tissue_image

JPEG_BASIC_INFO = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}


def jpeg_markers(data: bytes) -> list[int]:
    """The segment markers before the scan: which tables and headers the file carries."""
    markers, i = [], 2
    while i < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return markers


@pytest.fixture
def real_vs_synthetic_study(real_data, tmp_path):
    """Real: crops of an Aperio SVS and real PNG tiles. Synthetic: our pyramid and PNGs with telltale metadata."""
    fake = tmp_path / "fake"
    fake.mkdir()
    write_pyramid(ArraySource(tissue_image(2048, 2048, seed=4)), fake / "sample-0.tiff", tile=256, quality=90,
                  mpp=0.5, overwrite=True)
    pngs = tmp_path / "fake-png"
    pngs.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "URCDM synthetic generator")
    for i in range(4):
        Image.fromarray(tissue_image(600, 640, seed=10 + i)).save(pngs / f"gen-{i}.png", pnginfo=info)
    values = {
        "title": "Real or not?",
        "seed": 2,
        "display": {"size": 384, "format": "jpeg", "quality": 90},
        "arms": [
            {"name": "ARM-SLIDES",
             "real": {"slides": str(real_data / "slides" / "cmu-1-small-region.svs"), "crops": {"n": 4, "size": 512}},
             "synthetic": {"slides": str(fake / "*.tiff"), "crops": {"n": 4, "size": 512}}},
            {"name": "ARM-TILES", "real": {"images": str(real_data / "tiles")}, "synthetic": {"images": str(pngs)}},
        ],
        "access": {"open": True},
        "admin": {"secret_env": "URCDM_TEST_ADMIN"},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_every_served_image_is_encoded_alike_and_carries_nothing_but_pixels(real_vs_synthetic_study, real_data):
    prepared = prepare(load_study(real_vs_synthetic_study), progress=False)
    static = prepared.workdir / STATIC
    files = sorted(static.iterdir())
    assert sorted(f.name for f in files) == sorted(f"{c.id}.jpg" for c in prepared.cases)
    assert {c.truth for c in prepared.cases} == {"real", "synthetic"} and len(files) == 16  # tiles balanced to 4 + 4

    quantization, markers = set(), set()
    telltales = [b"Aperio", b"URCDM", b"synthetic", b"openslide", b"tiff", b"cmu-1", b"gen-", b"sample-"]
    for path in files:
        data = path.read_bytes()
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (384, 384))
            assert set(image.info) <= JPEG_BASIC_INFO | {"comment"}, image.info
            assert not image.info.get("comment", b"").strip(b"\0")  # padding only: zero bytes
            assert image.layer == [(1, 2, 2, 0), (2, 1, 1, 1), (3, 1, 1, 1)]  # same 4:2:0 subsampling
            quantization.add(json.dumps({k: list(v) for k, v in image.quantization.items()}))
        markers.add(tuple(jpeg_markers(data)))
        assert not [t for t in telltales if t.lower() in data.lower()]
        assert os.stat(path).st_mtime == SERVED_MTIME
    assert len(quantization) == 1 and len(markers) == 1  # same quality tables and the same segments in every file
    assert len({path.stat().st_size for path in files}) == 1  # one byte length: Content-Length tells nothing
    for case in prepared.cases:
        assert case.id.isalnum() and len(case.id) == 20 and case.arm not in case.id


def test_a_served_crop_shows_the_pixels_openslide_reads(real_vs_synthetic_study):
    import openslide

    prepared = prepare(load_study(real_vs_synthetic_study), progress=False)
    case = next(c for c in prepared.cases if c.source.endswith(".svs"))
    x, y, size = (round(v) for v in case.crop[:3])  # pfid crops fall between pixels; OpenSlide reads whole ones
    with openslide.OpenSlide(case.source) as slide:
        region = slide.read_region((x, y), 0, (size, size)).convert("RGB").resize((384, 384), Image.Resampling.LANCZOS)
    served = np.asarray(Image.open(prepared.workdir / STATIC / f"{case.id}.jpg").convert("RGB")).astype(float)
    assert np.abs(served - np.asarray(region, dtype=float)).mean() < 4.0


def test_preparing_again_reuses_the_rendered_cases(real_vs_synthetic_study, monkeypatch):
    first = prepare(load_study(real_vs_synthetic_study), progress=False)

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr("study_app.prepare.render_case", no_rendering)
    again = prepare(load_study(real_vs_synthetic_study), progress=False)
    assert again.cases == first.cases and open_prepared(first.workdir).cases == first.cases


def test_changing_the_cases_after_answers_is_refused_and_nothing_is_lost(real_vs_synthetic_study):
    prepared = prepare(load_study(real_vs_synthetic_study), progress=False)
    case = prepared.cases[0]
    AnswerStore(prepared.store_path).record("r1", case.id, case.arm, case.truth, "real", None, 1.0, 2.0, case.image_id)
    before = sorted((p.name, p.read_bytes()) for p in (prepared.workdir / STATIC).iterdir())
    values = yaml.safe_load(real_vs_synthetic_study.read_text())
    values["seed"] = 99
    real_vs_synthetic_study.write_text(yaml.safe_dump(values))
    with pytest.raises(UserError, match="changed .* after readers answered"):
        prepare(load_study(real_vs_synthetic_study), progress=False)
    with pytest.raises(UserError, match="changed since its cases were prepared"):
        open_prepared(prepared.workdir)  # the running app refuses too, rather than serving mismatched cases
    assert sorted((p.name, p.read_bytes()) for p in (prepared.workdir / STATIC).iterdir()) == before
    assert len(AnswerStore(prepared.store_path).all_answers()) == 1


def test_bad_sources_are_one_error_line(real_vs_synthetic_study, real_data, tmp_path, capsys):
    values = yaml.safe_load(real_vs_synthetic_study.read_text())
    empty = tmp_path / "empty"
    empty.mkdir()
    values["arms"][1]["synthetic"] = {"images": str(empty)}
    real_vs_synthetic_study.write_text(yaml.safe_dump(values))
    assert main(["prepare", str(real_vs_synthetic_study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no images found in") and err.count("\n") == 1

    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(real_data / "slides" / "broken.svs", broken / "broken.svs")
    values["arms"][1]["synthetic"] = {"images": str(broken)}
    real_vs_synthetic_study.write_text(yaml.safe_dump(values))
    assert main(["prepare", str(real_vs_synthetic_study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 unreadable") and "broken.svs" in err and "Traceback" not in err


def test_prepare_json_and_export(real_vs_synthetic_study, tmp_path, capsys):
    assert main(["prepare", str(real_vs_synthetic_study), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["arms"] == {"ARM-SLIDES": {"real": 4, "synthetic": 4}, "ARM-TILES": {"real": 4, "synthetic": 4}}
    prepared = open_prepared(load_study(real_vs_synthetic_study).workdir)
    case = prepared.cases[0]
    AnswerStore(prepared.store_path).record("r1", case.id, case.arm, case.truth, "synthetic", 4, 1.0, 3.5, case.image_id)
    out = tmp_path / "answers.csv"
    assert main(["export", str(real_vs_synthetic_study), "-o", str(out)]) == 0
    assert main(["score", str(out), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert sum(r["tp"] + r["fp"] for r in scored["arms"][case.arm]["readers"]) == 1
    assert main(["export", str(real_vs_synthetic_study), "-o", str(out)]) == 2  # never overwritten silently
    assert "already exists" in capsys.readouterr().err

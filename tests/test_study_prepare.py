"""Preparing a study: parity encoding of real and synthetic images, the study folder, and its guards."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from conftest import tissue_image
from PIL import Image, PngImagePlugin

from study_app.cli import main
from study_app.preparation.encodings import Encoding
from study_app.preparation.prepare import (
    MANIFEST,
    STATIC,
    open_prepared,
    prepare,
    settings_digest,
)
from study_app.preparation.rendering import SERVED_MTIME
from study_app.preparation.study import load_study
from study_app.store.database import AnswerStore
from urcdm.errors import UserError
from urcdm.pyramid import ArraySource, write_pyramid

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
        # JPEG, whose coded length follows the picture: accepted with a warning (tested below), so that
        # what is the same in every JPEG (tables, structure, padded length) is checked here.
        "display": {"size": 384, "format": "jpeg", "quality": 90, "parity": "warn"},
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
    assert prepared.display_side == 384  # every source (512 px tiles, crops of 512 px or more) is larger: the cap binds
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

    monkeypatch.setattr("study_app.preparation.prepare.render_case", no_rendering)
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
    assert "--skip-bad" not in err and "leave them out of the study file" in err  # prepare has no --skip-bad

    values["workdir"] = str(tmp_path / "new-run")  # a failed first prepare leaves no folder (nor a key) behind
    real_vs_synthetic_study.write_text(yaml.safe_dump(values))
    assert main(["prepare", str(real_vs_synthetic_study)]) == 2
    capsys.readouterr()
    assert not (tmp_path / "new-run").exists()
    assert main(["prepare", str(tmp_path)]) == 2
    assert "is a folder; give the study file" in capsys.readouterr().err


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


@pytest.fixture
def mixed_sizes_study(tmp_path):
    """Sources of three sizes: real images with centred squares of 300 and 400 px, and synthetic
    fixed-size crops of 352 px at full resolution (URCDM level 2). Served uncompressed, so pixels compare exactly."""
    real = tmp_path / "real"
    real.mkdir()
    Image.fromarray(tissue_image(340, 300, seed=1)).save(real / "a.png")   # 300 wide, 340 high: square side 300
    Image.fromarray(tissue_image(400, 420, seed=2)).save(real / "b.png")   # square side 400
    fake = tmp_path / "fake"
    fake.mkdir()
    write_pyramid(ArraySource(tissue_image(1024, 1024, seed=3)), fake / "fake.tiff", tile=256, quality=90, mpp=0.5,
                  overwrite=True)
    values = {"title": "t", "seed": 1, "display": {"size": 1024, "format": "raw"},
              "arms": [{"name": "A", "real": {"images": str(real)},
                        "synthetic": {"slides": str(fake / "fake.tiff"), "crops": {"n": 2, "level": 2, "size": 352}}}],
              "access": {"open": True}, "admin": {"secret_env": "X"}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def with_display_size(study_file, size: int) -> None:
    values = yaml.safe_load(study_file.read_text())
    values["display"]["size"] = size
    study_file.write_text(yaml.safe_dump(values))


def served_sizes(prepared) -> set[tuple[int, int]]:
    return {Image.open(prepared.workdir / STATIC / f"{case.id}.png").size for case in prepared.cases}


def test_one_display_side_for_the_study_the_smallest_source_side_capped(mixed_sizes_study, capsys):
    prepared = prepare(load_study(mixed_sizes_study), progress=False)
    assert prepared.display_side == 300 and served_sizes(prepared) == {(300, 300)}
    assert prepared.summary()["display"] == {"side": 300, "cap": 1024, "format": "raw", "quality": 92,
                                             "bytes_per_case": len(Encoding("raw").encode(np.zeros((300, 300, 3), np.uint8)))}
    assert {(prepared.workdir / STATIC / f"{c.id}.png").stat().st_size for c in prepared.cases} == {
        prepared.summary()["display"]["bytes_per_case"]}
    manifest = json.loads((prepared.workdir / MANIFEST).read_text())
    assert (manifest["display_side"], manifest["source_side"]) == (300, 300)
    assert "3 of 4 cases are larger" in capsys.readouterr().err  # the 400 px image and the two 352 px crops
    # The smallest case is shown exactly as it is: one source pixel per served pixel, not resampled.
    smallest = next(c for c in prepared.cases if c.source.endswith("a.png"))
    served = np.asarray(Image.open(prepared.workdir / STATIC / f"{smallest.id}.png"))
    assert np.array_equal(served, tissue_image(340, 300, seed=1)[20:320])
    assert open_prepared(prepared.workdir).display_side == 300

    with_display_size(mixed_sizes_study, 256)  # a cap below every source binds
    prepared = prepare(load_study(mixed_sizes_study), progress=False)
    assert prepared.display_side == 256 and served_sizes(prepared) == {(256, 256)}
    assert prepared.summary()["display"]["side"] == 256


def test_fixed_size_crops_are_shown_one_slide_pixel_per_pixel(mixed_sizes_study, tmp_path):
    """All crops 352 px at full resolution: served at 352, each pixel the slide's own."""
    slides = {"fake.tiff": tissue_image(1024, 1024, seed=3), "other.tiff": tissue_image(900, 1100, seed=5)}
    write_pyramid(ArraySource(slides["other.tiff"]), tmp_path / "other.tiff", tile=256, quality=90, mpp=0.5,
                  overwrite=True)
    values = yaml.safe_load(mixed_sizes_study.read_text())
    values["arms"][0]["real"] = {"slides": str(tmp_path / "other.tiff"), "crops": {"n": 2, "level": 2, "size": 352}}
    mixed_sizes_study.write_text(yaml.safe_dump(values))
    prepared = prepare(load_study(mixed_sizes_study), progress=False)
    assert prepared.display_side == 352 and served_sizes(prepared) == {(352, 352)}
    for case in prepared.cases:
        x, y, size = case.crop[:3]
        assert size == 352
        served = np.asarray(Image.open(prepared.workdir / STATIC / f"{case.id}.png")).astype(float)
        source = slides[case.source.rsplit("/", 1)[-1]][y:y + 352, x:x + 352]
        assert np.abs(served - source).mean() < 3.0  # the pyramid's tiles are JPEG q90


def test_a_cap_that_does_not_bind_is_not_a_change(mixed_sizes_study, monkeypatch):
    prepared = prepare(load_study(mixed_sizes_study), progress=False)
    case = prepared.cases[0]
    AnswerStore(prepared.store_path).record("r1", case.id, case.arm, case.truth, "real", None, 1.0, 2.0, case.image_id)

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr("study_app.preparation.prepare.render_case", no_rendering)
    with_display_size(mixed_sizes_study, 2048)  # the cases stay at 300 px: nothing readers see changes
    assert prepare(load_study(mixed_sizes_study), progress=False).cases == prepared.cases
    assert open_prepared(prepared.workdir).display_side == 300
    with_display_size(mixed_sizes_study, 200)  # would shrink every case: refused once readers answered
    with pytest.raises(UserError, match="changed .* after readers answered"):
        prepare(load_study(mixed_sizes_study), progress=False)
    with pytest.raises(UserError, match="changed since its cases were prepared"):
        open_prepared(prepared.workdir)


def test_a_study_prepared_before_display_sides_keeps_its_answered_cases(mixed_sizes_study, monkeypatch):
    """Manifests written when every case was resized to display.size carry no display side."""
    prepared = prepare(load_study(mixed_sizes_study), progress=False)
    path = prepared.workdir / MANIFEST
    manifest = json.loads(path.read_text())
    del manifest["display_side"], manifest["source_side"], manifest["display_format"]
    manifest["settings"] = settings_digest(prepared.study)  # the digest as it was: of the cap
    path.write_text(json.dumps(manifest))
    legacy = open_prepared(prepared.workdir)
    assert legacy.display_side == 1024 and legacy.summary()["display"]["side"] == 1024

    rendered = []
    monkeypatch.setattr("study_app.preparation.prepare.render_case", lambda *args: rendered.append(args) or "x" * 16)
    case = prepared.cases[0]
    AnswerStore(prepared.store_path).record("r1", case.id, case.arm, case.truth, "real", None, 1.0, 2.0, case.image_id)
    assert prepare(load_study(mixed_sizes_study), progress=False).display_side == 1024 and not rendered


def demo_images() -> dict[str, np.ndarray]:
    from evaluation.demo_data import degraded_versions
    from urcdm.sample_data import immunohistochemistry_micrograph

    micrograph = immunohistochemistry_micrograph()
    return {"real": micrograph, **degraded_versions(micrograph)}


def footprint(case) -> tuple[int, int, int]:
    """(x, y, size) of a demo case in the micrograph's own coordinates (its slide is one quadrant)."""
    from study_app.preparation.demo import SLIDES

    _, (qx, qy) = SLIDES[case.source.rsplit("/", 1)[-1][:-len(".tiff")]]
    x, y, size = (int(v) for v in case.crop[:3])
    return qx + x, qy + y, size


def test_the_demo_is_shown_one_micrograph_pixel_per_pixel(demo_study_template):
    """Every demo case is served at its crop's own size, uncompressed, and its pixels are the
    micrograph's (or its degraded version's) at the crop's coordinates: 1:1 in the viewer is one
    source pixel."""
    from study_app.preparation.demo import CROP_SIZE, SLIDES

    prepared = open_prepared(demo_study_template[0] / "study-run")
    assert prepared.display_side == CROP_SIZE == 128 and prepared.encoding.format == "raw"
    images = demo_images()
    for case in prepared.cases:
        x, y, size = footprint(case)
        assert size == CROP_SIZE
        served = np.asarray(Image.open(prepared.workdir / STATIC / f"{case.id}.png").convert("RGB")).astype(float)
        assert served.shape == (size, size, 3)
        region = images[SLIDES[case.source.rsplit("/", 1)[-1][:-len(".tiff")]][0]][y:y + size, x:x + size]
        # One JPEG generation (the pyramid's tiles at q95; the served file is lossless) differs by about
        # 1.5 levels on average; the same crop one pixel off differs by about 7 (real) or more.
        assert np.abs(served - region).mean() < 2.5, case


def test_the_demo_slides_are_four_quadrants_of_the_micrograph_as_they_are(demo_study_template):
    """No mirrored or tiled region: each demo slide is one 256-px quadrant of scikit-image's micrograph
    (or of its degraded version), and no two slides share any tissue."""
    from study_app.preparation.demo import QUADRANT, SLIDES
    from urcdm.slides import open_slide

    images = demo_images()
    assert len({corner for _, corner in SLIDES.values()}) == 4  # four different quadrants
    for name, (image, (x, y)) in SLIDES.items():
        with open_slide(demo_study_template[0] / "slides" / f"{name}.tiff") as slide:
            assert slide.dimensions == (QUADRANT, QUADRANT), name
            pixels = slide.read_region(0, 0, QUADRANT, QUADRANT).astype(float)
        assert np.abs(pixels - images[image][y:y + QUADRANT, x:x + QUADRANT]).mean() < 2.5, name  # JPEG q95 tiles


def overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0)


def test_demo_readers_never_meet_the_same_tissue_as_real_and_synthetic_and_each_arm_is_crossed(demo_study_template):
    """Every real crop a reader sees shares no pixel of tissue with any synthetic crop they see; every
    reader gets cases_per_reader cases of each arm, the same ones, so each arm is a fully crossed
    design that MRMC analyses with all its cases."""
    from study_app.preparation.demo import CASES_PER_READER
    from study_app.statistics.mrmc_answers import arm_mrmc, select_arm_designs
    from study_app.statistics.scoring import Answer

    prepared = open_prepared(demo_study_template[0] / "study-run")
    readers = sorted(prepared.study.readers)
    shown = {reader: prepared.reader_cases(reader) for reader in readers}
    for reader, cases in shown.items():
        real = [footprint(c) for c in cases if c.truth == "real"]
        synthetic = [footprint(c) for c in cases if c.truth == "synthetic"]
        assert max(overlap(r, s) for r in real for s in synthetic) == 0, reader
        for arm in prepared.study.arms:
            truths = [c.truth for c in cases if c.arm == arm.name]
            assert truths.count("real") == truths.count("synthetic") == CASES_PER_READER // 2, (reader, arm.name)
    assert len({frozenset(c.id for c in cases) for cases in shown.values()}) == 1  # the same cases for everyone
    # Everyone answers everything: each arm's MRMC design keeps every answer.
    answers = [Answer(reader, c.id, c.arm, c.truth, "real" if (i + j) % 3 else "synthetic", 1 + (i + j) % 5)
               for j, reader in enumerate(readers) for i, c in enumerate(shown[reader])]
    for selection in select_arm_designs(answers):
        summary = arm_mrmc(selection)
        assert summary is not None and summary["answers_left_out"] == 0, selection.reason
        assert summary["cases"] == CASES_PER_READER and summary["readers"] == len(readers)


def test_a_study_prepared_as_jpeg_by_default_keeps_its_answered_cases_and_renders_unanswered_ones_blind(
        mixed_sizes_study, monkeypatch, capsys):
    """Before encodings were resolved, a study file without `format` was served as JPEG; its manifest
    has no display_format. Answered, it goes on as it is; unanswered, it is rendered again uncompressed."""
    values = yaml.safe_load(mixed_sizes_study.read_text())
    values["display"] = {"size": 1024, "format": "jpeg", "parity": "warn"}
    mixed_sizes_study.write_text(yaml.safe_dump(values))
    prepared = prepare(load_study(mixed_sizes_study), progress=False)
    values["display"] = {"size": 1024}  # the study file as it was written then
    mixed_sizes_study.write_text(yaml.safe_dump(values))
    path = prepared.workdir / MANIFEST
    manifest = json.loads(path.read_text())
    del manifest["display_format"]
    manifest["settings"] = settings_digest(load_study(mixed_sizes_study), 300, "jpeg")  # the digest as it was then
    path.write_text(json.dumps(manifest))
    legacy = open_prepared(prepared.workdir)
    assert legacy.encoding.format == "jpeg" and legacy.image_url_path(legacy.cases[0], "t").split("?")[0].endswith(".jpg")

    case = prepared.cases[0]
    store = AnswerStore(prepared.store_path)
    store.record("r1", case.id, case.arm, case.truth, "real", None, 1.0, 2.0, case.image_id)
    monkeypatch.setattr("study_app.preparation.prepare.render_case", lambda *args: pytest.fail("rendered again"))
    assert prepare(load_study(mixed_sizes_study), progress=False).encoding.format == "jpeg"  # answered: kept
    monkeypatch.undo()

    store.close()
    for answers in prepared.workdir.glob("answers.sqlite*"):
        answers.unlink()
    again = prepare(load_study(mixed_sizes_study), progress=False)  # not answered: rendered again, blind
    assert again.encoding.format == "raw" and "rendering them again" in capsys.readouterr().err
    assert {p.suffix for p in (again.workdir / STATIC).iterdir()} == {".png"}

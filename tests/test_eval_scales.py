"""``urcdm-eval scales``: metrics at each magnification with a real-vs-real noise floor, and its plot."""

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import linalg

from evaluation.cli import main
from evaluation.crops import CropProtocol
from evaluation.scales import REAL_VS_REAL, Scale, fake_label, parse_scales, real_splits, scale_rows
from evaluation.comparison import MetricSettings
from evaluation.stats import FeatureStats
from urcdm.errors import UserError
from urcdm.slides import open_slide

DETAIL = ["--extractor", "tiny_extractors:detail_energy", "--workers", "0"]


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    m1, m2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def _stats(features: np.ndarray) -> FeatureStats:
    protocol = CropProtocol(mode="fixed", patch_size=8, image_size=8, span=8)
    return FeatureStats.from_features(features, protocol=protocol, extractor="x", fingerprint="0", seed=0,
                                      images=["a"], crops=np.zeros((len(features), 8)))


def test_splits_are_disjoint_seeded_halves():
    halves = real_splits(10, 5, 4, seed=3)
    assert len(halves) == 4
    for reference, held_back in halves:
        assert len(reference) == len(held_back) == 5 and not set(reference) & set(held_back)
    assert [h[0].tolist() for h in halves] == [h[0].tolist() for h in real_splits(10, 5, 4, seed=3)]
    assert len({tuple(h[0]) for h in halves}) > 1  # each split halves differently
    with pytest.raises(Exception, match="needs 12 real crops"):
        real_splits(11, 6, 1, seed=0)


def test_rows_recompute_the_metric_on_each_split():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 3)), rng.normal(0.5, 1.0, size=(30, 3))
    rows = scale_rows(Scale("s", span=8), _stats(real), {"gen": _stats(fake)}, 30, 3, 7, ("fd",), "space", MetricSettings())
    by_set = {row["set"]: row for row in rows}
    assert set(by_set) == {"gen", REAL_VS_REAL} and by_set["gen"]["metric"] == "fd_space"
    expected_floor, expected_gen = [], []
    for reference, held_back in real_splits(60, 30, 3, 7):
        expected_floor.append(_scipy_fd(real[reference], real[held_back]))
        expected_gen.append(_scipy_fd(real[reference], fake))
    assert by_set[REAL_VS_REAL]["values"] == pytest.approx(expected_floor, rel=1e-6)
    assert by_set["gen"]["values"] == pytest.approx(expected_gen, rel=1e-6)
    assert by_set["gen"]["std"] == pytest.approx(np.std(expected_gen, ddof=1), rel=1e-6)


def test_scale_lists_and_labels():
    assert [s.level for s in parse_scales()] == [0, 1, 2]
    # the plot's axis reads coarse to fine, whatever order the scales were typed in
    assert [s.span for s in parse_scales(spans="512,64")] == [512, 64] == [s.span for s in parse_scales(spans="64,512")]
    assert [s.mpp for s in parse_scales(mpps="0.5,2")] == [2.0, 0.5]
    assert [s.level for s in parse_scales(levels="2,0")] == [0, 2]
    with pytest.raises(UserError, match="named twice"):
        parse_scales(spans="256,256")
    assert [s.span for s in parse_scales(config_spans=(512, 128), config_name="tiny")] == [512, 128]
    assert fake_label("build/samples/urcdm/*.tiff") == "urcdm" and fake_label("runs/outpaint") == "outpaint"
    with pytest.raises(Exception, match="comma-separated"):
        parse_scales(spans="512,big")


@pytest.fixture(scope="module")
def halves(real_data, tmp_path_factory):
    """Two halves of one real region: the reference, the other half as is, and the other half blurred."""
    root = tmp_path_factory.mktemp("scales")
    with open_slide(real_data / "slides" / "cmu-1-small-region.svs") as slide:
        rgb = slide.read_region(600, 1000, 1000, 1800, out_size=(1000, 1800))  # the tissue column
    for name, pixels in (("real", rgb[:900]), ("same", rgb[900:]), ("blurred", rgb[900:])):
        (root / name).mkdir()
        image = Image.fromarray(np.ascontiguousarray(pixels))
        (image.filter(ImageFilter.GaussianBlur(2)) if name == "blurred" else image).save(root / name / f"{name}.png")
    return root


def test_blur_shows_at_full_resolution_not_zoomed_out(halves, tmp_path, capsys):
    out = tmp_path / "scales"
    argv = ["scales", str(halves / "real"), str(halves / "same"), str(halves / "blurred"), "-o", str(out),
            "--spans", "768,64", "--patch-size", "64", "--n", "24", "--splits", "3", "--min-tissue", "0.5", "--json", *DETAIL]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["scales.csv", "scales.json", "scales.png", "scales.svg"]
    assert json.loads((out / "scales.json").read_text())["rows"] == result["rows"]
    assert len(list(csv.DictReader(open(out / "scales.csv")))) == 2 * 3  # scales x (two sets + the floor)
    assert (out / "scales.png").read_bytes()[:4] == b"\x89PNG" and b"<svg" in (out / "scales.svg").read_bytes()[:500]
    rows = {(r["scale"], r["set"]): r for r in result["rows"]}
    assert all(len(r["values"]) == 3 and r["n_reference"] == 24 for r in rows.values())
    coarse, fine = "768 px", "64 px"
    # Blur is invisible zoomed out, where both halves are alike; at full resolution it stands out
    # far above both the other (sharp) half and the real-vs-real noise floor.
    gap = lambda scale: rows[(scale, "blurred")]["mean"] - rows[(scale, "same")]["mean"]  # noqa: E731
    assert gap(fine) > 3 * (rows[(fine, "blurred")]["std"] + rows[(fine, "same")]["std"])
    assert gap(fine) > 5 * abs(gap(coarse))
    assert rows[(fine, "blurred")]["mean"] > rows[(fine, REAL_VS_REAL)]["mean"] + 3 * rows[(fine, REAL_VS_REAL)]["std"]
    # The folder is never replaced without --overwrite.
    before = (out / "scales.json").read_bytes()
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert (out / "scales.json").read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--spans", "32"], "never upsampled"),
    (["--mpp", "0.1"], "finer than the image's own"),
    (["--labels", "a,b"], "names 2 sets for 1"),
    (["--metric", "cmmd"], "CLIP"),
])  # --splits 0 is refused while parsing: test_eval_cli
def test_bad_scale_requests_stop_with_one_line(real_data, halves, tmp_path, capsys, extra, message):
    # --mpp needs a slide with a recorded resolution (0.499 µm/px): the real slide itself.
    real = str(real_data / "slides" / "cmu-1-small-region.svs") if "--mpp" in extra else str(halves / "real")
    code = main(["scales", real, str(halves / "same"), "-o", str(tmp_path / "out"), "--patch-size", "64", "--n", "4",
                 *extra, *DETAIL])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.strip().splitlines()[-1].startswith("error: ")
    assert message in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "out").exists()

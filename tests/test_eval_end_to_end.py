"""End to end on the real tiles and slides, against references computed here with PIL and scipy
from the same images (independently of our slide layer and metric code)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from conftest import TINY_EXTRACTOR, tile_lists
from evaluation.cli import main
from tiny_extractors import colour_texture


# Metrics in a plug-in's space carry its name: never mistaken for the Inception's FID.
SPACE = "tiny_extractors_colour_texture"
PFD = f"pfd_{SPACE}"


def _run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _reference_features(npz_path, patch, image_size):
    """Re-read every stored crop with PIL alone (whole image, sub-pixel exact box) and extract."""
    with np.load(npz_path) as data:
        header, crops = json.loads(str(data["header"])), data["crops"]
    extractor, images, batch = colour_texture(), {}, []
    for index, x, y, size, frame_x, frame_y, frame_w, frame_h in crops:
        path = header["images"][int(index)]
        if path not in images:
            images[path] = Image.open(path).convert("RGB")
        # The frame alone, as anyres-gan resizes the square it cut, then the crop's exact box in it.
        frame = images[path].crop((int(frame_x), int(frame_y), int(frame_x + frame_w), int(frame_y + frame_h)))
        box = (x - frame_x, y - frame_y, x - frame_x + size, y - frame_y + size)
        crop = frame.resize((patch, patch), Image.Resampling.LANCZOS, box=box)
        crop = crop.resize((image_size, image_size), Image.Resampling.BICUBIC)
        batch.append(torch.from_numpy(np.asarray(crop).transpose(2, 0, 1).copy()))
    return extractor(torch.stack(batch)).numpy().astype(np.float64)


def _scipy_fid(a, b):
    m1, m2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def test_pfid_on_real_tiles_matches_a_scipy_reference(real_data, tmp_path, capsys):
    tissue, background = tile_lists(real_data, tmp_path)
    common = ["--n", "300", "--extractor", TINY_EXTRACTOR, "--workers", "0", "--patch-size", "128"]
    for listing, out in ((tissue, "real.npz"), (background, "fake.npz")):
        assert main(["stats", str(listing), "-o", str(tmp_path / out), *common]) == 0
    capsys.readouterr()
    result = _run_json(capsys, "pfid", str(tmp_path / "real.npz"), str(tmp_path / "fake.npz"), *common)

    real = _reference_features(tmp_path / "real.npz", 128, 64)
    fake = _reference_features(tmp_path / "fake.npz", 128, 64)
    with np.load(tmp_path / "real.npz") as data:
        assert np.abs(data["features"] - real).max() < 0.02  # same pixels up to resampling rounding
    assert result[PFD] == pytest.approx(_scipy_fid(real, fake), rel=0.02)
    assert result["n_real"] == result["n_fake"] == 300

    # Directly from the images, the same crops are drawn (seeded by --seed and the inputs).
    direct = _run_json(capsys, "pfid", str(tissue), str(background), *common)
    assert direct[PFD] == pytest.approx(result[PFD], rel=1e-9)
    # Tissue against tissue (other crops) is far closer than tissue against glass.
    itself = _run_json(capsys, "pfid", str(tissue), str(tissue), *common, "--seed", "0")
    assert itself[PFD] == pytest.approx(0.0, abs=1e-6)
    other_crops = _run_json(capsys, "pfid", str(tmp_path / "real.npz"), str(tissue), *common, "--seed", "1")
    assert 0 < other_crops[PFD] < result[PFD] / 3


def test_all_metrics_on_real_slides_and_tiles(real_data, tmp_path, capsys):
    tissue, _ = tile_lists(real_data, tmp_path)
    result = _run_json(capsys, "all", str(real_data / "slides" / "cmu-1-small-region.svs"), str(tissue),
                       "--n", "150", "--extractor", TINY_EXTRACTOR, "--workers", "2", "--min-tissue", "0.5")
    names = (PFD, f"kd_{SPACE}", f"kd_{SPACE}_std", f"precision_{SPACE}", f"recall_{SPACE}", f"density_{SPACE}",
             f"coverage_{SPACE}")
    assert all(name in result for name in names) and "pfid" not in result and result["space"] == SPACE
    assert not any(name.startswith("cmmd") for name in result)  # CMMD is defined in CLIP spaces only
    assert result[PFD] > 0 and 0 <= result[f"precision_{SPACE}"] <= 1 and 0 <= result[f"recall_{SPACE}"] <= 1
    assert result[f"density_{SPACE}"] >= 0 and 0 <= result[f"coverage_{SPACE}"] <= 1
    assert result["standard_extractor"] is False and result["protocol"]["min_tissue"] == 0.5

"""The outpainting baseline (``--method outpaint``): one context-free cascade at the last level's
magnification, trained on the real slides and outpainting a whole slide in raster order."""

from __future__ import annotations

import json
import shutil

import numpy as np
import openslide
import pytest

from urcdm.sampling.backends import UpsampleBackend
from urcdm.cli import main
from urcdm.config import load_config, tiny
from urcdm.training.pairs import LevelWindows
from urcdm.errors import UserError
from urcdm.models import build_imagen, load_cascade, read_checkpoint
from urcdm.sampling.sampler import sample_slide


class RecordingBackend(UpsampleBackend):
    """Upsampling, noting for every call the level and whether contexts came with it."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = []

    def generate(self, level, contexts, known, masks, seeds):
        self.calls.append((level, contexts is not None, len(seeds)))
        return super().generate(level, contexts, known, masks, seeds)


@pytest.fixture(scope="module")
def outpaint_models(training_slides, micro_config_file, tmp_path_factory):
    """The baseline's three tiny unets, for the micro slide (3 x 3 patches) to keep sampling short."""
    models = tmp_path_factory.mktemp("outpaint-models")
    assert main(["train-all", "--config", str(micro_config_file), "--method", "outpaint", "--data", str(training_slides),
                 "--out", str(models), "--steps", "6", "--json"]) == 0
    return models


def test_outpainting_sees_no_lower_magnification(tmp_path):
    config = tiny()
    backend = RecordingBackend(config)
    manifest = sample_slide(config, backend, tmp_path / "o.tiff", seed=1, progress=False, method="outpaint")
    assert backend.calls == [(2, False, 1)] * 81  # raster: the patches one by one, none with a context
    assert [entry["level"] for entry in manifest["levels"]] == [2] and manifest["scheduler"] == "raster"
    assert not (tmp_path / "o.level0.png").exists() and not (tmp_path / "o.level1.png").exists()
    urcdm = RecordingBackend(config)
    sample_slide(config, urcdm, tmp_path / "u.tiff", seed=1, progress=False)
    assert {(level, with_context) for level, with_context, _ in urcdm.calls} == {(0, False), (1, True), (2, True)}


def test_outpainting_refuses_what_only_the_cascades_have(tmp_path):
    config = tiny()
    with pytest.raises(UserError, match="--level0 needs the urcdm method"):
        sample_slide(config, UpsampleBackend(config), tmp_path / "o.tiff", level0=np.zeros((64, 64, 3), np.uint8),
                     progress=False, method="outpaint")
    with pytest.raises(UserError, match="for method outpaint"):
        LevelWindows.of(config, 1, "outpaint")
    assert LevelWindows.of(config, 2, "outpaint").context_span is None
    assert LevelWindows.of(config, 2).context_span == config.levels[1].span


def test_the_outpainting_cascade_has_no_context_channels():
    config = tiny()
    conditioned, free = build_imagen(config, 2), build_imagen(config, 2, method="outpaint")
    assert all(u.cond_images_channels == 3 for u in conditioned.unets)
    assert all(u.cond_images_channels == 0 for u in free.unets)
    with pytest.raises(UserError, match="for method outpaint"):
        build_imagen(config, 0, method="outpaint")


def test_trained_outpainting_models_sample_a_slide(outpaint_models, tmp_path, capsys):
    for unet in range(3):
        checkpoint = read_checkpoint(outpaint_models / f"outpaint-u{unet}" / "checkpoint.pt")
        assert (checkpoint["method"], checkpoint["level"], checkpoint["unet"], checkpoint["step"]) == ("outpaint", 2, unet, 6)
    capsys.readouterr()
    out = tmp_path / "baseline.tiff"
    assert main(["sample", "--models", str(outpaint_models), "--method", "outpaint", "--steps", "2,2,2",
                 "--out", str(out), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    # --steps is a sampling choice: checkpoints trained with the config's steps still load
    assert [u["sample_steps"] for u in json.loads(out.with_suffix(".json").read_text())["config"]["unets"]] == [2, 2, 2]
    assert manifest["method"] == "outpaint" and manifest["model_calls"] == 9 and manifest["levels"][0]["waves"] == 9
    with openslide.OpenSlide(str(out)) as slide:
        assert slide.dimensions == (176, 176)
        assert np.asarray(slide.read_region((0, 0), 0, (176, 176)).convert("RGB")).std() > 0


def test_models_of_one_method_are_refused_as_the_other(outpaint_models, micro_config_file, tmp_path, capsys):
    assert main(["sample", "--models", str(outpaint_models), "--out", str(tmp_path / "s.tiff")]) == 2
    assert "l0u0" in capsys.readouterr().err
    config = load_config(micro_config_file)
    paths = {unet: outpaint_models / f"outpaint-u{unet}" / "checkpoint.pt" for unet in range(3)}
    with pytest.raises(UserError, match="was trained for method outpaint, not urcdm"):
        load_cascade(config, 2, paths)
    disguised = tmp_path / "models"
    for level in range(3):  # outpainting checkpoints where the urcdm cascades belong
        for unet in range(3):
            (disguised / f"l{level}u{unet}").mkdir(parents=True)
            shutil.copy(paths[unet], disguised / f"l{level}u{unet}" / "checkpoint.pt")
    capsys.readouterr()
    assert main(["sample", "--models", str(disguised), "--out", str(tmp_path / "d.tiff")]) == 2
    assert "was trained for method outpaint, not urcdm" in capsys.readouterr().err
    assert not (tmp_path / "d.tiff").exists()

"""Training the nine tiny unets on the real slides, exact resume after SIGKILL, checkpoints and their guards."""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import openslide
import pytest
import torch
import yaml

from urcdm.cli import main
from urcdm.config import tiny
from urcdm.training.index import build_index, list_slides, slides_mpp
from urcdm.training.pairs import LevelWindows, SlidePairs, unit_float
from urcdm.training.windows import batch_codes
from urcdm.errors import UserError
from urcdm.models import build_imagen, load_cascade, read_checkpoint, sample
from urcdm.sample_cli import _checkpoints
from urcdm.training.loop import Job, save_checkpoint, train

JOBS = [(level, unet) for level in range(3) for unet in range(3)]


@pytest.fixture(scope="module")
def slides(training_slides):
    return training_slides


@pytest.fixture(scope="module")
def trained(slides, tmp_path_factory):
    """All nine tiny unets, 20 steps each: {(level, unet): (result, run folder)}."""
    root = tmp_path_factory.mktemp("runs")
    return {(level, unet): (train(Job(tiny(), level, unet, slides, root / f"l{level}u{unet}", steps=20, progress=False)),
                            root / f"l{level}u{unet}") for level, unet in JOBS}


@functools.lru_cache(maxsize=None)
def fixed_batches(slides: Path, level: int) -> tuple:
    """Four fixed batches of 16 training pairs of the level (read once for its three unets)."""
    config = tiny()
    windows = LevelWindows.of(config, level)
    paths, positions = build_index(list_slides(slides), windows.span, config.white_threshold)
    pairs = SlidePairs(paths, positions, windows)
    return tuple(tuple(unit_float(torch.stack(t)) for t in zip(*(pairs[c] for c in batch_codes(123, i, 16, len(positions)))))
                 for i in range(4))


def fixed_batch_loss(slides: Path, level: int, unet: int, state: dict | None) -> float:
    """Loss on fixed pairs with fixed noise and timesteps, so two weight sets are compared like for like."""
    torch.manual_seed(0)  # the initial weights of a run with --seed 0
    imagen = build_imagen(tiny(), level, only=unet)
    if state is not None:
        imagen.unets[unet].load_state_dict(state)
    losses = []
    with torch.no_grad():
        for i, (target, context) in enumerate(fixed_batches(slides, level)):
            torch.manual_seed(1000 + i)
            losses.append(float(imagen(target, unet=imagen.unets[unet], unet_number=unet + 1,
                                       cond_images=context if level else None)))
    return float(np.mean(losses))


@pytest.mark.parametrize("level, unet", JOBS)
def test_every_tiny_unet_learns_from_the_real_slides(trained, slides, level, unet):
    result, run = trained[(level, unet)]
    assert result["trained_steps"] == 20 and np.isfinite(result["losses"]).all()
    with open(run / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 21)) and rows[-1]["val_loss"]
    state = read_checkpoint(run / "checkpoint.pt")["unet_state"]
    assert fixed_batch_loss(slides, level, unet, state) < fixed_batch_loss(slides, level, unet, None)


@pytest.mark.parametrize("level", [0, 2])
def test_trained_checkpoints_load_and_sample_images_of_the_patch_size(trained, level):
    config = tiny()
    imagen = load_cascade(config, level, {unet: trained[(level, unet)][1] / "checkpoint.pt" for unet in range(3)})
    torch.manual_seed(0)
    context = torch.rand(2, 3, config.patch_px, config.patch_px) if level else None
    images = sample(imagen, batch_size=2, cond_images=context)
    assert images.shape == (2, 3, config.patch_px, config.patch_px)
    assert torch.isfinite(images).all() and 0 <= images.min() and images.max() <= 1


def test_a_checkpoint_for_other_geometry_or_another_unet_is_refused(trained, tmp_path):
    config = tiny()
    checkpoint = trained[(1, 0)][1] / "checkpoint.pt"
    with pytest.raises(UserError, match="is level 1 unet 0, not level 1 unet 1"):
        load_cascade(config, 1, {0: checkpoint, 1: checkpoint, 2: checkpoint})
    other = replace(config, fill_rgb=(255, 255, 255))
    with pytest.raises(UserError, match="differs in fill_rgb"):
        load_cascade(other, 1, {0: checkpoint, 1: trained[(1, 1)][1] / "checkpoint.pt", 2: trained[(1, 2)][1] / "checkpoint.pt"})
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        read_checkpoint(junk)
    with pytest.raises(UserError, match="no checkpoint for unet"):
        load_cascade(config, 1, {0: checkpoint})


def _train_command(config: Path, slides: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "urcdm.cli", "train", "--config", str(config), "--level", "1", "--unet", "2",
            "--data", str(slides), "--out", str(out), "--steps", str(steps), "--json"]


def test_a_run_killed_with_sigkill_and_resumed_ends_with_the_same_weights(slides, tmp_path, capsys):
    config_file = tmp_path / "tiny.yaml"
    values = tiny().to_dict()
    values["train"]["checkpoint_every"] = 5
    config_file.write_text(yaml.safe_dump(values))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    straight = tmp_path / "straight"  # the same command, in this process (one interpreter start less)
    assert main(_train_command(config_file, slides, straight, 14)[3:]) == 0
    capsys.readouterr()

    resumed = tmp_path / "resumed"
    process = subprocess.Popen(_train_command(config_file, slides, resumed, 14), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill between the checkpoint at step 10 and the end
        log = resumed / "log.csv"
        if log.exists() and len(log.read_text().splitlines()) >= 1 + 11:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert read_checkpoint(resumed / "checkpoint.pt")["step"] == 10
    finished = subprocess.run(_train_command(config_file, slides, resumed, 14), check=True, capture_output=True, env=env)
    assert b'"steps": 14' in finished.stdout

    a, b = read_checkpoint(straight / "checkpoint.pt"), read_checkpoint(resumed / "checkpoint.pt")
    for key in ("unet_state", "ema_unet"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key]), key
    with open(resumed / "log.csv") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == list(range(1, 15))
    capsys.readouterr()
    assert main(_train_command(config_file, slides, resumed, 12)[3:]) == 0  # fewer steps than it has
    again = json.loads(capsys.readouterr().out)
    assert (again["steps"], again["trained_steps"]) == (14, 0)  # where the checkpoint is, not the 12 asked


def test_resuming_with_other_slides_or_another_unet_is_refused(trained, slides, tmp_path, capsys):
    run = trained[(0, 0)][1]
    assert main(["train", "--config", "tiny", "--level", "0", "--unet", "1", "--data", str(slides), "--out", str(run)]) == 2
    assert "is level 0 unet 0, not level 0 unet 1" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(next(slides.iterdir()), other / "one.svs")
    assert main(["train", "--config", "tiny", "--level", "0", "--unet", "0", "--data", str(other), "--out", str(run)]) == 2
    assert "other slides" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--level", "0", "--unet", "0", "--data", str(tmp_path / "none"),
                 "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def _models_folder(trained, root: Path, replaced: dict | None = None) -> Path:
    """The nine runs linked into one --models folder, some of them replaced by other run folders."""
    root.mkdir()
    for level, unet in JOBS:
        os.symlink((replaced or {}).get((level, unet), trained[(level, unet)][1]), root / f"l{level}u{unet}")
    return root


def test_a_bad_checkpoint_of_the_last_level_is_refused_before_the_first_is_sampled(trained, tmp_path, capsys):
    """Every checkpoint read and checked when the run starts, not when its level does (hours later on
    a paper slide), and nothing written: no work folder, no slide."""
    swapped = _models_folder(trained, tmp_path / "swapped", {(1, 0): trained[(2, 0)][1], (2, 0): trained[(1, 0)][1]})
    truncated_run = tmp_path / "truncated-run"
    truncated_run.mkdir()
    whole = (trained[(2, 2)][1] / "checkpoint.pt").read_bytes()
    (truncated_run / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    truncated = _models_folder(trained, tmp_path / "truncated", {(2, 2): truncated_run})
    for models, said in [(swapped, "is level 2 unet 0, not level 1 unet 0"), (truncated, "not a readable checkpoint")]:
        out = tmp_path / f"{models.name}.tiff"
        assert main(["sample", "--models", str(models), "--out", str(out), "--steps", "2,1,1", "--json"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, err
        assert not out.exists() and not (tmp_path / f".{out.name}.work").exists()


def test_train_refuses_an_out_that_is_a_file_and_leaves_it(slides, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("the user's notes")
    assert main(["train", "--config", "tiny", "--level", "0", "--unet", "0", "--data", str(slides), "--out", str(out),
                 "--steps", "1", "--json"]) == 2
    assert main(["train-all", "--config", "tiny", "--data", str(slides), "--out", str(out), "--steps", "1", "--json"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith(f"error: {out}: exists and is not a folder") for line in errors)
    assert out.read_text() == "the user's notes"


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    assert torch.load(path)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_too_little_disk_for_a_checkpoint_is_said_before_training(slides, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 1000, 1000))
    assert main(["train", "--config", "tiny", "--level", "0", "--unet", "0", "--data", str(slides),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "a checkpoint needs about" in err and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_the_training_slides_mpp_is_recorded_and_sampled_slides_carry_it(trained, real_data, tmp_path, capsys):
    # One training slide records 0.499 um/px and the other nothing: no one scale is known, none is recorded.
    assert read_checkpoint(trained[(2, 2)][1] / "checkpoint.pt")["slides_mpp"] is None
    cmu, tcga = real_data / "slides" / "cmu-1-small-region.svs", real_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    with openslide.OpenSlide(str(cmu)) as slide:
        cmu_mpp = float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
    assert slides_mpp([cmu, cmu]) == pytest.approx(cmu_mpp) and slides_mpp([cmu, tcga]) is None

    # A last-level unet trained on slides of one scale: the sampled slide gets it, at its own pixel size.
    run = tmp_path / "l2u2"
    run.mkdir()
    state = torch.load(trained[(2, 2)][1] / "checkpoint.pt", weights_only=False)
    torch.save({**state, "slides_mpp": cmu_mpp}, run / "checkpoint.pt")
    models = _models_folder(trained, tmp_path / "models", {(2, 2): run})
    _, mpp = _checkpoints(models, tiny(), "urcdm")  # what `urcdm sample --models` records without --mpp
    windows = LevelWindows.of(tiny(), 2)
    assert mpp == pytest.approx(cmu_mpp * windows.span / windows.patch_px)

"""``urcdm prepare-pairs``: training pairs written once into zarr shards are the very pairs the slides
give, an interrupted preparation finishes where it stopped, and training from shards ends with the
same weights as training from the slides, resumed or not."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from urcdm.cli import main
from urcdm.config import tiny
from urcdm.errors import OutputExistsError, UserError
from urcdm.models import read_checkpoint
from urcdm.training import shards as shards_module
from urcdm.training.index import build_index, list_slides
from urcdm.training.loop import Job, train
from urcdm.training.pairs import LevelWindows, SlidePairs, StepBatches
from urcdm.training.shards import SHARD, ShardPairs, pairs_folder, prepare_pairs


def direct_pairs(slides: Path, level: int) -> SlidePairs:
    config = tiny()
    windows = LevelWindows.of(config, level)
    paths, positions = build_index(list_slides(slides), windows.span, config.white_threshold)
    return SlidePairs(paths, positions, windows)


@pytest.fixture(scope="module")
def level1_pairs(training_slides, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pairs")
    prepare_pairs(tiny(), 1, "urcdm", training_slides, out, workers=2, progress=False)
    return out


def read_back(folder: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(folder, mode="r")
    return {name: group[name][:] for name in ("positions", "targets", "written")}


def test_shards_hold_exactly_the_pairs_the_slides_give(training_slides, level1_pairs):
    direct = direct_pairs(training_slides, 1)
    stored = ShardPairs.open(level1_pairs, tiny(), 1, "urcdm")
    assert np.array_equal(stored.positions, direct.positions) and len(stored) == len(direct)
    codes = np.random.default_rng(0).choice(len(direct), size=150, replace=False)
    for code in codes:  # every transform, windows at the slides' edges (filled) included
        (target, context), (want_target, want_context) = stored.pair(code), direct.pair(code)
        assert target.dtype == np.uint8 and np.array_equal(target, want_target), code
        assert np.array_equal(context, want_context), code
    # through DataLoader workers (each opens the group itself), as training reads them
    batches = StepBatches(seed=3, start=0, stop=2, batch_size=4, positions=len(direct.positions))
    for (target, context), codes in zip(DataLoader(stored, batch_sampler=batches, num_workers=2), batches):
        want = [direct[c] for c in codes]
        assert torch.equal(target, torch.stack([t for t, _ in want])) and torch.equal(context, torch.stack([c for _, c in want]))


def test_training_from_shards_and_resuming_ends_with_the_weights_of_training_from_slides(training_slides, level1_pairs, tmp_path):
    config = tiny()
    straight = train(Job(config, 1, 0, training_slides, tmp_path / "slides", steps=4, progress=False))
    train(Job(config, 1, 0, None, tmp_path / "shards", steps=2, progress=False, pairs=level1_pairs))
    resumed = train(Job(config, 1, 0, None, tmp_path / "shards", steps=4, progress=False, pairs=level1_pairs))
    assert resumed["resumed_from"] == 2 and resumed["slides"] == straight["slides"] == 2
    assert straight["train_positions"] == resumed["train_positions"]
    a, b = (read_checkpoint(run / "checkpoint.pt") for run in (tmp_path / "slides", tmp_path / "shards"))
    assert a["data"] == b["data"] and a["slides"] == b["slides"]
    for name, tensor in a["unet_state"].items():
        assert torch.equal(tensor, b["unet_state"][name]), name


def test_an_interrupted_preparation_finishes_where_it_stopped(training_slides, tmp_path, monkeypatch):
    config = tiny()
    prepare_pairs(config, 0, "urcdm", training_slides, tmp_path / "straight", progress=False)
    reads, original = [], shards_module._Rows.__getitem__

    def dies_after_40_windows(self, i):
        reads.append(i)
        if len(reads) > 40:
            raise KeyboardInterrupt
        return original(self, i)

    monkeypatch.setattr(shards_module._Rows, "__getitem__", dies_after_40_windows)
    with pytest.raises(KeyboardInterrupt):
        prepare_pairs(config, 0, "urcdm", training_slides, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(shards_module._Rows, "__getitem__", original)
    folder = pairs_folder(tmp_path / "resumed", "urcdm", 0)
    assert read_back(folder)["written"].sum() == 40 // SHARD
    with pytest.raises(UserError, match="incomplete"):
        ShardPairs.open(tmp_path / "resumed", config, 0, "urcdm")

    result = prepare_pairs(config, 0, "urcdm", training_slides, tmp_path / "resumed", progress=False)
    assert result["written_now"] == result["pairs"] - (40 // SHARD) * SHARD
    again = prepare_pairs(config, 0, "urcdm", training_slides, tmp_path / "resumed", progress=False)
    assert again["written_now"] == 0
    straight, resumed = read_back(pairs_folder(tmp_path / "straight", "urcdm", 0)), read_back(folder)
    for name in straight:
        assert np.array_equal(straight[name], resumed[name]), name


def test_pairs_of_another_geometry_are_refused_and_left_alone(training_slides, level1_pairs, tmp_path, capsys):
    folder = pairs_folder(level1_pairs, "urcdm", 1)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    other = tiny().__class__(**{**tiny().__dict__, "white_threshold": 0.5})
    with pytest.raises(OutputExistsError, match="white_threshold"):
        prepare_pairs(other, 1, "urcdm", training_slides, level1_pairs, progress=False)
    with pytest.raises(UserError, match="another geometry"):
        ShardPairs.open(level1_pairs, other, 1, "urcdm")
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before

    with pytest.raises(UserError, match="no pairs for level 2"):
        ShardPairs.open(level1_pairs, tiny(), 2, "urcdm")
    (tmp_path / "level0.zarr").mkdir()
    (tmp_path / "level0.zarr" / "notes.txt").write_text("mine")
    code = main(["prepare-pairs", "--config", "tiny", "--level", "0", "--data", str(training_slides), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "not a pairs folder" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "level0.zarr" / "notes.txt").read_text() == "mine"
    (tmp_path / "a-file").write_text("mine")
    code = main(["prepare-pairs", "--config", "tiny", "--level", "0", "--data", str(training_slides), "--out", str(tmp_path / "a-file")])
    err = capsys.readouterr().err
    assert code == 2 and "is not a folder" in err and (tmp_path / "a-file").read_text() == "mine"


def test_the_command_line_reports_and_trains_from_relative_paths(training_slides, level1_pairs, tmp_path, capsys, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    os.symlink(level1_pairs, tmp_path / "pairs")
    code = main(["prepare-pairs", "--config", "tiny", "--level", "1", "--data", str(training_slides), "--out", "pairs", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report[0]["written_now"] == 0 and report[0]["pairs"] == len(direct_pairs(training_slides, 1).positions)
    code = main(["train", "--config", "tiny", "--level", "1", "--unet", "0", "--pairs", "pairs", "--out", "run", "--steps", "1", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["trained_steps"] == 1
    with pytest.raises(SystemExit) as refused:  # argparse's own check, through our one-line parser.error
        main(["train", "--config", "tiny", "--level", "1", "--unet", "0", "--pairs", "pairs", "--data", "x", "--out", "run"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.startswith("error:") and "not allowed with argument" in err

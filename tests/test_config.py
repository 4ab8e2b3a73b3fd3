"""URCDM configuration: presets, YAML round trips, and rejection of impossible geometry."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import yaml

from urcdm.cli import main
from urcdm.config import from_dict, load_config, paper, tiny
from urcdm.errors import UserError


def test_the_paper_preset_has_the_methods_numbers():
    config = paper()
    assert [level.span for level in config.levels] == [40000, 6500, 1024]
    assert config.stride == 896 and [config.stitched_px(i) for i in range(3)] == [1024, 6400, 41344]
    assert [u.image_size for u in config.unets] == [64, 256, 1024]
    assert [u.timesteps for u in config.unets] == [1024, 256, 256]
    assert [u.objective for u in config.unets] == ["noise", "v", "v"]
    assert config.unets[2].random_crop == 256 and config.train.grad_clip == 1.0
    assert config.fill_rgb == (242, 243, 242)


@pytest.mark.parametrize("preset", [paper, tiny])
def test_presets_round_trip_through_yaml(preset, tmp_path):
    config = preset()
    path = tmp_path / "c.yaml"
    config.save(path)
    assert load_config(path) == config and from_dict(yaml.safe_load(config.to_yaml())) == config


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(overlap=0.5), "overlap"),
    (lambda d: d.update(overlap=0.3), "overlap"),                      # 64 x 0.7 is not whole pixels
    (lambda d: d["levels"][1].update(span=600), r"levels\[1\].span"),   # does not nest in level 0
    (lambda d: d["levels"][2].update(grid=5), r"levels\[2\].grid"),     # does not cover the slide
    (lambda d: d["levels"][0].update(grid=2), r"levels\[0\].grid"),
    (lambda d: d["unets"][2].update(random_crop=100), r"unets\[2\].random_crop"),
    (lambda d: d["unets"][1].update(objective="eps"), r"unets\[1\].objective"),
    (lambda d: d["unets"][0].update(layer_attns=[True]), r"unets\[0\].layer_attns"),
    (lambda d: d["unets"][2].update(image_size=128), r"unets\[2\].image_size"),
    (lambda d: d["unets"][0].update(colour=1), r"unets\[0\].colour: unknown key"),
    (lambda d: d["train"].update(grad_clip="one"), r"train.grad_clip"),
    (lambda d: d.pop("patch_px"), "patch_px: required"),
    # values the training loop would have met as a traceback (a modulus by zero, a negative worker
    # count, an impossible hold-out fraction, torch's own check of the learning rate) or used silently
    (lambda d: d.update(patch_px=-1), "patch_px: must be at least 1"),
    (lambda d: d["levels"][0].update(span=0), r"levels\[0\].span: must be at least 1"),
    (lambda d: d["unets"][0].update(dim_mults=[0, 2]), r"unets\[0\].dim_mults"),
    (lambda d: d["unets"][0].update(num_resnet_blocks=-1), r"unets\[0\].num_resnet_blocks"),
    (lambda d: d["unets"][0].update(lr=-1.0), r"unets\[0\].lr: must be a positive number"),
    (lambda d: d["unets"][0].update(lr=float("nan")), r"unets\[0\].lr"),
    (lambda d: d["unets"][1].update(ff_mult=0.0), r"unets\[1\].ff_mult"),
    (lambda d: d["train"].update(grad_clip=-1.0), "train.grad_clip: must be a positive number"),
    (lambda d: d["train"].update(ema_beta=2.0), r"train.ema_beta: must be in \[0, 1\)"),
    (lambda d: d["train"].update(checkpoint_every=0), "train.checkpoint_every: must be at least 1"),
    (lambda d: d["train"].update(validate_every=0), "train.validate_every"),
    (lambda d: d["train"].update(validation_fraction=1.5), "train.validation_fraction"),
    (lambda d: d["train"].update(validation_batches=0), "train.validation_batches"),
    (lambda d: d["train"].update(workers=-1), "train.workers: must be at least 0"),
    (lambda d: d["train"].update(cond_drop_prob=2.0), r"train.cond_drop_prob: must be in \[0, 1\]"),
    (lambda d: d["train"].update(lowres_sample_noise_level=-0.1), "train.lowres_sample_noise_level"),
])
def test_impossible_configs_are_one_error_naming_the_field(change, field):
    values = tiny().to_dict()
    change(values)
    with pytest.raises(UserError, match=f"^{field}"):
        from_dict(values)


def test_the_cli_prints_presets_and_rejects_bad_config_files(tmp_path, capsys):
    assert main(["config", "tiny"]) == 0
    assert from_dict(yaml.safe_load(capsys.readouterr().out)) == tiny()
    bad = tmp_path / "bad.yaml"
    values = tiny().to_dict()
    values["overlap"] = 0.6
    bad.write_text(yaml.safe_dump(values))
    assert main(["train", "--config", str(bad), "--level", "0", "--unet", "0", "--data", str(tmp_path),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: overlap:") and err.count("\n") == 1
    assert main(["train", "--config", "huge", "--level", "0", "--unet", "0", "--data", str(tmp_path),
                 "--out", str(tmp_path / "run")]) == 2
    assert "neither a preset" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["sample", "--config", str(empty), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {empty}: the file is empty") and err.count("\n") == 1


def test_config_out_on_a_full_disk_leaves_nothing_and_an_existing_file_needs_overwrite(tmp_path, capsys, monkeypatch):
    out = tmp_path / "my.yaml"
    real_write = Path.write_text

    def disk_fills_halfway(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_text", disk_fills_halfway)
        assert main(["config", "paper", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {out}: not written, no space left on the device (No space left on device)\n"
    assert list(tmp_path.iterdir()) == []  # no empty or half config to block the next try
    assert main(["config", "paper", "-o", str(out)]) == 0
    assert from_dict(yaml.safe_load(out.read_text())) == paper()
    out.write_text("# the user's edits\n")
    assert main(["config", "tiny", "-o", str(out)]) == 2
    assert "already exists (use --overwrite" in capsys.readouterr().err
    assert out.read_text() == "# the user's edits\n"
    assert main(["config", "tiny", "-o", str(out), "--overwrite"]) == 0
    assert from_dict(yaml.safe_load(out.read_text())) == tiny()


def test_train_all_prints_nine_one_gpu_jobs(tmp_path, capsys):
    assert main(["train-all", "--config", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "runs"), "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "wait" and len(lines) == 10
    jobs = {(line.split("--level ")[1].split()[0], line.split("--unet ")[1].split()[0]) for line in lines[:-1]}
    assert jobs == {(str(level), str(unet)) for level in range(3) for unet in range(3)}
    assert lines[4].startswith("CUDA_VISIBLE_DEVICES=4 accelerate launch") and f"{tmp_path}/runs/l1u1" in lines[4]

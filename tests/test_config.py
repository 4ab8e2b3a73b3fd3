"""URCDM configuration: presets, YAML round trips, and rejection of impossible geometry."""

from __future__ import annotations

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


def test_train_all_prints_nine_one_gpu_jobs(tmp_path, capsys):
    assert main(["train-all", "--config", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "runs"), "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "wait" and len(lines) == 10
    jobs = {(line.split("--level ")[1].split()[0], line.split("--unet ")[1].split()[0]) for line in lines[:-1]}
    assert jobs == {(str(level), str(unet)) for level in range(3) for unet in range(3)}
    assert lines[4].startswith("CUDA_VISIBLE_DEVICES=4 accelerate launch") and f"{tmp_path}/runs/l1u1" in lines[4]

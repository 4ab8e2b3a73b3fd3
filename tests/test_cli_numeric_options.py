"""Every numeric option of ``urcdm train``, ``train-all``, ``sample``, ``prepare-pairs`` (and ``convert``, ``seams``, ``view``)
refuses a bad value with one ``error:`` line naming the option and exit status 2, before any slide is
read or model built. In-process and without training or sampling, so the file runs in seconds."""

import argparse

import pytest

from urcdm import cli, sample_cli, train_cli, view_cli
from urcdm.cli import build_parser, check_options_against_config, main
from urcdm.config import tiny

TINY = tiny()  # 3 unets per level with 32/16/16 timesteps, 8 px overlap, levels 0..2


@pytest.fixture
def folders(tmp_path):
    """An empty --data folder: if an early check were missing, the error would be about slides instead."""
    (tmp_path / "data").mkdir()
    return {"data": tmp_path / "data", "out": tmp_path / "out", "slide": tmp_path / "missing.tif"}


@pytest.fixture
def commands_must_not_run(monkeypatch):
    """A bad value must be refused before the command itself starts (reading slides, building models);
    the parser picks the handlers up by name when it is built, so these stand-ins are what it calls."""
    def not_reached(args):
        raise AssertionError(f"urcdm {args.command} ran: the bad value was not refused before it")

    for module, name in [(train_cli, "cmd_train"), (train_cli, "cmd_train_all"), (train_cli, "cmd_prepare_pairs"), (sample_cli, "cmd_sample"),
                         (sample_cli, "cmd_seams"), (view_cli, "cmd_view"), (cli, "cmd_convert")]:
        monkeypatch.setattr(module, name, not_reached)


def base_argv(command: str, folders) -> list[str]:
    """A valid command line; a case appends the bad option, which argparse lets override the value here."""
    return {
        "train": ["train", "--config", "tiny", "--data", str(folders["data"]), "--out", str(folders["out"]),
                  "--level", "0", "--unet", "0"],
        "train-all": ["train-all", "--config", "tiny", "--data", str(folders["data"]), "--out", str(folders["out"]), "--print"],
        "prepare-pairs": ["prepare-pairs", "--config", "tiny", "--data", str(folders["data"]), "--out", str(folders["out"])],
        "sample": ["sample", "--config", "tiny", "--out", str(folders["out"] / "slide.tiff")],
        "convert": ["convert", str(folders["slide"]), str(folders["out"] / "slide.tiff")],
        "seams": ["seams", str(folders["slide"])],
        "view": ["view", str(folders["slide"])],
    }[command]


BAD_VALUES = [
    # train: the case first (a 3-unet config has unets 0..2; this was an IndexError traceback)
    ("train", "--unet", "3"), ("train", "--unet", "-1"), ("train", "--unet", "x"),
    ("train", "--level", "3"), ("train", "--level", "-1"), ("train", "--level", "one"),
    ("train", "--steps", "0"), ("train", "--steps", "-5"), ("train", "--steps", "1.5"),
    ("train", "--seed", "-1"), ("train", "--seed", "abc"), ("train", "--seed", str(2**64)),
    ("train-all", "--steps", "0"), ("train-all", "--steps", "ten"), ("train-all", "--seed", "-1"),
    ("train", "--pairs", ""),  # a run reads slides or pairs, never both: with --data this is refused too
    ("prepare-pairs", "--level", "3"), ("prepare-pairs", "--level", "-1"), ("prepare-pairs", "--level", "2.0"),
    ("prepare-pairs", "--workers", "-1"), ("prepare-pairs", "--workers", "two"),
    # sample --steps: one value per unet, each in 1..that unet's timesteps
    ("sample", "--steps", "16,8"), ("sample", "--steps", "16,8,8,8"), ("sample", "--steps", "0,8,8"),
    ("sample", "--steps", "-1,8,8"), ("sample", "--steps", "33,8,8"), ("sample", "--steps", "16,8,17"),
    ("sample", "--steps", "16,x,8"), ("sample", "--steps", ""), ("sample", "--steps", "16,,8"),
    ("sample", "--batch-size", "Auto"), ("sample", "--batch-size", "4,4,4"),
    ("sample", "--batch-size", "0"), ("sample", "--batch-size", "-2"), ("sample", "--batch-size", "four"),
    ("sample", "--blend", "-1"), ("sample", "--blend", "9"), ("sample", "--blend", "0.5"),
    ("sample", "--seed", "-1"), ("sample", "--seed", "1e3"),
    ("convert", "--quality", "0"), ("convert", "--quality", "101"), ("convert", "--quality", "high"),
    ("convert", "--mpp", "0"), ("convert", "--mpp", "-0.25"), ("convert", "--mpp", "nan"), ("convert", "--mpp", "inf"),
    ("seams", "--band-rows", "0"), ("view", "--port", "65536"), ("view", "--port", "-1"),
]


def run_main(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's errors leave through parser.exit
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code, out, err, option):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert option in lines[0], err
    assert out == ""


@pytest.mark.parametrize("command, option, value", BAD_VALUES, ids=lambda v: v or "empty")
def test_a_bad_value_is_one_error_line_naming_the_option(command, option, value, folders, capsys, commands_must_not_run):
    code, out, err = run_main([*base_argv(command, folders), option, value], capsys)
    assert_one_error_line(code, out, err, option)


def test_the_unet_message_names_the_allowed_range(folders, capsys, commands_must_not_run):
    code, out, err = run_main([*base_argv("train", folders), "--unet", "3"], capsys)
    assert_one_error_line(code, out, err, "--unet")
    assert "0..2" in err and "got 3" in err


def test_outpaint_trains_only_the_last_level(folders, capsys, commands_must_not_run):
    code, out, err = run_main([*base_argv("train", folders), "--method", "outpaint", "--level", "0"], capsys)
    assert_one_error_line(code, out, err, "--level")


def test_sample_models_steps_are_checked_against_the_trained_config(folders, capsys, commands_must_not_run):
    """--models: the config train wrote beside the checkpoints, not the checkpoints (seconds to load)."""
    models = folders["out"].parent / "models"
    (models / "l0u0").mkdir(parents=True)
    TINY.save(models / "l0u0" / "config.yaml")
    argv = ["sample", "--models", str(models), "--out", str(folders["out"] / "slide.tiff"), "--steps", "16,8"]
    code, out, err = run_main(argv, capsys)
    assert_one_error_line(code, out, err, "--steps")
    assert "3 unets" in err


VALID_VALUES = [
    ("train", ["--unet", "2", "--level", "2", "--steps", "1", "--seed", str(2**64 - 1)]),
    ("train", ["--method", "outpaint", "--level", "2", "--unet", "0"]),
    ("train-all", ["--steps", "1", "--seed", "0"]),
    ("prepare-pairs", ["--level", "2", "--workers", "0"]),
    ("prepare-pairs", ["--method", "outpaint", "--level", "2", "--workers", "16"]),
    ("sample", ["--steps", "32,16,16", "--batch-size", "1", "--blend", "8", "--seed", "0"]),
    ("sample", ["--steps", "1,1,1", "--blend", "0", "--batch-size", "64"]),
    ("convert", ["--quality", "1", "--mpp", "0.25"]),
    ("convert", ["--quality", "100"]),
    ("seams", ["--band-rows", "1"]),
    ("view", ["--port", "0"]),
    ("view", ["--port", "65535"]),
]


@pytest.mark.parametrize("command, options", VALID_VALUES)
def test_valid_values_pass_every_check(command, options, folders):
    """Parsed and checked against the config exactly as ``main`` does, without running the command."""
    args = build_parser().parse_args([*base_argv(command, folders), *options])
    check_options_against_config(args)
    for option, value in zip(options[::2], options[1::2]):
        parsed = getattr(args, option.lstrip("-").replace("-", "_"))
        assert (",".join(map(str, parsed)) if isinstance(parsed, (list, tuple)) else str(parsed)) == value


def test_train_all_print_runs_with_valid_values(folders, capsys):
    code, out, err = run_main([*base_argv("train-all", folders), "--steps", "7", "--seed", "3"], capsys)
    assert code == 0, err
    assert out.count("--steps 7 --seed 3") == 9


def test_no_numeric_option_is_left_unchecked():
    """A numeric option added later with a bare type=int or type=float would accept -1 and nan again
    (one with ``choices``, like convert --tile, is already bounded)."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} {action.option_strings[-1]}" for name, parser in commands.choices.items()
            for action in parser._actions
            if action.option_strings and action.type in (int, float) and action.choices is None]
    assert bare == [], "give these a checking type (urcdm.clikit: positive_int, bounded_int, ...)"

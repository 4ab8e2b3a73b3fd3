"""The command lines as users run them: real processes, real exit codes, real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from conftest import tissue_image

BIN = Path(sys.executable).parent


def run(*args, cwd=None):
    return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True, cwd=cwd)


def assert_user_error(result, mentions):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert mentions in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.fixture
def small_tiff(tmp_path):
    path = tmp_path / "input.tif"
    tifffile.imwrite(path, tissue_image(700, 900, seed=2), resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    return path


@pytest.mark.parametrize("command", ["urcdm", "urcdm-eval", "urcdm-study"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


@pytest.mark.parametrize("module, argv", [("urcdm.cli", ["sample", "--help"]), ("evaluation.cli", ["pfid", "--help"]),
                                          ("evaluation.cli", ["pfid", "a", "b", "--n", "abc"]),
                                          ("evaluation.cli", ["memorization", "--help"]), ("study_app.cli", ["--help"])])
def test_help_and_usage_errors_answer_without_loading_torch(module, argv):
    """Parsing is the CLI edge: a typo or --help answers in about a second, the models' libraries untouched."""
    probe = (f"import sys\nfrom {module} import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'torch_fidelity', 'imagen_pytorch'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-500:] + done.stderr[-500:]


def test_info_json(small_tiff):
    result = run("urcdm", "info", small_tiff, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["width"], info["height"], info["level_count"]) == (900, 700, 1)
    assert info["mpp"] == pytest.approx([0.5, 0.5])
    assert info["vendor"] == "tiff" and 0.0 <= info["tissue_fraction"] <= 1.0


def test_convert_then_info_round_trip(tmp_path, small_tiff):
    out = tmp_path / "out.tiff"
    result = run("urcdm", "convert", small_tiff, out, "--tile", "256", "--lossless", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["level_dimensions"] == [[900, 700], [450, 350], [225, 175]]
    slide = openslide.OpenSlide(out)
    assert slide.level_count == 3 and float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    np.testing.assert_array_equal(np.asarray(slide.read_region((0, 0), 0, (900, 700)))[..., :3], tifffile.imread(small_tiff))
    info = json.loads(run("urcdm", "info", out, "--json").stdout)
    assert info["vendor"] == "generic-tiff" and info["level_count"] == 3


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "garbage"])
def test_bad_inputs_give_one_error_line_and_no_output(tmp_path, case):
    bad = {"missing": tmp_path / "nope.svs", "directory": tmp_path, "empty": tmp_path / "empty.svs",
           "garbage": tmp_path / "garbage.svs"}[case]
    if case == "empty":
        bad.touch()
    if case == "garbage":
        bad.write_bytes(os.urandom(1001))
    before = sorted(tmp_path.iterdir())
    assert_user_error(run("urcdm", "info", bad), str(bad))
    assert_user_error(run("urcdm", "convert", bad, tmp_path / "out.tiff"), str(bad))
    assert sorted(tmp_path.iterdir()) == before, "a failed convert must leave nothing behind"


def test_real_broken_svs(real_data, tmp_path):
    broken = real_data / "slides" / "broken.svs"
    assert_user_error(run("urcdm", "info", broken), "broken.svs")
    assert_user_error(run("urcdm", "convert", broken, tmp_path / "out.tiff"), "broken.svs")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_never_overwritten_without_asking(tmp_path, small_tiff):
    out = tmp_path / "out.tiff"
    out.write_bytes(b"the user's file")
    assert_user_error(run("urcdm", "convert", small_tiff, out), "--overwrite")
    assert out.read_bytes() == b"the user's file"
    assert_user_error(run("urcdm", "convert", small_tiff, small_tiff, "--overwrite"), "input")
    assert run("urcdm", "convert", small_tiff, out, "--overwrite").returncode == 0
    assert openslide.OpenSlide(out).dimensions == (900, 700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.tif", "out.tiff"]


def test_usage_errors_and_debug(tmp_path):
    assert_user_error(run("urcdm", "convert", tmp_path / "only-one-arg"), "required")
    assert_user_error(run("urcdm", "convert", "a", "b", "--quality", "90", "--lossless"), "not allowed")
    debug = run("urcdm", "info", tmp_path / "nope.svs", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_an_error_during_a_progress_bar_starts_a_line_of_its_own(capsys):
    """The bar a failure leaves open is closed before the error line, not redrawn after it."""
    from tqdm import tqdm

    from urcdm.clikit import ArgumentParser, run_cli
    from urcdm.errors import UserError

    def fails_halfway(args):
        bar = tqdm(total=4, desc="level 2")
        bar.update(2)
        raise UserError("the second half could not be read")

    assert run_cli(ArgumentParser(prog="demo"), [], fails_halfway) == 2
    err = capsys.readouterr().err
    assert err.endswith("\nerror: the second half could not be read\n"), repr(err)
    assert "\r" not in err.split("\n")[-2]

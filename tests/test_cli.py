"""The command lines as users run them: real processes, real exit codes, real files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from conftest import tissue_image
from urcdm.errors import UserError

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
    # the traceback above the same last line and status as without --debug
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("leave", [True, False])
def test_an_error_during_a_progress_bar_starts_a_line_of_its_own(capsys, leave):
    """The bar a failure leaves open is closed before the error line, not redrawn after it; in a log
    file (stderr not a terminal) the line starts with ``error:`` whether the bar stays or is cleared."""
    from tqdm import tqdm

    from urcdm.clikit import ArgumentParser, run_cli
    from urcdm.errors import UserError

    def fails_halfway(args):
        bar = tqdm(total=4, desc="level 2", leave=leave)
        bar.update(2)
        raise UserError("the second half could not be read")

    assert run_cli(ArgumentParser(prog="demo"), [], fails_halfway) == 2
    err = capsys.readouterr().err
    assert err.endswith("\nerror: the second half could not be read\n"), repr(err)
    assert "\r" not in err.split("\n")[-2] and "\n\n" not in err


def test_sigterm_during_a_convert_is_one_line_and_leaves_nothing(real_data, tmp_path):
    """A scheduler's SIGTERM (or `kill`) mid-write: Python's default action ended the process on the
    spot, leaving the hidden partial output and the level canvases beside the target."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = subprocess.Popen([str(BIN / "urcdm"), "convert", real_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs",
                                out_dir / "slide.tiff", "--lossless"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(out_dir.glob(".slide.tiff.*.partial")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: terminated" and "Traceback" not in err and out == ""
    assert list(out_dir.iterdir()) == []


def test_an_address_this_computer_does_not_have_is_named_not_the_port():
    from urcdm.clikit import check_port_free
    from urcdm.errors import UserError

    with pytest.raises(UserError, match="choose another --address") as refused:
        check_port_free(0, "192.0.2.1")  # TEST-NET-1: documentation only, never a local address
    assert "--port" not in str(refused.value)


def test_a_bar_whose_constructor_was_interrupted_does_not_turn_the_error_into_a_traceback(capsys):
    """A signal that lands inside tqdm's constructor leaves a bar registered without its attributes."""
    from tqdm import tqdm

    from urcdm.clikit import ArgumentParser, run_cli

    class Interrupted(tqdm):
        def __init__(self, *args, **kwargs):
            self._instances.add(self)  # what tqdm does first, before the attributes are set
            raise KeyboardInterrupt

        def __del__(self):
            pass

    def interrupted_while_building_a_bar(args):
        Interrupted(total=4)

    try:
        assert run_cli(ArgumentParser(prog="demo"), [], interrupted_while_building_a_bar) == 130
    finally:
        tqdm._instances.clear()
    assert capsys.readouterr().err.endswith("error: interrupted\n")


@pytest.mark.parametrize("failure, code, line", [
    (lambda: (_ for _ in ()).throw(UserError("--size 0: too small")), 2, "error: --size 0: too small"),
    (lambda: subprocess.run([sys.executable, "-c", "raise SystemExit(2)"], check=True), 2,
     f"error: {sys.executable} -c raise SystemExit(2) ... failed (exit 2)"),
    (lambda: (_ for _ in ()).throw(KeyboardInterrupt()), 130, "error: interrupted"),
    (lambda: open("/nonexistent/folder/report.json", "w"), 2, "error: /nonexistent/folder/report.json: No such file or directory"),
])
def test_a_benchmark_script_fails_as_a_command_does(failure, code, line, capsys):
    """The benchmarks printed tracebacks for bad values, a failed child command, a missing --workdir and
    Ctrl-C; run as `sys.exit(run_script(main))` they keep the commands' contract."""
    from urcdm.clikit import run_script

    assert run_script(failure) == code
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("script, option, value", [
    ("bench_pyramid.py", "--quality", "500"),
    ("bench_mrmc_calibration.py", "--seed", "-1"),  # were numpy's traceback
    ("bench_study_power.py", "--seed", "-1"),
])
def test_benchmark_options_are_checked_while_parsing(script, option, value):
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / script
    done = subprocess.run([sys.executable, str(bench), option, value], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(f"{script}: error: argument {option}")
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("module, argv, hint", [
    ("urcdm.cli", ["convert", "in.svs", "out.tiff", "--bogus"], "urcdm convert --help"),
    ("evaluation.cli", ["kid", "real", "fake", "--bogus"], "urcdm-eval kid --help"),
    ("study_app.cli", ["score", "answers.csv", "--bogus"], "urcdm-study score --help"),
])
def test_an_unknown_option_points_to_the_help_of_the_command_it_was_given_to(module, argv, hint, capsys):
    import importlib

    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"error: unrecognized arguments: --bogus (see {hint})\n"  # was "urcdm --help"


def test_a_garbled_compressed_tiff_is_one_line_not_zarrs_dying_tasks(tmp_path, small_tiff):
    """Read through zarr (stripped, compressed: OpenSlide refuses it), a damaged strip failed the read
    while zarr's other chunk reads were still pending; at exit they printed about 230 lines."""
    strips = tmp_path / "strips.tif"
    tifffile.imwrite(strips, tifffile.imread(small_tiff), compression="zlib", rowsperstrip=16)
    data = bytearray(strips.read_bytes())
    with tifffile.TiffFile(strips) as tiff:
        start = tiff.pages[0].dataoffsets[len(tiff.pages[0].dataoffsets) // 2]
    data[start:-200:7] = b"\xab" * len(data[start:-200:7])
    garbled = tmp_path / "garbled.tif"
    garbled.write_bytes(bytes(data))
    assert_user_error(run("urcdm", "info", garbled), "cannot decode TIFF data")

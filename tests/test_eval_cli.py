"""``urcdm-eval`` on bad input: one ``error:`` line, exit 2, nothing half-written; and its outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PLUGINS, TINY_EXTRACTOR, tile_lists
from evaluation.cli import main
from evaluation.crops import CropProtocol
from evaluation.extractors.weights import FILE_NAMES, SHA256_PREFIX
from evaluation.reading import read_crop
from urcdm.slides import open_slide

TINY = ["--extractor", TINY_EXTRACTOR, "--workers", "0"]
BIN = Path(sys.executable).parent


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in captured.err
    assert captured.out == ""  # no result printed
    return lines[-1]


@pytest.fixture
def tiles(real_data, tmp_path):
    return tile_lists(real_data, tmp_path)


def test_empty_folder(tmp_path, capsys, tiles):
    (tmp_path / "empty").mkdir()
    assert "no images found" in _error(capsys, ["pfid", str(tmp_path / "empty"), str(tiles[0]), *TINY])


def test_corrupt_files_are_listed_or_skipped(real_data, capsys):
    slides = str(real_data / "slides")
    assert "broken.svs" in _error(capsys, ["pfid", slides, slides, "--n", "20", *TINY])
    assert main(["pfid", slides, slides, "--n", "20", "--skip-bad", "--json", *TINY]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["real"]["skipped"] == 1 and result["real"]["images"] == 3


def test_whole_image_fid_needs_enough_images(tiles, capsys):
    tissue, background = tiles
    assert "--allow-fewer" in _error(capsys, ["fid", str(tissue), str(background), *TINY])
    assert main(["fid", str(tissue), str(background), "--allow-fewer", "--json", *TINY]) == 0
    result = json.loads(capsys.readouterr().out)
    listed = [len(listing.read_text().split()) for listing in tiles]
    assert [result["n_real"], result["n_fake"]] == listed and "fd_tiny_extractors_colour_texture" in result


def test_non_finite_features(tiles, capsys):
    assert "NaN" in _error(capsys, ["pfid", str(tiles[0]), str(tiles[1]), "--n", "8", "--workers", "0",
                                    "--extractor", "tiny_extractors:nan_features"])


def test_mismatched_and_mean_only_statistics(tiles, tmp_path, capsys):
    stats = tmp_path / "real.npz"
    assert main(["stats", str(tiles[0]), "-o", str(stats), "--n", "40", "--no-features", *TINY]) == 0
    capsys.readouterr()
    assert "patch_size 256 vs 128" in _error(capsys, ["pfid", str(stats), str(tiles[1]), "--n", "40", "--patch-size", "128", *TINY])
    for size in (["--image-size", "64"], []):  # the extractor is named, whatever its input size does to the protocol
        message = _error(capsys, ["pfid", str(stats), str(tiles[1]), "--n", "40", *size,
                                  "--extractor", "tiny_extractors:nan_features", "--workers", "0"])
        assert "computed with extractor" in message and "crop protocol" not in message
    _legacy_copy(stats, tmp_path / "legacy.npz")
    message = _error(capsys, ["pfid", str(tmp_path / "legacy.npz"), str(tiles[1]), "--n", "40", *TINY])
    assert "earlier urcdm-eval" in message and "crop side uniform" in message and "recompute" in message
    assert "needs the features" in _error(capsys, ["kid", str(stats), str(tiles[1]), "--n", "40", *TINY])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "not a urcdm-eval statistics file" in _error(capsys, ["pfid", str(tmp_path / "junk.npz"), str(stats), *TINY])


def _legacy_copy(stats: Path, target: Path) -> None:
    """The statistics as an earlier urcdm-eval wrote them: no sampling law in the header."""
    with np.load(stats) as data:
        arrays = {key: data[key] for key in data.files}
    header = json.loads(str(arrays["header"]))
    del header["protocol"]["sampling"]
    arrays["header"] = np.array(json.dumps(header))
    np.savez(target, **arrays)


def test_existing_output_is_never_overwritten(tiles, tmp_path, capsys):
    target = tmp_path / "real.npz"
    target.write_bytes(b"precious")
    assert "already exists" in _error(capsys, ["stats", str(tiles[0]), "-o", str(target), "--n", "10", *TINY])
    assert target.read_bytes() == b"precious"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be created")
def test_an_output_that_cannot_be_written_is_said_before_the_features(tiles, capsys):
    # The NaN extractor would fail at the first batch: the output's error must come first, naming it.
    nan = ["--extractor", "tiny_extractors:nan_features", "--workers", "0", "--n", "8"]
    for argv, target in [(["stats", str(tiles[0]), "-o", "/proc/urcdm-test.npz"], "/proc/urcdm-test.npz"),
                         (["scales", str(tiles[0]), str(tiles[1]), "-o", "/proc/urcdm-scales", "--spans", "64"],
                          "/proc/urcdm-scales")]:
        assert _error(capsys, argv + nan).startswith(f"error: {target}: cannot be written there")


def test_a_set_too_small_for_the_protocol_is_said_before_the_other_sets_features(real_data, tiles, tmp_path, capsys):
    # The NaN extractor fails at its first batch: the fake set's impossibility must be said before the
    # real set's features are computed (minutes at 50k crops), naming the set.
    nan = ["--extractor", "tiny_extractors:nan_features", "--workers", "0", "--n", "8"]
    slide = tmp_path / "real.txt"
    slide.write_text(f"{real_data / 'slides' / 'cmu-1-small-region.svs'}\n")  # 2220 x 2967; the tiles are 512 px
    for argv in (["pfid", str(slide), str(tiles[1]), "--patch-size", "1024"],
                 ["scales", str(slide), str(tiles[1]), "-o", str(tmp_path / "scales"), "--spans", "256,1024"]):
        message = _error(capsys, argv + nan)
        assert message.startswith("error: ") and f" set {tiles[1]}: no image is large enough" in message
    assert not (tmp_path / "scales").exists()


def test_cmmd_outside_clip_space_is_said_before_weights_are_looked_for(tiles, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("URCDM_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("URCDM_INCEPTION_WEIGHTS", raising=False)
    assert "CMMD is defined on CLIP embeddings" in _error(capsys, ["cmmd", str(tiles[0]), str(tiles[1])])
    assert "CMMD is defined on CLIP embeddings" in _error(capsys, ["all", str(tiles[0]), str(tiles[1]), "--metric", "cmmd"])


def test_a_fixed_size_extractor_refuses_another_image_size():
    import argparse

    import torch

    from evaluation.commands.options import image_size_for
    from evaluation.features import Extractor
    from urcdm.errors import UserError

    vit = Extractor("vit-test", lambda x: x, 224, False, torch.device("cpu"), fixed_size=True)
    assert image_size_for(argparse.Namespace(image_size=None, patch_size=256), vit, "pfid") == 224
    assert image_size_for(argparse.Namespace(image_size=224, patch_size=256), vit, "pfid") == 224
    with pytest.raises(UserError, match="takes 224 px crops only"):
        image_size_for(argparse.Namespace(image_size=256, patch_size=256), vit, "pfid")
    resizing = Extractor("vit-resizes", lambda x: x, 224, False, torch.device("cpu"), resizes_internally=True, fixed_size=True)
    assert image_size_for(argparse.Namespace(image_size=256, patch_size=256), resizing, "pfid") == 256


def test_missing_inception_weights_offline(tiles, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("URCDM_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("URCDM_INCEPTION_WEIGHTS", raising=False)
    message = _error(capsys, ["pfid", str(tiles[0]), str(tiles[1])])
    assert FILE_NAMES[0] in message and SHA256_PREFIX in message and "https://" in message
    impostor = tmp_path / FILE_NAMES[0]
    impostor.write_bytes(b"not inception")
    assert "is not the FID Inception weights" in _error(capsys, ["pfid", str(tiles[0]), str(tiles[1]), "--weights", str(impostor)])
    monkeypatch.setenv("URCDM_INCEPTION_WEIGHTS", str(tmp_path / "nowhere.pth"))
    assert "URCDM_INCEPTION_WEIGHTS" in _error(capsys, ["pfid", str(tiles[0]), str(tiles[1])])


def test_crops_export_png_and_manifest(real_data, tmp_path, capsys):
    slide = real_data / "slides" / "cmu-1-small-region.svs"
    out = tmp_path / "crops"
    assert main(["crops", str(slide), "-o", str(out), "--n", "6", "--patch-size", "128", "--workers", "0"]) == 0
    rows = [line.split(",") for line in (out / "manifest.csv").read_text().split()]
    assert rows[0][:10] == ["file", "source", "image", "x", "y", "size", "frame_x", "frame_y", "frame_w", "frame_h"]
    assert len(rows) == 7
    with open_slide(slide) as opened:
        for row in rows[1:]:
            pixels = np.asarray(Image.open(out / row[0]))
            assert pixels.shape == (128, 128, 3)
            crop = [float(v) for v in row[2:10]]  # the manifest alone reproduces the crop
            assert np.array_equal(pixels, read_crop(opened, crop, CropProtocol(patch_size=128, image_size=128)))
    capsys.readouterr()
    assert "already exists" in _error(capsys, ["crops", str(slide), "-o", str(out), "--n", "6"])
    # --overwrite replaced the whole folder: a user's notes in it, or the input slides, were deleted.
    (out / "notes.txt").write_text("mine")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / slide.name).symlink_to(slide)
    for target in (out, inputs):
        said = _error(capsys, ["crops", str(inputs), "-o", str(target), "--n", "3", "--workers", "0", "--overwrite"])
        assert "which this command did not write" in said and "replaces only a folder of its own output" in said
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.glob("crop-*.png"))) == 6
    (out / "notes.txt").unlink()
    assert main(["crops", str(inputs), "-o", str(out), "--n", "3", "--patch-size", "128", "--workers", "0",
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["crop-0.png", "crop-1.png", "crop-2.png", "manifest.csv"]
    capsys.readouterr()
    listed = tmp_path / "listed"
    assert main(["crops", str(slide), "-o", str(listed), "--n", "2", "--patch-size", "128", "--workers", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"]["image_size"] == 128  # the PNGs' size, not Inception's 299


def test_random_inception_runs_end_to_end(tiles, capsys):
    assert main(["pfid", str(tiles[0]), str(tiles[1]), "--n", "3", "--workers", "0", "--batch-size", "3",
                 "--extractor", "inception-v3-random", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    # The FID Inception resizes internally (TF1 bilinear, as anyres-gan's detector): patches reach it as read.
    assert result["extractor"].startswith("inception-v3-random") and result["protocol"]["image_size"] == 256
    assert result["protocol_name"] == "patch256-min256max0" and result["protocol"]["sampling"] == "anyres-gan"
    assert result["pfid"] > 0 and "not with published FIDs" in captured.err


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def test_console_script_has_no_traceback(real_data):
    done = subprocess.run([BIN / "urcdm-eval", "pfid", str(real_data / "slides" / "broken.svs"), str(real_data / "slides")],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_torchrun_two_ranks_equal_one_process(tiles, tmp_path):
    argv = ["stats", str(tiles[0]), "--n", "50", "--batch-size", "8", *TINY]
    single, double = tmp_path / "one.npz", tmp_path / "two.npz"
    subprocess.run([sys.executable, "-m", "evaluation.cli", *argv, "-o", str(single)], check=True, env=_env(), timeout=300)
    subprocess.run([BIN / "torchrun", "--standalone", "--nproc-per-node", "2", "-m", "evaluation.cli", "--", *argv, "-o", str(double)],
                   check=True, env=_env(), timeout=300, capture_output=True)
    with np.load(single) as one, np.load(double) as two:
        assert np.array_equal(one["crops"], two["crops"])
        np.testing.assert_allclose(two["features"], one["features"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(two["cov"], one["cov"], rtol=1e-6, atol=1e-10)


def test_images_too_small_for_the_patch_are_named_as_left_out(real_data, tiles, tmp_path, capsys):
    listing = tmp_path / "mixed.txt"
    listing.write_text(tiles[0].read_text() + f"{real_data / 'slides' / 'cmu-1-small-region.svs'}\n")
    assert main(["stats", str(listing), "-o", str(tmp_path / "s.npz"), "--n", "30", "--patch-size", "600", *TINY]) == 0
    tile_count = len(tiles[0].read_text().split())
    assert f"input: {tile_count} image(s) smaller than patch600-min600max0 needs were left out" in capsys.readouterr().err


def test_readers_default_to_feeding_a_gpu_from_every_core_but_one(monkeypatch):
    """A GPU extracts features far faster than one core reads crops: with one, every usable core but
    the feeding process reads (shared among a node's ranks); on the CPU, up to 4; an explicit count wins."""
    import torch

    from evaluation.commands.options import reading_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert reading_workers(None, torch.device("cuda", 0)) == 15
    assert reading_workers(None, torch.device("cpu")) == 4
    assert reading_workers(0, torch.device("cuda", 0)) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert reading_workers(None, torch.device("cuda", 3)) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert reading_workers(None, torch.device("cuda", 0)) == 1
    assert reading_workers(None, torch.device("cpu")) == 2


@pytest.mark.parametrize("argv, named", [
    (["kid", "--mpp", "nan"], "--mpp"), (["kid", "--mpp", "inf"], "--mpp"),  # were tracebacks after the features
    (["kid", "--kid-subsets", "0"], "--kid-subsets"), (["kid", "--kid-subsets", "-1"], "--kid-subsets"),
    (["kid", "--kid-subset-size", "0"], "--kid-subset-size"),  # was "KID needs at least 2 samples on each side"
    (["prc", "--k", "0"], "--k"), (["prc", "--k", "-1"], "--k"), (["dc", "--dc-k", "0"], "--dc-k"),
    (["all", "--dc-k", "0"], "--dc-k"),
    (["pfid", "--seed", "-1"], "--seed"),  # was numpy's traceback, after both sets were listed
    (["pfid", "--extractor", "random-inception"], "--extractor"),  # was found after torch loaded
    (["pfid", "--n", "0"], "--n"), (["fid", "--n", "-3"], "--n"), (["pfid", "--patch-size", "0"], "--patch-size"),
    (["pfid", "--batch-size", "0"], "--batch-size"), (["pfid", "--workers", "-1"], "--workers"),
    (["pfid", "--min-tissue", "2"], "--min-tissue"), (["pfid", "--min-tissue", "nan"], "--min-tissue"),
    (["fid", "--level", "3"], "--level"), (["fid", "--span", "0"], "--span"),
    (["scales", "-o", "out", "--splits", "0"], "--splits"),
    (["memorization", "--heldout", "h", "-o", "out", "--seed", "-1"], "--seed"),
    (["memorization", "--heldout", "h", "-o", "out", "--n-heldout", "0"], "--n-heldout"),
    (["memorization", "--heldout", "h", "-o", "out", "--stride", "0"], "--stride"),
    (["memorization", "--heldout", "h", "-o", "out", "--pairs", "-1"], "--pairs"),
])
def test_out_of_range_options_are_refused_while_parsing(argv, named, capsys):
    """Refused before the inputs are even looked at (they do not exist here), not after the features."""
    command, *options = argv
    with pytest.raises(SystemExit) as stopped:  # argparse leaves through parser.exit
        main([command, "no-real", "no-fake", *options])
    captured = capsys.readouterr()
    assert stopped.value.code == 2 and captured.out == ""
    assert captured.err.startswith(f"error: argument {named}:") and captured.err.count("\n") == 1


def test_an_empty_or_non_finite_list_of_scales_is_refused():
    from evaluation.scales import parse_scales
    from urcdm.errors import UserError

    with pytest.raises(UserError, match="--levels: no scales given"):  # was the default levels, silently
        parse_scales(levels="")
    with pytest.raises(UserError, match="expected finite numbers"):
        parse_scales(mpps="0.5,nan")

"""The sampler on the tiny configuration: kept pixels, alignment across levels, pyramids OpenSlide reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import openslide
import pytest
import torch
from PIL import Image

from urcdm.sampling.backends import DiffusionBackend, UpsampleBackend
from urcdm.cli import main
from urcdm.config import load_config, tiny
from urcdm.errors import UserError
from urcdm.sampling.geometry import LevelGrid, known_mask
from urcdm.models import build_imagen
from urcdm.sampling.sampler import ArrayImage, LevelSampler, blend_weights, sample_slide
from urcdm.sampling.schedule import batches, finished_neighbours, waves


class NoiseBackend:
    """Returns random pixels everywhere, so anything the sampler keeps, it kept itself."""

    name = "noise"

    def generate(self, level, contexts, known, masks, seeds):
        return np.stack([np.random.default_rng(s).integers(0, 256, known.shape[1:], dtype=np.uint8) for s in seeds])


class WatchedImage(ArrayImage):
    """Checks at every patch write that the pixels to be kept are unchanged."""

    def __init__(self, pixels, fill, grid, schedule, blend):
        super().__init__(pixels, fill)
        self.grid, self.before, self.blend, self.writes = grid, finished_neighbours(grid, schedule), blend, 0
        self.origins = {grid.box(p): p for p in grid.patches}

    def write(self, x, y, pixels):
        patch = self.origins[(x, y)]
        keep, _ = blend_weights(known_mask(self.grid, patch, self.before[patch]), self.blend)
        previous = self.read(x, y, pixels.shape[1], pixels.shape[0])
        assert np.array_equal(pixels[keep], previous[keep])
        super().write(x, y, pixels)
        self.writes += 1


@pytest.mark.parametrize("scheduler", ["raster", "wavefront", "checkerboard"])
@pytest.mark.parametrize("blend", [0, 4])
@pytest.mark.parametrize("method", ["urcdm", "outpaint"])
def test_outpainting_keeps_finished_pixels_exactly(scheduler, blend, method):
    config = tiny()
    grid = LevelGrid.of(config, 2)
    # the outpainting baseline has no previous level to read contexts from
    previous = ArrayImage(np.full((LevelGrid.of(config, 1).size,) * 2 + (3,), 200, np.uint8), config.fill_rgb) \
        if method == "urcdm" else None
    image = WatchedImage(np.zeros((grid.size, grid.size, 3), np.uint8), config.fill_rgb, grid, waves(grid, scheduler), blend)
    sampler = LevelSampler(config, 2, NoiseBackend(), seed=0, scheduler=scheduler, batch_size=3, blend=blend)
    for wave in sampler.schedule:
        for batch in batches(wave, 3):
            for patch, block in zip(batch, sampler.make_batch(batch, previous, image)):
                image.write(*grid.box(patch), block)
    assert image.writes == grid.grid ** 2


def test_blend_weights_fade_from_the_neighbour_to_the_new_patch():
    mask = np.zeros((16, 16), bool)
    mask[:, :6] = True
    keep, alpha = blend_weights(mask, 4)
    assert keep[:, :2].all() and not keep[:, 2:].any()
    assert (alpha[:, 6:] == 1).all() and (alpha[:, :2] == 0).all()
    assert np.all(np.diff(alpha[0, :7]) >= 0)
    keep0, alpha0 = blend_weights(mask, 0)
    assert np.array_equal(keep0, mask) and np.array_equal(alpha0, (~mask).astype(np.float32))


def test_every_level_lines_up_with_the_one_below(tmp_path):
    """With upsampling, level 2 reduced to level 1's scale is level 1 again: contexts are read where the
    geometry says the patch lies."""
    config = tiny()
    sample_slide(config, UpsampleBackend(config), tmp_path / "s.tiff", seed=3, progress=False)
    level1 = np.asarray(Image.open(tmp_path / "s.level1.png")).astype(float)
    with openslide.OpenSlide(str(tmp_path / "s.tiff")) as slide:
        level2 = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    g1, g2 = LevelGrid.of(config, 1), LevelGrid.of(config, 2)
    ratio = g1.scale / g2.scale
    # level-2 pixels [0, 512) cover slide [origin2, ...); the same slide span in level-1 pixels:
    left = (g2.origin - g1.origin) / g1.scale
    box = (left, left, left + g2.size / ratio, left + g2.size / ratio)
    reduced = np.asarray(Image.fromarray(level2).resize((int(g2.size / ratio),) * 2, Image.Resampling.BOX)).astype(float)
    expected = np.asarray(Image.fromarray(level1.astype(np.uint8)).resize(reduced.shape[:2][::-1], Image.Resampling.BILINEAR,
                                                                          box=box)).astype(float)
    assert np.abs(reduced - expected)[4:-4, 4:-4].mean() < 6
    shifted = np.abs(reduced[:, 3:] - expected[:, :-3])[4:-4, 4:-4].mean()
    assert shifted > np.abs(reduced - expected)[4:-4, 4:-4].mean() * 1.5  # the match is specific to this alignment


def test_a_tiny_diffusion_sample_is_a_pyramid_openslide_reads(tmp_path):
    config = tiny()
    config = replace(config, unets=tuple(replace(u, sample_steps=2) for u in config.unets))
    torch.manual_seed(0)
    backend = DiffusionBackend([build_imagen(config, level, sampling=True) for level in range(3)])
    out = tmp_path / "slide.tiff"
    manifest = sample_slide(config, backend, out, seed=5, batch_size=32, progress=False)
    with openslide.OpenSlide(str(out)) as slide:
        assert slide.dimensions == (512, 512)
        region = np.asarray(slide.read_region((0, 0), 0, (512, 512)).convert("RGB"))
    assert region.std() > 0
    assert Image.open(tmp_path / "slide.level0.png").size == (64, 64)
    assert Image.open(tmp_path / "slide.level1.png").size == (176, 176)
    saved = json.loads((tmp_path / "slide.json").read_text())
    assert saved["levels"][2]["waves"] == 4 and saved["levels"][2]["patches"] == 81
    assert saved["model_calls"] == manifest["model_calls"] == 1 + 4 + 4 and saved["backend"] == "diffusion"


def test_the_same_seed_makes_the_same_slide(tmp_path):
    config = tiny()
    for name in ("a", "b"):
        sample_slide(config, UpsampleBackend(config), tmp_path / f"{name}.tiff", seed=9, progress=False)
    assert (tmp_path / "a.level1.png").read_bytes() == (tmp_path / "b.level1.png").read_bytes()
    sample_slide(config, UpsampleBackend(config), tmp_path / "c.tiff", seed=10, progress=False)
    assert (tmp_path / "a.level0.png").read_bytes() != (tmp_path / "c.level0.png").read_bytes()


def test_a_slide_sampled_with_mpp_records_it_for_openslide(tmp_path, capsys):
    # Without it a synthetic slide had no physical scale: `urcdm view` could not set it beside a real
    # slide at the same magnification, nor `urcdm-eval --mpp` crop it.
    out = tmp_path / "s.tiff"
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out), "--mpp", "0.2527"]) == 0
    with openslide.OpenSlide(str(out)) as slide:
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.2527, abs=1e-4)
    assert json.loads(out.with_suffix(".json").read_text())["mpp"] == 0.2527
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # argparse's own errors leave by SystemExit, as one line
        main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(tmp_path / "t.tiff"), "--mpp", "0"])
    assert exited.value.code == 2 and "--mpp" in capsys.readouterr().err and not (tmp_path / "t.tiff").exists()


def test_bad_sampling_requests_are_one_error_line(tmp_path, capsys):
    out = tmp_path / "s.tiff"
    out.write_bytes(b"keep me")
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["sample", "--models", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t.tiff")]) == 2
    assert "no such models folder" in capsys.readouterr().err
    for dry_run in ([], ["--dry-run"]):  # a checkpoint file given where its folder of nine runs is expected
        assert main(["sample", "--models", str(out), "--out", str(tmp_path / "t.tiff"), *dry_run]) == 2
        assert "s.tiff: is a file; --models names the folder" in capsys.readouterr().err
    assert main(["sample", "--config", "tiny", "--steps", "1,2", "--out", str(tmp_path / "t.tiff")]) == 2
    assert "3 unets" in capsys.readouterr().err
    with pytest.raises(UserError, match="--blend"):
        sample_slide(tiny(), UpsampleBackend(tiny()), tmp_path / "u.tiff", blend=50, progress=False)


@pytest.mark.parametrize("beside", ["s.json", "s.level0.png", "s.level1.png"])
def test_a_users_file_where_a_side_file_goes_is_refused_and_kept(tmp_path, capsys, beside):
    (tmp_path / beside).write_bytes(b"the user's file")
    out = tmp_path / "s.tiff"
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / beside}: already exists (use --overwrite to replace it)\n"
    assert (tmp_path / beside).read_bytes() == b"the user's file" and sorted(p.name for p in tmp_path.iterdir()) == [beside]
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out), "--overwrite"]) == 0
    assert (tmp_path / beside).read_bytes() != b"the user's file"


def test_an_interrupted_runs_own_side_files_do_not_stop_its_resume(tmp_path):
    from urcdm.sampling.sampler import check_outputs

    out = tmp_path / "s.tiff"
    (tmp_path / "s.level0.png").write_bytes(b"written before the pyramid, then killed")
    with pytest.raises(UserError, match="s.level0.png: already exists"):
        check_outputs(out, tiny(), "urcdm", overwrite=False)
    (tmp_path / ".s.tiff.work").mkdir()
    check_outputs(out, tiny(), "urcdm", overwrite=False)


def test_a_folder_as_out_and_a_device_this_machine_lacks_are_refused_before_any_work(tmp_path, capsys):
    folder = tmp_path / "slides.tiff"
    folder.mkdir()
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(folder), "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {folder}: is a folder")
    out = tmp_path / "s.tiff"
    absent = ["tpu", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in absent:
        for dry in ([], ["--dry-run"]):
            assert main(["sample", "--config", "tiny", "--out", str(out), "--device", device, *dry]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: --device {device}: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slides.tiff"] and not any(folder.iterdir())


def test_too_little_disk_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import shutil

    from urcdm.sampling import sampler

    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(sampler.shutil, "disk_usage", lambda path: real._replace(free=200_000))
    out = tmp_path / "s.tiff"
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not enough disk space" in err and "0.0 GB free" in err
    assert sorted(tmp_path.iterdir()) == []  # no work folder, no level files, no output
    monkeypatch.setattr(sampler.shutil, "disk_usage", lambda path: real._replace(free=2_000_000))
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out)]) == 0  # 1.3 MB is enough


def _sample_command(out, config, *extra):
    """The tiny unets on the micro slide (3 x 3 last-level patches), one patch per model call, with a
    deterministic solver (DPM-Solver++ 2M): resume and torchrun must give the same pixels under it too;
    the paper's ancestral sampler is the one the other tests here use. No white skip: untrained unets
    may make a level 1 the detector calls glass, and level 2 must be diffused to be interrupted."""
    return [sys.executable, "-m", "urcdm.cli", "sample", "--config", str(config), "--out", str(out), "--steps", "2,2,2",
            "--batch-size", "1", "--seed", "3", "--solver", "dpmpp_2m", "--no-white-skip", "--json", *extra]


def _pixels(path) -> np.ndarray:
    with openslide.OpenSlide(str(path)) as slide:
        return np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, micro_config_file):
    """An uninterrupted tiny diffusion sample (one thread, as each torchrun rank has)."""
    out = tmp_path_factory.mktemp("straight") / "slide.tiff"
    subprocess.run(_sample_command(out, micro_config_file), check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out


def test_a_sample_killed_with_sigkill_and_rerun_with_another_batch_size_is_pixel_identical(straight_run, micro_config_file,
                                                                                          tmp_path):
    """Killed one patch at a time, resumed four patches at a time (auto on the CPU): the journal names
    patches, and a patch's pixels do not depend on the batch it is in."""
    out = tmp_path / "slide.tiff"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_sample_command(out, micro_config_file), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    journal = tmp_path / ".slide.tiff.work" / "journal"
    first_wave = len(waves(LevelGrid.of(load_config(micro_config_file), 2), "checkerboard")[0])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        # killed inside level 2's second wave (after its first patch), whose patches keep and blend
        # strips of the first
        if journal.exists() and sum(line.startswith("2 ") for line in journal.read_text().splitlines()) > first_wave:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the sample finished before it could be killed"
    assert not out.exists()
    finished = json.loads(subprocess.run(_sample_command(out, micro_config_file, "--batch-size", "auto"), check=True,
                                         capture_output=True, env=env).stdout)
    straight = json.loads(straight_run.with_suffix(".json").read_text())
    assert finished["resumed"] is True and finished["levels"][2]["batch_size"] == 4
    assert finished["levels"][1]["model_calls"] == 0  # level 1 was finished: nothing redone
    assert 0 < finished["levels"][2]["model_calls"] < straight["levels"][2]["model_calls"]
    assert np.array_equal(_pixels(out), _pixels(straight_run))
    assert (tmp_path / "slide.level1.png").read_bytes() == straight_run.with_suffix(".level1.png").read_bytes()
    assert not (tmp_path / ".slide.tiff.work").exists()


def _ancestral_sample(out, config, batch_size: str) -> np.ndarray:
    """The micro slide with imagen-pytorch's own sampler at ``batch_size``; the model calls checked against
    the waves cut into calls of that many patches."""
    assert main(["sample", "--config", str(config), "--out", str(out), "--steps", "2,2,2", "--seed", "4",
                 "--no-white-skip", "--batch-size", batch_size, "--device", "cpu", "--json"]) == 0
    calls = json.loads(out.with_suffix(".json").read_text())["levels"][2]["model_calls"]
    per_call = {"1": 1, "3": 3, "auto": 4}[batch_size]
    schedule = waves(LevelGrid.of(load_config(config), 2), "checkerboard")
    assert calls == sum(len(batches(wave, per_call)) for wave in schedule)  # the waves cut differently
    return _pixels(out)


@pytest.fixture(scope="module")
def ancestral_one_at_a_time(tmp_path_factory, micro_config_file) -> np.ndarray:
    return _ancestral_sample(tmp_path_factory.mktemp("ancestral") / "batch-1.tiff", micro_config_file, "1")


@pytest.mark.parametrize("batch_size", ["3", "auto"])
def test_the_ancestral_sampler_makes_the_same_slide_at_any_batch_size(tmp_path, micro_config_file, batch_size,
                                                                      ancestral_one_at_a_time):
    """imagen-pytorch's own sampler, its noise drawn per patch: one patch per call, three, or auto (four on
    the CPU) make the same pixels."""
    slide = _ancestral_sample(tmp_path / f"batch-{batch_size}.tiff", micro_config_file, batch_size)
    assert np.array_equal(ancestral_one_at_a_time, slide)


def test_a_run_from_an_older_version_is_not_resumed_with_per_patch_noise(tmp_path, capsys):
    from urcdm.sampling.state import SampleState

    out = tmp_path / "s.tiff"
    SampleState.open(out, {"seed": 1, "batch_size": 4})  # what an older version wrote: its noise was per batch
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out), "--seed", "1"]) == 2
    assert "an interrupted run from an older version, whose pixels depended on its batch size" in capsys.readouterr().err


def test_a_rerun_with_other_settings_does_not_mix_into_an_interrupted_slide(tmp_path, capsys):
    out = tmp_path / "s.tiff"
    from urcdm.sampling.state import SampleState

    SampleState.open(out, {"seed": 1, "noise": "per-patch"})
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--out", str(out), "--seed", "2"]) == 2
    assert "interrupted run with other settings" in capsys.readouterr().err


def test_torchrun_with_two_ranks_and_another_batch_size_equals_one_process(straight_run, micro_config_file, tmp_path):
    out = tmp_path / "slide.tiff"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "urcdm.cli", "--", *_sample_command(out, micro_config_file, "--batch-size", "2")[3:]]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert np.array_equal(_pixels(out), _pixels(straight_run))
    manifest, straight = (json.loads(p.with_suffix(".json").read_text()) for p in (out, straight_run))
    assert manifest["world_size"] == 2
    # the work counted over both ranks, not rank 0's share (the same patches, so the same forward passes)
    assert manifest["unet_evaluations"] == straight["unet_evaluations"] > 0


def test_a_resume_with_other_precision_or_steps_names_each_difference(tmp_path):
    from urcdm.sampling.state import SampleState

    out = tmp_path / "s.tiff"
    SampleState.open(out, {"seed": 1, "precision": "fp32", "steps": [32, 16, 16], "config": "abc"})
    with pytest.raises(UserError) as error:
        SampleState.open(out, {"seed": 1, "precision": "bf16", "steps": [8, 4, 4], "config": "def"})
    message = str(error.value)
    assert "(precision fp32, now bf16; steps 32,16,16, now 8,4,4)" in message


@pytest.mark.parametrize("changed, named", [({"steps": [8, 4, 2], "config": "b"}, "steps 8,4,4, now 8,4,2"),
                                            ({"config": "b"}, "the config file's settings"),
                                            ({"config": "b", "seed": 2}, "the config file's settings; seed 1, now 2")])
def test_a_refused_resume_names_what_changed(tmp_path, changed, named):
    from urcdm.errors import UserError
    from urcdm.sampling.state import SampleState

    saved = {"config": "a", "seed": 1, "steps": [8, 4, 4], "noise": "per-patch"}
    SampleState.open(tmp_path / "s.tiff", saved)
    with pytest.raises(UserError, match="other settings") as refused:
        SampleState.open(tmp_path / "s.tiff", {**saved, **changed})
    assert f"({named})" in str(refused.value)

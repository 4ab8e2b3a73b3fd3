"""`urcdm sample --dry-run`: the plan of a run (urcdm.sampling.plan) against the real unets, the cost model and
the sampler's own white-skip judgement; nothing written; bad input is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urcdm.cli import main
from urcdm.config import paper, tiny
from urcdm.models import build_unet
from urcdm.sampling.cost import unet_calls, with_flops
from urcdm.sampling.plan import H200_GFLOP, H200_MS, glass_patches, plan_run, projected_ms
from urcdm.sampling.unet_batches import AUTO_CAP


def test_the_plan_counts_what_the_real_unets_and_the_cost_model_count(tmp_path, capsys):
    config = tiny()
    assert main(["sample", "--config", "tiny", "--dry-run", "--json", "--batch-size", "8",
                 "--precision", "bf16", "--device", "cpu"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere we can see
    assert plan["precision"] == "bf16" and "H200" in plan["projection"]
    costs = {(c.level, c.unet): c for c in with_flops(unet_calls(config), config)}
    for entry in plan["levels"]:
        assert entry["batches"] == {0: 1, 1: 4, 2: 12}[entry["level"]]  # waves of 1, 2 x 2 ..., batched by 8
        for row in entry["unets"]:
            real = sum(p.numel() for p in build_unet(config, row["level"], row["unet"]).parameters())
            assert row["parameters"] == real and row["resident_bytes"] == 2 * real
            cost = costs[row["level"], row["unet"]]
            assert row["evaluations"] == cost.calls and row["flops_per_evaluation"] == cost.flops_per_call
    assert plan["unet_evaluations"] == sum(c.calls for c in costs.values())
    assert plan["peak_resident_bytes"] * 3 == pytest.approx(plan["all_levels_bytes"], rel=0.01)


def test_without_a_gpu_the_plan_is_for_an_h200_at_its_defaults(capsys):
    """precision auto is bf16 there (the hours are an H200's), and batch auto is what it sizes there: its
    139 GiB hold the solver state of far more than the cap of patches per call; the header says for what
    machine it plans."""
    assert main(["sample", "--config", "tiny", "--dry-run", "--device", "cpu"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "batch auto, bf16 as on an H200 (no GPU on cpu)" in header
    assert main(["sample", "--config", "tiny", "--dry-run", "--device", "cpu", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["precision"] == "bf16" and plan["batch_size"] == "auto"
    assert [entry["batch_size"] for entry in plan["levels"]] == [AUTO_CAP] * 3
    assert main(["sample", "--config", "tiny", "--dry-run", "--device", "cpu", "--precision", "fp32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"  # what the user asks for, they get


def test_an_explicit_batch_is_projected_at_the_h200_rate_of_that_batch(capsys):
    """--batch-size 1 puts one sample through each call: launch-bound on the H200, so slower per sample
    than auto's large calls, by the measured ratio."""
    hours = {}
    for batch in ("1", "auto"):
        assert main(["sample", "--config", "tiny", "--dry-run", "--device", "cpu", "--json", "--batch-size", batch]) == 0
        hours[batch] = {(row["level"], row["unet"]): row["hours"]
                        for entry in json.loads(capsys.readouterr().out)["levels"] for row in entry["unets"]}
    # tiny unet 0 works at 16 px: nearest the 64-px paper unet (59.6 ms at batch 1, 4.4 at 16)
    assert hours["1"][0, 0] / hours["auto"][0, 0] == pytest.approx(59.6 / 4.4, rel=1e-3)


def test_the_projection_reproduces_the_measured_h200_milliseconds():
    """Each paper unet's measured ms per sample comes back for its own FLOPs at its own batch; a batch
    between two measured ones gets the smaller one's rate, auto the largest's."""
    for precision, by_size in H200_MS.items():
        for size, by_batch in by_size.items():
            for batch, ms in by_batch.items():
                assert projected_ms(H200_GFLOP[size] * 1e9, size, precision, batch) == pytest.approx(ms)
    assert projected_ms(H200_GFLOP[64] * 1e9, 64, "bf16", 12) == pytest.approx(7.9)
    assert projected_ms(H200_GFLOP[64] * 1e9, 64, "bf16", None) == projected_ms(H200_GFLOP[64] * 1e9, 64, "bf16", 64)
    assert projected_ms(2 * H200_GFLOP[1024] * 1e9, 1100, "bf16") == pytest.approx(2 * 82.2)


@pytest.mark.parametrize("precision, batch, glass, hours", [
    ("fp32", 4, 0, 151), ("bf16", 4, 0, 24.9), ("bf16", None, 0, 16.3), ("bf16", None, 1 - 1402 / 2116, 10.9)])
def test_the_paper_slide_projects_to_the_h200_readme_hours(precision, batch, glass, hours):
    """../shared/gpu/README.md's slide table (paper steps: fp32 at batch 4, today's old defaults; bf16 at
    batch 4; at the best batch; with the TCGA layout's white skip, 1,402 last-level patches)."""
    total_ms = sum(cost.calls * projected_ms(H200_GFLOP[cost.size] * 1e9, cost.size, precision, batch)
                   for cost in unet_calls(paper(), glass_fraction=glass))
    assert total_ms / 3.6e6 == pytest.approx(hours, rel=0.01)


def test_on_a_gpu_each_unet_is_timed_at_the_batch_auto_gives_it_halved_until_it_fits(monkeypatch):
    """The plan times each unet at 16 samples a call (auto) or the batch asked for, up to 16; a unet
    that runs out of memory there is timed at half, and half again, as the sampler's chunks would run."""
    import torch

    from urcdm.sampling import plan as plan_module

    tried = []

    def timing(config, level, unet, method, precision, batch, device, calls=3):
        tried.append((level, unet, batch))
        if unet == 2 and batch > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return plan_module.UnetTiming(10.0 / batch, 0.0)

    monkeypatch.setattr(plan_module, "unet_timing", timing)
    monkeypatch.setattr(plan_module, "free_gpu_memory", lambda device: 24 * 2 ** 30)
    planned = plan_run(tiny(), "urcdm", "checkerboard", None, "bf16", device="cuda:0")
    assert planned["projection"] == "timed on cuda:0"
    assert [t for t in tried if t[0] == 1] == [(1, 0, 16), (1, 1, 16), (1, 2, 16), (1, 2, 8), (1, 2, 4)]
    assert [row["ms_per_sample"] for row in planned["levels"][1]["unets"]] == [10 / 16, 10 / 16, 10 / 4]
    tried.clear()
    plan_run(tiny(), "urcdm", "checkerboard", 2, "bf16", device="cuda:0")
    assert {t[2] for t in tried} == {2}

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(plan_module, "unet_timing", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # not even one sample fits: the error, not a guess
        plan_module.timed_ms(tiny(), 1, 2, "urcdm", "bf16", 1, "cuda:0")


def test_white_skip_is_judged_on_the_level0_layout_as_the_sampler_judges_contexts():
    config = tiny()
    side = 256
    glass = np.full((side, side, 3), 240, np.uint8)
    tissue = glass.copy()
    yy, xx = np.mgrid[0:side, 0:side]
    tissue[..., 0] = 150 + 60 * np.sin(xx / 3.0)  # textured pink: what the tissue detector calls tissue
    tissue[..., 1] = 80 + 40 * np.cos(yy / 4.0)
    tissue[..., 2] = 160
    half = glass.copy()
    half[:, side // 2:] = tissue[:, side // 2:]
    patches = config.levels[-1].grid ** 2
    assert glass_patches(config, glass) == patches and glass_patches(config, tissue) == 0
    assert 0.3 * patches < glass_patches(config, half) < 0.7 * patches
    plan = plan_run(config, "urcdm", "checkerboard", 4, "fp32", overview=half)
    skipped = plan["levels"][-1]["white_skip_patches"]
    steps = config.unets[0].sample_steps or config.unets[0].timesteps
    assert plan["levels"][-1]["unets"][0]["evaluations"] == (patches - skipped) * steps


@pytest.mark.parametrize("argv, message", [
    (["sample", "--config", "tiny"], "--out: required"),
    (["sample", "--config", "nonexistent.yaml", "--dry-run"], "nonexistent.yaml"),
    (["sample", "--config", "tiny", "--dry-run", "--precision", "fp16", "--device", "cpu"], "--precision fp16"),
    (["sample", "--config", "tiny", "--dry-run", "--batch-size", "0"], "--batch-size"),
    (["sample", "--config", "tiny", "--dry-run", "--batch-size", "abc"], "--batch-size"),
])
def test_bad_input_is_one_error_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's own errors leave by SystemExit, still as one line
        code = exited.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_card_too_small_for_one_sample_is_one_error_line(dry_run, monkeypatch, tmp_path, capsys):
    import torch

    from urcdm.sampling import plan as plan_module
    from urcdm.sampling import sampler as sampler_module

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(plan_module if dry_run else sampler_module, "plan_run" if dry_run else "sample_slide", out_of_memory)
    out = tmp_path / "slide.tiff"
    argv = ["sample", "--config", "tiny", "--device", "cpu", *(["--dry-run"] if dry_run else ["--out", str(out)])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 + (not dry_run)  # the run's note that its cascades are freshly initialised, then the error
    assert err[-1].startswith("error: cpu ran out of memory, even at one sample per unet call")
    assert ("nothing was written" if dry_run else "rerun to resume") in err[-1]
    assert not out.exists()

"""One level's cascade resident at a time (urcdm.sampling.backends.DiffusionBackend), `urcdm sample
--precision auto`, a patch's pixels in any batch, and --compile where torch cannot compile. (The weights held in the precision the unets run in:
test_solvers.)"""

from __future__ import annotations

import gc
import json
import weakref
from dataclasses import replace

import numpy as np
import torch

from urcdm.cli import main
from urcdm.config import load_config, tiny
from urcdm.models import build_imagen
from urcdm.sample_cli import resolve_precision
from urcdm.sampling.backends import DiffusionBackend
from urcdm.sampling.sampler import sample_slide


def test_only_the_level_being_sampled_has_its_cascade_in_memory(tmp_path, micro_config_file):
    config = load_config(micro_config_file)  # 14 patches a slide
    config = replace(config, unets=tuple(replace(u, sample_steps=2) for u in config.unets))
    built: dict[int, list[weakref.ref]] = {}

    def factory(level):
        def build(device, dtype):
            imagen = build_imagen(config, level, sampling=True, device=device, dtype=dtype)
            built.setdefault(level, []).append(weakref.ref(imagen))
            return imagen
        return build

    # fp32: which levels are resident does not depend on the precision, and bf16 is slow on CPUs
    # (test_solvers checks that the levels are built in the precision they run in)
    backend = DiffusionBackend({level: factory(level) for level in range(3)}, precision="fp32")
    alive_at_calls = []
    generate = backend.generate

    def watched(level, *args):
        gc.collect()
        alive_at_calls.append((level, sorted(lv for lv, refs in built.items() for r in refs if r() is not None)))
        return generate(level, *args)

    backend.generate = watched
    sample_slide(config, backend, tmp_path / "slide.tiff", seed=3, batch_size=32, progress=False)
    assert {level: len(refs) for level, refs in built.items()} == {0: 1, 1: 1, 2: 1}  # each built once
    # Before a level's first call its own cascade is not built yet and the previous one may still be there;
    # from the first call on, only that level's is alive: the one before was freed when it was built.
    seen = {}
    for level, alive in alive_at_calls:
        seen.setdefault(level, []).append(alive)
    for level, calls in seen.items():
        assert all(alive in ([], [level - 1], [level]) for alive in calls[:1]), calls
        assert all(alive == [level] for alive in calls[1:]), (level, calls)
    backend.release()
    gc.collect()
    assert all(r() is None for refs in built.values() for r in refs)
    assert set(backend.unet_batches()) == {f"l{level}u{unet}" for level in range(3) for unet in range(3)}


def test_precision_auto_is_bf16_on_cuda_and_fp32_on_the_cpu(tmp_path, capsys, micro_config_file):
    assert resolve_precision("auto", "cuda:1") == "bf16" and resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp16", "cuda") == "fp16"
    out = tmp_path / "slide.tiff"
    code = main(["sample", "--config", str(micro_config_file), "--out", str(out), "--steps", "1,1,1",
                 "--batch-size", "16", "--device", "cpu", "--json"])
    assert code == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["precision"] == "fp32" and manifest["resumed"] is False
    assert json.loads(out.with_suffix(".json").read_text())["levels"][2]["patches"] == 9
    code = main(["sample", "--config", "tiny", "--out", str(tmp_path / "b.tiff"), "--precision", "fp16",
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: --precision fp16")


def test_with_a_solver_a_patch_is_the_same_in_any_batch():
    """Every patch's noise comes from its own seed (diffusers' randn_tensor with one generator per patch): three
    patches made together equal each made alone, for a stochastic solver with kept strips."""
    config = tiny()
    config = replace(config, unets=tuple(replace(u, sample_steps=2) for u in config.unets))
    torch.manual_seed(0)
    backend = DiffusionBackend({1: build_imagen(config, 1, sampling=True)}, solver="euler_a")
    rng = np.random.default_rng(0)
    p = config.patch_px
    contexts = rng.integers(0, 256, (3, p, p, 3), dtype=np.uint8)
    known = rng.integers(0, 256, (3, p, p, 3), dtype=np.uint8)
    masks = np.zeros((3, p, p), bool)
    masks[:, :, : p // 4] = True  # a finished neighbour on the left
    seeds = [11, 22, 33]
    together = backend.generate(1, contexts, known, masks, seeds)
    alone = np.concatenate([backend.generate(1, contexts[i:i + 1], known[i:i + 1], masks[i:i + 1], seeds[i:i + 1])
                            for i in range(3)])
    difference = np.abs(together.astype(int) - alone.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # the same up to the kernels' rounding
    other = backend.generate(1, contexts[:1], known[:1], masks[:1], [12])
    new_ground = ~masks[0]
    assert (other[0][new_ground] != alone[0][new_ground]).mean() > 0.5  # and the seed does reach the noise


def test_compile_where_torch_cannot_compile_is_one_error_line(tmp_path, capsys, monkeypatch):
    def cannot(*args, **kwargs):
        raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", cannot)
    out = tmp_path / "slide.tiff"
    assert main(["sample", "--config", "tiny", "--out", str(out), "--compile", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --compile: torch cannot compile on cpu here (RuntimeError: InductorError")
    assert not out.exists() and "note: no --models" not in "\n".join(err)  # refused before any model was built

"""Patches per cascade call and samples per unet call: sized from memory (within a per-process cap),
split without changing what the cascade makes, halved when a chunk still runs out of memory, and of
one fixed shape when compiled."""

from __future__ import annotations

import pytest
import torch

from urcdm.config import tiny
from urcdm.errors import UserError
from urcdm.models import build_imagen
from urcdm.sampling import unet_batches
from urcdm.sampling.cascade import sample_cascade
from urcdm.sampling.unet_batches import (
    AUTO_CAP,
    HEADROOM,
    STATE_BYTES_PER_PIXEL,
    ChunkedForward,
    batch_from_memory,
    compile_mode_for,
    free_gpu_memory,
    patches_per_call,
)


@pytest.mark.parametrize("fixed, per_sample, free", [(0, 100, 1000), (5_000, 300, 100_000), (2 << 30, 9 << 20, 80 << 30),
                                                    (10_000, 1_000, 5_000)])
def test_the_batch_is_the_largest_whose_peak_fits_in_free_memory(fixed, per_sample, free):
    def peak(n):  # a call's memory: weights and workspaces, plus activations per sample
        return fixed + per_sample * n

    chosen = batch_from_memory(peak(1), peak(2), free)
    fits = [n for n in range(1, 100_000) if peak(n) <= free * (1 - HEADROOM)]
    assert chosen == (max(fits) if fits else 1)


def test_a_cascade_in_chunks_of_one_makes_what_it_makes_in_one_call():
    imagen = build_imagen(tiny(), 1, sampling=True).eval()
    cond, known = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    mask = torch.zeros(3, 64, 64, dtype=torch.bool)
    mask[:, :10] = True
    whole = sample_cascade(imagen, "dpmpp_2m", [3, 2, 2], 3, cond, known, mask, torch.Generator().manual_seed(1))
    calls = []
    for unet in imagen.unets:
        chunked = ChunkedForward(unet, 1)
        inner = chunked.forward
        chunked.forward = lambda *a, _inner=inner, **k: calls.append(a[0].shape[0]) or _inner(*a, **k)
    split = sample_cascade(imagen, "dpmpp_2m", [3, 2, 2], 3, cond, known, mask, torch.Generator().manual_seed(1))
    assert calls and set(calls) == {1}  # every unet call went one sample at a time
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=0)


def test_without_a_size_the_cpu_evaluates_the_whole_batch():
    unet = torch.nn.Linear(4, 4)
    chunked = ChunkedForward(unet)
    unet(torch.rand(6, 4))
    assert chunked.size == 6


class RunsOutAbove(torch.nn.Module):
    """A unet stand-in with room for ``limit`` samples a call."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.seen = limit, []

    def forward(self, x, time, cond=None):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.seen.append(x.shape[0])
        return x * time[:, None] + (0 if cond is None else cond)


def test_a_chunk_that_runs_out_of_memory_is_halved_and_the_result_is_unchanged():
    module = RunsOutAbove(limit=3)
    chunked = ChunkedForward(module, 8)
    x, time, cond = torch.rand(8, 5), torch.rand(8), torch.rand(8, 5)
    out = module(x, time, cond=cond)
    assert chunked.size == 2 and set(module.seen) == {2}
    torch.testing.assert_close(out, x * time[:, None] + cond)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # not even one sample fits: the error is the user's to see
        ChunkedForward(RunsOutAbove(limit=0), 4)(x, time)


@pytest.mark.parametrize("free_gb, patch_px, expected", [(17, 1024, 22), (130, 1024, AUTO_CAP), (0, 1024, 1),
                                                         (2, 64, AUTO_CAP), (4, 1024, 5)])
def test_patches_per_call_fit_their_solver_state_in_a_share_of_free_memory(free_gb, patch_px, expected):
    chosen = patches_per_call(free_gb * 2 ** 30, patch_px)
    assert chosen == expected
    if 1 < chosen < AUTO_CAP:
        state = STATE_BYTES_PER_PIXEL * patch_px ** 2
        assert chosen * state <= free_gb * 2 ** 30 * 0.25 < (chosen + 1) * state


def test_free_memory_is_what_the_per_process_cap_leaves(monkeypatch):
    """An 80 GB card, 70 GB free, this process capped at 24 GB (set_per_process_memory_fraction) with 6 GB
    allocated and 8 GB held by torch's cache: 18 GB left to it, not 70 + 2."""
    gib = 2 ** 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (70 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 6 * gib)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 8 * gib)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 0.3)
    assert free_gpu_memory("cuda") == 24 * gib - 6 * gib
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 1.0)
    assert free_gpu_memory("cuda") == 70 * gib + 2 * gib  # uncapped: the card's free memory and the cache's spare


def test_a_compiled_unet_sees_one_shape_the_short_chunks_padded(monkeypatch):
    seen = []

    def compile_that_records(forward, **options):
        return lambda x, time, cond=None: seen.append(x.shape[0]) or forward(x, time, cond)

    monkeypatch.setattr(unet_batches.torch, "compile", compile_that_records)
    module = RunsOutAbove(limit=100)
    ChunkedForward(module, 4, compile_mode="default")
    for batch in (10, 3, 1):
        x, time = torch.rand(batch, 5), torch.rand(batch)
        torch.testing.assert_close(module(x, time), x * time[:, None])  # the padding is sliced off
    assert set(seen) == {4} and len(seen) == 3 + 1 + 1


def test_a_compiled_tiny_unet_equals_the_eager_one_and_compiles_once():
    """The real torch.compile (inductor) on the CPU: the 16-px unet of the tiny config, called with 3 samples
    (chunks of 2, the second padded) and with 1, is compiled once and matches eager evaluation."""
    from torch._dynamo.utils import counters

    from urcdm.sample_cli import check_compiler

    try:
        check_compiler("cpu")
    except UserError as error:
        pytest.skip(str(error))
    torch.manual_seed(0)
    unet = build_imagen(tiny(), 1, sampling=True).eval().unets[0]
    size = 16
    x, time, cond = torch.randn(3, 3, size, size), torch.rand(3), torch.rand(3, 3, size, size)
    with torch.no_grad():
        eager = unet(x, time, cond_images=cond)
        torch._dynamo.reset()
        counters.clear()
        ChunkedForward(unet, 2, compile_mode="default")
        compiled, one = unet(x, time, cond_images=cond), unet(x[:1], time[:1], cond_images=cond[:1])
    assert counters["stats"]["unique_graphs"] == 1
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(one, eager[:1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("requested, size, device, mode", [
    ("auto", 64, "cuda", "reduce-overhead"), ("auto", 256, "cuda", "reduce-overhead"), ("auto", 1024, "cuda", "default"),
    ("auto", 64, "cpu", "default"), ("max-autotune", 64, "cuda", "max-autotune"), (None, 64, "cuda", None)])
def test_auto_compiles_the_launch_bound_smaller_unets_into_cuda_graphs_only_on_cuda(requested, size, device, mode):
    assert compile_mode_for(requested, size, 1024, device) == mode


def test_a_compiled_unet_is_timed_after_its_compile():
    """What bench_gpu's compiled rows measure: the first call (the compile) apart from the timed calls."""
    from urcdm.sample_cli import check_compiler
    from urcdm.sampling.plan import unet_timing

    try:
        check_compiler("cpu")
    except UserError as error:
        pytest.skip(str(error))
    torch._dynamo.reset()
    eager = unet_timing(tiny(), 1, 0, "urcdm", "fp32", 1, "cpu")
    # two samples a call, the shape the test above compiles: inductor's cache may serve this compile
    compiled = unet_timing(tiny(), 1, 0, "urcdm", "fp32", 2, "cpu", compile_mode="default")
    assert compiled.ms_per_sample > 0 and eager.ms_per_sample > 0
    # compiling costs seconds; a compiled call of this 16-px unet costs milliseconds
    assert compiled.first_call_s > 20 * compiled.ms_per_sample / 1e3
    assert compiled.first_call_s > eager.first_call_s

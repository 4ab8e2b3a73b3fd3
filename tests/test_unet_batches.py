"""Samples per unet call: sized from memory, split without changing what the cascade makes, and halved
when a chunk still runs out of memory."""

from __future__ import annotations

import pytest
import torch

from urcdm.config import tiny
from urcdm.models import build_imagen
from urcdm.sampling.cascade import sample_cascade
from urcdm.sampling.unet_batches import HEADROOM, ChunkedForward, batch_from_memory


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

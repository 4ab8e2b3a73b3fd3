"""How many samples each unet evaluates at once, chosen from free GPU memory unless given.

``--batch-size`` is how many patches go through a level's cascade together; it decides the noise
(a batch is seeded from its first patch), so it must not depend on the machine. How many of those a
unet evaluates in one call only decides memory: the 1024-px unet needs far more per sample than the
64-px one. So each unet's calls are split into chunks (``ChunkedForward``): given, or sized on the
first call from two probes (1 and 2 samples: the slope is the memory per sample, the rest is fixed)
and the free memory, and halved again should a chunk still run out of memory. On the CPU the whole
batch goes at once. The unets are deterministic given their inputs (no dropout at sampling), so a
chunked call is the same computation as the whole one, up to the kernels' float rounding.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

HEADROOM = 0.15  # of free memory left for the solver's state, the allocator's fragmentation, cuDNN workspaces


def batch_from_memory(peak_one: int, peak_two: int, free: int, headroom: float = HEADROOM) -> int:
    """Largest batch whose predicted peak fits in ``free`` bytes less the headroom, from the peaks
    (above what was allocated before) of a 1- and a 2-sample call; at least 1."""
    per_sample = max(peak_two - peak_one, 1)
    fixed = max(peak_one - per_sample, 0)
    return max(1, math.floor((free * (1 - headroom) - fixed) / per_sample))


def _batch_of(args, kwargs) -> int:
    return next(a for a in (*args, *kwargs.values()) if torch.is_tensor(a) and a.dim() > 0).shape[0]


def _split(value, batch: int, start: int, stop: int):
    return value[start:stop] if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == batch else value


class ChunkedForward:
    """Replaces ``unet.forward`` by one that evaluates at most ``size`` samples per call. ``size``
    None: chosen on the first call on CUDA (``batch_from_memory``), the whole batch elsewhere."""

    def __init__(self, unet: torch.nn.Module, size: int | None = None,
                 free_memory: Callable[[], int] | None = None):
        self.unet, self.size, self.forward = unet, size, unet.forward
        self.free_memory = free_memory or (lambda: torch.cuda.mem_get_info()[0])
        unet.forward = self

    def __call__(self, *args, **kwargs):
        batch = _batch_of(args, kwargs)
        if self.size is None:
            self.size = self._probe(batch, args, kwargs)
        while True:
            try:
                return self._in_chunks(batch, args, kwargs)
            except torch.cuda.OutOfMemoryError:
                if self.size == 1:
                    raise
                self.size = max(1, min(self.size, batch) // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _in_chunks(self, batch: int, args, kwargs):
        if batch <= self.size:
            return self.forward(*args, **kwargs)
        outputs = [self.forward(*(_split(a, batch, i, i + self.size) for a in args),
                                **{k: _split(v, batch, i, i + self.size) for k, v in kwargs.items()})
                   for i in range(0, batch, self.size)]
        return torch.cat(outputs)

    def _probe(self, batch: int, args, kwargs) -> int:
        device = next((a.device for a in (*args, *kwargs.values()) if torch.is_tensor(a)), torch.device("cpu"))
        if device.type != "cuda" or batch == 1:
            return batch
        peaks = []
        for n in (1, 2):
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.forward(*(_split(a, batch, 0, n) for a in args), **{k: _split(v, batch, 0, n) for k, v in kwargs.items()})
            torch.cuda.synchronize(device)
            peaks.append(torch.cuda.max_memory_allocated(device) - base)
        return min(batch, batch_from_memory(peaks[0], peaks[1], self.free_memory()))

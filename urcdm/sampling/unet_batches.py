"""How many patches go through a level's cascade together, and how many of them each unet evaluates
at once: ``--batch-size auto`` (the default) or N, one mechanism for both.

Every patch's noise comes from its own seed (``patch_noise``), so neither number changes the pixels;
they decide speed and memory. The 64- and 256-px unets are launch-bound on a GPU (a call costs the
same for 1 or 8 samples), so they want many patches per call; the 1024-px unet needs far more memory
per sample. So:

- patches per cascade call (``patches_per_call``): with ``auto`` on CUDA as many of the wave as the
  solver's state for them fits in a share of the free memory, at most ``AUTO_CAP``; on the CPU
  ``AUTO_CPU``. ``--batch-size N``: N.
- samples per unet call (``ChunkedForward``): with ``auto`` sized on a unet's first call from two
  probes (1 and 2 samples: the slope is the memory per sample, the rest is fixed) and the free
  memory; with N, N. Either is halved should a chunk still run out of memory. On the CPU the whole
  batch goes at once. The unets are deterministic given their inputs (no dropout at sampling), so a
  chunked call is the same computation as the whole one.

"Free" respects ``torch.cuda.set_per_process_memory_fraction``: a process capped at 24 GB on a
larger card sizes itself as on a 24 GB card.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

HEADROOM = 0.15  # of free memory left for the solver's state, the allocator's fragmentation, cuDNN workspaces
AUTO_CPU = 4  # patches per cascade call on the CPU: a CPU gains little from larger batches
AUTO_CAP = 64  # on CUDA: the small unets stop gaining well before this; bounds the host's arrays (~20 MB a 1024-px patch)
STATE_SHARE = 0.25  # of free GPU memory for the patches' solver state; the unets' chunks get the rest
# Bytes of solver state per output pixel of a patch: about 16 float32 RGB images live through a
# super-resolution step (sample, x0, mean, noise, the known image noised and kept, its mask, the
# low-resolution conditioning and its noised copy, autocast's copies).
STATE_BYTES_PER_PIXEL = 16 * 3 * 4


def free_gpu_memory(device: torch.device | str | None = None) -> int:
    """Bytes this process can still allocate: the card's free memory plus what torch's cache holds
    unused, within the per-process fraction when one is set."""
    free, total = torch.cuda.mem_get_info(device)
    allocated, reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    allowed = int(torch.cuda.get_per_process_memory_fraction(device) * total) - allocated
    return max(0, min(free + reserved - allocated, allowed))


def patches_per_call(free: int, patch_px: int, cap: int = AUTO_CAP, share: float = STATE_SHARE) -> int:
    """Patches of a wave to put through a cascade at once on a GPU with ``free`` bytes: as many as
    their solver state fits in ``share`` of it, between 1 and ``cap``."""
    return max(1, min(cap, math.floor(free * share / (STATE_BYTES_PER_PIXEL * patch_px ** 2))))


def compile_mode_for(requested: str | None, image_size: int, largest: int, device_type: str) -> str | None:
    """The torch.compile mode of a unet working at ``image_size`` px in a cascade whose last unet works at
    ``largest``: ``requested`` itself, or for "auto" CUDA graphs ("reduce-overhead") for the launch-bound
    smaller unets on CUDA and "default" for the rest (the 1024-px unet is compute-bound: graphs would
    only pin its large activations)."""
    if requested != "auto":
        return requested
    return "reduce-overhead" if image_size < largest and device_type == "cuda" else "default"


def batch_from_memory(peak_one: int, peak_two: int, free: int, headroom: float = HEADROOM) -> int:
    """Largest batch whose predicted peak fits in ``free`` bytes less the headroom, from the peaks
    (above what was allocated before) of a 1- and a 2-sample call; at least 1."""
    per_sample = max(peak_two - peak_one, 1)
    fixed = max(peak_one - per_sample, 0)
    return max(1, math.floor((free * (1 - headroom) - fixed) / per_sample))


def _batch_of(args, kwargs) -> int:
    return next(a for a in (*args, *kwargs.values()) if torch.is_tensor(a) and a.dim() > 0).shape[0]


def _chunk(value, batch: int, start: int, stop: int, pad: int = 0):
    """Samples [start, stop) of a batch-dimension tensor, with ``pad`` copies of the last appended;
    anything else unchanged."""
    if not (torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == batch):
        return value
    part = value[start:stop]
    return torch.cat([part, part[-1:].expand(pad, *part.shape[1:])]) if pad else part


class ChunkedForward:
    """Replaces ``unet.forward`` by one that evaluates at most ``size`` samples per call. ``size``
    None: chosen on the first call on CUDA (``batch_from_memory``), the whole batch elsewhere.

    ``compile_mode``: torch.compile the unet's forward once, in that mode ("default", or
    "reduce-overhead": CUDA graphs, for the launch-bound small unets). Every call then has the same
    shape: a short chunk is padded with copies of its last sample (sliced off after), because a new
    shape would mean a recompile, minutes for a paper unet. The probe runs eagerly, for the same reason.
    """

    def __init__(self, unet: torch.nn.Module, size: int | None = None,
                 free_memory: Callable[[torch.device], int] | None = None, compile_mode: str | None = None):
        self.unet, self.size, self.eager = unet, size, unet.forward
        self.free_memory = free_memory or free_gpu_memory
        self.fixed_shape, self.graphs = compile_mode is not None, compile_mode == "reduce-overhead"
        self.forward = self.eager if compile_mode is None else torch.compile(self.eager, mode=compile_mode, dynamic=False)
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
        if batch <= self.size and not self.fixed_shape:
            return self.forward(*args, **kwargs)
        outputs = [self._call(batch, i, min(i + self.size, batch), args, kwargs) for i in range(0, batch, self.size)]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _call(self, batch: int, start: int, stop: int, args, kwargs):
        pad = self.size - (stop - start) if self.fixed_shape else 0
        chunk_args = [_chunk(a, batch, start, stop, pad) for a in args]
        chunk_kwargs = {k: _chunk(v, batch, start, stop, pad) for k, v in kwargs.items()}
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous replay's output is no longer needed
        output = self.forward(*chunk_args, **chunk_kwargs)
        # A CUDA graph's output lives in the graph's memory and the next replay overwrites it: keep a copy.
        output = output.clone() if self.graphs else output
        return output[:stop - start] if pad else output

    def _probe(self, batch: int, args, kwargs) -> int:
        device = next((a.device for a in (*args, *kwargs.values()) if torch.is_tensor(a)), torch.device("cpu"))
        if device.type != "cuda" or batch == 1:
            return batch
        peaks = []
        for n in (1, 2):
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.eager(*(_chunk(a, batch, 0, n) for a in args), **{k: _chunk(v, batch, 0, n) for k, v in kwargs.items()})
            torch.cuda.synchronize(device)
            peaks.append(torch.cuda.max_memory_allocated(device) - base)
        return min(batch, batch_from_memory(peaks[0], peaks[1], self.free_memory(device)))

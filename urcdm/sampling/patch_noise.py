"""Every patch's noise from its own seed, so that its pixels do not depend on the batch it is in.

The diffusers solvers take one generator per sample (``randn_tensor``). imagen-pytorch's own
(ancestral) sampler has no generator argument: ``p_sample_loop`` and the noise schedules draw with
``torch.randn(shape)`` and ``torch.randn_like(x)`` from torch's global generator, the whole batch
in one draw. Rewriting that loop would fork the paper's sampler; instead, for the duration of a
call, the imagen module's ``torch`` is a view of torch whose two noise functions draw each sample's
slice from that sample's generator. Everything else, and every other module, sees torch unchanged.
With one sample and a generator seeded like torch's global one, the draws are the same numbers, so
the sampler is exactly imagen's (tested).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch


def patch_generators(seeds: Sequence[int], device: torch.device | str) -> list[torch.Generator]:
    """One generator per patch, on the device that draws the noise: a CPU generator for CUDA tensors
    would make every draw a host-to-device copy of a whole patch, per step."""
    device = torch.device(device)
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


class _TorchWithSampleNoise:
    """torch, except that ``randn`` and ``randn_like`` of a batch draw sample i from ``generators[i]``."""

    def __init__(self, generators: Sequence[torch.Generator]):
        self._generators = list(generators)

    def __getattr__(self, name: str):
        return getattr(torch, name)

    def randn(self, *size, device=None, dtype=None, **options) -> torch.Tensor:
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        self._check(shape)
        drawn = [torch.randn((1, *shape[1:]), generator=generator, device=generator.device, dtype=dtype, **options)
                 for generator in self._generators]
        return torch.cat(drawn).to(device if device is not None else "cpu")

    def randn_like(self, like: torch.Tensor, dtype=None, device=None, **options) -> torch.Tensor:
        # randn_like keeps the strides of its argument and fills memory in order, so a sample's numbers
        # are laid out as imagen's draw lays them out only if each is drawn like its own slice.
        self._check(tuple(like.shape))
        drawn = [torch.empty_like(like[i:i + 1], dtype=dtype, device=generator.device, **options).normal_(generator=generator)
                 for i, generator in enumerate(self._generators)]
        return torch.cat(drawn).to(device if device is not None else like.device)

    def _check(self, shape: tuple[int, ...]) -> None:
        if not shape or shape[0] != len(self._generators):
            # Only per-batch draws are expected while sampling; anything else would silently be batch-seeded.
            raise RuntimeError(f"noise of shape {shape} drawn for a batch of {len(self._generators)} samples")


@contextmanager
def imagen_noise_per_sample(generators: Sequence[torch.Generator]) -> Iterator[None]:
    """While it is open, imagen-pytorch's sampler draws each sample's noise from its own generator."""
    from urcdm.imagen_compat import import_imagen

    module = import_imagen()
    original = module.torch
    module.torch = _TorchWithSampleNoise(generators)
    try:
        yield
    finally:
        module.torch = original

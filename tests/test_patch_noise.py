"""Every patch's noise from its own seed, under imagen-pytorch's own (ancestral) sampler."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from urcdm.config import tiny
from urcdm.models import build_imagen, sample
from urcdm.sampling.backends import DiffusionBackend
from urcdm.sampling.patch_noise import imagen_noise_per_sample, patch_generators


@pytest.fixture(scope="module")
def level1():
    config = tiny()
    config = replace(config, unets=tuple(replace(u, sample_steps=3) for u in config.unets))
    torch.manual_seed(0)
    imagen = build_imagen(config, 1, sampling=True).eval()
    rng = np.random.default_rng(0)
    p = config.patch_px
    masks = np.zeros((3, p, p), bool)
    masks[:, :, : p // 4] = True  # a finished neighbour on the left: imagen re-noises it at every step
    return imagen, rng.integers(0, 256, (3, p, p, 3), dtype=np.uint8), rng.integers(0, 256, (3, p, p, 3), dtype=np.uint8), masks


def test_with_the_ancestral_sampler_a_patch_is_the_same_in_any_batch(level1):
    imagen, contexts, known, masks = level1
    backend = DiffusionBackend({1: imagen}, solver="ancestral")
    seeds = [11, 22, 33]
    together = backend.generate(1, contexts, known, masks, seeds)
    alone = np.concatenate([backend.generate(1, contexts[i:i + 1], known[i:i + 1], masks[i:i + 1], seeds[i:i + 1])
                            for i in range(3)])
    assert np.array_equal(together, alone)
    reordered = backend.generate(1, contexts[::-1], known[::-1], masks[::-1], seeds[::-1])
    assert np.array_equal(reordered[::-1], alone)  # nor on its place in the batch
    other = backend.generate(1, contexts[:1], known[:1], masks[:1], [12])
    assert (other[0][~masks[0]] != alone[0][~masks[0]]).mean() > 0.5  # and the seed does reach the noise


def test_one_patch_is_imagens_own_sampler_seeded_with_its_seed(level1):
    """The per-sample draws are torch's global draws for a batch of one: the sampler is imagen-pytorch's,
    unchanged, and only where its noise comes from differs."""
    imagen, contexts, known, masks = level1
    made = DiffusionBackend({1: imagen}, solver="ancestral").generate(1, contexts[1:2], known[1:2], masks[1:2], [22])

    def tensor(images):
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255

    torch.manual_seed(22)
    with torch.no_grad():
        reference = sample(imagen, 1, cond_images=tensor(contexts[1:2]), inpaint_images=tensor(known[1:2]),
                           inpaint_masks=torch.from_numpy(masks[1:2]))
    reference = reference.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(made, reference)


def test_noise_that_is_not_one_draw_per_sample_is_refused_and_torch_is_restored():
    from urcdm.imagen_compat import import_imagen

    module = import_imagen()
    with imagen_noise_per_sample(patch_generators([1, 2], "cpu")):
        assert module.torch.randn(2, 3).shape == (2, 3)
        assert module.torch.randn_like(torch.zeros(2, 4, 5).transpose(1, 2)).shape == (2, 5, 4)
        with pytest.raises(RuntimeError, match=r"noise of shape \(3, 4\) drawn for a batch of 2"):
            module.torch.randn(3, 4)
    assert module.torch is torch

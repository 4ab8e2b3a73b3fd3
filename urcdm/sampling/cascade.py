"""A level's whole imagen-pytorch cascade sampled with a solver: ``Imagen.sample``'s loop over unets
(each super-resolution unet conditioned on the previous unet's output, noise-augmented as imagen does),
with the unets' steps taken by ``solvers.solve`` instead of imagen's ancestral sampler."""

from __future__ import annotations

from typing import Sequence

import torch

from urcdm.sampling.denoiser import ImagenDenoiser, noisy_lowres_image
from urcdm.sampling.solvers import solve


@torch.no_grad()
def sample_cascade(imagen, solver: str, steps: Sequence[int], batch_size: int, cond_images: torch.Tensor | None = None,
                   inpaint_images: torch.Tensor | None = None, inpaint_masks: torch.Tensor | None = None,
                   generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """Images in [0, 1], (B, 3, S, S). ``inpaint_images`` in [0, 1] and ``inpaint_masks`` (B, S, S),
    True = keep, are resized to every unet's size and kept exactly there, as in ``Imagen.sample``."""
    device = next(imagen.parameters()).device
    if len(steps) != len(imagen.unets):
        raise ValueError(f"{len(steps)} step counts for {len(imagen.unets)} unets")
    image = None
    for index, (unet, size, unet_steps) in enumerate(zip(imagen.unets, imagen.image_sizes, steps)):
        lowres_image = lowres_times = None
        if unet.lowres_cond:
            lowres_image, lowres_times = noisy_lowres_image(imagen, index, image, generator)
        known = mask = None
        if inpaint_images is not None:
            known = imagen.normalize_img(imagen.resize_to(inpaint_images, size))
            mask = imagen.resize_to(inpaint_masks[:, None].float(), size).bool()
        denoiser = ImagenDenoiser(imagen, index, cond_images, lowres_image, lowres_times)
        sample = solve(denoiser, solver, unet_steps, (batch_size, imagen.channels, size, size),
                       imagen.noise_schedulers[index].log_snr, known, mask, generator, device)
        image = imagen.unnormalize_img(sample)
    return image

"""One unet of an imagen-pytorch cascade as a denoiser: (sample, sigma) -> x0 and epsilon.

The x0 prediction is imagen-pytorch's own ``p_mean_variance``, so the objective (noise, v or x0),
the dynamic thresholding, the context (``cond_images``) and the super-resolution unets' noisy
low-resolution image reach the unet exactly as in imagen's ancestral sampler. Only time is measured
differently: imagen's schedulers map t to log-SNR; here a scheduler whose "time" is the log-SNR
itself is passed, so the unet is evaluated at the exact noise level a solver asks for, not at the
nearest t of a grid.
"""

from __future__ import annotations

import functools

import torch
from diffusers.utils.torch_utils import randn_tensor

from urcdm.imagen_compat import import_imagen
from urcdm.sampling.noise_levels import log_snr_of_sigma, vp_coefficients


@functools.lru_cache(maxsize=1)
def _log_snr_time_scheduler():  # stateless: one serves every denoiser
    scheduler = import_imagen().GaussianDiffusionContinuousTimes(noise_schedule="linear")
    scheduler.log_snr = lambda times: times  # "time" is the log-SNR
    return scheduler


def noisy_lowres_image(imagen, index: int, previous: torch.Tensor,
                       generator: torch.Generator | list[torch.Generator] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The super-resolution unet ``index``'s conditioning: the previous unet's output (in [0, 1]) resized
    to its size and noised at imagen's ``lowres_sample_noise_level``, as ``Imagen.sample`` does.
    Returns (image in [-1, 1], its noise times)."""
    batch, size = previous.shape[0], imagen.image_sizes[index]
    times = imagen.lowres_noise_schedule.get_times(batch, imagen.lowres_sample_noise_level, device=previous.device)
    image = imagen.normalize_img(imagen.resize_to(previous, size))
    noise = randn_tensor(image.shape, generator=generator, device=image.device)  # per sample with a list
    noisy, *_ = imagen.lowres_noise_schedule.q_sample(x_start=image, t=times, noise=noise)
    return noisy, times


class ImagenDenoiser:
    """Unet ``index`` of ``imagen`` with its conditioning fixed for one batch.

    ``x0(sample, sigma)`` takes imagen's variance-preserving sample (what a solver's
    ``scale_model_input`` hands the model) and the batch's noise level(s).
    """

    def __init__(self, imagen, index: int, cond_images: torch.Tensor | None = None,
                 lowres_image: torch.Tensor | None = None, lowres_times: torch.Tensor | None = None):
        unet = imagen.unets[index]
        if getattr(unet, "self_cond", False):
            raise ValueError("self-conditioned unets are not supported by the solvers")  # not in URCDM configs
        if unet.lowres_cond != (lowres_image is not None):
            raise ValueError(f"unet {index}: low-resolution image {'missing' if unet.lowres_cond else 'given to a base unet'}")
        self.imagen, self.unet = imagen, unet
        self.objective = imagen.pred_objectives[index]
        self.dynamic_threshold = imagen.dynamic_thresholding[index]
        self.cond_images, self.lowres_image, self.lowres_times = cond_images, lowres_image, lowres_times
        self.time = _log_snr_time_scheduler()

    @torch.no_grad()
    def x0(self, sample: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        log_snr = log_snr_of_sigma(torch.as_tensor(sigma, dtype=torch.float32, device=sample.device))
        log_snr = log_snr.expand(sample.shape[0]).contiguous()
        _, x_start = self.imagen.p_mean_variance(
            self.unet, sample, log_snr, t_next=log_snr, noise_scheduler=self.time, cond_images=self.cond_images,
            lowres_cond_img=self.lowres_image, lowres_noise_times=self.lowres_times,
            pred_objective=self.objective, dynamic_threshold=self.dynamic_threshold)
        return x_start

    @torch.no_grad()
    def epsilon(self, sample: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The noise that x0 implies: what the solvers' "epsilon" prediction type expects."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=sample.device)
        alpha, sigma_vp = vp_coefficients(sigma.reshape(-1, *(1,) * (sample.ndim - 1)))  # one per image, or one for all
        return (sample - alpha * self.x0(sample, sigma)) / sigma_vp

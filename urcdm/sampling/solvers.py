"""ODE and SDE solvers over a denoiser, from diffusers' schedulers, with exact keeping of known pixels.

Why diffusers: its Karras-style schedulers (Euler, Euler-ancestral, Heun, DPM-Solver++ 2M and its
SDE variant) are maintained, import nothing that reaches the network, and need only huggingface_hub
and safetensors, which the toolkit has already. k-diffusion has the cleaner continuous-time
interface but pins numpy < 2 (through dctorch) and pulls in wandb.

diffusers' schedulers are discrete: they are built from a beta table, here imagen's continuous
schedule sampled on a fine grid (``noise_levels.training_betas``), and they hand the model a
timestep. The unet is instead evaluated at the exact sigma the scheduler steps from
(``scheduler.sigmas[i]`` at step i, the value its ``scale_model_input`` divides by), so the table
decides only where the steps lie, not what the unet sees.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from diffusers.utils.torch_utils import randn_tensor

from urcdm.sampling import ANCESTRAL, SOLVER_NAMES
from urcdm.sampling.denoiser import ImagenDenoiser
from urcdm.sampling.noise_levels import training_betas, vp_coefficients


@dataclass(frozen=True)
class Solver:
    scheduler: str                      # the diffusers class
    options: dict = field(default_factory=dict)
    exploding: bool = True              # the sample is x0 + sigma n (Karras form), else imagen's alpha x0 + sigma_vp n
    stochastic: bool = False            # draws noise at each step (its step() takes a generator)
    evaluations_per_step: int = 1

    def evaluations(self, steps: int) -> int:
        """Unet evaluations for ``steps`` steps (Heun's last step is a plain Euler step)."""
        return self.evaluations_per_step * steps - (self.evaluations_per_step - 1)

    def scheduler_for(self, log_snr):
        import diffusers

        return getattr(diffusers, self.scheduler)(trained_betas=training_betas(log_snr), prediction_type="epsilon",
                                                  **self.options)


_DPM = {"solver_order": 2, "use_karras_sigmas": True, "final_sigmas_type": "zero", "lower_order_final": True}
SOLVERS = {
    "euler": Solver("EulerDiscreteScheduler", {"use_karras_sigmas": True, "final_sigmas_type": "zero"}),
    "euler_a": Solver("EulerAncestralDiscreteScheduler", stochastic=True),
    "heun": Solver("HeunDiscreteScheduler", {"use_karras_sigmas": True}, evaluations_per_step=2),
    "dpmpp_2m": Solver("DPMSolverMultistepScheduler", {**_DPM, "algorithm_type": "dpmsolver++"}, exploding=False),
    "dpmpp_2m_sde": Solver("DPMSolverMultistepScheduler", {**_DPM, "algorithm_type": "sde-dpmsolver++"},
                           exploding=False, stochastic=True),
}
assert set(SOLVER_NAMES) == {ANCESTRAL, *SOLVERS}, "the names offered on command lines"


@functools.lru_cache(maxsize=None)
def _scheduler(solver: str, log_snr):
    # One per solver and schedule: building one costs 80 ms (diffusers' config machinery), as much as
    # a tiny patch's unet evaluations, and set_timesteps resets all its state for every solve.
    return SOLVERS[solver].scheduler_for(log_snr)


def unet_evaluations(solver: str, steps: int) -> int:
    return steps if solver == ANCESTRAL else SOLVERS[solver].evaluations(steps)


Generators = torch.Generator | list[torch.Generator] | None  # one per sample: its noise whatever the batch


def _noised(solver: Solver, clean: torch.Tensor, sigma: torch.Tensor, generator: Generators) -> torch.Tensor:
    noise = randn_tensor(clean.shape, generator=generator, device=clean.device)
    if solver.exploding:
        return clean + sigma * noise
    alpha, sigma_vp = vp_coefficients(sigma)
    return alpha * clean + sigma_vp * noise


@torch.no_grad()
def solve(denoiser: ImagenDenoiser, solver: str, steps: int, shape: tuple[int, ...], log_snr,
          known: torch.Tensor | None = None, mask: torch.Tensor | None = None,
          generator: Generators = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """A sample in [-1, 1] of ``shape``, from noise in ``steps`` solver steps.

    ``generator``: one, or a list with one per sample; with a list every sample's noise (the start, the
    known pixels' re-noising, a stochastic solver's steps) comes from its own generator, so a sample is
    the same whichever batch it is in (diffusers' ``randn_tensor`` draws per generator; its schedulers'
    ``step`` takes the same list).

    ``known`` (in [-1, 1]) and ``mask`` (True = keep, broadcastable to ``shape``): before every unet
    evaluation the known pixels are noised afresh to the current level and put in place, as
    imagen-pytorch's inpainting does, and the result holds them exactly.
    """
    spec = SOLVERS[solver]
    scheduler = _scheduler(solver, log_snr)
    scheduler.set_timesteps(steps, device=device)
    sigmas = scheduler.sigmas.to(device=device, dtype=torch.float32)
    start = randn_tensor(shape, generator=generator, device=torch.device(device))
    sample = start * scheduler.init_noise_sigma
    step_options = {"generator": generator} if spec.stochastic else {}
    for index, timestep in enumerate(scheduler.timesteps):
        sigma = sigmas[index]
        if mask is not None:
            sample = torch.where(mask, _noised(spec, known, sigma, generator), sample)
        model_input = scheduler.scale_model_input(sample, timestep)
        epsilon = denoiser.epsilon(model_input, sigma)
        sample = scheduler.step(epsilon, timestep, sample, **step_options).prev_sample
    sample = sample.clamp(-1.0, 1.0)
    return sample if mask is None else torch.where(mask, known, sample)

"""Sampling a level's cascade with ODE/SDE solvers: noise levels (pure maths), the imagen-pytorch
unet as a denoiser, diffusers' solvers with exact keeping of known pixels, and the cascade loop.

The names are here, without torch, so that command lines can offer them at parse time.
"""

ANCESTRAL = "ancestral"  # imagen-pytorch's own sampler (the paper's): not a diffusers scheduler
SOLVER_NAMES = (ANCESTRAL, "euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_2m_sde")

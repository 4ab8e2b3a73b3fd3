"""Pure maths: imagen-pytorch's continuous-time log-SNR in the solvers' terms.

imagen-pytorch trains every unet in continuous time t in [0, 1] and conditions it on the log
signal-to-noise ratio, log_snr(t) (cosine or linear schedule, per unet). ODE/SDE solvers written for
Karras et al.'s form integrate over a noise level sigma of the variance-exploding process
x = x0 + sigma * n. The two meet at

    sigma = exp(-log_snr / 2),    x_vp = x / sqrt(1 + sigma^2),

where x_vp = alpha * x0 + sigma_vp * n is imagen's (variance-preserving) sample with
alpha^2 = sigmoid(log_snr) and sigma_vp^2 = sigmoid(-log_snr).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy import optimize

# The highest noise level a solver starts from. imagen's cosine schedule reaches log_snr = -75 at
# t = 1 (sigma ~ 1e16), where float32 cannot hold x0 beside the noise; at sigma = 160 (log_snr
# -10.2, alpha = 0.006) the sample is noise to 3 decimals already. The linear schedule stops at
# sigma 148 and is not cut.
SIGMA_MAX = 160.0
# Entries of the table the solvers' schedulers are built from: it fixes only where their sigmas
# may lie, since the unets are evaluated at the exact sigma each solver steps to.
TABLE_ENTRIES = 1000

LogSnr = Callable[[torch.Tensor], torch.Tensor]


def sigma_of_log_snr(log_snr: torch.Tensor) -> torch.Tensor:
    return torch.exp(-log_snr / 2)


def log_snr_of_sigma(sigma: torch.Tensor) -> torch.Tensor:
    return -2 * torch.log(sigma)


def vp_coefficients(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma_vp) of the variance-preserving sample at noise level ``sigma``."""
    alpha = torch.rsqrt(1 + sigma * sigma)
    return alpha, sigma * alpha


def time_of_sigma(log_snr: LogSnr, sigma: float, tolerance: float = 1e-12) -> float:
    """The time t at which a decreasing log_snr(t) reaches ``sigma``'s (1.0 when it never does)."""
    target = -2 * math.log(sigma)
    excess = lambda t: float(log_snr(torch.tensor([t], dtype=torch.float64))[0]) - target  # noqa: E731
    if excess(1.0) >= 0:
        return 1.0
    return optimize.brentq(excess, 0.0, 1.0, xtol=tolerance)


def training_betas(log_snr: LogSnr, entries: int = TABLE_ENTRIES, sigma_max: float = SIGMA_MAX) -> np.ndarray:
    """A discrete beta table whose cumulative alphas are the continuous schedule at t_i = i/N * t_max,
    i = 1..N, with t_max the time of ``sigma_max``: what a discrete-time scheduler is built from."""
    t_max = time_of_sigma(log_snr, sigma_max)
    times = torch.linspace(t_max / entries, t_max, entries, dtype=torch.float64)
    alphas_cumprod = torch.sigmoid(log_snr(times)).numpy()
    previous = np.concatenate([[1.0], alphas_cumprod[:-1]])
    return 1.0 - alphas_cumprod / previous

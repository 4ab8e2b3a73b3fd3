"""The solvers over imagen-pytorch's unets: the noise-level mapping, the denoiser against imagen's own
x0 prediction, the solvers' sample space against a Gaussian whose denoiser is known in closed form,
exact keeping of known pixels, and `urcdm sample --solver`."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from urcdm.cli import main
from urcdm.config import tiny
from urcdm.models import build_imagen
from urcdm.sampling import ANCESTRAL, SOLVER_NAMES
from urcdm.sampling.cascade import sample_cascade
from urcdm.sampling.denoiser import ImagenDenoiser, noisy_lowres_image
from urcdm.sampling.noise_levels import SIGMA_MAX, sigma_of_log_snr, time_of_sigma, training_betas, vp_coefficients
from urcdm.sampling.solvers import SOLVERS, solve, unet_evaluations


@pytest.fixture(scope="module")
def imagen():
    torch.manual_seed(0)
    return build_imagen(tiny(), 1, sampling=True).eval()  # level 1: context-conditioned, 3 unets


def linear_log_snr(t):
    """imagen-pytorch's linear schedule, -log(expm1(1e-4 + 10 t^2)), whose inverse has a closed form."""
    return -torch.log(torch.expm1(1e-4 + 10 * t**2))


def test_time_of_sigma_inverts_the_schedule():
    for sigma in (0.05, 1.0, 30.0):
        closed_form = math.sqrt((math.log1p(sigma**2) - 1e-4) / 10)  # log_snr = -2 log sigma solved for t
        assert time_of_sigma(linear_log_snr, sigma) == pytest.approx(closed_form, abs=1e-8)
    assert time_of_sigma(linear_log_snr, 1e6) == 1.0  # never that noisy: the whole schedule


def test_the_solvers_table_is_the_continuous_schedule_up_to_sigma_max(imagen):
    for scheduler in imagen.noise_schedulers:  # cosine (unets 0, 1) and linear (unet 2)
        betas = training_betas(scheduler.log_snr)
        alphas_cumprod = torch.cumprod(torch.from_numpy(1 - betas), 0)
        t_max = time_of_sigma(scheduler.log_snr, SIGMA_MAX)
        times = torch.linspace(t_max / len(betas), t_max, len(betas), dtype=torch.float64)
        assert torch.allclose(alphas_cumprod, torch.sigmoid(scheduler.log_snr(times)), rtol=1e-9, atol=0)
        top = float(sigma_of_log_snr(torch.log(alphas_cumprod[-1] / (1 - alphas_cumprod[-1]))))
        assert top == pytest.approx(min(SIGMA_MAX, float(sigma_of_log_snr(scheduler.log_snr(torch.ones(1, dtype=torch.float64))))), rel=1e-6)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_the_denoiser_is_imagens_own_x0_prediction(imagen, index):
    """At the same input and noise level, for the noise (unet 0) and v (unets 1, 2) objectives, the
    cosine and linear schedules, and the super-resolution unets with their noisy low-res image."""
    size, batch = imagen.image_sizes[index], 2
    cond = torch.rand(batch, 3, 64, 64)
    lowres = times = None
    if index:
        previous = torch.rand(batch, 3, imagen.image_sizes[index - 1], imagen.image_sizes[index - 1])
        lowres, times = noisy_lowres_image(imagen, index, previous, torch.Generator().manual_seed(1))
    denoiser = ImagenDenoiser(imagen, index, cond, lowres, times)
    scheduler = imagen.noise_schedulers[index]
    clean = torch.rand(batch, 3, size, size) * 2 - 1
    for t in (0.05, 0.5, 0.9):
        time = torch.full((batch,), t)
        noisy, log_snr, *_ = scheduler.q_sample(clean, time)
        _, expected = imagen.p_mean_variance(imagen.unets[index], noisy, time, noise_scheduler=scheduler, cond_images=cond,
                                             lowres_cond_img=lowres, lowres_noise_times=times,
                                             pred_objective=imagen.pred_objectives[index],
                                             dynamic_threshold=imagen.dynamic_thresholding[index])
        sigma = sigma_of_log_snr(log_snr)
        assert torch.allclose(denoiser.x0(noisy, sigma), expected, atol=2e-6), (index, t)
        alpha, sigma_vp = vp_coefficients(sigma[:, None, None, None])
        assert torch.allclose(alpha * denoiser.x0(noisy, sigma) + sigma_vp * denoiser.epsilon(noisy, sigma), noisy, atol=1e-5)


def test_the_lowres_image_is_noised_at_imagens_sampling_level(imagen):
    previous = torch.rand(512, 3, 16, 16)
    noisy, times = noisy_lowres_image(imagen, 1, previous, torch.Generator().manual_seed(0))
    assert torch.equal(times, torch.full((512,), imagen.lowres_sample_noise_level))
    clean = imagen.normalize_img(imagen.resize_to(previous, 32))
    alpha, sigma = (torch.sigmoid(s * imagen.lowres_noise_schedule.log_snr(times[:1])).sqrt() for s in (1, -1))
    residual = (noisy - alpha * clean) / sigma
    assert abs(float(residual.mean())) < 0.01 and float(residual.std()) == pytest.approx(1.0, abs=0.01)


class GaussianDenoiser:
    """The exact denoiser of data ~ N(mean, std^2): its samples are known, whatever the solver."""

    def __init__(self, mean: float, std: float):
        self.mean, self.var = mean, std**2

    def epsilon(self, sample, sigma):
        alpha, sigma_vp = vp_coefficients(torch.as_tensor(sigma))
        exploding = sample / alpha  # x0 + sigma n
        x0 = self.mean + self.var / (self.var + sigma**2) * (exploding - self.mean)
        return (sample - alpha * x0) / sigma_vp


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_every_solver_samples_the_distribution_its_denoiser_implies(solver):
    """The scale_model_input / sigma / epsilon conventions of each diffusers scheduler, checked on a
    Gaussian: a wrong sample space or noise level gives the wrong spread. Many steps, so that the
    first-order solvers' discretisation error (std 0.17 at 24 Euler steps, 0.19 at 400 Euler-ancestral
    steps; all converge to 0.2) is within the tolerance."""
    samples = solve(GaussianDenoiser(0.3, 0.2), solver, 400, (20000,), linear_log_snr,
                    generator=torch.Generator().manual_seed(0))
    assert float(samples.mean()) == pytest.approx(0.3, abs=0.01)
    assert float(samples.std()) == pytest.approx(0.2, rel=0.05)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_known_pixels_are_kept_exactly_and_the_rest_is_made_anew(imagen, solver):
    batch = 2
    cond, known = torch.rand(batch, 3, 64, 64), torch.rand(batch, 3, 64, 64)
    mask = torch.zeros(batch, 64, 64, dtype=torch.bool)
    mask[:, :, :20] = True
    images = sample_cascade(imagen, solver, [2, 2, 2], batch, cond, known, mask, torch.Generator().manual_seed(3))
    assert images.shape == (batch, 3, 64, 64)
    assert torch.equal(images[:, :, :, :20], known[:, :, :, :20])
    assert not torch.allclose(images[:, :, :, 20:], known[:, :, :, 20:], atol=0.05)
    again = sample_cascade(imagen, solver, [2, 2, 2], batch, cond, known, mask, torch.Generator().manual_seed(3))
    assert torch.equal(images, again)  # a generator decides every draw


class FlatImageDenoiser:
    """The data are flat images: x0 is the mean of the whole (variance-exploding) sample."""

    def epsilon(self, sample, sigma):
        alpha, sigma_vp = vp_coefficients(torch.as_tensor(sigma))
        x0 = (sample / alpha).mean(dim=(1, 2, 3), keepdim=True).expand_as(sample)
        return (sample - alpha * x0) / sigma_vp


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_known_pixels_are_in_place_at_every_step_and_steer_the_rest(solver):
    """Flat-image data: a known strip at -0.6 or +0.6, put in place (noised) before every step, pulls
    the rest of the image towards its level; kept only at the end, the same noise would give the same
    rest for both."""
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :2] = True
    rest = {}
    for level in (-0.6, 0.6):
        image = solve(FlatImageDenoiser(), solver, 16, (64, 1, 8, 8), linear_log_snr, torch.full((64, 1, 8, 8), level),
                      mask, torch.Generator().manual_seed(0))
        assert torch.equal(image[..., :2], torch.full((64, 1, 8, 2), level))
        rest[level] = float(image[..., 2:].mean())
    assert rest[0.6] - rest[-0.6] > 0.2, rest


def test_unet_evaluations_per_solver():
    assert unet_evaluations(ANCESTRAL, 256) == 256 and unet_evaluations("dpmpp_2m", 16) == 16
    assert unet_evaluations("heun", 16) == 31  # two a step, but the last step is a plain Euler step
    assert set(SOLVER_NAMES) == {ANCESTRAL, *SOLVERS}


def test_sample_with_a_solver_writes_its_name_and_unet_evaluations(micro_config_file, tmp_path, capsys):
    out = tmp_path / "s.tiff"
    assert main(["sample", "--config", str(micro_config_file), "--solver", "heun", "--steps", "2,2,2", "--out", str(out),
                 "--json", "--batch-size", "8"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["solver"] == "heun" and set(manifest["unet_batches"].values()) == {8}  # --batch-size N: every unet N
    assert [level["batch_size"] for level in manifest["levels"][1:]] == [8, 8]
    patches = manifest["levels"][0]["patches"] + sum(level["patches"] - level.get("patches_skipped", 0)
                                                     for level in manifest["levels"][1:])
    assert manifest["unet_evaluations"] == patches * 3 * 3  # Heun: 3 evaluations for 2 steps, per unet


def test_a_solver_without_unets_is_one_error_line(tmp_path, capsys):
    assert main(["sample", "--config", "tiny", "--backend", "upsample", "--solver", "heun",
                 "--out", str(tmp_path / "s.tiff")]) == 2
    assert capsys.readouterr().err.startswith("error: --solver: the upsample backend runs no unets")


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_the_unets_run_at_the_chosen_precision(precision, dtype):
    import numpy as np

    from urcdm.sampling.backends import DiffusionBackend

    config = tiny()  # two steps a unet: bf16 runs slowly on a CPU without bf16 units
    config = replace(config, unets=tuple(replace(u, sample_steps=2) for u in config.unets))
    held = []

    def build(device, dtype):  # as `urcdm sample` builds a level: in the dtype it runs in
        imagen = build_imagen(config, 1, sampling=True, device=device, dtype=dtype).eval()
        convolution = next(m for m in imagen.unets[2].modules() if isinstance(m, torch.nn.Conv2d))
        convolution.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
        held.extend(p.dtype for unet in imagen.unets for p in unet.parameters())
        return imagen

    backend = DiffusionBackend({1: build}, solver="dpmpp_2m", precision=precision)
    seen = set()
    context = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    patches = backend.generate(1, context, np.zeros_like(context), np.zeros((1, 64, 64), bool), [7])
    assert seen == {dtype} and patches.shape == (1, 64, 64, 3) and patches.dtype == np.uint8
    assert set(held) == {dtype}  # the weights are held as they are used, not cast at every call


def test_half_precision_on_the_cpu_is_one_error_line(tmp_path, capsys):
    assert main(["sample", "--config", "tiny", "--precision", "fp16", "--device", "cpu",
                 "--out", str(tmp_path / "s.tiff")]) == 2
    assert capsys.readouterr().err.startswith("error: --precision fp16: half precision runs the unets only on CUDA")

"""What makes a patch: the diffusion cascade of its level, or antialiased upsampling of its context.

A backend maps a batch of patches to pixels. Inputs per patch: its context (the previous level's
window, uint8 (P, P, 3); None at level 0), the pixels already made by finished neighbours and the mask
of those pixels (True = keep), and the patch's own seed. Outputs uint8 (P, P, 3). The sampler keeps the
masked pixels exactly whatever the backend returns.
"""

from __future__ import annotations

import gc
from typing import Mapping, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from urcdm.config import URCDMConfig
from urcdm.sampling import held_dtype
from urcdm.sampling.unet_batches import (
    AUTO_CPU,
    ChunkedForward,
    compile_mode_for,
    free_gpu_memory,
    patches_per_call,
)


class Backend(Protocol):
    name: str

    def generate(self, level: int, contexts: np.ndarray | None, known: np.ndarray, masks: np.ndarray,
                 seeds: Sequence[int]) -> np.ndarray: ...


class UpsampleBackend:
    """Each patch is the centre of its context, upsampled (Lanczos): the whole geometry, scheduling and
    I/O path at paper scale in minutes, and the fill for patches over glass. Level 0 (no context) is a
    seeded smooth tissue-coloured texture."""

    name = "upsample"

    def __init__(self, config: URCDMConfig):
        self.config = config

    def generate(self, level, contexts, known, masks, seeds):
        if contexts is None:
            return np.stack([self._texture(seed) for seed in seeds])
        patch = self.config.patch_px
        inner = patch * self.config.levels[level].span / self.config.levels[level - 1].span
        box = ((patch - inner) / 2, (patch - inner) / 2, (patch + inner) / 2, (patch + inner) / 2)
        return np.stack([np.asarray(Image.fromarray(c).resize((patch, patch), Image.Resampling.LANCZOS, box=box))
                         for c in contexts])

    def _texture(self, seed: int) -> np.ndarray:
        patch = self.config.patch_px
        rng = np.random.default_rng(seed)
        field = ndimage.gaussian_filter(rng.standard_normal((patch, patch)), sigma=patch / 24)
        field = (field - field.min()) / (np.ptp(field) + 1e-9)
        glass, tissue = np.array(self.config.fill_rgb, float), np.array([200.0, 120.0, 170.0])
        weight = np.clip((field - 0.35) * 3, 0, 1)[..., None]
        return np.round(glass * (1 - weight) + tissue * weight).astype(np.uint8)


class DiffusionBackend:
    """The level's imagen-pytorch cascade, with the context as ``cond_images`` and the finished strips
    kept through ``inpaint_images``/``inpaint_masks`` at every stage of the cascade. ``cascades``: one
    per level, or ``{level: cascade}`` (the outpainting baseline has only the last level's); each a
    built Imagen or a function ``(device=, dtype=)`` that builds (or loads) it there, in that dtype.

    One level's cascade is resident at a time: a level's is built when its first patch is asked for and
    freed, on the CPU and the GPU, before the next level's is built. The paper's nine unets are 37 GB in
    fp32; one level's three fit where the nine cannot. (Cascades handed over already built stay with the
    caller too; pass functions to get the saving.)

    Every patch's noise comes from its own seed (``patch_noise``), for imagen-pytorch's ancestral sampler
    as for the diffusers solvers, so its pixels do not depend on the batch it is in: ``--batch-size``
    decides speed and memory, never the slide.

    ``solver``: ``ancestral`` (imagen-pytorch's own sampler, the paper's) or one of
    ``urcdm.sampling.solvers.SOLVERS``, each unet taking the steps its Imagen was built with.
    ``precision``: fp32, or the unets under autocast to bf16 / fp16 with their weights held in that
    precision (the solver's arithmetic stays fp32); ``channels_last`` is for GPUs. ``compile``: None, a
    torch.compile mode for every unet, or "auto": CUDA graphs ("reduce-overhead") for the launch-bound
    unets smaller than the patch on CUDA, "default" for the rest. ``batch_size``: samples per call of
    every unet (None: ``patches_per_call`` and each unet's own from free GPU memory, ``unet_batches``).
    """

    name = "diffusion"

    def __init__(self, cascades: Sequence | Mapping[int, object], device: torch.device | str = "cpu",
                 solver: str = "ancestral", precision: str = "fp32", channels_last: bool = False,
                 compile: str | None = None, batch_size: int | None = None):
        from urcdm.sampling import PRECISIONS, SOLVER_NAMES

        if solver not in SOLVER_NAMES:
            raise ValueError(f"unknown solver {solver!r}; choose from {', '.join(SOLVER_NAMES)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        self.device, self.solver, self.precision = torch.device(device), solver, precision
        self.channels_last, self.compile, self.batch_size = channels_last, compile, batch_size
        self.unet_evaluations = 0
        self.cascades = dict(cascades) if isinstance(cascades, Mapping) else dict(enumerate(cascades))
        self.level: int | None = None  # the level whose cascade is resident
        self.imagen = None
        self.chunked: dict[tuple[int, int], ChunkedForward] = {}
        self.settled: dict[str, int | None] = {}  # samples per call of released levels' unets

    def unet_batches(self) -> dict[str, int | None]:
        """Samples per call each unet settled on (None: not called yet), for the manifest."""
        current = {f"l{level}u{index}": chunk.size for (level, index), chunk in self.chunked.items()}
        return {**self.settled, **current}

    def resident(self, level: int):
        """The level's cascade, built now if another level's (or none) is resident, which is freed first."""
        if level == self.level:
            return self.imagen
        self.release()
        made = self.cascades[level]
        # Held as used (half the memory, and no cast of every weight at every call). A function builds
        # (or loads) each unet there and in that dtype: the level never passes through the host in fp32.
        dtype = held_dtype(self.precision)
        if callable(made) and not isinstance(made, torch.nn.Module):
            imagen = made(device=self.device, dtype=dtype)
        else:
            imagen = made
            for unet in imagen.unets:  # cast as each moves: the GPU never holds the level in fp32
                unet.to(device=self.device, dtype=dtype)
        imagen = imagen.to(self.device).eval()
        for index, unet in enumerate(imagen.unets):
            if self.channels_last:
                unet.to(memory_format=torch.channels_last)
            # imagen calls forward_with_cond_scale -> forward: the chunked, perhaps compiled, forward
            mode = compile_mode_for(self.compile, imagen.image_sizes[index], imagen.image_sizes[-1], self.device.type)
            self.chunked[(level, index)] = ChunkedForward(unet, self.batch_size, compile_mode=mode)
        self.level, self.imagen = level, imagen
        return imagen

    def patches_per_call(self, level: int) -> int:
        """Patches of a wave per cascade call: ``batch_size`` when given, else from the GPU memory left
        with the level's cascade resident (``unet_batches.patches_per_call``), ``AUTO_CPU`` on the CPU."""
        if self.batch_size is not None:
            return self.batch_size
        if self.device.type != "cuda":
            return AUTO_CPU
        imagen = self.resident(level)
        return patches_per_call(free_gpu_memory(self.device), imagen.image_sizes[-1])

    def release(self) -> None:
        """Free the resident cascade (its unets and their chunked forwards refer to each other: collect)."""
        if self.imagen is None:
            return
        self.settled.update({f"l{level}u{index}": chunk.size for (level, index), chunk in self.chunked.items()})
        self.chunked.clear()
        self.level = self.imagen = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @staticmethod
    def _tensor(images: np.ndarray, device) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(255).to(device)

    @torch.no_grad()
    def generate(self, level, contexts, known, masks, seeds):
        from urcdm.models import sample
        from urcdm.sampling.cascade import sample_cascade
        from urcdm.sampling.patch_noise import imagen_noise_per_sample, patch_generators
        from urcdm.sampling.solvers import unet_evaluations

        has_known = bool(masks.any())
        imagen = self.resident(level)
        steps = [scheduler.num_timesteps for scheduler in imagen.noise_schedulers]  # built with the sampling steps
        self.unet_evaluations += len(seeds) * sum(unet_evaluations(self.solver, n) for n in steps)
        inputs = dict(batch_size=len(seeds), cond_images=None if contexts is None else self._tensor(contexts, self.device),
                      inpaint_images=self._tensor(known, self.device) if has_known else None,
                      inpaint_masks=torch.from_numpy(np.ascontiguousarray(masks)).to(self.device) if has_known else None)
        autocast = held_dtype(self.precision)
        # One generator per patch, from its own seed: its pixels do not depend on the batch it is in.
        generators = patch_generators(seeds, self.device)
        with torch.autocast(self.device.type, dtype=autocast, enabled=autocast is not None):
            if self.solver == "ancestral":
                with imagen_noise_per_sample(generators):
                    images = sample(imagen, **inputs)
            else:
                images = sample_cascade(imagen, self.solver, steps, generator=generators, **inputs)
        images = images.float()
        return (images.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())

"""Each level's cascade as an imagen-pytorch ``Imagen``, and checkpoints that remember their geometry.

No text conditioning anywhere. Under the ``urcdm`` method levels >= 1 see the previous level's context
window through ``cond_images`` (concatenated channels, resized by imagen-pytorch to each unet's size);
the ``outpaint`` baseline's single cascade, at the last level, sees none. A training job
builds its level's Imagen with only its own unet real and ``NullUnet`` placeholders elsewhere, so
training the 1024-px unet never allocates the 64-px one. imagen-pytorch's noise schedules are
continuous in time, so a unet trained with any ``timesteps`` samples with fewer steps by building the
Imagen with ``timesteps = sample_steps``.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import torch

from urcdm.config import URCDMConfig, check_level, from_dict, has_context
from urcdm.errors import UserError
from urcdm.imagen_compat import import_imagen

CHECKPOINT_FORMAT = "urcdm-unet-checkpoint/1"
# Unused without text, but an Imagen not given one asks the T5 config for it (see imagen_compat).
TEXT_EMBED_DIM = 768


def build_unet(config: URCDMConfig, level: int, index: int, method: str = "urcdm",
               device: torch.device | str | None = None, dtype: torch.dtype | None = None):
    """The unet, built and initialised on ``device`` (no host copy on a GPU; "meta": no memory at all,
    for weights to be assigned) and then held in ``dtype``."""
    spec = config.unets[index]
    # imagen-pytorch prints advice about small widths on stdout, which would corrupt --json output.
    # text_embed_dim=None, as Imagen(condition_on_text=False) casts it: any other value makes the
    # Imagen build every unet a second time (Unet.cast_model_parameters), twice the time and, while it
    # does, twice the memory (a paper level: 24 GB instead of 12).
    placed = torch.device(device) if device is not None else contextlib.nullcontext()  # None: the caller's
    with contextlib.redirect_stdout(sys.stderr), placed:
        unet = import_imagen().Unet(
            dim=spec.dim, dim_mults=spec.dim_mults, num_resnet_blocks=spec.num_resnet_blocks,
            layer_attns=spec.layer_attns, layer_cross_attns=False, cond_on_text=False, text_embed_dim=None,
            attn_heads=spec.attn_heads, attn_dim_head=spec.attn_dim_head, ff_mult=spec.ff_mult,
            memory_efficient=spec.memory_efficient, lowres_cond=index > 0, cond_images_channels=3 if has_context(method, level) else 0,
        )
    return unet.to(dtype=dtype) if dtype is not None else unet


def _null_unet(index: int):
    placeholder = import_imagen().NullUnet()
    # Imagen checks that every unet after the first is low-res conditioned, placeholders included.
    placeholder.lowres_cond = index > 0
    return placeholder


def build_imagen(config: URCDMConfig, level: int, only: int | None = None, sampling: bool = False,
                 method: str = "urcdm", device: torch.device | str | None = None, dtype: torch.dtype | None = None):
    """The level's cascade; ``only``: build just that unet (training), placeholders elsewhere.

    Each unet is built on ``device`` and cast to ``dtype`` before the next is built: a paper level in
    bf16 on a GPU never passes through the host, and never holds more than one unet in fp32. On
    "meta" the unets take no memory (``load_cascade`` assigns their weights) and the Imagen's own
    buffers stay on the CPU.
    """
    check_level(config, method, level)
    if only is not None and not 0 <= only < len(config.unets):
        raise UserError(f"unet must be in 0..{len(config.unets) - 1}, got {only}")
    unets = [build_unet(config, level, i, method, device, dtype) if only in (None, i) else _null_unet(i)
             for i in range(len(config.unets))]
    steps = [(u.sample_steps or u.timesteps) if sampling else u.timesteps for u in config.unets]
    imagen = import_imagen().Imagen(
        unets=unets, image_sizes=[u.image_size for u in config.unets], timesteps=steps,
        pred_objectives=[u.objective for u in config.unets], random_crop_sizes=[u.random_crop for u in config.unets],
        condition_on_text=False, text_embed_dim=TEXT_EMBED_DIM, cond_drop_prob=config.train.cond_drop_prob,
        lowres_sample_noise_level=config.train.lowres_sample_noise_level,
    )
    if device is not None and torch.device(device).type == "meta":
        # Imagen moves itself to its first unet's device; its one buffer of its own is a device marker, [0.].
        imagen.register_buffer("_temp", torch.tensor([0.]), persistent=False)
        return imagen
    return imagen if device is None else imagen.to(device)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        # Mapped, not read: only the tensors used (the EMA weights when sampling) are paged in, so a
        # checkpoint's optimizer state and raw weights never take host memory.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # any unpickling failure means the file is not one of ours
        detail = (str(exc).strip().splitlines() or [""])[0][:120]
        raise UserError(f"{path}: not a readable checkpoint, damaged or cut short ({type(exc).__name__}: {detail}); "
                        "restore it from a copy, or remove it to train that unet from step 0") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a URCDM unet checkpoint")
    return checkpoint


def check_checkpoint(checkpoint: Mapping, path: str | Path, config: URCDMConfig, level: int, index: int,
                     method: str = "urcdm") -> None:
    """Refuse a checkpoint made for other geometry, another method, level or unet, naming the difference."""
    saved = from_dict(checkpoint["config"])
    if checkpoint.get("method", "urcdm") != method:
        raise UserError(f"{path}: was trained for method {checkpoint.get('method', 'urcdm')}, not {method}")
    if (checkpoint["level"], checkpoint["unet"]) != (level, index):
        raise UserError(f"{path}: is level {checkpoint['level']} unet {checkpoint['unet']}, not level {level} unet {index}")
    mine, theirs = _as_trained(config), _as_trained(saved)
    if mine != theirs:
        differing = [k for k in mine if mine[k] != theirs.get(k)]
        raise UserError(f"{path}: was trained with config {saved.name!r}, which differs in {', '.join(differing)}")


def _as_trained(config: URCDMConfig) -> dict:
    # Sampling steps are chosen at sampling time (``urcdm sample --steps``); they are not the model's.
    return replace(config, unets=tuple(replace(u, sample_steps=None) for u in config.unets)).to_dict()


def load_cascade(config: URCDMConfig, level: int, checkpoints: Mapping[int, str | Path], use_ema: bool = True,
                 method: str = "urcdm", device: torch.device | str | None = None, dtype: torch.dtype | None = None):
    """A level's Imagen for sampling with every unet's (EMA) weights from its checkpoint, on ``device``
    and held in ``dtype``.

    The unets are built on the meta device and given the checkpoint's tensors: no random
    initialisation (40 s of a paper level on 2 cores) and no fp32 copy of the level in host memory.
    """
    missing = [i for i in range(len(config.unets)) if i not in checkpoints]
    if missing:
        raise UserError(f"level {level}: no checkpoint for unet(s) {', '.join(map(str, missing))}")
    for index, path in checkpoints.items():  # every checkpoint checked before anything is built
        check_checkpoint(read_checkpoint(path), path, config, level, index, method)
    device = torch.device(device or "cpu")
    imagen = build_imagen(config, level, sampling=True, method=method, device="meta")
    for index, path in checkpoints.items():
        # Mapped again and let go after its unet is given its weights, so that the pages the cast read
        # leave this process's memory: one unet's file mapped at a time, not the level's.
        state = read_checkpoint(path)["ema_unet" if use_ema else "unet_state"]
        placed = {name: tensor.to(device=device, dtype=dtype if dtype is not None and tensor.is_floating_point()
                                  else tensor.dtype) for name, tensor in state.items()}
        del state
        imagen.unets[index].load_state_dict(placed, assign=True)  # strict: every weight given
        del placed
    unfilled = [name for name, tensor in [*imagen.named_parameters(), *imagen.named_buffers()] if tensor.is_meta]
    if unfilled:  # a non-persistent buffer, which no checkpoint carries, would be left without memory
        raise RuntimeError(f"level {level}: {unfilled[0]} has no weights after loading")
    return imagen.to(device).eval()


@torch.no_grad()
def sample(imagen, batch_size: int, cond_images: torch.Tensor | None = None, stop_at_unet: int | None = None,
           inpaint_images: torch.Tensor | None = None, inpaint_masks: torch.Tensor | None = None,
           inpaint_resample_times: int = 1) -> torch.Tensor:
    """Images in [0, 1], (B, 3, S, S), from the whole cascade (or up to ``stop_at_unet``, 1-based).

    ``inpaint_resample_times`` defaults to 1, not imagen-pytorch's 5: RePaint-style resampling costs
    that factor in unet calls, and seams with it are a known upstream complaint (imagen-pytorch #293).
    """
    return imagen.sample(batch_size=batch_size, cond_images=cond_images, stop_at_unet_number=stop_at_unet,
                         inpaint_images=inpaint_images, inpaint_masks=inpaint_masks,
                         inpaint_resample_times=inpaint_resample_times, return_pil_images=False, use_tqdm=False)

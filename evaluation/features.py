"""Pixels -> features: the extractor registry and ``module:factory`` plug-ins.

An extractor is anything that maps a uint8 tensor (B, 3, H, W) to float features (B, D). Built-ins:

- ``inception-v3``          the standard FID Inception (torch-fidelity weights; see extractors.weights)
- ``dinov2-vit{s,b,l,g}14`` DINOv2, dgm-eval's FD_DINOv2 features (extractors.dinov2)
- ``clip-vitb32``           clean-fid's CLIP-FID features; ``clip-vitl14-336`` CMMD's (extractors.clip)
- ``uni`` ``phikon`` ``phikon-v2`` ``conch`` ``virchow2`` ``h-optimus-0``   pathology foundation models
- ``NAME-random``           the same graph with seeded random weights: timing and offline smoke runs only

Weights come from ``--weights`` (a file, or a folder holding it), else the model's variable, else the
torch hub cache (``$TORCH_HOME/hub/checkpoints``; CLIP also ``~/.cache/clip``) or the Hugging Face
cache (``models--ORG--NAME/snapshots/*/``), never from the network (only the FID Inception downloads,
when online). The id recorded with statistics includes the weights' hash, ``NAME@sha256:<16 hex>``.

==================  ==============================  =============================================
name                variable                        file, and where it comes from
==================  ==============================  =============================================
inception-v3        URCDM_INCEPTION_WEIGHTS         weights-inception-2015-12-05-6726825d.pth (torch-fidelity)
dinov2-vit?14       URCDM_DINOV2_VIT?14_WEIGHTS     dinov2_vit?14_pretrain.pth (dl.fbaipublicfiles.com), or
                                                    model.safetensors (HF timm/vit_*_patch14_dinov2.lvd142m)
clip-vitb32         URCDM_CLIP_VITB32_WEIGHTS       ViT-B-32.pt (OpenAI), or open_clip's (HF timm/vit_base_patch32_clip_224.openai)
clip-vitl14-336     URCDM_CLIP_VITL14_336_WEIGHTS   ViT-L-14-336px.pt (OpenAI), or HF timm/vit_large_patch14_clip_336.openai
uni                 URCDM_UNI_WEIGHTS               pytorch_model.bin (HF MahmoodLab/UNI, gated)
phikon              URCDM_PHIKON_WEIGHTS            model.safetensors / pytorch_model.bin (HF owkin/phikon)
phikon-v2           URCDM_PHIKON_V2_WEIGHTS         model.safetensors (HF owkin/phikon-v2)
conch               URCDM_CONCH_WEIGHTS             pytorch_model.bin (HF MahmoodLab/CONCH, gated)
virchow2            URCDM_VIRCHOW2_WEIGHTS          pytorch_model.bin (HF paige-ai/Virchow2, gated)
h-optimus-0         URCDM_H_OPTIMUS_0_WEIGHTS       pytorch_model.bin (HF bioptimus/H-optimus-0, gated)
==================  ==============================  =============================================

A plug-in ``package.module:factory`` names a callable returning such an extractor. If the factory
accepts ``device`` it is passed; an ``input_size`` attribute on the extractor sets the default
``--image-size``; ``resizes_internally = True`` says it takes any size and resizes itself, so crops
reach it as read; an ``extractor_id`` attribute is recorded in the statistics (default: the spec
itself); a ``space`` attribute names its metrics (default: the spec, sanitised).
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from evaluation.defaults import STANDARD_EXTRACTOR as STANDARD
from evaluation.extractors.registry import (
    BUILTINS,
    FOUNDATION_MODELS,
    foundation_base,
    unknown_extractor_message,
)
from urcdm.errors import UserError


def sanitised_space(text: str) -> str:
    """A metric-name-safe label: lower case, runs of anything else than [a-z0-9] as one '_'."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "features"


@dataclass
class Extractor:
    id: str                    # recorded with the statistics; stats from another id are refused
    fn: Callable[[torch.Tensor], torch.Tensor]
    input_size: int | None     # the network's own input size, the default --image-size
    standard: bool             # numbers comparable to published FIDs
    device: torch.device
    resizes_internally: bool = False  # takes any size and resizes to input_size itself
    fixed_size: bool = False   # takes input_size only (a ViT's position embeddings are for that grid)
    space: str = ""            # short label metrics are named by (fd_<space>); default: from the id

    def __post_init__(self) -> None:
        if not self.space:
            self.space = sanitised_space(self.id.split("@")[0])

    def default_image_size(self, mode: str, patch_size: int) -> int:
        """What crops are resized to before the network, unless --image-size says otherwise.

        A network that resizes internally gets crops as read, the way anyres-gan feeds its P x P
        patches to the FID Inception (whose TF1-style bilinear resize to 299 happens inside).
        Whole images are resized by us, antialiased, to the network's input size.
        """
        if mode != "whole" and self.resizes_internally:
            return patch_size
        return self.input_size or patch_size

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            features = self.fn(images.to(self.device, non_blocking=True))
        features = torch.as_tensor(features)
        if features.ndim != 2 or features.shape[0] != images.shape[0]:
            raise UserError(f"extractor {self.id} returned shape {tuple(features.shape)} for a batch of "
                            f"{images.shape[0]}; expected (B, D)")
        return features.detach().to("cpu", torch.float32).numpy()


def registered_space(spec: str) -> str | None:
    """The feature space a registered extractor's metrics are named by, known without loading it (so a
    metric the space does not allow is refused before weights are looked for); None for a plug-in."""
    if spec in BUILTINS:
        return "inception"
    base = foundation_base(spec)
    if base is None:
        return None
    return importlib.import_module(f"evaluation.extractors.{FOUNDATION_MODELS[base]}").RECIPE.cards[base].space


def load_extractor(spec: str, weights: str | None = None, device: torch.device | None = None) -> Extractor:
    device = device or torch.device("cpu")
    if spec in BUILTINS:
        return _load_inception(spec, weights, device)
    base = foundation_base(spec)
    if base is not None:
        return _load_foundation(base, weights, spec != base, device)
    if (unknown := unknown_extractor_message(spec)) is not None:
        raise UserError(f"--extractor {spec}: {unknown}")
    if weights:
        raise UserError("--weights applies to the registered extractors only; plug-ins load their own")
    return _load_plugin(spec, device)


def _load_inception(spec: str, weights: str | None, device: torch.device) -> Extractor:
    from evaluation.extractors.inception import INPUT_SIZE, InceptionV3Features
    from evaluation.extractors.weights import find_inception_weights, weights_id

    if spec == "inception-v3":
        path = find_inception_weights(weights)
        module, ident = InceptionV3Features(str(path)), weights_id("inception-v3", path)
    else:
        module, ident = InceptionV3Features(None, random_weights=True), "inception-v3-random@seed0"
    return Extractor(ident, module.to(device), INPUT_SIZE, spec == STANDARD, device, resizes_internally=True,
                     space="inception")


def _load_foundation(name: str, weights: str | None, random_weights: bool, device: torch.device) -> Extractor:
    from evaluation.extractors.foundation import build

    module = importlib.import_module(f"evaluation.extractors.{FOUNDATION_MODELS[name]}")
    fn = build(module.RECIPE, name, weights, random_weights=random_weights).to(device)
    return Extractor(fn.extractor_id, fn, fn.input_size, False, device, resizes_internally=fn.resizes_internally,
                     fixed_size=True, space=fn.space)


def _load_plugin(spec: str, device: torch.device) -> Extractor:
    module_name, _, factory_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"--extractor {spec}: cannot import {module_name} ({exc})") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UserError(f"--extractor {spec}: {module_name} has no callable {factory_name}")
    accepts_device = "device" in inspect.signature(factory).parameters
    fn = factory(device=device) if accepts_device else factory()
    if not callable(fn):
        raise UserError(f"--extractor {spec}: the factory returned {type(fn).__name__}, not a callable")
    if isinstance(fn, torch.nn.Module):
        fn = fn.to(device).eval()
    ident = str(getattr(fn, "extractor_id", spec))
    return Extractor(ident, fn, getattr(fn, "input_size", None), False, device,
                     resizes_internally=bool(getattr(fn, "resizes_internally", False)),
                     space=sanitised_space(str(getattr(fn, "space", "") or spec)))

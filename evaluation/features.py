"""Pixels -> features: the extractor registry and ``module:factory`` plug-ins.

An extractor is anything that maps a uint8 tensor (B, 3, H, W) to float features (B, D). Built-ins:

- ``inception-v3``          the standard FID Inception (torch-fidelity weights; see extractors.weights)
- ``inception-v3-random``   same graph, seeded random weights: timing and offline smoke runs only

A plug-in ``package.module:factory`` names a callable returning such an extractor (a pathology
foundation model, CLIP, ...). If the factory accepts ``device`` it is passed; an ``input_size``
attribute on the extractor sets the default ``--image-size``; ``resizes_internally = True`` says
it takes any size and resizes itself, so crops reach it as read; an ``extractor_id`` attribute is
recorded in the statistics (default: the spec itself).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from urcdm.errors import UserError

STANDARD = "inception-v3"
BUILTINS = ("inception-v3", "inception-v3-random")


@dataclass
class Extractor:
    id: str                    # recorded with the statistics; stats from another id are refused
    fn: Callable[[torch.Tensor], torch.Tensor]
    input_size: int | None     # the network's own input size, the default --image-size
    standard: bool             # numbers comparable to published FIDs
    device: torch.device
    resizes_internally: bool = False  # takes any size and resizes to input_size itself

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


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def load_extractor(spec: str, weights: str | None = None, device: torch.device | None = None) -> Extractor:
    device = device or torch.device("cpu")
    if spec in BUILTINS:
        from evaluation.extractors.inception import INPUT_SIZE, InceptionV3Features
        from evaluation.extractors.weights import find_inception_weights, sha256_of

        if spec == "inception-v3":
            path = find_inception_weights(weights)
            module, ident = InceptionV3Features(str(path)), f"inception-v3@sha256:{sha256_of(path)[:16]}"
        else:
            module, ident = InceptionV3Features(None, random_weights=True), "inception-v3-random@seed0"
        return Extractor(ident, module.to(device), INPUT_SIZE, spec == STANDARD, device, resizes_internally=True)
    if ":" not in spec:
        raise UserError(f"--extractor {spec}: not a built-in ({', '.join(BUILTINS)}) nor a module:factory plug-in")
    if weights:
        raise UserError("--weights applies to the built-in inception-v3 only; plug-ins load their own")
    return _load_plugin(spec, device)


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
                     resizes_internally=bool(getattr(fn, "resizes_internally", False)))

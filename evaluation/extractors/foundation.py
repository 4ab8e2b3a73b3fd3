"""What the foundation-model extractors share: a model card, the preprocessing, and loading.

Each model module (``dinov2``, ``clip``, ``uni``, ...) describes its models with ``ModelCard``s and
builds the bare network; this module turns a card plus weights (or a seed) into a
``FoundationExtractor``: uint8 (B, 3, H, W) in, float (B, D) out, preprocessing included.

Preprocessing contract with the pipeline (``evaluation.reading``): crops are square and, unless the
card says ``resize``, already resized to ``input_size`` with PIL's antialiased bicubic, which is
what most authors' transforms do (PIL bicubic ``Resize`` + ``CenterCrop``; the crop is an identity on
a square image). Cards whose authors resize differently (torchvision's default bilinear) set
``resize`` and receive crops as read, so the resize here follows the authors' filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from evaluation.extractors.weights import (WeightsSource, check_matches, find_weights, read_state_dict,
                                           weights_id)
from urcdm.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RANDOM_SEED = 0


@dataclass(frozen=True)
class ModelCard:
    name: str                        # registry name, e.g. "dinov2-vitl14"
    space: str                       # short label metrics are named by, e.g. "dinov2_vitl14"
    title: str                       # for messages, e.g. "DINOv2 ViT-L/14"
    weights: WeightsSource
    input_size: int                  # the square side the network sees
    dim: int                         # feature dimension
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str | None = None        # None: the pipeline's PIL bicubic is the authors' resize; else the
                                     # torch mode ("bilinear") done here, antialiased like PIL's
    arch: dict = field(default_factory=dict)  # constructor keywords (tests shrink "depth")

    @property
    def resizes_internally(self) -> bool:
        return self.resize is not None


def to_network_input(images: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the normalised float tensor the network was trained on."""
    x = images.to(torch.float32) / 255.0
    size = card.input_size
    if card.resize is not None and tuple(x.shape[-2:]) != (size, size):
        # torch's antialiased resize follows PIL's filter support, as torchvision's Resize on a PIL
        # image does; the only difference left is PIL's rounding to uint8 (<= 0.5 grey level).
        x = F.interpolate(x, size=(size, size), mode=card.resize, antialias=True, align_corners=False).clamp_(0, 1)
    mean = torch.tensor(card.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(card.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class FoundationExtractor(torch.nn.Module):
    """Preprocessing, the network, and the pooling its authors use: uint8 (B, 3, H, W) -> (B, D)."""

    def __init__(self, card: ModelCard, net: torch.nn.Module, pool: Callable | None, extractor_id: str):
        super().__init__()
        self.card, self.net, self.pool = card, net, pool
        self.extractor_id = extractor_id
        self.space = card.space
        self.input_size = card.input_size
        self.resizes_internally = card.resizes_internally

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(to_network_input(images, self.card))
        return self.pool(out) if self.pool is not None else out


@dataclass(frozen=True)
class Recipe:
    """How one model module builds its networks (its ``RECIPE``)."""

    cards: dict[str, ModelCard]
    network: Callable[[ModelCard], torch.nn.Module]                       # bare network, default init
    pool: Callable[[ModelCard], Callable | None] = lambda card: None       # network output -> (B, D)
    adapt: Callable[[ModelCard, dict], dict] = lambda card, state: state   # published layout -> ours
    # Replaces reading + adapt + strict load for libraries with their own loader (transformers).
    load: Callable[[ModelCard, Path], torch.nn.Module] | None = None


def build(recipe: Recipe, name: str, weights: str | None = None, random_weights: bool = False,
          card: ModelCard | None = None) -> FoundationExtractor:
    """The extractor for ``name``, with found weights or (``random_weights``) a seeded random init.

    ``card`` overrides the registered card (tests build depth-reduced twins of the giant models).
    """
    card = card or recipe.cards[name]
    if random_weights:
        if weights:
            raise UserError(f"--extractor {name}-random has seeded random weights; --weights does not apply")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            net = recipe.network(card)
        _open_layer_scales(net)
        ident = f"{name}-random@seed{RANDOM_SEED}"
    else:
        path = find_weights(card.weights, weights)
        if recipe.load is not None:
            net = recipe.load(card, path)
        else:
            state = recipe.adapt(card, read_state_dict(path, card.weights))
            # Names and shapes are checked on a meta-device skeleton first: a wrong file fails in
            # seconds, before a giant network is initialised for nothing.
            with torch.device("meta"):
                skeleton = recipe.network(card)
            check_matches(skeleton, state, path, card.weights)
            net = recipe.network(card)
            net.load_state_dict(state, strict=True)
        ident = weights_id(name, path)
    return FoundationExtractor(card, net.eval(), recipe.pool(card), ident).eval()


def _open_layer_scales(net: torch.nn.Module) -> None:
    # Layer scale starts at 1e-5 in these recipes, so a freshly initialised network is nearly the
    # identity on its CLS token and gives every image the same features; at 1 (the DINOv2 hub's own
    # init value) random features differ between images, which smoke runs and timing need.
    for module in net.modules():
        if "layerscale" in type(module).__name__.lower():
            for parameter in module.parameters(recurse=False):
                torch.nn.init.ones_(parameter)


def without_prefix(state: dict, prefix: str) -> dict:
    """The entries under ``prefix``, renamed without it (or ``state`` unchanged if none are)."""
    if not any(k.startswith(prefix) for k in state):
        return state
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

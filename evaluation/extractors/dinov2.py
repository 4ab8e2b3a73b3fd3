"""DINOv2 ViT-S/B/L/G-14: the FD_DINOv2 features of dgm-eval (Stein et al., NeurIPS 2023).

Reproduces dgm-eval's ``DINOv2Encoder``: the whole image resized to 224 x 224 with PIL bicubic
(torchvision ``Resize((224, 224), BICUBIC)`` on a PIL image; the pipeline's resize), ``ToTensor``,
ImageNet normalisation, and the hub model's output, the final-norm CLS token (``x_norm_clstoken``).

Built with timm (``vit_*_patch14_dinov2``) at 224 px. The official checkpoints
(``dinov2_vit?14_pretrain.pth``, torch hub names) hold 518 px position embeddings that the hub
model interpolates at every forward pass (bicubic, scale factor (16 + 0.1) / 37, no antialias);
that exact interpolation is done once here at load time, rather than timm's antialiased resample,
so the features match the hub model's. timm's own safetensors (``timm/vit_*_patch14_dinov2.lvd142m``)
are accepted as well and get the same treatment.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from evaluation.extractors.foundation import ModelCard, Recipe
from evaluation.extractors.weights import WeightsSource

INPUT_SIZE = 224
PATCH = 14
# DINOv2's historical offset (facebookresearch/dino#8): the hub model passes scale_factor=(n + 0.1) / M
# to F.interpolate, which also sets the sampling positions, so it differs slightly from size=n.
INTERPOLATE_OFFSET = 0.1

_VARIANTS = {  # name: (timm arch, title, feature dim)
    "vits14": ("vit_small_patch14_dinov2", "ViT-S/14", 384),
    "vitb14": ("vit_base_patch14_dinov2", "ViT-B/14", 768),
    "vitl14": ("vit_large_patch14_dinov2", "ViT-L/14", 1024),
    "vitg14": ("vit_giant_patch14_dinov2", "ViT-g/14", 1536),
}


def _card(variant: str) -> ModelCard:
    arch, title, dim = _VARIANTS[variant]
    file_name = f"dinov2_{variant}_pretrain.pth"
    return ModelCard(
        name=f"dinov2-{variant}", space=f"dinov2_{variant}", title=f"DINOv2 {title}",
        weights=WeightsSource(
            label=f"DINOv2 {title} weights", env_var=f"URCDM_DINOV2_{variant.upper()}_WEIGHTS",
            origin=f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{variant}/{file_name} "
                   f"(or the Hugging Face repo timm/{arch}.lvd142m)",
            file_names=(file_name,), hf_repos=(f"timm/{arch}.lvd142m",),
            hf_files=("model.safetensors", "pytorch_model.bin")),
        input_size=INPUT_SIZE, dim=dim, arch={"model_name": arch})


CARDS = {card.name: card for card in map(_card, _VARIANTS)}


def network(card: ModelCard) -> torch.nn.Module:
    import timm

    # num_classes=0 + token pooling: model(x) is the final-norm CLS token, as the hub model returns.
    return timm.create_model(pretrained=False, img_size=INPUT_SIZE, num_classes=0, global_pool="token",
                             dynamic_img_size=False, use_naflex=False, **card.arch)


def dinov2_position_embedding(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + M*M, D) -> (1, 1 + grid*grid, D) exactly as DINOv2's ``interpolate_pos_encoding``."""
    count = pos_embed.shape[1] - 1
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"position embedding of {count} patches is not a square grid")
    if side == grid:
        return pos_embed
    patch = pos_embed[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    scale = (grid + INTERPOLATE_OFFSET) / side
    patch = F.interpolate(patch, scale_factor=(scale, scale), mode="bicubic", align_corners=False)
    if tuple(patch.shape[-2:]) != (grid, grid):
        raise ValueError(f"interpolated position grid {tuple(patch.shape[-2:])}, expected {grid} x {grid}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([pos_embed[:, :1].float(), patch], dim=1).to(pos_embed.dtype)


def adapt(card: ModelCard, state: dict) -> dict:
    """The official (hub) layout -> timm's, and the position grid -> 224 px the way the hub does it."""
    out = {}
    for key, value in state.items():
        if key == "mask_token":  # used only in training
            continue
        key = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)  # block-chunked (FSDP) checkpoints
        # ViT-g's fused SwiGLU: w12 (both input projections) and w3 are timm's packed fc1 and fc2.
        key = re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", key)
        key = re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", key)
        out[key] = value
    if "pos_embed" in out and out["pos_embed"].ndim == 3:
        try:
            out["pos_embed"] = dinov2_position_embedding(out["pos_embed"], INPUT_SIZE // PATCH)
        except ValueError:
            pass  # left as is: the strict load reports the architecture mismatch in one line
    return out


RECIPE = Recipe(cards=CARDS, network=network, adapt=adapt)

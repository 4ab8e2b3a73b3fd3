"""Virchow2 (Zimmermann et al. 2024, Paige): a ViT-H/14 with 4 registers, 2560-d embedding.

Built as the ``paige-ai/Virchow2`` model card and hub config say: timm ``vit_huge_patch14_224``
with ``img_size=224, init_values=1e-5, num_classes=0, reg_tokens=4, mlp_ratio=5.3375,
global_pool="", dynamic_img_size=True, mlp_layer=SwiGLUPacked, act_layer=SiLU``; weights
``pytorch_model.bin`` loaded strictly. ``model(x)`` is all 261 tokens (CLS, 4 registers, 256
patches); the embedding is the CLS token concatenated with the mean of the patch tokens, the
registers left out, as the model card documents.

The transform is timm's ``create_transform(**resolve_data_config(model.pretrained_cfg))`` for the
hub config (224, bicubic, crop_pct 1.0, ImageNet mean/std): PIL bicubic resize of the shorter side
and a centre crop, i.e. the pipeline's resize on square crops, then ImageNet normalisation here.
"""

from __future__ import annotations

import torch

from evaluation.extractors.foundation import ModelCard, Recipe
from evaluation.extractors.weights import WeightsSource

REGISTERS = 4

CARD = ModelCard(
    name="virchow2", space="virchow2", title="Virchow2",
    weights=WeightsSource(
        label="Virchow2 weights", env_var="URCDM_VIRCHOW2_WEIGHTS",
        origin="https://huggingface.co/paige-ai/Virchow2 (gated: accept the terms, then download pytorch_model.bin)",
        hf_repos=("paige-ai/Virchow2",), hf_files=("pytorch_model.bin", "model.safetensors")),
    input_size=224, dim=2560,
    arch={"model_name": "vit_huge_patch14_224", "img_size": 224, "init_values": 1e-5, "num_classes": 0,
          "reg_tokens": REGISTERS, "mlp_ratio": 5.3375, "global_pool": "", "dynamic_img_size": True})


def network(card: ModelCard) -> torch.nn.Module:
    import timm
    from timm.layers import SwiGLUPacked

    return timm.create_model(pretrained=False, use_naflex=False, mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU,
                             **card.arch)


def class_and_mean_patch(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 1 + registers + patches, C) -> (B, 2C): CLS, then the mean of the patch tokens."""
    return torch.cat([tokens[:, 0], tokens[:, 1 + REGISTERS:].mean(dim=1)], dim=-1)


RECIPE = Recipe(cards={CARD.name: CARD}, network=network, pool=lambda card: class_and_mean_patch)

"""H-optimus-0 (Bioptimus, 2024): a ViT-g/14 with 4 registers trained on pathology tiles, 1536-d.

Built as the ``bioptimus/H-optimus-0`` model card does: timm ``vit_giant_patch14_reg4_dinov2`` with
``img_size=224, init_values=1e-5, dynamic_img_size=False, num_classes=0, global_pool="token"``
(the hub config's), weights ``pytorch_model.bin`` loaded strictly; the features are ``model(x)``,
the final-norm CLS token.

The model card's transform is ``ToTensor`` + ``Normalize(mean=(0.707223, 0.578729, 0.703617),
std=(0.211883, 0.230117, 0.177517))`` on 224 x 224 tiles, with no resize: crops of another size are
resized to 224 by the pipeline (PIL bicubic, as timm's ``create_transform`` does for this config).
"""

from __future__ import annotations

import torch

from evaluation.extractors.foundation import ModelCard, Recipe
from evaluation.extractors.weights import WeightsSource

MEAN = (0.707223, 0.578729, 0.703617)
STD = (0.211883, 0.230117, 0.177517)

CARD = ModelCard(
    name="h-optimus-0", space="h_optimus_0", title="H-optimus-0",
    weights=WeightsSource(
        label="H-optimus-0 weights", env_var="URCDM_H_OPTIMUS_0_WEIGHTS",
        origin="https://huggingface.co/bioptimus/H-optimus-0 (gated: accept the terms, then download "
               "pytorch_model.bin)",
        hf_repos=("bioptimus/H-optimus-0",), hf_files=("pytorch_model.bin", "model.safetensors")),
    input_size=224, dim=1536, mean=MEAN, std=STD,
    arch={"model_name": "vit_giant_patch14_reg4_dinov2", "img_size": 224, "init_values": 1e-5,
          "dynamic_img_size": False, "num_classes": 0, "global_pool": "token"})


def network(card: ModelCard) -> torch.nn.Module:
    import timm

    return timm.create_model(pretrained=False, use_naflex=False, **card.arch)


RECIPE = Recipe(cards={CARD.name: CARD}, network=network)

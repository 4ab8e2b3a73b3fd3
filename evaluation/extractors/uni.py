"""UNI (Chen et al., Nature Medicine 2024): MahmoodLab's ViT-L/16 pathology encoder, 1024-d.

Built as MahmoodLab publishes it (the ``MahmoodLab/UNI`` model card and ``uni.get_encoder``):
timm ``vit_large_patch16_224`` with ``img_size=224, patch_size=16, init_values=1e-5, num_classes=0,
dynamic_img_size=True``, weights ``pytorch_model.bin`` loaded strictly; the features are
``model(x)``, the final-norm CLS token.

Their transform is torchvision ``Resize(224)`` (bilinear, the default; antialiased on PIL images)
then ``CenterCrop(224)``, ``ToTensor`` and ImageNet normalisation. The bilinear resize is done here
(``resize="bilinear"``), so crops reach this extractor as read; the centre crop is an identity on
square crops.
"""

from __future__ import annotations

import torch

from evaluation.extractors.foundation import ModelCard, Recipe
from evaluation.extractors.weights import WeightsSource

CARD = ModelCard(
    name="uni", space="uni", title="UNI",
    weights=WeightsSource(
        label="UNI weights", env_var="URCDM_UNI_WEIGHTS",
        origin="https://huggingface.co/MahmoodLab/UNI (gated: accept the terms, then download pytorch_model.bin)",
        hf_repos=("MahmoodLab/UNI",), hf_files=("pytorch_model.bin",)),
    input_size=224, dim=1024, resize="bilinear",
    arch={"model_name": "vit_large_patch16_224", "img_size": 224, "patch_size": 16, "init_values": 1e-5,
          "num_classes": 0, "dynamic_img_size": True})


def network(card: ModelCard) -> torch.nn.Module:
    import timm

    return timm.create_model(pretrained=False, use_naflex=False, **card.arch)


RECIPE = Recipe(cards={CARD.name: CARD}, network=network)

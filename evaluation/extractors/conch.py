"""CONCH (Lu et al., Nature Medicine 2024): the image tower of MahmoodLab's CoCa ViT-B/16, 512-d.

Built after MahmoodLab's ``conch_ViT-B-16`` config and ``open_clip_custom`` code: a timm
``VisionTransformer`` trunk (768 wide, 12 deep, 12 heads, 16 px patches, 448 px,
``dynamic_img_size``) whose final-norm tokens feed the contrastive attentional pooler (open_clip's
``AttentionalPooler``: one query, 512-d, 8 heads) and its LayerNorm. The features are what the
authors' ``encode_image(images, proj_contrast=False, normalize=False)`` returns: the pooled,
layer-normed query token, before the contrastive projection and without L2 normalisation.

Their transform (``create_model_from_pretrained``'s ``image_transform``) is ``Resize(448, BICUBIC)``
+ ``CenterCrop(448)`` on PIL images, then OpenAI's CLIP mean/std: on square crops, the pipeline's
PIL bicubic resize to 448, then the normalisation here. Weights: ``pytorch_model.bin`` from the
gated ``MahmoodLab/CONCH`` repo (the whole CoCa model; only the image tower's tensors are used).
"""

from __future__ import annotations

import torch

from evaluation.extractors.foundation import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ModelCard, Recipe
from evaluation.extractors.weights import WeightsSource

# The parts of the checkpoint's "visual." tower that encode_image(proj_contrast=False) uses.
_USED = ("trunk.", "attn_pool_contrast.", "ln_contrast.")

CARD = ModelCard(
    name="conch", space="conch", title="CONCH",
    weights=WeightsSource(
        label="CONCH weights", env_var="URCDM_CONCH_WEIGHTS",
        origin="https://huggingface.co/MahmoodLab/CONCH (gated: accept the terms, then download pytorch_model.bin)",
        hf_repos=("MahmoodLab/CONCH",), hf_files=("pytorch_model.bin",)),
    input_size=448, dim=512, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
    arch={"width": 768, "depth": 12, "heads": 12, "mlp_ratio": 4.0, "patch_size": 16, "image_size": 448,
          "embed_dim": 512, "pooler_heads": 8, "queries": 1})


class ConchImageTower(torch.nn.Module):
    def __init__(self, arch: dict):
        super().__init__()
        from open_clip.transformer import AttentionalPooler
        from timm.models.vision_transformer import VisionTransformer

        self.trunk = VisionTransformer(embed_dim=arch["width"], depth=arch["depth"], num_heads=arch["heads"],
                                       mlp_ratio=arch["mlp_ratio"], img_size=arch["image_size"],
                                       patch_size=arch["patch_size"], num_classes=0, dynamic_img_size=True)
        self.attn_pool_contrast = AttentionalPooler(d_model=arch["embed_dim"], context_dim=arch["width"],
                                                    n_head=arch["pooler_heads"], n_queries=arch["queries"])
        self.ln_contrast = torch.nn.LayerNorm(arch["embed_dim"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.trunk.forward_features(x)
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])


def network(card: ModelCard) -> torch.nn.Module:
    return ConchImageTower(card.arch)


def adapt(card: ModelCard, state: dict) -> dict:
    prefix = "visual."
    if not any(k.startswith(prefix) for k in state):
        return state  # already the tower alone, or not CONCH: the strict load decides
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(tuple(prefix + u for u in _USED))}


RECIPE = Recipe(cards={CARD.name: CARD}, network=network, adapt=adapt)

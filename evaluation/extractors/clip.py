"""OpenAI CLIP image towers: clean-fid's CLIP-FID features and CMMD's embedding.

``clip-vitb32`` reproduces clean-fid's ``clip_vit_b_32`` model (``cleanfid/clip_features.py``):
OpenAI's ``clip.load("ViT-B/32")``; ``img_preprocess_clip`` resizes the shorter side to 224 with
PIL bicubic and centre-crops 224 (on the pipeline's square crops: PIL bicubic to 224), then
``/255`` and OpenAI's mean/std; the features are ``encode_image`` (512-d, after the projection),
not L2-normalised. clean-fid runs CLIP in float16 on CUDA (``clip.load``'s default); we run float32.

``clip-vitl14-336`` reproduces CMMD's embedding (Jayasumana et al. CVPR 2024, google-research
``cmmd/embedding.py``): ViT-L/14 at 336 px, images resized to 336 x 336 with bicubic
(``jax.image.resize``, antialiased like PIL's; the pipeline's resize), OpenAI's mean/std, and the
projected image embedding L2-normalised (scenic's ``encode_image(normalize=True)``; 768-d).

Both are built with open_clip (QuickGELU, OpenAI's layout) and load OpenAI's checkpoints
(``ViT-B-32.pt``, ``ViT-L-14-336px.pt``: TorchScript archives as ``clip.load`` caches them in
``~/.cache/clip``) or open_clip's copies on the Hugging Face hub (``timm/vit_*_clip_*.openai``).
Only the image tower is built; the text tower's weights are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evaluation.extractors.foundation import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ModelCard, Recipe, without_prefix
from evaluation.extractors.weights import WeightsSource

_OPENAI = "https://openaipublic.azureedge.net/clip/models"
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _card(name: str, title: str, openai_file: str, digest: str, hf_repo: str, size: int, dim: int,
          width: int, layers: int, patch: int, normalise: bool) -> ModelCard:
    return ModelCard(
        name=name, space=name.replace("-", "_"), title=f"CLIP {title}",
        weights=WeightsSource(
            label=f"OpenAI CLIP {title} weights", env_var=f"URCDM_{name.replace('-', '_').upper()}_WEIGHTS",
            origin=f"{_OPENAI}/{digest}/{openai_file} (or the Hugging Face repo {hf_repo})",
            file_names=(openai_file,), extra_dirs=("~/.cache/clip",), hf_repos=(hf_repo,), hf_files=_OPEN_CLIP_FILES),
        input_size=size, dim=dim, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
        arch={"embed_dim": dim, "image_size": size, "width": width, "layers": layers, "patch_size": patch,
              "l2_normalise": normalise})


CARDS = {card.name: card for card in (
    _card("clip-vitb32", "ViT-B/32", "ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
          "timm/vit_base_patch32_clip_224.openai", 224, 512, 768, 12, 32, normalise=False),
    _card("clip-vitl14-336", "ViT-L/14@336px", "ViT-L-14-336px.pt",
          "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
          "timm/vit_large_patch14_clip_336.openai", 336, 768, 1024, 24, 14, normalise=True),
)}


def network(card: ModelCard) -> torch.nn.Module:
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    arch = card.arch
    config = CLIPVisionCfg(layers=arch["layers"], width=arch["width"], patch_size=arch["patch_size"],
                           image_size=arch["image_size"])
    # OpenAI's CLIP was trained with QuickGELU; open_clip's "-quickgelu" configs say the same.
    return _build_vision_tower(arch["embed_dim"], config, quick_gelu=True)


def pool(card: ModelCard):
    return (lambda features: F.normalize(features, dim=-1)) if card.arch["l2_normalise"] else None


def adapt(card: ModelCard, state: dict) -> dict:
    # OpenAI's and open_clip's checkpoints hold the whole model; the image tower is under "visual.".
    return without_prefix(state, "visual.")


RECIPE = Recipe(cards=CARDS, network=network, pool=pool, adapt=adapt)

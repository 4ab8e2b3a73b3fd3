"""Phikon and Phikon-v2 (Owkin): pathology ViTs published for Hugging Face transformers.

``phikon`` (Filiot et al. 2023; iBOT ViT-B/16, 768-d) as the ``owkin/phikon`` model card uses it:
``ViTModel`` without the pooling layer, features ``last_hidden_state[:, 0]`` (the final-norm CLS
token). Its image processor (``ViTImageProcessor``: resize to 224 x 224 with PIL bilinear, ImageNet
mean/std) is reproduced by resizing here with antialiased bilinear (``resize="bilinear"``; crops
reach this extractor as read) and normalising.

``phikon-v2`` (Filiot et al. 2024; DINOv2 ViT-L/16 without registers, 1024-d) as its model card
uses it: ``AutoModel`` (a ``Dinov2Model``), features ``last_hidden_state[:, 0]``. It was trained on
224 x 224 tiles with ImageNet normalisation; its processor (a ``BitImageProcessor``: bicubic resize
and centre crop to 224) is the pipeline's PIL bicubic resize on square crops.

The networks are built from the configurations below (no ``config.json`` is needed) and the
weights (``model.safetensors`` or ``pytorch_model.bin``) go through transformers'
``from_pretrained`` from a local folder only, so its renaming of older checkpoints' keys applies;
any missing or wrong-shape tensor is an error.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import torch

from evaluation.extractors.foundation import ModelCard, Recipe
from evaluation.extractors.weights import WeightsSource
from urcdm.errors import UserError

_FILES = ("model.safetensors", "pytorch_model.bin")

CARDS = {card.name: card for card in (
    ModelCard(
        name="phikon", space="phikon", title="Phikon",
        weights=WeightsSource(label="Phikon weights", env_var="URCDM_PHIKON_WEIGHTS",
                              origin="https://huggingface.co/owkin/phikon", hf_repos=("owkin/phikon",),
                              hf_files=_FILES),
        input_size=224, dim=768, resize="bilinear",
        arch={"kind": "vit", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
              "intermediate_size": 3072, "image_size": 224, "patch_size": 16, "qkv_bias": True}),
    ModelCard(
        name="phikon-v2", space="phikon_v2", title="Phikon-v2",
        weights=WeightsSource(label="Phikon-v2 weights", env_var="URCDM_PHIKON_V2_WEIGHTS",
                              origin="https://huggingface.co/owkin/phikon-v2", hf_repos=("owkin/phikon-v2",),
                              hf_files=_FILES),
        input_size=224, dim=1024,
        arch={"kind": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
              "mlp_ratio": 4, "image_size": 224, "patch_size": 16, "layerscale_value": 1e-5,
              "layer_norm_eps": 1e-6, "use_swiglu_ffn": False, "qkv_bias": True}),
)}


def _model_class_and_config(card: ModelCard):
    arch = dict(card.arch)
    if arch.pop("kind") == "vit":
        from transformers import ViTConfig, ViTModel

        return ViTModel, ViTConfig(**arch), {"add_pooling_layer": False}
    from transformers import Dinov2Config, Dinov2Model

    return Dinov2Model, Dinov2Config(**arch), {}


def network(card: ModelCard) -> torch.nn.Module:
    model_class, config, extra = _model_class_and_config(card)
    return model_class(config, **extra)


def cls_token(output) -> torch.Tensor:
    return output.last_hidden_state[:, 0]


@contextlib.contextmanager
def _quiet_transformers():
    # from_pretrained prints a progress bar and a load report; ours is the one error line.
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def load(card: ModelCard, path: Path) -> torch.nn.Module:
    model_class, config, extra = _model_class_and_config(card)
    source = card.weights
    with tempfile.TemporaryDirectory(prefix="urcdm-hf-") as folder:
        # from_pretrained reads a folder; a link under the standard name lets any file name be given.
        name = _FILES[0] if path.suffix == ".safetensors" else _FILES[1]
        (Path(folder) / name).symlink_to(Path(path).resolve())
        try:
            with _quiet_transformers():
                model, info = model_class.from_pretrained(folder, config=config, local_files_only=True,
                                                          output_loading_info=True, dtype=torch.float32, **extra)
        except Exception as exc:  # unreadable file, or tensors of another shape (transformers raises)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path}: not {source.label} ({first}); "
                            f"expected {source.names[0]} from {source.origin}") from None
    # A checkpoint saved with the pooling layer (ViTModel's default) carries it; it is not used.
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith("pooler.")]
    missing, wrong = sorted(info["missing_keys"]), sorted(info["mismatched_keys"])
    if missing or unexpected or wrong:
        example = (missing or sorted(unexpected) or [str(w) for w in wrong])[0]
        raise UserError(f"{path}: not {source.label} (another architecture: {len(missing)} missing, {len(unexpected)} "
                        f"unexpected, {len(wrong)} wrong-shape tensors; e.g. {example}); "
                        f"expected {source.names[0]} from {source.origin}")
    return model


RECIPE = Recipe(cards=CARDS, network=network, pool=lambda card: cls_token, load=load)

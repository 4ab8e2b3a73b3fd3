"""The foundation-model extractors: registry, weights discovery, identity, and preprocessing
against each author's published transform on the same image.

No weights can be downloaded here: networks get seeded random weights (the real DINOv2 ViT-S/14
graph; depth-reduced twins of the same classes, same keywords, for the giant ones), and weights
files are random state dicts written by the tests.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from conftest import tissue_image
from evaluation import features
from evaluation.extractors import clip, conch, dinov2, h_optimus, phikon, uni, virchow2
from evaluation.extractors.foundation import (IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, build,
                                              to_network_input)
from evaluation.extractors.registry import FOUNDATION_MODELS, registered_names
from evaluation.features import load_extractor
from evaluation.reading import resize_square
from urcdm.errors import UserError

MODULES = {"dinov2": dinov2, "clip": clip, "uni": uni, "phikon": phikon, "conch": conch, "virchow2": virchow2,
           "h_optimus": h_optimus}


def card_of(name):
    return MODULES[FOUNDATION_MODELS[name]].RECIPE.cards[name]


def twin(name, **arch):
    """A depth-reduced random twin of a registered model: same class and keywords otherwise."""
    recipe = MODULES[FOUNDATION_MODELS[name]].RECIPE
    card = dataclasses.replace(recipe.cards[name], arch={**recipe.cards[name].arch, **arch})
    return build(recipe, name, random_weights=True, card=card)


def as_batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())


def ours(name: str, rgb: np.ndarray) -> torch.Tensor:
    """What the network sees: the pipeline's resize (unless the model resizes itself), then the module's."""
    card = card_of(name)
    pixels = rgb if card.resizes_internally else resize_square(rgb, card.input_size)
    return to_network_input(as_batch(pixels), card)[0]


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """No weights anywhere unless a test puts them there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/clip
    for name in FOUNDATION_MODELS:
        monkeypatch.delenv(card_of(name).weights.env_var, raising=False)


# -- registry and weights discovery (no network is built) ----------------------------------------

def test_unknown_names_list_the_registered_ones():
    with pytest.raises(UserError) as excinfo:
        load_extractor("dinov3-vitl16")
    message = one_line_error(excinfo)
    for name in ("inception-v3", "dinov2-vitl14", "clip-vitb32", "uni", "h-optimus-0", "virchow2-random"):
        assert name in message
    assert set(registered_names()) >= {f"{n}-random" for n in FOUNDATION_MODELS} | set(FOUNDATION_MODELS)


@pytest.mark.parametrize("name", sorted(FOUNDATION_MODELS))
def test_missing_weights_offline_name_the_file_the_variable_and_the_source(name):
    card = card_of(name)
    with pytest.raises(UserError) as excinfo:
        load_extractor(name)
    message = one_line_error(excinfo)
    assert card.weights.names[0] in message and card.weights.env_var in message
    assert "https://" in message and "nothing is downloaded" in message
    assert card.weights.env_var.startswith("URCDM_") and card.weights.env_var.endswith("_WEIGHTS")
    documented = card.weights.env_var.replace(name.split("-")[-1].upper(), "VIT?14") if name.startswith("dinov2") \
        else card.weights.env_var
    assert documented in features.__doc__  # the registry's docstring lists every variable


def test_weights_are_found_in_the_variable_and_the_hub_caches(tmp_path, monkeypatch):
    from evaluation.extractors.weights import find_weights

    source = card_of("uni").weights
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "pytorch_model.bin").write_bytes(b"x")  # a generic name in a shared folder: anyone's weights
    with pytest.raises(UserError, match="UNI weights not found"):
        find_weights(source)
    snapshot = tmp_path / "hf-hub" / "models--MahmoodLab--UNI" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(b"x")
    assert find_weights(source) == snapshot / "pytorch_model.bin"
    monkeypatch.setenv(source.env_var, str(tmp_path / "elsewhere.bin"))
    with pytest.raises(UserError, match="URCDM_UNI_WEIGHTS"):
        find_weights(source)
    dinov2_source = card_of("dinov2-vits14").weights
    (hub / "dinov2_vits14_pretrain.pth").write_bytes(b"x")
    assert find_weights(dinov2_source) == hub / "dinov2_vits14_pretrain.pth"
    clip_cache = tmp_path / "home" / ".cache" / "clip"
    clip_cache.mkdir(parents=True)
    (clip_cache / "ViT-B-32.pt").write_bytes(b"x")
    assert find_weights(card_of("clip-vitb32").weights) == clip_cache / "ViT-B-32.pt"


def test_random_variants_take_no_weights_and_plugins_keep_their_space():
    with pytest.raises(UserError, match="random"):
        load_extractor("uni-random", weights="somewhere.bin")
    plugin = load_extractor("tiny_extractors:colour_texture")
    assert plugin.space == "tiny_extractors_colour_texture" and plugin.id == "tests.colour_texture/1"
    inception = load_extractor("inception-v3-random")
    assert inception.space == "inception" and inception.id == "inception-v3-random@seed0"


def test_model_libraries_are_imported_lazily():
    """timm, open_clip and transformers load only inside the builders: --help and the Inception path
    never import them (a subprocess would prove it at runtime, for seconds of CI per run)."""
    heavy = {"timm", "open_clip", "transformers", "safetensors"}
    files = [Path(features.__file__), *Path(features.__file__).parent.joinpath("extractors").glob("*.py")]
    for path in files:
        for node in ast.parse(path.read_text()).body:  # module level only; imports inside functions are lazy
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & heavy, f"{path.name} imports {names} at module level"


# -- DINOv2: the real ViT-S/14 graph -------------------------------------------------------------

@pytest.fixture(scope="module")
def dinov2_vits14():
    return load_extractor("dinov2-vits14-random")


def test_dinov2_random_features_shape_identity_and_determinism(dinov2_vits14):
    extractor = dinov2_vits14
    assert extractor.id == "dinov2-vits14-random@seed0" and extractor.space == "dinov2_vits14"
    assert extractor.input_size == 224 and not extractor.resizes_internally and not extractor.standard
    images = as_batch(*(resize_square(tissue_image(300, 300, seed=seed), 224) for seed in (1, 2)))
    first, again = extractor(images), extractor(images[1:])
    assert first.shape == (2, 384) and first.dtype == np.float32
    np.testing.assert_allclose(again[0], first[1], rtol=0, atol=1e-5)  # repeatable, whatever else is in the batch
    assert np.abs(first[0] - first[1]).max() > 1e-2  # random weights still tell images apart
    with torch.inference_mode():  # the seed makes the random weights themselves reproducible
        torch.testing.assert_close(twin("dinov2-vits14", depth=1)(images), twin("dinov2-vits14", depth=1)(images),
                                   rtol=0, atol=0)


def test_dinov2_preprocessing_is_dgm_evals(dinov2_vits14):
    rgb = tissue_image(300, 300, seed=4)
    reference = T.Compose([T.Resize((224, 224), T.InterpolationMode.BICUBIC), T.ToTensor(),
                           T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(Image.fromarray(rgb))
    torch.testing.assert_close(ours("dinov2-vits14", rgb), reference, atol=1e-5, rtol=0)


def test_official_checkpoints_load_as_the_hub_model_runs_them(dinov2_vits14, tmp_path):
    state = dinov2_vits14.fn.net.state_dict()
    # The official layout: a mask token, and position embeddings for 518 px (37 x 37 patches).
    official = dict(state, mask_token=torch.zeros(1, 384),
                    pos_embed=torch.randn(1, 1 + 37 * 37, 384, generator=torch.Generator().manual_seed(0)))
    torch.save(official, tmp_path / "dinov2_vits14_pretrain.pth")
    loaded = load_extractor("dinov2-vits14", weights=str(tmp_path / "dinov2_vits14_pretrain.pth"))
    assert loaded.id.startswith("dinov2-vits14@sha256:") and len(loaded.id.split(":")[1]) == 16
    # The hub model's interpolate_pos_encoding at 224 px: scale factor (16 + 0.1) / 37, bicubic, no antialias.
    grid = official["pos_embed"][:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", align_corners=False)
    torch.testing.assert_close(loaded.fn.net.pos_embed[0, 1:], expected.permute(0, 2, 3, 1).reshape(256, 384))
    torch.testing.assert_close(loaded.fn.net.blocks[5].mlp.fc1.weight, state["blocks.5.mlp.fc1.weight"])


def test_the_id_follows_the_weights_file(tmp_path):
    from safetensors.torch import save_file

    small = dataclasses.replace(card_of("dinov2-vits14"), arch={**card_of("dinov2-vits14").arch, "depth": 1})
    state = {k: v.clone() for k, v in twin("dinov2-vits14", depth=1).net.state_dict().items()}
    save_file(state, tmp_path / "a.safetensors")
    state["norm.bias"] += 0.5
    save_file(state, tmp_path / "b.safetensors")
    a, b = (build(dinov2.RECIPE, "dinov2-vits14", weights=str(tmp_path / f"{x}.safetensors"), card=small) for x in "ab")
    assert a.extractor_id.startswith("dinov2-vits14@sha256:") and a.extractor_id != b.extractor_id
    again = build(dinov2.RECIPE, "dinov2-vits14", weights=str(tmp_path / "a.safetensors"), card=small)
    assert again.extractor_id == a.extractor_id
    images = as_batch(resize_square(tissue_image(256, 256, seed=5), 224))
    with torch.inference_mode():
        assert not torch.allclose(a(images), b(images))


def test_wrong_architecture_or_a_random_file_is_one_error_line(dinov2_vits14, tmp_path):
    torch.save(dinov2_vits14.fn.net.state_dict(), tmp_path / "vits14.pth")
    with pytest.raises(UserError) as excinfo:
        load_extractor("dinov2-vitl14", weights=str(tmp_path / "vits14.pth"))
    assert "not DINOv2 ViT-L/14 weights" in one_line_error(excinfo)
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UserError) as excinfo:
        load_extractor("uni", weights=str(tmp_path / "noise.bin"))
    assert "not a readable weights file" in one_line_error(excinfo)


# -- CLIP (clean-fid, CMMD) and CONCH: open_clip -------------------------------------------------

def test_clip_preprocessing_is_clean_fids_and_open_clips():
    import open_clip

    assert (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD) == (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    rgb = tissue_image(300, 300, seed=6)
    # clean-fid's img_preprocess_clip (shorter side to 224, PIL bicubic, centre crop), then CLIP_fx's /255 + Normalize
    resize = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224)])
    resized = np.asarray(resize(Image.fromarray(rgb))).transpose(2, 0, 1) / 255.0
    clean_fid = T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)(torch.from_numpy(resized).float())
    torch.testing.assert_close(ours("clip-vitb32", rgb), clean_fid, atol=1e-5, rtol=0)
    for name in ("clip-vitb32", "clip-vitl14-336"):
        size = card_of(name).input_size
        preprocess = open_clip.image_transform(size, is_train=False, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)
        torch.testing.assert_close(ours(name, rgb), preprocess(Image.fromarray(rgb)), atol=1e-5, rtol=0)


def test_clip_and_conch_feature_dimensions_and_normalisation():
    rgb = tissue_image(448, 448, seed=7)
    b32 = twin("clip-vitb32", layers=1)
    l14 = twin("clip-vitl14-336", layers=1)
    with torch.inference_mode():
        plain = b32(as_batch(resize_square(rgb, 224)))
        cmmd = l14(as_batch(resize_square(rgb, 336)))
    assert plain.shape == (1, 512) and not torch.allclose(plain.norm(dim=-1), torch.ones(1))  # clean-fid: unnormalised
    assert cmmd.shape == (1, 768)
    torch.testing.assert_close(cmmd.norm(dim=-1), torch.ones(1))  # CMMD: L2-normalised
    tower = twin("conch", depth=1)
    with torch.inference_mode():
        assert tower(as_batch(rgb)).shape == (1, 512)
    assert set(tower.net.state_dict()) >= {"attn_pool_contrast.query", "ln_contrast.weight", "trunk.pos_embed"}


def test_conch_preprocessing_is_mahmoodlabs_image_transform():
    rgb = tissue_image(512, 512, seed=8)
    reference = T.Compose([T.Resize(448, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(448), T.ToTensor(),
                           T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])(Image.fromarray(rgb))
    torch.testing.assert_close(ours("conch", rgb), reference, atol=1e-5, rtol=0)


def test_conch_loads_the_image_tower_out_of_a_whole_coca_checkpoint(tmp_path):
    small = {"depth": 1, "image_size": 224}  # 197 tokens instead of 785: the loading is what is tested
    tower = twin("conch", **small)
    state = {f"visual.{k}": v for k, v in tower.net.state_dict().items()}
    state |= {"visual.proj_contrast": torch.zeros(512, 512), "text.token_embedding.weight": torch.zeros(4, 8)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    card = dataclasses.replace(conch.CARD, arch={**conch.CARD.arch, **small})
    loaded = build(conch.RECIPE, "conch", weights=str(tmp_path / "pytorch_model.bin"), card=card)
    rgb = as_batch(tissue_image(224, 224, seed=9))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(rgb), tower(rgb))


# -- pathology ViTs in timm: depth-reduced twins -------------------------------------------------

def test_uni_preprocessing_is_mahmoodlabs_bilinear_resize():
    rgb = tissue_image(256, 256, seed=10)
    reference = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(Image.fromarray(rgb))
    mine = ours("uni", rgb)
    assert card_of("uni").resizes_internally
    assert (mine - reference).abs().max() < 0.02  # PIL rounds its bilinear output to uint8; we do not
    bicubic = to_network_input(as_batch(resize_square(rgb, 224)), dataclasses.replace(card_of("uni"), resize=None))[0]
    assert (bicubic - reference).abs().max() > 0.05  # the pipeline's bicubic would not be UNI's transform


def test_virchow2_and_h_optimus_preprocessing_are_timms_for_their_hub_configs():
    from timm.data import create_transform, resolve_data_config

    rgb = tissue_image(256, 256, seed=11)
    for name, mean, std in (("virchow2", IMAGENET_MEAN, IMAGENET_STD), ("h-optimus-0", h_optimus.MEAN, h_optimus.STD)):
        config = resolve_data_config(pretrained_cfg={"input_size": (3, 224, 224), "interpolation": "bicubic",
                                                     "crop_pct": 1.0, "crop_mode": "center", "mean": mean, "std": std})
        reference = create_transform(**config)(Image.fromarray(rgb))
        torch.testing.assert_close(ours(name, rgb), reference, atol=1e-5, rtol=0)
    tile = tissue_image(224, 224, seed=12)  # H-optimus-0's model card: ToTensor + its Normalize, no resize
    reference = T.Compose([T.ToTensor(), T.Normalize(h_optimus.MEAN, h_optimus.STD)])(Image.fromarray(tile))
    torch.testing.assert_close(ours("h-optimus-0", tile), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, dim", [("uni", 1024), ("virchow2", 2560), ("h-optimus-0", 1536)])
def test_pathology_vits_give_their_published_dimensions(name, dim):
    extractor = twin(name, depth=1)
    images = as_batch(tissue_image(224, 224, seed=13))
    with torch.inference_mode():
        embedding = extractor(images)
        assert embedding.shape == (1, dim) and extractor.space == name.replace("-", "_")
        if name == "virchow2":  # CLS, then the mean of the 256 patch tokens: the 4 registers are left out
            tokens = extractor.net(to_network_input(images, extractor.card))
            assert tokens.shape == (1, 1 + 4 + 256, 1280)
            torch.testing.assert_close(embedding, torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=-1))


# -- Phikon and Phikon-v2: transformers ----------------------------------------------------------

def test_phikon_preprocessing_is_its_image_processors():
    from transformers import BitImageProcessor, ViTImageProcessor
    from transformers.image_utils import PILImageResampling

    rgb = tissue_image(256, 256, seed=15)
    v1 = ViTImageProcessor(size={"height": 224, "width": 224}, resample=PILImageResampling.BILINEAR,
                           image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    reference = torch.as_tensor(v1(Image.fromarray(rgb), return_tensors="pt")["pixel_values"][0])
    assert (ours("phikon", rgb) - reference).abs().max() < 0.02
    v2 = BitImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                           resample=PILImageResampling.BICUBIC, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    tile = tissue_image(224, 224, seed=16)  # Phikon-v2's tiles: 224 px, where resize and crop are identities
    reference = torch.as_tensor(v2(Image.fromarray(tile), return_tensors="pt")["pixel_values"][0])
    torch.testing.assert_close(ours("phikon-v2", tile), reference, atol=1e-5, rtol=0)


def test_phikon_loads_older_checkpoints_through_transformers_and_refuses_other_shapes(tmp_path):
    small = {"phikon": dict(num_hidden_layers=1), "phikon-v2": dict(num_hidden_layers=1)}
    rgb = as_batch(tissue_image(224, 224, seed=17))
    for name, dim in (("phikon", 768), ("phikon-v2", 1024)):
        random = twin(name, **small[name])
        with torch.inference_mode():
            expected = random(rgb)
        assert expected.shape == (1, dim)
        # The layout transformers 4 saved (both checkpoints on the hub); Phikon's with its pooling layer.
        state = {_transformers4_key(name, k): v for k, v in random.net.state_dict().items()}
        if name == "phikon":
            state |= {"pooler.dense.weight": torch.zeros(dim, dim), "pooler.dense.bias": torch.zeros(dim)}
        torch.save(state, tmp_path / f"{name}.bin")
        card = dataclasses.replace(card_of(name), arch={**card_of(name).arch, **small[name]})
        loaded = build(phikon.RECIPE, name, weights=str(tmp_path / f"{name}.bin"), card=card)
        with torch.inference_mode():
            torch.testing.assert_close(loaded(rgb), expected)
    with pytest.raises(UserError) as excinfo:  # Phikon (ViT-B) weights given to Phikon-v2 (ViT-L)
        build(phikon.RECIPE, "phikon-v2", weights=str(tmp_path / "phikon.bin"),
              card=dataclasses.replace(card_of("phikon-v2"), arch={**card_of("phikon-v2").arch, **small["phikon-v2"]}))
    assert "not Phikon-v2 weights" in one_line_error(excinfo)


def _transformers4_key(name: str, key: str) -> str:
    renames = [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
               ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense")]
    if name == "phikon":  # ViTModel: also the MLP's names and the layer list
        renames += [("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")]
    for new, old in renames:
        key = key.replace(new, old)
    return re.sub(r"^layers\.", "encoder.layer.", key)

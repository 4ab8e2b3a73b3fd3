"""How a level's cascade comes into memory (urcdm.models): each unet built once, on the device it runs
on and in the dtype it is held in; checkpoints loaded without a random initialisation."""

from __future__ import annotations

import pytest
import torch

from urcdm.config import tiny
from urcdm.imagen_compat import import_imagen
from urcdm.models import CHECKPOINT_FORMAT, build_imagen, load_cascade


@pytest.fixture
def constructions(monkeypatch):
    """Every imagen-pytorch Unet constructed from now on, with the default device at that moment."""
    unet_class = import_imagen().Unet
    made = []
    original = unet_class.__init__

    def counted(self, *args, **kwargs):
        made.append(torch.empty(0).device)
        original(self, *args, **kwargs)

    monkeypatch.setattr(unet_class, "__init__", counted)
    return made


def test_each_unet_is_built_once(constructions):
    # Imagen rebuilds a unet whose settings differ from its own (Unet.cast_model_parameters): twice the
    # time, and twice the memory while it does, for the paper's 3 B parameters a level.
    imagen = build_imagen(tiny(), 1, sampling=True)
    assert len(constructions) == 3 and len(imagen.unets) == 3


def test_unets_are_cast_to_the_dtype_they_are_held_in_as_they_are_built():
    torch.manual_seed(0)
    fp32 = build_imagen(tiny(), 0, sampling=True)
    torch.manual_seed(0)
    bf16 = build_imagen(tiny(), 0, sampling=True, device="cpu", dtype=torch.bfloat16)
    for full, half in zip(fp32.unets, bf16.unets):
        for (name, a), (_, b) in zip(full.named_parameters(), half.named_parameters()):
            assert b.dtype == torch.bfloat16 and torch.equal(a.to(torch.bfloat16), b), name  # same draw, rounded
    assert bf16.device == torch.device("cpu")


def write_checkpoints(tmp_path, config, level):
    torch.manual_seed(5)
    source = build_imagen(config, level, sampling=True)
    paths = {}
    for index, unet in enumerate(source.unets):
        paths[index] = tmp_path / f"unet{index}.pt"
        ema = {name: tensor + 1 for name, tensor in unet.state_dict().items()}  # EMA differs from the raw weights
        torch.save({"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "method": "urcdm", "level": level,
                    "unet": index, "unet_state": unet.state_dict(), "ema_unet": ema}, paths[index])
    return source, paths


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_a_checkpoint_is_loaded_into_unets_built_without_memory(tmp_path, constructions, dtype):
    config = tiny()
    source, paths = write_checkpoints(tmp_path, config, 2)
    constructions.clear()
    loaded = load_cascade(config, 2, paths, device="cpu", dtype=dtype)
    # Built on the meta device: no random initialisation of weights about to be overwritten.
    assert [device.type for device in constructions] == ["meta"] * 3
    for index, unet in enumerate(loaded.unets):
        expected = {name: tensor + 1 for name, tensor in source.unets[index].state_dict().items()}
        for name, tensor in unet.state_dict().items():
            assert tensor.device.type == "cpu" and tensor.dtype == (dtype or torch.float32), name
            assert torch.equal(tensor, expected[name].to(tensor.dtype)), name
    assert loaded.device == torch.device("cpu") and not loaded.training
    if dtype is None:  # bf16 sampling on the CPU takes seconds more and says nothing new about loading
        images = loaded.sample(batch_size=1, cond_images=torch.rand(1, 3, config.patch_px, config.patch_px),
                               return_pil_images=False, use_tqdm=False)
        assert torch.isfinite(images).all()


def test_a_cascade_built_on_the_meta_device_holds_no_weights_but_a_real_imagen(constructions):
    imagen = build_imagen(tiny(), 0, sampling=True, device="meta")
    assert all(p.is_meta for p in imagen.parameters())
    assert imagen.device == torch.device("cpu")  # the Imagen's own device marker is real
    assert [device.type for device in constructions] == ["meta"] * 3

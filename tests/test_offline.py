"""imagen-pytorch reads a T5 config from the model hub at import time; the package must not."""

import os
import subprocess
import sys

OFFLINE_SCRIPT = """
import urcdm, urcdm.slides, urcdm.pyramid, urcdm.cli
from urcdm.imagen_compat import import_imagen
import torch
imagen_pytorch = import_imagen()
unet = imagen_pytorch.Unet(dim=8, dim_mults=(1, 2), num_resnet_blocks=1, layer_attns=False,
                           layer_cross_attns=False, text_embed_dim=8)
imagen = imagen_pytorch.Imagen(unets=(unet,), image_sizes=(16,), timesteps=4, condition_on_text=False)
loss = imagen(torch.rand(2, 3, 16, 16), unet_number=1)
assert torch.isfinite(loss)
import sys
# what URCDM never uses is not imported: transformers' T5 classes, the trainer's Hugging Face datasets
assert "transformers" not in sys.modules and "datasets" not in sys.modules, "imported what URCDM never uses"
import imagen_pytorch
assert imagen_pytorch.ImagenTrainer.__name__ == "ImagenTrainer"  # the package's own __init__, on demand
assert imagen_pytorch.t5.get_encoded_dim(imagen_pytorch.t5.DEFAULT_T5_NAME) == 768
print("ok")
"""


def offline_env(tmp_path):
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"),
               HF_HUB_CACHE=str(tmp_path / "empty-hf-home" / "hub"))
    env.pop("HF_TOKEN", None)
    return env


def test_plain_imagen_import_needs_the_hub(tmp_path):
    """The premise: without our shim the import fails offline (if this passes one day, drop the shim)."""
    result = subprocess.run([sys.executable, "-c", "import imagen_pytorch"], env=offline_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0


def test_package_and_imagen_work_offline_with_an_empty_hub_cache(tmp_path):
    result = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], env=offline_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
    assert not (tmp_path / "empty-hf-home" / "hub").exists() or not any((tmp_path / "empty-hf-home" / "hub").iterdir())


def test_import_urcdm_does_not_import_torch():
    result = subprocess.run([sys.executable, "-c", "import sys, urcdm, urcdm.slides, urcdm.pyramid; print('torch' in sys.modules)"],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr

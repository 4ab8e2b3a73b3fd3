"""Import imagen-pytorch without the network, and without what URCDM never uses.

imagen-pytorch evaluates ``get_encoded_dim('google/t5-v1_1-base')`` as a default argument when its
module is imported, which downloads the T5 config from the model hub; offline, the import fails
(after ~26 s of retries with the network blocked). Its ``t5`` module also imports transformers' T5
model classes, 6 s of every ``urcdm train`` or ``sample`` start on 2 cores, and its package
``__init__`` the trainer and with it Hugging Face ``datasets`` (2 s more). URCDM never conditions on
text and trains with its own loop.

So, before imagen-pytorch's modules run:
- ``imagen_pytorch.t5`` is a stand-in that knows the T5 v1.1 base width and loads the real module
  (tokenizer, weights, from the hub) only if someone encodes text or asks for anything else;
- the package is registered without running its ``__init__``, which runs the first time anyone asks
  the package for a name it does not have yet (``imagen_pytorch.ImagenTrainer`` still works).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from types import ModuleType

# imagen-pytorch's default text encoder, and its architecture (imagen only ever reads d_model).
DEFAULT_T5_NAME = "google/t5-v1_1-base"
T5_V1_1_BASE = dict(
    d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, vocab_size=32128,
    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
)


def _t5_stand_in(location: str) -> ModuleType:
    """``imagen_pytorch.t5`` answering the T5 width without transformers; the rest from the real module."""
    module = ModuleType("imagen_pytorch.t5")
    module.__file__ = location
    loaded: list[ModuleType] = []

    def real() -> ModuleType:
        if not loaded:
            spec = importlib.util.spec_from_file_location("imagen_pytorch.t5", location)
            actual = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(actual)
            from transformers import T5Config

            actual.T5_CONFIGS.setdefault(DEFAULT_T5_NAME, {"config": T5Config(**T5_V1_1_BASE)})
            loaded.append(actual)
        return loaded[0]

    def get_encoded_dim(name: str) -> int:
        return T5_V1_1_BASE["d_model"] if name == DEFAULT_T5_NAME else real().get_encoded_dim(name)

    def t5_encode_text(*args, **kwargs):
        return real().t5_encode_text(*args, **kwargs)

    module.DEFAULT_T5_NAME, module.get_encoded_dim, module.t5_encode_text = DEFAULT_T5_NAME, get_encoded_dim, t5_encode_text
    def anything_else(name: str):
        if name.startswith("__"):  # the import system probing (__path__, __spec__...): not a T5 question
            raise AttributeError(name)
        return getattr(real(), name)

    module.__getattr__ = anything_else
    return module


def _register_package_lazily(package) -> ModuleType:
    """The ``imagen_pytorch`` package module, its ``__init__`` deferred to the first missing name."""
    module = importlib.util.module_from_spec(package)
    sys.modules["imagen_pytorch"] = module

    def run_init_then_get(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        del module.__getattr__  # once: the real __init__ defines the names
        package.loader.exec_module(module)
        return getattr(module, name)

    module.__getattr__ = run_init_then_get
    return module


def import_imagen() -> ModuleType:
    """imagen-pytorch's ``imagen_pytorch.imagen_pytorch`` module (``Imagen``, ``Unet``, ``NullUnet``, its
    noise schedules), imported so that it works with no network and an empty hub cache."""
    if "imagen_pytorch" not in sys.modules:
        package = importlib.util.find_spec("imagen_pytorch")
        if package is None or not package.submodule_search_locations:
            raise ImportError("imagen-pytorch is not installed (pip install imagen-pytorch)")
        module = _register_package_lazily(package)
        module.t5 = sys.modules["imagen_pytorch.t5"] = _t5_stand_in(f"{list(package.submodule_search_locations)[0]}/t5.py")
    with warnings.catch_warnings():
        # A dependency scripts a function at import; torch's deprecation notice is not ours to act on.
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        return importlib.import_module("imagen_pytorch.imagen_pytorch")

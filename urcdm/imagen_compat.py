"""Import imagen-pytorch without the network.

imagen-pytorch evaluates ``get_encoded_dim('google/t5-v1_1-base')`` as a default argument when its
module is imported, which downloads the T5 config from the model hub; offline, the import fails
(after ~26 s of retries with the network blocked). URCDM never conditions on text, so that config is
only ever asked for its width. Before the first import we register the T5 v1.1 base architecture in
imagen-pytorch's own config cache (``t5.T5_CONFIGS``), the hook its ``get_encoded_dim`` consults
first. Tokenizer and weights are still loaded from the hub, lazily, if anyone encodes text.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from types import ModuleType

# Architecture of google/t5-v1_1-base (the only field imagen-pytorch reads is d_model).
T5_V1_1_BASE = dict(
    d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, vocab_size=32128,
    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
)


def _preload_t5_module() -> None:
    """Execute imagen_pytorch/t5.py on its own and seed its config cache, before the package runs."""
    if "imagen_pytorch.t5" in sys.modules:
        return
    package = importlib.util.find_spec("imagen_pytorch")
    if package is None or not package.submodule_search_locations:
        raise ImportError("imagen-pytorch is not installed (pip install imagen-pytorch)")
    location = f"{list(package.submodule_search_locations)[0]}/t5.py"
    spec = importlib.util.spec_from_file_location("imagen_pytorch.t5", location)
    module = importlib.util.module_from_spec(spec)
    sys.modules["imagen_pytorch.t5"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["imagen_pytorch.t5"]
        raise
    from transformers import T5Config

    module.T5_CONFIGS.setdefault(module.DEFAULT_T5_NAME, {"config": T5Config(**T5_V1_1_BASE)})


def import_imagen() -> ModuleType:
    """The ``imagen_pytorch`` package, imported so that it works with no network and an empty hub cache."""
    if "imagen_pytorch" not in sys.modules:
        _preload_t5_module()
    with warnings.catch_warnings():
        # A dependency scripts a function at import; torch's deprecation notice is not ours to act on.
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        imagen_pytorch = importlib.import_module("imagen_pytorch")
    imagen_pytorch.t5 = sys.modules["imagen_pytorch.t5"]
    return imagen_pytorch

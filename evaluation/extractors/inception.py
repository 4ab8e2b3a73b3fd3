"""The standard FID network: torch-fidelity's TF-exact Inception-v3, 2048-d pool features.

``random_weights=True`` builds the same graph with seeded random weights: for timing, and as an
honestly labelled offline fallback whose numbers are not comparable to published FIDs.
"""

from __future__ import annotations

import io

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

INPUT_SIZE = FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE
FEATURE = "2048"


class _RandomlyInitialisedInception(FeatureExtractorInceptionV3):
    # torch-fidelity's constructor always loads a state dict; an empty one keeps the random init.
    def load_state_dict(self, state_dict, strict=True, assign=False):
        if state_dict:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        return None


def _rescale_random_convolutions(net: torch.nn.Module) -> None:
    # PyTorch's default conv init shrinks activations ~10x per layer through 90-odd layers (pool
    # features come out near 1e-8); He init keeps them O(1) so random features still separate images.
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")


class InceptionV3Features(torch.nn.Module):
    """uint8 (B, 3, H, W) -> float32 (B, 2048)."""

    input_size = INPUT_SIZE

    def __init__(self, weights_path: str | None, random_weights: bool = False, seed: int = 0):
        super().__init__()
        if random_weights:
            empty = io.BytesIO()
            torch.save({}, empty)
            empty.seek(0)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.net = _RandomlyInitialisedInception("inception-v3-random", [FEATURE], feature_extractor_weights_path=empty)
                _rescale_random_convolutions(self.net)
        else:
            self.net = FeatureExtractorInceptionV3("inception-v3", [FEATURE], feature_extractor_weights_path=weights_path)
        self.net.eval()

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[0]

"""Small, deterministic feature extractors for tests (no weights to download).

``colour_texture`` maps uint8 (B, 3, H, W) to 57 features: a 4 x 4 colour layout, per-channel
contrast and horizontal/vertical gradient energy. Enough to tell tissue from blur or a colour cast.
"""

import torch
import torch.nn.functional as F


class ColourTexture:
    extractor_id = "tests.colour_texture/1"
    input_size = 64

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        layout = F.adaptive_avg_pool2d(x, 4).flatten(1)
        contrast = x.flatten(2).std(dim=2)
        grad_x = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(2, 3))
        grad_y = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(2, 3))
        return torch.cat([layout, contrast, grad_x, grad_y], dim=1)


def colour_texture():
    return ColourTexture()


def nan_features():
    return lambda images: torch.full((images.shape[0], 4), float("nan"))


class DetailEnergy:
    """Per channel: mean, contrast, and gradient / Laplacian energy at 1x, 2x and 4x. Blind to
    layout, sensitive to fine detail: what separates a crop read near native resolution from a
    heavily downsampled one, so it shows the crop-scale law (27 features)."""

    extractor_id = "tests.detail_energy/1"
    input_size = 64

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        features = [x.mean(dim=(2, 3)), x.flatten(2).std(dim=2)]
        laplacian = x[..., 1:-1, 2:] + x[..., 1:-1, :-2] + x[..., 2:, 1:-1] + x[..., :-2, 1:-1] - 4 * x[..., 1:-1, 1:-1]
        features.append(laplacian.abs().mean(dim=(2, 3)))
        for factor in (1, 2, 4):
            scaled = F.avg_pool2d(x, factor) if factor > 1 else x
            features.append((scaled[..., :, 1:] - scaled[..., :, :-1]).abs().mean(dim=(2, 3)))
            features.append((scaled[..., 1:, :] - scaled[..., :-1, :]).abs().mean(dim=(2, 3)))
        return torch.cat(features, dim=1)


def detail_energy():
    return DetailEnergy()


class RandomResNet18:
    """torchvision's ResNet-18 with seeded random weights: 512 pooled features of a deep
    convolutional network, any input size, ImageNet normalisation. Slower than the two above;
    the second extractor of the pFID benchmarks."""

    extractor_id = "tests.resnet18_random/seed0"

    def __init__(self, seed: int = 0):
        import torchvision

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torchvision.models.resnet18(weights=None)
        net.fc = torch.nn.Identity()
        self.net = net.eval()
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net((images.float() / 255.0 - self.mean) / self.std)


def resnet18_random():
    return RandomResNet18()

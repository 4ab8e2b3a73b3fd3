"""What reaches the network, against the reference tools' own preprocessing on identical inputs:
anyres-gan's detector resize, clean-fid's "clean" resize and torch-fidelity's Inception input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cleanfid.resize import make_resizer
from PIL import Image
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from conftest import tissue_image
from evaluation.crops import CropProtocol, sample_crops
from evaluation.features import load_extractor
from evaluation.inputs import ImageInfo
from evaluation.reading import read_crop
from urcdm.slides import open_slide


def _nvidia_detector_resize(x: torch.Tensor) -> torch.Tensor:
    """The first step of NVIDIA's TorchScript FID Inception (inception-2015-12-05.pkl), which
    anyres-gan feeds its P x P patches: an affine grid shifted by 1/W - 1/299, bilinear sampling."""
    batch, channels, height, width = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / 299
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / 299
    grid = F.affine_grid(theta.unsqueeze(0).repeat(batch, 1, 1), [batch, channels, 299, 299], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("side", [64, 256, 299, 512, 1024])
def test_the_inceptions_internal_resize_is_anyres_gans(side):
    """Feeding a P x P patch to our Inception resizes it as anyres-gan's detector does."""
    pixels = torch.from_numpy(tissue_image(side, side, seed=side).transpose(2, 0, 1).copy())[None].double()
    ours = interpolate_bilinear_2d_like_tensorflow1x(pixels, size=(299, 299), align_corners=False)
    theirs = _nvidia_detector_resize(pixels)
    assert (ours - theirs).abs().max() < 1e-3  # grey levels: float rounding in torch-fidelity's float32 steps
    if side != 299:  # half-pixel bilinear (PyTorch's default) is another mapping: the check can fail
        half_pixel = F.interpolate(pixels, size=(299, 299), mode="bilinear", align_corners=False)
        assert (half_pixel - theirs).abs().max() > 5


def test_pfid_patches_reach_the_inception_as_read():
    extractor = load_extractor("inception-v3-random")
    assert extractor.resizes_internally and extractor.default_image_size("pfid", 256) == 256
    assert extractor.default_image_size("fixed", 128) == 128 and extractor.default_image_size("whole", 256) == 299


def test_whole_images_are_clean_fids_resize_of_the_centred_square(tmp_path):
    """``whole``: the centred square at 299 with PIL bicubic, the filter stopped at the square's
    edges: clean-fid's "clean" resize of the square, up to its float output (our input is uint8)."""
    pixels = tissue_image(1024, 1200, seed=3)
    path = tmp_path / "output.png"
    Image.fromarray(pixels).save(path)
    protocol = CropProtocol(mode="whole", image_size=299)
    (crop,) = sample_crops([ImageInfo(str(path), 1200, 1024, None)], protocol, 1, seed=0)
    square = pixels[:, 88:1112]
    with open_slide(path) as slide:
        ours = read_crop(slide, crop, protocol).astype(float)
        unframed = read_crop(slide, crop[:4], protocol).astype(float)
    clean = make_resizer("PIL", False, "bicubic", (299, 299))(square)
    assert np.abs(ours - clean).max() <= 1.0 and np.abs(ours - clean).mean() < 0.3
    lanczos = np.asarray(Image.fromarray(square).resize((299, 299), Image.Resampling.LANCZOS)).astype(float)
    assert np.abs(lanczos - clean).mean() > 1.0  # another filter is visible to the check
    assert np.abs(unframed - clean).max() > 1  # and so is a filter reaching past the square


def test_whole_images_at_their_own_size_reach_the_network_as_torch_fidelity_feeds_them(tmp_path):
    pixels = tissue_image(512, 512, seed=4)
    path = tmp_path / "output.png"
    Image.fromarray(pixels).save(path)
    protocol = CropProtocol(mode="whole", image_size=512)
    (crop,) = sample_crops([ImageInfo(str(path), 512, 512, None)], protocol, 1, seed=0)
    with open_slide(path) as slide:
        assert np.array_equal(read_crop(slide, crop, protocol), pixels)

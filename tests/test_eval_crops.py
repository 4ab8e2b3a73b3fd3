"""Crop protocol: scale range and uniformity, seeding, fixed scales, and pyramid reads that equal
the whole-image resize that anyres-gan performs."""

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from conftest import tissue_image
from evaluation.crops import CropProtocol, derive_seed, sample_crops
from evaluation.inputs import ImageInfo
from evaluation.reading import read_crop
from urcdm.errors import UserError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.slides import open_slide

IMAGES = [ImageInfo("a", 4000, 3000, 0.25), ImageInfo("b", 1000, 2500, 0.5), ImageInfo("c", 200, 200, None)]


def test_pfid_sizes_stay_in_range_and_are_uniform():
    protocol = CropProtocol(mode="pfid", patch_size=256)
    crops = sample_crops(IMAGES, protocol, 20000, seed=1)
    assert set(np.unique(crops[:, 0])) == {0, 1}  # image c is smaller than a patch: never upsampled
    for index, image in enumerate(IMAGES[:2]):
        mine = crops[crops[:, 0] == index]
        shorter = min(image.width, image.height)
        assert mine[:, 3].min() >= 256 and mine[:, 3].max() <= shorter
        assert (mine[:, 1] >= 0).all() and (mine[:, 1] + mine[:, 3] <= image.width).all()
        assert (mine[:, 2] >= 0).all() and (mine[:, 2] + mine[:, 3] <= image.height).all()
        # Uniform in size between the patch size and the shorter side.
        assert stats.kstest(mine[:, 3], stats.uniform(256, shorter - 256 + 1).cdf).pvalue > 0.001
    # Images are drawn uniformly too.
    assert stats.binomtest(int((crops[:, 0] == 0).sum()), len(crops), 0.5).pvalue > 0.001


def test_pfid_min_max_are_respected():
    crops = sample_crops(IMAGES, CropProtocol(mode="pfid", patch_size=128, min_size=300, max_size=600), 2000, seed=2)
    assert crops[:, 3].min() >= 300 and crops[:, 3].max() <= 600


def test_same_seed_same_crops_and_other_seed_other_crops():
    protocol = CropProtocol()
    first = sample_crops(IMAGES, protocol, 500, seed=7)
    assert np.array_equal(first, sample_crops(IMAGES, protocol, 500, seed=7))
    assert len(first) == 500
    assert not np.array_equal(first, sample_crops(IMAGES, protocol, 500, seed=8))
    assert derive_seed(0, "ab12") != derive_seed(0, "ab13") != derive_seed(1, "ab12")


def test_whole_mode_takes_centred_squares_without_replacement():
    crops = sample_crops(IMAGES, CropProtocol(mode="whole"), 2, seed=0)
    assert len(crops) == 2 and len(set(crops[:, 0])) == 2
    everything = sample_crops(IMAGES, CropProtocol(mode="whole"), 10, seed=0)
    assert everything.tolist() == [[0, 500, 0, 3000], [1, 0, 750, 1000], [2, 0, 0, 200]]


def test_fixed_level_and_mpp_spans():
    level1 = sample_crops(IMAGES[:2], CropProtocol(mode="fixed", patch_size=256, level=1), 50, seed=0)
    assert (level1[:, 3] == round(256 * 6500 / 1024)).all()
    by_mpp = sample_crops(IMAGES[:2], CropProtocol(mode="fixed", patch_size=256, mpp=1.0), 200, seed=0)
    assert set(map(tuple, by_mpp[:, [0, 3]])) == {(0, 1024), (1, 512)}
    with pytest.raises(UserError, match="mpp"):
        sample_crops(IMAGES, CropProtocol(mode="fixed", mpp=1.0), 10, seed=0)


def test_protocol_rejects_contradictions():
    for bad in (dict(mode="pfid", min_size=100, patch_size=256), dict(mode="fixed"), dict(mode="whole", level=1),
                dict(mode="pfid", min_size=512, max_size=300), dict(mode="fixed", level=7)):
        with pytest.raises(UserError):
            CropProtocol(**bad)
    with pytest.raises(UserError, match="large enough"):
        sample_crops(IMAGES[2:], CropProtocol(), 5, seed=0)


def test_rejected_crops_are_redrawn():
    left_half = lambda index, x, y, size: x + size <= 2000
    crops = sample_crops(IMAGES[:1], CropProtocol(max_size=1000), 300, seed=3, accept=left_half)
    assert (crops[:, 1] + crops[:, 3] <= 2000).all()
    with pytest.raises(UserError, match="tissue"):
        sample_crops(IMAGES[:1], CropProtocol(), 5, seed=3, accept=lambda *crop: False)


def test_pyramid_reads_equal_whole_image_resize(tmp_path):
    """Ours (read the crop from the matching pyramid level) against a full-resolution image held in
    memory and resized whole: the same pixels up to resampling noise."""
    pixels = tissue_image(2048, 2048, seed=5)
    path = tmp_path / "small.tiff"
    write_pyramid(ArraySource(pixels), path, tile=256, quality=None)
    protocol = CropProtocol(mode="pfid", patch_size=256, image_size=256)
    whole = Image.fromarray(pixels)
    with open_slide(path) as slide:
        assert slide.level_count >= 3
        # anyres-gan's way where its integer grid is exact: downsample everything 4x, then crop.
        reference = np.asarray(whole.resize((512, 512), Image.Resampling.LANCZOS).crop((128, 64, 384, 320))).astype(float)
        ours = read_crop(slide, (0, 512, 256, 1024), protocol).astype(float)
        _assert_close(ours, reference)
        for x, y, size in [(0, 0, 2048), (1000, 1200, 512), (100, 1700, 300), (37, 911, 777)]:
            box = (x, y, x + size, y + size)  # sub-pixel exact, which whole-image cropping is not
            reference = np.asarray(whole.resize((256, 256), Image.Resampling.LANCZOS, box=box)).astype(float)
            ours = read_crop(slide, (0, x, y, size), protocol).astype(float)
            _assert_close(ours, reference)


def _assert_close(ours, reference):
    # Pyramid levels are 2x2 box averages and the reference is one Lanczos pass: a few grey levels
    # apart on sharp texture (a level too coarse or a shifted window is far worse).
    assert np.abs(ours - reference).mean() < 3.5
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.99

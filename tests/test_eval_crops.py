"""Crop protocol: scale range and uniformity, seeding, fixed scales, and pyramid reads that equal
the whole-image resize that anyres-gan performs."""

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from conftest import tissue_image
from evaluation.crops import LEGACY_SAMPLING, CropProtocol, derive_seed, sample_crops
from evaluation.inputs import ImageInfo
from evaluation.reading import read_crop
from urcdm.errors import UserError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.slides import open_slide

IMAGES = [ImageInfo("a", 4000, 3000, 0.25), ImageInfo("b", 1000, 2500, 0.5), ImageInfo("c", 200, 200, None)]


def _legacy_law(image, patch, n, rng):
    """The crop law before anyres-gan's was followed: crop side uniform in [P, S]."""
    shorter = min(image.width, image.height)
    return rng.integers(patch, shorter + 1, size=n).astype(float)


def test_pfid_resized_side_is_uniform_on_patch_to_shorter_side():
    """anyres-gan's law: the square is resized to u ~ U[P, S], so P * S / footprint is uniform.
    The legacy law (crop side uniform) fails the same test."""
    protocol = CropProtocol(mode="pfid", patch_size=256)
    crops = sample_crops(IMAGES, protocol, 20000, seed=1)
    assert set(np.unique(crops[:, 0])) == {0, 1}  # image c is smaller than a patch: never upsampled
    for index, image in enumerate(IMAGES[:2]):
        mine = crops[crops[:, 0] == index]
        shorter = min(image.width, image.height)
        assert mine[:, 3].min() >= 256 - 1e-9 and mine[:, 3].max() <= shorter + 1e-9
        assert (mine[:, 1] >= 0).all() and (mine[:, 1] + mine[:, 3] <= image.width + 1e-9).all()
        assert (mine[:, 2] >= 0).all() and (mine[:, 2] + mine[:, 3] <= image.height + 1e-9).all()
        resized = 256 * shorter / mine[:, 3]
        assert np.allclose(resized, np.round(resized))  # u is rounded, as anyres-gan's int(np.round(...))
        law = stats.uniform(256, shorter - 256)
        assert stats.kstest(resized, law.cdf).pvalue > 0.001
        legacy = _legacy_law(image, 256, len(mine), np.random.default_rng(1))
        assert stats.kstest(256 * shorter / legacy, law.cdf).pvalue < 1e-6
    # The reference's footprint on a 2048^2 image: median ~456 px, 57 % downsampled less than 2x.
    square = sample_crops([ImageInfo("d", 2048, 2048, None)], protocol, 20000, seed=2)[:, 3]
    assert np.median(square) == pytest.approx(2048 * 256 / (256 + 2048) * 2, rel=0.03)
    assert (square < 512).mean() == pytest.approx((2048 - 1024) / (2048 - 256), abs=0.015)


def test_pfid_cuts_non_square_images_to_a_random_square():
    tall = ImageInfo("tall", 600, 3000, None)
    crops = sample_crops([tall], CropProtocol(mode="pfid", patch_size=200), 4000, seed=4)
    frame_x, frame_y, frame_w, frame_h = crops[:, 4:8].T
    assert (frame_w == 600).all() and (frame_h == 600).all() and (frame_x == 0).all()
    assert frame_y.min() < 100 and frame_y.max() > 2300  # anywhere along the long side
    assert stats.kstest(frame_y, stats.uniform(0, 2401).cdf).pvalue > 0.001
    # Every patch lies in its square, on the resized grid: (x - frame) / pixel is a whole number.
    pixel = crops[:, 3] / 200
    for offset, frame in ((crops[:, 1], frame_x), (crops[:, 2], frame_y)):
        grid = (offset - frame) / pixel
        assert np.allclose(grid, np.round(grid)) and (grid >= -1e-9).all()
        assert (offset + crops[:, 3] <= frame + 600 + 1e-6).all()


def test_images_take_balanced_turns():
    crops = sample_crops(IMAGES, CropProtocol(mode="pfid", patch_size=256), 1001, seed=3)
    assert sorted(np.bincount(crops[:, 0].astype(int)).tolist()) == [500, 501]
    many = [ImageInfo(str(i), 512 + i, 512, None) for i in range(7)]
    counts = np.bincount(sample_crops(many, CropProtocol(mode="fixed", patch_size=64, level=2), 100, seed=0)[:, 0].astype(int))
    assert counts.max() - counts.min() <= 1 and counts.sum() == 100
    # A rejected crop is redrawn from the same image, so the turns stay balanced.
    left_only = lambda index, x, y, size: index == 1 or x + size <= 2000
    crops = sample_crops(IMAGES, CropProtocol(mode="pfid", patch_size=256, max_size=1000), 600, seed=3, accept=left_only)
    assert sorted(np.bincount(crops[:, 0].astype(int)).tolist()) == [300, 300]


def test_pfid_min_max_bound_the_resized_image_side():
    protocol = CropProtocol(mode="pfid", patch_size=128, min_size=300, max_size=600)
    assert protocol.name == "patch128-min300max600"
    crops = sample_crops(IMAGES[:1], protocol, 2000, seed=2)
    resized = 128 * 3000 / crops[:, 3]
    assert resized.min() >= 300 - 1e-6 and resized.max() <= 600 + 1e-6
    assert CropProtocol(mode="pfid", patch_size=128, min_size=128, max_size=0) == CropProtocol(mode="pfid", patch_size=128)
    assert CropProtocol(mode="pfid", patch_size=256).name == "patch256-min256max0"


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
    assert everything[:, :4].tolist() == [[0, 500, 0, 3000], [1, 0, 750, 1000], [2, 0, 0, 200]]
    assert np.array_equal(everything[:, 4:7], everything[:, 1:4])  # the frame is the square itself


def test_fixed_level_and_mpp_spans():
    level1 = sample_crops(IMAGES[:2], CropProtocol(mode="fixed", patch_size=256, level=1), 50, seed=0)
    assert (level1[:, 3] == round(256 * 6500 / 1024)).all()
    by_mpp = sample_crops(IMAGES[:2], CropProtocol(mode="fixed", patch_size=256, mpp=1.0), 200, seed=0)
    assert set(map(tuple, by_mpp[:, [0, 3]])) == {(0, 1024), (1, 512)}
    assert np.allclose(by_mpp[:, 1:3], np.round(by_mpp[:, 1:3]))  # whole source pixels
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


def _anyres_patch(whole: Image.Image, crop, patch: int) -> np.ndarray:
    """anyres-gan's way: cut the square, resize it whole to u x u (Lanczos), cut the P x P patch."""
    frame_x, frame_y, side = (int(v) for v in crop[4:7])
    pixel = crop[3] / patch
    resized, grid_x, grid_y = round(side / pixel), round((crop[1] - frame_x) / pixel), round((crop[2] - frame_y) / pixel)
    square = whole.crop((frame_x, frame_y, frame_x + side, frame_y + side)).resize((resized, resized), Image.Resampling.LANCZOS)
    return np.asarray(square.crop((grid_x, grid_y, grid_x + patch, grid_y + patch))).astype(float)


def test_pfid_reads_equal_anyres_gans_resize_then_crop(tmp_path):
    """Each patch read through the slide layer against the whole square resized in memory: equal
    within one grey level from a plain image, within resampling noise from a pyramid's levels."""
    pixels = tissue_image(1800, 2048, seed=5)
    plain, pyramid = tmp_path / "plain.png", tmp_path / "pyramid.tiff"
    Image.fromarray(pixels).save(plain)
    write_pyramid(ArraySource(pixels), pyramid, tile=256, quality=None)
    protocol = CropProtocol(mode="pfid", patch_size=256)
    crops = sample_crops([ImageInfo(str(plain), 2048, 1800, None)], protocol, 16, seed=6)
    whole = Image.fromarray(pixels)
    with open_slide(plain) as flat, open_slide(pyramid) as levels:
        assert levels.level_count >= 3
        for crop in crops:
            reference = _anyres_patch(whole, crop, 256)
            assert np.abs(read_crop(flat, crop, protocol) - reference).max() <= 1
            _assert_close(read_crop(levels, crop, protocol).astype(float), reference)
        # Without its frame, a patch at the square's edge would take in pixels anyres-gan never sees.
        edge = (0, 100, 30, 768, 100, 0, 1800, 1800)  # the square resized 3x down, patch at grid (0, 10)
        assert np.abs(read_crop(flat, edge, protocol) - _anyres_patch(whole, edge, 256)).max() <= 1
        unframed = read_crop(flat, edge[:4], protocol).astype(float)
        assert np.abs(unframed[:, 0] - _anyres_patch(whole, edge, 256)[:, 0]).max() > 1


def _assert_close(ours, reference):
    # Pyramid levels are 2x2 box averages and the reference is one Lanczos pass: a few grey levels
    # apart on sharp texture (a level too coarse or a shifted window is far worse).
    assert np.abs(ours - reference).mean() < 3.5
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.99


def test_protocols_read_back_without_a_sampling_law_are_legacy_in_every_mode():
    """Whole images changed too (bicubic, the filter stopped at the square): no old statistics compare."""
    for mode in ("pfid", "whole"):
        old = CropProtocol.from_dict({k: v for k, v in CropProtocol(mode=mode).as_dict().items() if k != "sampling"})
        assert old.sampling == LEGACY_SAMPLING and old.differences(CropProtocol(mode=mode))


def test_fixed_crops_by_span_cover_that_many_level0_pixels_and_keep_older_identities():
    """--span: fixed-scale crops of S level-0 pixels whatever the image's mpp (a tiny-config level);
    protocols without it keep the identity (as_dict) they had before it existed."""
    from evaluation.crops import fixed_span

    protocol = CropProtocol(mode="fixed", patch_size=64, image_size=64, span=192)
    assert protocol.name == "fixed-span192-patch64" and protocol.as_dict()["span"] == 192
    assert fixed_span(protocol, ImageInfo("a", 500, 400, None)) == 192
    assert fixed_span(protocol, ImageInfo("b", 500, 150, 0.25)) is None  # does not fit
    crops = sample_crops([ImageInfo("a", 500, 400, None)], protocol, 20, seed=1)
    assert all(crop[3] == 192 and 0 <= crop[1] <= 500 - 192 and 0 <= crop[2] <= 400 - 192 for crop in crops)
    older = CropProtocol(mode="fixed", patch_size=64, image_size=64, level=2)
    assert "span" not in older.as_dict() and CropProtocol.from_dict(older.as_dict()) == older
    assert older.differences(protocol) and not older.differences(CropProtocol.from_dict(older.as_dict()))
    with pytest.raises(UserError, match="exactly one of --level, --mpp or --span"):
        CropProtocol(mode="fixed", patch_size=64, image_size=64, level=1, span=192)
    with pytest.raises(UserError, match="never upsampled"):
        CropProtocol(mode="fixed", patch_size=64, image_size=64, span=32)


def test_the_pfid_description_says_what_anyres_gans_max0_means():
    assert "squares resized to 256px .. each image's own side" in CropProtocol().describe()
    assert "squares resized to 512px .. 1024px" in CropProtocol(min_size=512, max_size=1024).describe()

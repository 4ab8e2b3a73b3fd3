import csv

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from urcdm.slides import DEFAULT_BACKGROUND_THRESHOLD, SlideTissueMask, is_background, open_slide, tissue_fraction


def labelled_tiles(root):
    with open(root / "tiles" / "labels.csv") as handle:
        return [(row["file"], row["label"]) for row in csv.DictReader(handle)]


def test_every_labelled_real_tile_is_called_right(real_data):
    wrong = []
    for name, label in labelled_tiles(real_data):
        if label == "pen":
            continue  # ink on glass is neither; not scored
        rgb = np.asarray(Image.open(real_data / "tiles" / name).convert("RGB"))
        fraction = tissue_fraction(rgb)
        assert 0.0 <= fraction <= 1.0
        if (label == "tissue") != (fraction >= DEFAULT_BACKGROUND_THRESHOLD):
            wrong.append((name, label, round(fraction, 3)))
    assert not wrong, wrong


def test_calls_survive_rotation_and_half_resolution(real_data):
    """Unseen tiles of the same kind: the labelled ones flipped, rotated and halved."""
    total = wrong = 0
    for name, label in labelled_tiles(real_data):
        if label == "pen":
            continue
        rgb = np.asarray(Image.open(real_data / "tiles" / name).convert("RGB"))
        half = np.asarray(Image.fromarray(rgb).reduce(2))
        for variant in (np.rot90(rgb), rgb[::-1], half):
            total += 1
            wrong += (label == "tissue") != (not is_background(np.ascontiguousarray(variant)))
    assert wrong / total <= 0.05, f"{wrong} of {total} wrong"


def synthetic_fat(size=256, cell=40, wall=2):
    """Pale pink membranes around large clear cells, like adipose tissue."""
    yy, xx = np.mgrid[0:size, 0:size]
    membranes = ((yy % cell) < wall) | ((xx % cell) < wall)
    rgb = np.full((size, size, 3), (244, 243, 244), np.uint8)
    rgb[membranes] = (226, 196, 220)
    noise = np.random.default_rng(0).normal(0, 2, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def test_glass_stain_ink_and_fat():
    glass = np.clip(np.random.default_rng(1).normal(240, 2, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert tissue_fraction(glass) < 0.01
    tinted_glass = np.full((256, 256, 3), (241, 235, 239), np.uint8)  # flat pink cast of some scanners
    assert tissue_fraction(tinted_glass) < 0.01
    eosin = np.full((256, 256, 3), (230, 150, 200), np.uint8)
    assert tissue_fraction(eosin) > 0.99
    green_ink = np.full((256, 256, 3), (40, 160, 60), np.uint8)
    red_ink = np.full((256, 256, 3), (210, 20, 40), np.uint8)
    assert tissue_fraction(green_ink) < 0.01 and tissue_fraction(red_ink) < 0.01
    rng = np.random.default_rng(2)
    dab_brown = np.clip(rng.normal((150, 100, 60), 12, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert tissue_fraction(dab_brown) > 0.99, "IHC (DAB) tissue is tissue too"
    black_ink = np.clip(rng.normal((30, 30, 35), 8, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert tissue_fraction(black_ink) < 0.01
    fat = synthetic_fat()
    membranes_only = ndimage.binary_dilation(fat.mean(axis=2) < 235).mean()
    assert membranes_only < 0.3 and tissue_fraction(fat) > 0.9, "fat cell interiors count as tissue"


def test_real_ihc_micrograph_is_tissue():
    from skimage import data as skimage_data

    assert tissue_fraction(skimage_data.immunohistochemistry()) > 0.6


def test_a_strip_of_tissue_on_glass_is_background():
    rgb = np.full((256, 256, 3), (242, 243, 242), np.uint8)
    rgb[:60] = (200, 120, 180)
    fraction = tissue_fraction(rgb)
    assert 0.2 < fraction < 0.3 and is_background(rgb)


def test_slide_mask_and_region_queries(real_data):
    with open_slide(real_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs") as slide:
        mask = SlideTissueMask.from_slide(slide, max_size=1024)
        assert max(mask.mask.shape) == 1024
        assert 0.4 < mask.fraction < 0.9
        assert mask.fraction_in(2000, 1500, 512, 512) > 0.9  # the middle of the tumour
        assert mask.fraction_in(10, 3300, 200, 200) < 0.1  # bottom-left glass
        assert mask.fraction_in(-5000, -5000, 1000, 1000) == 0.0
    with open_slide(real_data / "slides" / "kidney-48-5.tif") as slide:
        assert SlideTissueMask.from_slide(slide).fraction < 0.02  # "mostly white"


def test_rejects_non_rgb():
    with pytest.raises(ValueError):
        tissue_fraction(np.zeros((10, 10), np.uint8))

"""pFID against an independent implementation of anyres-gan's patch sampler (chail/anyres-gan at
b14422c, written from its description with Python's ``random`` and PIL, reading every image whole:
``tests/plugins/anyres_reference.py``).

Same real H&E regions, the same regions blurred, the same extractor and N: the means of pFID over
seeds agree within noise. The legacy law (crop side uniform, images drawn with replacement) is
run through the same check and fails it, so the check can tell the laws apart.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from scipy import stats

from conftest import PLUGINS  # noqa: F401  (puts tests/plugins on sys.path)
from anyres_reference import anyres_patches, legacy_patches, load_images
from evaluation.crops import CropProtocol
from evaluation.features import Extractor
from evaluation.metrics import frechet_distance
from evaluation.pipeline import RunOptions, side_statistics
from tiny_extractors import detail_energy
from urcdm.slides import open_slide

PATCH = 32          # P; regions of 384 x 320 px, so the resized side u runs over [32, 320]
N = 1000
SEEDS = range(6)
REGIONS = [(100, 200), (800, 1100), (1400, 300), (300, 2000)]  # in cmu-1-small-region.svs
EXTRACTOR = detail_energy()


@pytest.fixture(scope="module")
def region_folders(real_data, tmp_path_factory):
    """Real regions (non-square, so the square cut matters) and their Gaussian blur."""
    root = tmp_path_factory.mktemp("pfid-reference")
    (root / "real").mkdir()
    (root / "blurred").mkdir()
    with open_slide(real_data / "slides" / "cmu-1-small-region.svs") as slide:
        for index, (x, y) in enumerate(REGIONS):
            region = Image.fromarray(slide.read_region(x, y, 384, 320))
            region.save(root / "real" / f"region-{index}.png")
            region.filter(ImageFilter.GaussianBlur(1.5)).save(root / "blurred" / f"region-{index}.png")
    return root / "real", root / "blurred"


def _fid_by(sampler, real, fake, seed) -> float:
    return _fid(_features(sampler(load_images(real), PATCH, N, seed)), _features(sampler(load_images(fake), PATCH, N, seed + 1000)))


def _features(patches) -> np.ndarray:
    batch = torch.stack([torch.from_numpy(np.asarray(p).transpose(2, 0, 1).copy()) for p in patches])
    return EXTRACTOR(batch).numpy().astype(np.float64)


def _fid(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def _ours(real, fake, seed) -> float:
    extractor = Extractor(EXTRACTOR.extractor_id, EXTRACTOR, PATCH, False, torch.device("cpu"))
    options = lambda s: RunOptions(CropProtocol(mode="pfid", patch_size=PATCH, image_size=PATCH), n=N, seed=s, workers=0)  # noqa: E731
    a = side_statistics(str(real), "real", extractor, options(seed))
    b = side_statistics(str(fake), "fake", extractor, options(seed + 1000))
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def test_pfid_agrees_with_anyres_gans_sampler_and_the_legacy_law_does_not(region_folders):
    real, fake = region_folders
    reference = [_fid_by(anyres_patches, real, fake, s) for s in SEEDS]
    ours = [_ours(real, fake, s) for s in SEEDS]
    legacy = [_fid_by(legacy_patches, real, fake, s) for s in SEEDS]
    summary = {name: (np.mean(v), np.std(v, ddof=1)) for name, v in (("reference", reference), ("ours", ours), ("legacy", legacy))}

    # Welch's t-test over seeds: ours is indistinguishable from the reference at this N ...
    assert stats.ttest_ind(ours, reference, equal_var=False).pvalue > 0.01, summary
    assert np.mean(ours) == pytest.approx(np.mean(reference), rel=0.15), summary
    # ... and the legacy law is far from it (it sees the blur through heavy downsampling only).
    assert stats.ttest_ind(legacy, reference, equal_var=False).pvalue < 1e-4, summary
    assert np.mean(legacy) < 0.6 * np.mean(reference), summary

"""Copy verification in the memorisation audit: the correlation it computes against a direct Pearson
computation, flat glass kept from correlating, and the whole audit finding copies planted off the
training lattice (shifted, flipped or turned, JPEG re-encoded) while passing unseen tissue."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evaluation.memorization import audit
from evaluation.memorization.dihedral import TRANSFORM_NAMES, inverse_transform, transform_array
from evaluation.memorization.planting import SourceArea, crop_blocks, plant_slide, source_window, write_area
from evaluation.memorization.verification import best_correlation, coarse_peaks, correlation_map, grey
from conftest import TINY_EXTRACTOR
from evaluation.features import load_extractor
from urcdm.slides import open_slide

TCGA = "tcga-cr-7395-01a-01-ts1.svs"


def brute_force_correlation(query: np.ndarray, region: np.ndarray) -> float:
    """Pearson correlation of the query with every window of the region, directly."""
    size, best = query.shape[0], -1.0
    for y in range(region.shape[0] - size + 1):
        for x in range(region.shape[1] - size + 1):
            best = max(best, float(np.corrcoef(query.ravel(), region[y:y + size, x:x + size].ravel())[0, 1]))
    return best


def test_the_correlation_is_the_best_pearson_correlation_over_shifts_and_transforms():
    rng = np.random.default_rng(4)
    region = rng.random((20, 20)).astype(np.float32) * 255
    query = rng.random((12, 12)).astype(np.float32) * 255
    want = max(brute_force_correlation(transform_array(query, t), region) for t in range(8))
    assert best_correlation(query, region) == pytest.approx(want, abs=1e-4)
    copy = transform_array(region[3:15, 6:18], 6)  # a turned, mirrored window of the region
    assert best_correlation(copy, region) == pytest.approx(1.0, abs=1e-4)


def test_glass_correlates_zero_not_far_above_one():
    """Normalised by a window's spread, near-flat glass gives "correlations" of 3 or 4 unless guarded."""
    rng = np.random.default_rng(5)
    image = np.full((40, 40), 240.0, np.float32) + rng.normal(0, 0.2, (40, 40)).astype(np.float32)
    image[:, 20:] = rng.random((40, 20)) * 255
    query = rng.random((8, 8)).astype(np.float32) * 255
    scores = correlation_map(image, query)
    assert scores[:, :12].max() == 0 and scores.max() <= 1
    assert correlation_map(image, np.full((8, 8), 7.0, np.float32)).max() == 0  # a glass query


@pytest.fixture(scope="module")
def tissue_areas(real_data, tmp_path_factory):
    """Disjoint areas of one real slide: training, held-out (calibration), honest content."""
    root = tmp_path_factory.mktemp("copy-detection")
    source = str(real_data / "slides" / TCGA)
    for name in ("training", "heldout", "honest", "synthetic"):
        (root / name).mkdir()
    write_area(SourceArea(source, 1200, 1200, 900, 900), root / "training" / "train.tif")
    write_area(SourceArea(source, 2200, 1200, 700, 700), root / "heldout" / "heldout.tif")
    write_area(SourceArea(source, 1200, 2150, 700, 700), root / "honest" / "honest.tif")
    return root


def test_a_shifted_reencoded_copy_is_found_coarse_and_correlates_near_one(tissue_areas):
    with open_slide(tissue_areas / "training" / "train.tif") as slide:
        thumbnail = grey(slide.read_region(0, 0, 900, 900, out_size=(84, 84)))  # 12 px per 128-px span
        source = slide.read_region(437, 221, 128, 128, out_size=(48, 48))
        region = grey(slide.read_region(437 - 21, 221 - 21, 170, 170, out_size=(64, 64)))
    with open_slide(tissue_areas / "honest" / "honest.tif") as slide:
        other = slide.read_region(300, 300, 128, 128, out_size=(48, 48))
    buffer = io.BytesIO()
    Image.fromarray(transform_array(source, 3)).save(buffer, format="JPEG", quality=60)
    copy = grey(np.asarray(Image.open(buffer).convert("RGB")))
    small = np.asarray(Image.fromarray(copy).resize((12, 12), Image.Resampling.BOX))
    _, top, left = coarse_peaks(small, thumbnail)[0]
    assert abs(left * 128 / 12 - 437) <= 11 and abs(top * 128 / 12 - 221) <= 11
    assert best_correlation(copy, region) > 0.95
    assert best_correlation(grey(other), region) < 0.7


def test_the_audit_finds_copies_off_the_lattice_and_passes_unseen_tissue(tissue_areas, tmp_path):
    """Copies at random (off-lattice) positions under every flip/turn, JPEG 80, among honest blocks:
    the feature space (colour layout and texture: not shift-tolerant) only names the slide; verification
    finds the place."""
    synthetic = tissue_areas / "synthetic" / "planted.tif"
    blocks = plant_slide(synthetic, 2, 256, [SourceArea(str(tissue_areas / "training" / "train.tif"), 0, 0, 900, 900)],
                         [SourceArea(str(tissue_areas / "honest" / "honest.tif"), 0, 0, 700, 700)], seed=7)
    report = audit(str(synthetic), str(tissue_areas / "training"), str(tissue_areas / "heldout"), load_extractor(TINY_EXTRACTOR),
                   [128], 64, 60, 0.5, tmp_path / "out", n_heldout=100, k=2, workers=0, pairs=6, authenticity=False,
                   progress=False)
    scale = report["scales"][0]
    assert scale["copy_score"] == "correlation" and scale["threshold"]["heldout_flagged"] <= 0.05
    rows = [(float(c["x"]), float(c["y"]), c["copy"]) for c in _crop_rows(tmp_path / "out" / "neighbours-span128.csv")]
    crops = np.array([(0, x, y, 128, 0, 0, 512, 512) for x, y, _ in rows])
    inside = crop_blocks(crops, [str(synthetic)], {str(synthetic): blocks})
    planted = [copy for (_, _, copy), b in zip(rows, inside) if b is not None and b.planted]
    honest = [copy for (_, _, copy), b in zip(rows, inside) if b is not None and not b.planted]
    assert len(planted) >= 10 and np.mean(planted) >= 0.95, planted
    assert np.mean(honest) <= 0.1, honest
    # The report shows where each copy came from: verification's window, seen through the block's transform.
    for pair in scale["closest_pairs"]:
        where = pair["synthetic"]
        block = crop_blocks(np.array([(0, where["x"], where["y"], 128, 0, 0, 512, 512)], float), [str(synthetic)],
                            {str(synthetic): blocks})[0]
        if pair["copy"] and block is not None and block.planted:
            source_x, source_y = source_window(block, int(where["x"]), int(where["y"]), 128)
            assert abs(pair["training"]["x"] - source_x) <= 8 and abs(pair["training"]["y"] - source_y) <= 8, (pair, block)
            assert pair["transform"] == TRANSFORM_NAMES[inverse_transform(block.transform)]


def _crop_rows(path):
    import csv

    with open(path, newline="") as handle:
        return [{**row, "copy": row["copy"] == "1"} for row in csv.DictReader(handle) if row["rank"] == "1"]

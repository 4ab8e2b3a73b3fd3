"""The memorisation audit: exact chunked search, lattice geometry, calibration and authenticity maths,
the dihedral transforms, and a small planted-copy run on a real slide."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import tissue_image
from evaluation.crops import CROP_COLUMNS, CropProtocol
from evaluation.features import Extractor
from evaluation.inputs import ImageInfo
from evaluation.memorization import audit
from evaluation.memorization.calibration import (authenticity_percent, copy_rate, copy_threshold, histograms, summary,
                                                 wilson_interval)
from evaluation.memorization.crop_sets import CropSet
from evaluation.memorization.dihedral import (TRANSFORMS, dihedral_extractor, inverse_transform, transform_array,
                                              transform_tensor)
from evaluation.memorization.lattice import lattice_crops, lattice_positions, lattice_stride
from evaluation.memorization.planting import SourceArea, crop_blocks, plant_slide, source_window, write_area
from evaluation.memorization.scale_audit import SearchOptions, audit_scale
from evaluation.memorization.search import Neighbours, cosine_topk, euclidean_nearest, merge_transforms
from urcdm.errors import OutputExistsError, UserError
from urcdm.pyramid import ArraySource, write_pyramid

TCGA = "tcga-cr-7395-01a-01-ts1.svs"


# -- search ------------------------------------------------------------------------------------------

def test_chunked_cosine_topk_equals_brute_force():
    rng = np.random.default_rng(0)
    queries, database = rng.normal(size=(300, 24)), rng.normal(size=(1000, 24)) + 0.3
    center = database.mean(axis=0)
    for offset in (None, center):
        found = cosine_topk(queries.astype(np.float32), database.astype(np.float32), 7, center=offset,
                            query_block=64, database_block=90)  # many uneven blocks
        q = queries - (0 if offset is None else offset)
        d = database - (0 if offset is None else offset)
        similarity = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (d / np.linalg.norm(d, axis=1, keepdims=True)).T
        expected = np.argsort(-similarity, axis=1)[:, :7]
        np.testing.assert_array_equal(found.indices, expected)
        np.testing.assert_allclose(found.scores, np.take_along_axis(similarity, expected, axis=1), atol=1e-5)


def test_faiss_backend_agrees_with_torch():
    pytest.importorskip("faiss", reason="faiss is an optional backend, not installed here")
    rng = np.random.default_rng(6)
    queries, database = rng.normal(size=(200, 32)).astype(np.float32), rng.normal(size=(700, 32)).astype(np.float32)
    center = database.mean(axis=0)
    by_torch = cosine_topk(queries, database, 4, center=center, database_block=256)
    by_faiss = cosine_topk(queries, database, 4, backend="faiss", center=center, query_block=64, database_block=256)
    np.testing.assert_array_equal(by_faiss.indices, by_torch.indices)
    np.testing.assert_allclose(by_faiss.scores, by_torch.scores, atol=1e-5)


def test_chunked_euclidean_nearest_equals_brute_force_and_excludes_only_self():
    rng = np.random.default_rng(1)
    database = rng.normal(size=(500, 16)).astype(np.float32)
    database[7] = database[3]  # a duplicate: its nearest *other* row is at distance 0
    distances = np.linalg.norm(database[:, None] - database[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    found = euclidean_nearest(database, database, exclude_self=True, query_block=70, database_block=45)
    # Rows equidistant to the twins 3 and 7 may get either: compare the distances reached.
    reached = distances[np.arange(len(database)), found.indices[:, 0]]
    np.testing.assert_allclose(reached, distances.min(axis=1), atol=1e-3)
    unique = ~np.isin(distances.argmin(axis=1), (3, 7))
    np.testing.assert_array_equal(found.indices[unique, 0], distances.argmin(axis=1)[unique])
    np.testing.assert_allclose(found.scores[:, 0], distances.min(axis=1), atol=1e-3)
    assert found.indices[3, 0] == 7 and found.indices[7, 0] == 3 and found.scores[3, 0] == pytest.approx(0, abs=1e-3)

    queries = rng.normal(size=(130, 16)).astype(np.float32)
    direct = np.linalg.norm(queries[:, None] - database[None], axis=2)
    found = euclidean_nearest(queries, database, database_block=64)
    np.testing.assert_array_equal(found.indices[:, 0], direct.argmin(axis=1))


def test_merge_transforms_keeps_each_training_row_once_at_its_best():
    # One query, 3 transforms, k = 2: row 5 is found under transforms 0 and 2, best under 2.
    scores = np.array([[0.9, 0.5], [0.7, 0.6], [0.95, 0.4]], np.float32)
    rows = np.array([[5, 1], [2, 3], [5, 9]])
    merged, transform = merge_transforms(Neighbours(scores, rows), 3, 3)
    np.testing.assert_array_equal(merged.indices, [[5, 2, 3]])
    np.testing.assert_allclose(merged.scores, [[0.95, 0.7, 0.6]])
    np.testing.assert_array_equal(transform, [[2, 1, 1]])


# -- lattice -----------------------------------------------------------------------------------------

def test_lattice_covers_every_pixel_and_every_position_within_half_a_stride():
    np.testing.assert_array_equal(lattice_positions(1000, 256, 128), [0, 128, 256, 384, 512, 640, 744])
    np.testing.assert_array_equal(lattice_positions(512, 256, 128), [0, 128, 256])
    assert lattice_positions(200, 256, 128).size == 0
    for length, span, stride in ((1000, 256, 128), (777, 100, 33), (300, 64, 64)):
        origins = lattice_positions(length, span, stride)
        every = np.arange(length - span + 1)
        assert np.abs(every[:, None] - origins[None]).min(axis=1).max() <= stride / 2
        covered = np.zeros(length, bool)
        for origin in origins:
            covered[origin:origin + span] = True
        assert covered.all()
    assert lattice_stride(256, 0.5) == 128 and lattice_stride(3, 0.1) == 1
    with pytest.raises(UserError):
        lattice_stride(256, 0)


def test_lattice_crop_table():
    images = [ImageInfo("a", 600, 400, None), ImageInfo("tiny", 100, 100, None), ImageInfo("b", 256, 256, None)]
    table = lattice_crops(images, 256, 128)
    # a: x at 0, 128, 256 and flush 344; y at 0, 128 and flush 144; tiny: none; b: one
    assert table.shape == (4 * 3 + 1, len(CROP_COLUMNS))
    a = table[table[:, 0] == 0]
    assert sorted({*a[:, 1]}) == [0, 128, 256, 344] and sorted({*a[:, 2]}) == [0, 128, 144]
    np.testing.assert_array_equal(a[:4, 1:3], [[0, 0], [128, 0], [256, 0], [344, 0]])  # row-major
    np.testing.assert_array_equal(table[:, 3], 256)
    np.testing.assert_array_equal(table[table[:, 0] == 2][:, 1:8], [[0, 0, 256, 0, 0, 256, 256]])
    np.testing.assert_array_equal(a[0, 4:8], [0, 0, 600, 400])
    only_left = lattice_crops(images, 256, 128, accept=lambda i, x, y, size: x < 128)
    assert set(only_left[:, 1]) == {0}


# -- calibration and authenticity ---------------------------------------------------------------------

def test_threshold_is_an_observed_heldout_similarity_and_flags_strictly_above_it():
    heldout = np.arange(100) / 100  # 0.00 .. 0.99
    assert copy_threshold(heldout, 0.99) == pytest.approx(0.99)
    assert copy_threshold(heldout, 0.95) == pytest.approx(0.95)
    assert copy_rate(heldout, copy_threshold(heldout, 0.95)) == pytest.approx(0.04)  # in-sample <= 1 - q
    synthetic = np.array([0.2, 0.96, 0.99, 0.995, 1.0])
    assert copy_rate(synthetic, 0.99) == pytest.approx(2 / 5)
    with pytest.raises(UserError):
        copy_threshold(heldout, 1.0)
    low, high = wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))  # the textbook 5/10
    stats = summary(heldout)
    assert stats["n"] == 100 and stats["p50"] == pytest.approx(0.495) and stats["p100"] == pytest.approx(0.99)
    drawn = histograms({"synthetic": synthetic, "heldout": heldout}, bins=10)
    assert len(drawn["edges"]) == 11 and sum(drawn["counts"]["heldout"]) == 100 and sum(drawn["counts"]["synthetic"]) == 5


def _authpct_directly(train: np.ndarray, generated: np.ndarray) -> float:
    """Alaa et al.'s authenticity as dgm-eval computes it, written out with full distance matrices."""
    among_training = np.linalg.norm(train[:, None] - train[None], axis=2)
    np.fill_diagonal(among_training, np.inf)
    to_training = np.linalg.norm(generated[:, None] - train[None], axis=2)
    nearest = to_training.argmin(axis=1)
    authentic = among_training.min(axis=1)[nearest] < to_training.min(axis=1)
    return 100 * authentic.mean()


def test_authenticity_matches_the_formula():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(80, 6)).astype(np.float32)
    generated = np.concatenate([rng.normal(size=(40, 6)) * 1.3, train[:10] + 1e-4]).astype(np.float32)
    generated_nearest = euclidean_nearest(generated, train, database_block=30)
    training_nearest = euclidean_nearest(train, train, exclude_self=True, database_block=30)
    value = authenticity_percent(generated_nearest.scores[:, 0], generated_nearest.indices[:, 0], training_nearest.scores[:, 0])
    assert value == pytest.approx(_authpct_directly(train, generated))
    copies = authenticity_percent(*(x[:, 0][40:] for x in (generated_nearest.scores, generated_nearest.indices)),
                                  training_nearest.scores[:, 0])
    assert copies == 0.0  # near-exact copies are never authentic
    # Strict: a training sample exactly as far from its neighbour as from the generated one does not make it authentic.
    assert authenticity_percent(np.array([1.0, 2.0]), np.array([0, 0]), np.array([1.0])) == 50.0
    assert 0 < value < 100


# -- dihedral transforms ------------------------------------------------------------------------------

def test_dihedral_transforms_agree_are_distinct_and_invert():
    image = np.random.default_rng(3).integers(0, 255, size=(6, 6, 3), dtype=np.uint8)
    batch = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
    seen = set()
    for t in range(TRANSFORMS):
        as_array = transform_array(image, t)
        np.testing.assert_array_equal(transform_tensor(batch, t)[0].numpy().transpose(1, 2, 0), as_array)
        np.testing.assert_array_equal(transform_array(as_array, inverse_transform(t)), image)
        seen.add(as_array.tobytes())
    assert len(seen) == TRANSFORMS


def test_dihedral_extractor_lays_the_8_transforms_side_by_side():
    base = Extractor("flat", lambda x: x.float().flatten(1), None, False, torch.device("cpu"))
    images = torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8)
    features = dihedral_extractor(base)(images).reshape(2, TRANSFORMS, -1)
    for t in range(TRANSFORMS):
        np.testing.assert_array_equal(features[:, t], transform_tensor(images, t).float().flatten(1).numpy())


# -- a small planted-copy run on a real slide ----------------------------------------------------------

class GreyThumbnail:
    """16 x 16 grey-level layout, mean removed: specific to a crop's exact content (a near-duplicate
    descriptor), not tolerant of shifts, so the copies below sit on the training lattice."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        grey = F.adaptive_avg_pool2d(images.float().mean(1, keepdim=True), 16).flatten(1)
        return grey - grey.mean(1, keepdim=True)


def thumbnail_extractor() -> Extractor:
    return Extractor("tests.grey_thumbnail/16", GreyThumbnail(), None, False, torch.device("cpu"), resizes_internally=True)


SPAN, STRIDE, BLOCK = 64, 32, 256


@pytest.fixture(scope="module")
def planted(real_data, tmp_path_factory):
    """Training, held-out and honest parts of one real slide (disjoint areas), and a synthetic slide
    of 2 x 2 blocks: two planted copies of training areas (turned/flipped, JPEG 80), two honest."""
    root = tmp_path_factory.mktemp("memorization")
    source = str(real_data / "slides" / TCGA)
    folders = {name: root / name for name in ("training", "heldout", "honest", "synthetic")}
    for folder in folders.values():
        folder.mkdir()
    write_area(SourceArea(source, 1200, 1200, 640, 640), folders["training"] / "train.tif")
    write_area(SourceArea(source, 2000, 1200, 640, 640), folders["heldout"] / "heldout.tif")
    write_area(SourceArea(source, 1200, 2000, 640, 640), folders["honest"] / "honest.tif")
    synthetic = folders["synthetic"] / "planted.tif"
    blocks = plant_slide(synthetic, 2, BLOCK, [SourceArea(str(folders["training"] / "train.tif"), 0, 0, 640, 640)],
                         [SourceArea(str(folders["honest"] / "honest.tif"), 0, 0, 640, 640)], seed=4, align=STRIDE,
                         transforms=(5, 3))  # flip + quarter turn, three quarter turns
    return folders, str(synthetic), blocks


def test_planted_copies_on_the_lattice_are_found_through_turns_flips_and_jpeg(planted, tmp_path):
    folders, synthetic, blocks = planted
    assert sum(b.planted for b in blocks) == 2 and {b.transform for b in blocks if b.planted} == {5, 3}
    # Crops at lattice steps inside each block: through the block's transform they land on the lattice.
    positions = range(0, BLOCK - SPAN + 1, 3 * STRIDE)
    crops = np.array([(0, b.x + u, b.y + v, SPAN, 0, 0, 2 * BLOCK, 2 * BLOCK) for b in blocks for u in positions for v in positions],
                     dtype=np.float64)
    protocol = CropProtocol(mode="fixed", span=SPAN, patch_size=SPAN, image_size=SPAN)
    training = CropSet([str(folders["training"] / "train.tif")],
                       lattice_crops([ImageInfo("train", 640, 640, None)], SPAN, STRIDE))
    rng = np.random.default_rng(5)
    heldout = CropSet([str(folders["heldout"] / "heldout.tif")],
                      np.array([(0, *rng.integers(0, 640 - SPAN, 2), SPAN, 0, 0, 640, 640) for _ in range(150)], np.float64))
    result = audit_scale(protocol, STRIDE, training, CropSet([synthetic], crops), heldout, thumbnail_extractor(), 0.99,
                         tmp_path, SearchOptions(k=3, workers=0, batch_size=32, progress=False))
    inside = crop_blocks(crops, [synthetic], {synthetic: blocks})
    is_planted = np.array([b.planted for b in inside])
    found, flagged = result.synthetic_copies[is_planted], result.synthetic_copies[~is_planted]
    assert found.mean() >= 0.95, f"found {found.mean():.2f} of planted crops"
    assert flagged.mean() <= 0.2, f"flagged {flagged.mean():.2f} of honest crops"
    # The match is the exact source window, seen through the inverse of the planted transform.
    nearest = result.synthetic_result.neighbours.indices[:, 0]
    for row in np.flatnonzero(is_planted):
        block = inside[row]
        assert tuple(training.crops[nearest[row], 1:3]) == source_window(block, *crops[row, 1:3].astype(int), SPAN)
        assert result.synthetic_result.transforms[row, 0] == inverse_transform(block.transform)
    assert not np.isnan(result.heldout_result.nearest_similarity).any()


def test_audit_writes_its_report_and_refuses_to_overwrite(planted, tmp_path):
    folders, synthetic, _ = planted
    out = tmp_path / "audit"
    args = (synthetic, str(folders["training"]), str(folders["heldout"]), thumbnail_extractor(), [SPAN, 128], SPAN, 24, 0.5, out)
    report = audit(*args, device="cpu", n_heldout=40, k=2, workers=0, pairs=4, progress=False)
    assert [s["span"] for s in report["scales"]] == [SPAN, 128]
    scale = report["scales"][0]
    assert 0 <= scale["copy_rate"] <= 1 and scale["crops"]["synthetic"] == 24 and scale["crops"]["heldout"] == 40
    assert scale["threshold"]["heldout_flagged"] <= 0.01 + 1e-9
    score = scale["copy_score"]  # the verified correlation: copies are ranked by what decides them
    assert score == "correlation" and len(scale["closest_pairs"]) == 4
    assert scale["closest_pairs"][0][score] >= scale["closest_pairs"][-1][score]
    assert json.loads((out / "memorization.json").read_text())["scales"][1]["span"] == 128
    for name in ("montage-span64.png", "montage-span128.png", "neighbours-span64.csv"):
        assert (out / name).stat().st_size > 0
    assert len((out / "neighbours-span64.csv").read_text().splitlines()) == 1 + 24 * 2
    with pytest.raises(OutputExistsError, match="memorization.json: already exists"):
        audit(*args, device="cpu", workers=0, progress=False)
    users = tmp_path / "users-folder"  # a folder of the user's own files is not the audit's to write into
    users.mkdir()
    (users / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="users-folder: already exists and is not empty"):
        audit(*args[:-1], users, device="cpu", workers=0, progress=False)
    assert [p.name for p in users.iterdir()] == ["keep.txt"]


def test_an_audit_that_fails_while_writing_leaves_no_file_and_keeps_the_earlier_audit(planted, tmp_path, monkeypatch):
    import importlib

    audit_module = importlib.import_module("evaluation.memorization.audit")  # the module, not the function
    folders, synthetic, _ = planted
    out = tmp_path / "audit"
    args = (synthetic, str(folders["training"]), str(folders["heldout"]), thumbnail_extractor(), [SPAN], SPAN, 8, 0.5, out)
    options = dict(device="cpu", n_heldout=16, k=1, workers=0, pairs=2, progress=False)

    def broken_montage(*_, **__):
        raise RuntimeError("the montage failed")

    monkeypatch.setattr(audit_module, "write_montage", broken_montage)
    with pytest.raises(RuntimeError):  # the neighbours CSV was written before the montage failed
        audit(*args, **options)
    assert not out.exists()
    monkeypatch.undo()
    audit(*args, **options)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert sorted(before) == ["memorization.json", "montage-span64.png", "neighbours-span64.csv"]
    monkeypatch.setattr(audit_module, "write_montage", broken_montage)
    with pytest.raises(RuntimeError):
        audit(*args, overwrite=True, **{**options, "k": 2})
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


@pytest.fixture
def small_slides(tmp_path):
    """Made-up slides, no real data needed: tissue texture for synthetic and held-out, glass for training."""
    folders = {name: tmp_path / name for name in ("synthetic", "heldout", "glass")}
    for name, folder in folders.items():
        folder.mkdir()
        pixels = np.full((512, 512, 3), 242, np.uint8) if name == "glass" else tissue_image(512, 512, seed=len(name))
        write_pyramid(ArraySource(pixels), folder / f"{name}.tif", tile=256, progress=False)
    return folders


def test_training_without_tissue_is_one_user_error(small_slides, tmp_path):
    with pytest.raises(UserError, match="no tissue found in any of its 1 training slide"):
        audit(str(small_slides["synthetic"]), str(small_slides["glass"]), str(small_slides["heldout"]), thumbnail_extractor(),
              [SPAN], SPAN, 8, 0.5, tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()  # a failed audit leaves no empty folder behind


def test_bad_scales_and_inputs_are_user_errors(small_slides, tmp_path):
    (tmp_path / "empty").mkdir()

    def run(spans, heldout=str(small_slides["heldout"]), synthetic=str(small_slides["synthetic"])):
        audit(synthetic, str(small_slides["glass"]), heldout, thumbnail_extractor(), spans, SPAN, 8, 0.5, tmp_path / "out",
              workers=0, progress=False)

    with pytest.raises(UserError, match="below --patch-size"):
        run([32])
    with pytest.raises(UserError, match="no images found"):
        run([SPAN], heldout=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no images found"):
        run([SPAN], synthetic=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="also a training slide"):
        run([SPAN], heldout=str(small_slides["glass"]))
    with pytest.raises(UserError, match="stride-fraction"):
        audit(str(small_slides["synthetic"]), str(small_slides["glass"]), str(small_slides["heldout"]), thumbnail_extractor(),
              [SPAN], SPAN, 8, 1.5, tmp_path / "out", workers=0, progress=False)


def test_command_line_refuses_a_bad_scale_before_loading_any_model(real_data, tmp_path, capsys):
    """`urcdm-eval memorization` with a span below the patch: one error line about the scale, not
    about the (offline, missing) Inception weights it would otherwise have loaded first."""
    from evaluation.cli import main

    slides = real_data / "slides"
    code = main(["memorization", str(slides / "tcga-cr-7395-01a-01-ts1.svs"), str(slides / "tcga-cr-7395-01a-01-ts1.svs"),
                 "--heldout", str(slides / "cmu-1-small-region.svs"), "-o", str(tmp_path / "audit"),
                 "--spans", "32", "--patch-size", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "--span 32 is below --patch-size 64" in err[-1]
    assert not (tmp_path / "audit").exists()


def test_the_montage_shows_a_match_that_reaches_past_the_training_slides_edge(small_slides, tmp_path):
    """Verification reads its windows as they lie, so a copy of tissue at a slide's edge can match a
    window reaching into the fill beyond it; the montage reads that window the same way (it raised
    'region reaches outside its bounds' after the whole audit)."""
    from evaluation.memorization.report import closest_pairs, matched_training_crop, write_montage
    from evaluation.memorization.scale_audit import ScaleAudit

    slide = str(next(small_slides["synthetic"].iterdir()))  # 512 x 512 of tissue
    protocol = CropProtocol(mode="fixed", span=256, patch_size=SPAN, image_size=SPAN)
    cells = CropSet([slide], np.array([(0, 0, 0, 256, 0, 0, 512, 512), (0, 256, 256, 256, 0, 0, 512, 512)], float))
    result = ScaleAudit(protocol, 128, training=cells, synthetic=cells, heldout=cells, synthetic_result=None,
                        heldout_result=None, training_nearest_distance=None, quantile=0.99, threshold=0.5, seconds={},
                        synthetic_match=np.array([(0.9, 0, 300.0, 10.0, 3), (0.4, 0, -20.0, 400.0, 0)]))
    crop, transform = matched_training_crop(result, 0)
    assert tuple(crop[:4]) == (0, 300, 10, 256) and transform == 3
    montage = write_montage(result, 2, tmp_path / "montage.png")
    with Image.open(montage) as image:
        assert image.size[0] > 4 * SPAN  # two pairs side by side, each two crops wide
    # A crop drawn twice (an image with room for one crop at this span gives it every turn) is shown once.
    twice = ScaleAudit(protocol, 128, training=cells, synthetic=CropSet([slide], cells.crops[[0, 0, 1]]), heldout=cells,
                       synthetic_result=SimpleNamespace(nearest_similarity=np.array([0.8, 0.8, 0.3])), heldout_result=None,
                       training_nearest_distance=None, quantile=0.99, threshold=0.5, seconds={}, synthetic_match=np.array([(0.9, 0, 300.0, 10.0, 3)] * 2 + [(0.4, 0, 0.0, 0.0, 0)]))
    assert [pair["synthetic"]["x"] for pair in closest_pairs(twice, 3)] == [0, 256]

"""Training pairs: a slide whose pixels encode their own coordinates proves each target and context
window is centred and scaled right, at every level and under every dihedral transform."""

from __future__ import annotations


import numpy as np
import pytest

from urcdm.config import tiny
from urcdm.training.index import build_index, list_slides
from urcdm.training.pairs import LevelWindows, SlidePairs, StepBatches, read_window
from urcdm.training.windows import DIHEDRAL, batch_codes, context_window, dihedral, lattice, split_validation
from urcdm.errors import UserError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.slides import open_slide

WIDTH, HEIGHT = 1400, 1200


def pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth, tissue-coloured function of the slide coordinates (periods >> any pixel footprint)."""
    r = 200 + 40 * np.sin(2 * np.pi * x / 900)
    g = 120 + 60 * np.sin(2 * np.pi * y / 1100)
    b = 170 + 40 * np.sin(2 * np.pi * (x + y) / 1300)
    return np.stack(np.broadcast_arrays(r, g, b), axis=-1)


def expected_window(x: float, y: float, span: float, out_px: int) -> np.ndarray:
    centres = (np.arange(out_px) + 0.5) * span / out_px
    return pattern(x + centres[None, :], y + centres[:, None])


@pytest.fixture(scope="module")
def coordinate_slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coordinates")
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    pixels = np.round(pattern(xs, ys)).astype(np.uint8)
    write_pyramid(ArraySource(pixels), folder / "coordinates.tiff", tile=256, quality=None, overwrite=True)
    return folder


@pytest.mark.parametrize("level", [0, 1, 2])
def test_targets_and_contexts_are_centred_and_scaled_for_every_transform(coordinate_slide, level):
    config = tiny()
    windows = LevelWindows.of(config, level)
    paths, positions = build_index(list_slides(coordinate_slide), windows.span, config.white_threshold, use_cache=False)
    pairs = SlidePairs(paths, positions, windows)
    inside = [i for i, (_, x, y) in enumerate(positions)
              if x >= 0 and y >= 0 and x + windows.span <= WIDTH and y + windows.span <= HEIGHT]
    if level > 0:  # a window whose context also lies inside the slide
        inside = [i for i in inside if min(context_window(positions[i][1], positions[i][2], windows.span, windows.context_span)[:2]) >= 0
                  and max(context_window(positions[i][1], positions[i][2], windows.span, windows.context_span)[:2]) + windows.context_span <= min(WIDTH, HEIGHT)]
    index = inside[len(inside) // 2]
    _, x, y = positions[index]
    for transform in range(DIHEDRAL):
        target, context = pairs.pair(index * DIHEDRAL + transform)
        want = dihedral(expected_window(x, y, windows.span, windows.patch_px), transform)
        assert target.shape == (windows.patch_px, windows.patch_px, 3)
        assert np.abs(target - want).mean() < 1.5 and np.abs(target - want).max() < 8
        if level == 0:
            assert context is None
            continue
        cx, cy, size = context_window(x, y, windows.span, windows.context_span)
        assert (cx + size / 2, cy + size / 2) == (x + windows.span / 2, y + windows.span / 2)
        want_context = dihedral(expected_window(cx, cy, size, windows.patch_px), transform)
        assert np.abs(context - want_context).mean() < 1.5 and np.abs(context - want_context).max() < 8


def test_transforms_are_the_eight_distinct_symmetries():
    square = np.arange(4 * 4 * 3).reshape(4, 4, 3)
    images = [dihedral(square, k) for k in range(DIHEDRAL)]
    assert len({image.tobytes() for image in images}) == 8
    assert np.array_equal(dihedral(square, 1), np.rot90(square)) and np.array_equal(dihedral(square, 4), square[:, ::-1])


def test_outside_the_slide_is_the_configured_fill(coordinate_slide):
    with open_slide(next(coordinate_slide.iterdir())) as slide:
        window = read_window(slide, -100, HEIGHT - 60, 200, 100, fill=(1, 2, 3))
    assert (window[:, :50] == (1, 2, 3)).all()          # left of the slide
    assert (window[30:, :] == (1, 2, 3)).all()          # below it
    assert not (window[:30, 50:] == (1, 2, 3)).all(axis=-1).any()


def test_mostly_white_windows_are_dropped(tmp_path, tissue_rgb):
    pixels = np.full((1024, 2048, 3), 246, dtype=np.uint8)
    pixels[:, 1024:] = tissue_rgb[:1024, :1024]
    write_pyramid(ArraySource(pixels), tmp_path / "half.tiff", tile=256, quality=90, overwrite=True)
    config = tiny()
    span = config.levels[1].span
    _, positions = build_index(list_slides(tmp_path), span, config.white_threshold, use_cache=False)
    all_windows = len(lattice(2048, span)) * len(lattice(1024, span))
    assert 0 < len(positions) < all_windows
    assert (positions[:, 1] + span > 1024).all()          # no window lies wholly on the glass


def test_a_half_span_lattice_and_centred_small_slides():
    assert lattice(1000, 400) == [0, 200, 400, 600]
    assert lattice(1100, 400) == [0, 200, 400, 600, 700]
    assert lattice(100, 400) == [-150]


def test_batches_depend_only_on_seed_and_step():
    whole = list(StepBatches(seed=3, start=0, stop=10, batch_size=4, positions=50))
    resumed = list(StepBatches(seed=3, start=6, stop=10, batch_size=4, positions=50))
    assert resumed == whole[6:]
    assert not np.array_equal(batch_codes(3, 1, 4, 50, rank=0), batch_codes(3, 1, 4, 50, rank=1))
    assert all(0 <= code < 50 * DIHEDRAL for batch in whole for code in batch)


def test_validation_holds_out_whole_blocks():
    positions = np.array([(0, x, y) for x in range(0, 4000, 100) for y in range(0, 4000, 100)])
    held = split_validation(positions, span=200, fraction=0.2, seed=0)
    assert 0.05 < held.mean() < 0.4
    blocks = {}
    for (slide, x, y), h in zip(positions, held):
        blocks.setdefault((slide, x // 400, y // 400), set()).add(bool(h))
    assert all(len(v) == 1 for v in blocks.values())


def test_a_folder_without_slides_or_with_only_broken_ones_is_a_user_error(tmp_path, real_data):
    with pytest.raises(UserError, match="no slides found"):
        list_slides(tmp_path)
    (tmp_path / "broken.svs").write_bytes((real_data / "slides" / "broken.svs").read_bytes())
    with pytest.raises(UserError, match="could be read"):
        build_index(list_slides(tmp_path), 64, 0.9, use_cache=False)
    with pytest.raises(UserError, match="broken.svs: is a file; --data names the folder"):
        list_slides(tmp_path / "broken.svs")  # a slide given where its folder is expected


def test_the_index_is_cached_per_slide_and_geometry(real_data, monkeypatch):
    slides = [real_data / "slides" / "cmu-1-small-region.svs"]
    first = build_index(slides, 192, 0.9)[1]

    def no_reading(*args, **kwargs):
        raise AssertionError("the slide was scanned again")

    monkeypatch.setattr("urcdm.training.index.slide_positions", no_reading)
    assert np.array_equal(build_index(slides, 192, 0.9)[1], first)
    with pytest.raises(AssertionError):
        build_index(slides, 300, 0.9)  # another geometry is another index


def test_levels_outside_the_config_are_refused():
    with pytest.raises(UserError, match="--level"):
        LevelWindows.of(tiny(), 3)

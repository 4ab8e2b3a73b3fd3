"""Stitching geometry and patch schedules (pure; milliseconds)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from urcdm.config import LevelSpec, paper, tiny
from urcdm.sampling.geometry import LevelGrid, feather_weights, known_mask, patch_context
from urcdm.sampling.schedule import SCHEDULERS, batches, finished_neighbours, waves


def test_the_paper_geometry():
    config = paper()
    grids = [LevelGrid.of(config, level) for level in range(3)]
    assert [g.grid for g in grids] == [1, 7, 46] and [g.size for g in grids] == [1024, 6400, 41344]
    assert grids[1].stride == 896 and len(grids[2].patches) == 2116
    assert grids[1].scale == pytest.approx(6500 / 1024) and grids[2].scale == 1.0
    for grid in grids:  # every level's image is centred on the level-0 patch and covers it
        assert grid.origin + grid.size * grid.scale / 2 == pytest.approx(20000)
        assert grid.origin <= 0 and grid.origin + grid.size * grid.scale >= 40000


@pytest.mark.parametrize("preset", [paper, tiny])
def test_every_stitched_pixel_is_covered_and_weights_partition_unity(preset):
    config = preset()
    for level in (1, 2):
        grid = LevelGrid.of(config, level)
        if grid.size > 8000:  # the full 41344^2 canvas is checked on a thinned copy of its rows
            grid = replace(grid, grid=6)
        coverage = np.zeros((grid.size, grid.size), dtype=np.int16)
        total = np.zeros((grid.size, grid.size), dtype=np.float32)
        for patch in grid.patches:
            x, y = grid.box(patch)
            coverage[y:y + grid.patch, x:x + grid.patch] += 1
            total[y:y + grid.patch, x:x + grid.patch] += feather_weights(grid, patch)
        assert coverage.min() >= 1 and coverage.max() == 4
        assert total.min() > 0
        assert np.allclose(total[coverage == 1], 1.0)


@pytest.mark.parametrize("level", [1, 2])
def test_contexts_are_the_previous_levels_window_centred_on_the_patch(level):
    config = paper()
    grid, previous = LevelGrid.of(config, level), LevelGrid.of(config, level - 1)
    for patch in [(0, 0), (grid.grid // 2, grid.grid // 3), (grid.grid - 1, grid.grid - 1)]:
        x, y, side = patch_context(config, level, patch)
        assert side == pytest.approx(config.patch_px)  # one patch of the previous level's image
        centre_slide = grid.centre(patch)
        context_centre = (previous.origin + (x + side / 2) * previous.scale, previous.origin + (y + side / 2) * previous.scale)
        assert context_centre == pytest.approx(centre_slide)
        assert side * previous.scale == pytest.approx(config.levels[level - 1].span)


def test_known_masks_are_exactly_the_finished_overlap():
    grid = LevelGrid.of(paper(), 1)
    overlap = grid.patch - grid.stride
    mask = known_mask(grid, (1, 1), [(1, 0), (0, 1), (0, 0), (3, 3)])
    expected = np.zeros((grid.patch, grid.patch), dtype=bool)
    expected[:, :overlap] = True   # left neighbour
    expected[:overlap, :] = True   # upper neighbour (and the upper-left corner)
    assert np.array_equal(mask, expected)
    assert not known_mask(grid, (1, 1), []).any()
    corner = known_mask(grid, (1, 1), [(0, 2)])
    assert corner.sum() == overlap * overlap and corner[:overlap, -overlap:].all()


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("n, overlap", [(7, 0.125), (10, 0.125), (5, 0.25), (6, 0.0), (4, 0.4375)])
def test_waves_never_hold_overlapping_patches_and_cover_every_patch_once(scheduler, n, overlap):
    config = replace(tiny(), overlap=overlap, levels=(LevelSpec(64, 1), LevelSpec(32, n), LevelSpec(16, 4 * n)))
    grid = LevelGrid.of(config, 1)
    schedule = waves(grid, scheduler)
    flat = [patch for wave in schedule for patch in wave]
    assert sorted(flat) == sorted(grid.patches) and len(flat) == len(set(flat))
    for wave in schedule:
        assert not any(grid.overlaps(a, b) for a, b in itertools.combinations(wave, 2))
    # every overlapping pair is ordered, so the later patch keeps the earlier one's pixels
    before = finished_neighbours(grid, schedule)
    for a in grid.patches:
        for b in grid.neighbours(a):
            assert (b in before[a]) != (a in before[b])
    if scheduler == "checkerboard":
        assert len(schedule) == min(4, n * n)


def test_wave_counts_for_the_paper_level_2():
    grid = LevelGrid.of(paper(), 2)
    assert {s: len(waves(grid, s)) for s in SCHEDULERS} == {"raster": 2116, "wavefront": 136, "checkerboard": 4}


def test_anti_diagonals_would_put_overlapping_patches_in_one_wave():
    grid = LevelGrid.of(paper(), 2)
    assert grid.overlaps((5, 5), (4, 6))  # diagonal neighbours share a 128 x 128 corner


def test_raster_neighbours_are_left_and_above():
    grid = LevelGrid.of(paper(), 1)
    before = finished_neighbours(grid, waves(grid, "raster"))
    assert sorted(before[(2, 3)]) == [(1, 2), (1, 3), (1, 4), (2, 2)]
    assert batches([(0, 0), (0, 2), (0, 4)], 2) == [[(0, 0), (0, 2)], [(0, 4)]]

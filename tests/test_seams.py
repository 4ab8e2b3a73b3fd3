"""The seam score: stitching lines from the geometry, ~1 on unstitched tissue, large on hard seams,
smaller once blended, and the same whether computed in memory or streamed from a pyramid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tissue_image
from urcdm.cli import main
from urcdm.config import tiny
from urcdm.sampling.geometry import LevelGrid, known_mask
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.sampling.sampler import blend_weights, composite
from urcdm.sampling.schedule import finished_neighbours, waves
from urcdm.sampling.seams import LUMA, seam_lines, seam_score


@pytest.fixture(scope="module")
def grid() -> LevelGrid:
    return LevelGrid.of(tiny(), 2)


@pytest.fixture(scope="module")
def tissue(grid) -> np.ndarray:
    return tissue_image(grid.size, grid.size, seed=4)


def stitched(tissue: np.ndarray, grid: LevelGrid, blend: int | None) -> np.ndarray:
    """Patches of the same tissue, each off by its own brightness, pasted in raster order: hard
    overwrites (``blend=None``) or the sampler's keep-and-cross-fade."""
    rng = np.random.default_rng(0)
    schedule = waves(grid, "raster")
    before = finished_neighbours(grid, schedule)
    image = np.zeros_like(tissue)
    for (patch,) in schedule:
        x, y = grid.box(patch)
        window = (slice(y, y + grid.patch), slice(x, x + grid.patch))
        new = np.clip(tissue[window].astype(int) + rng.integers(-25, 26), 0, 255).astype(np.uint8)
        if blend is not None:
            keep, alpha = blend_weights(known_mask(grid, patch, before[patch]), blend)
            new[keep] = image[window][keep]
            new = composite(new, image[window], alpha)
        image[window] = new
    return image


def test_seam_lines_are_the_edges_of_the_strips_neighbours_share(grid):
    edges = set()
    for col in range(grid.grid - 1):  # the strip two side-by-side patches share: both its edges
        left, right = grid.box((0, col))[0], grid.box((0, col + 1))[0]
        edges |= {right, left + grid.patch}
    assert set(seam_lines(grid).tolist()) == edges


def test_unstitched_tissue_scores_about_one_and_hard_seams_far_more(tissue, grid):
    assert 0.85 < seam_score(tissue, grid) < 1.15
    hard = seam_score(stitched(tissue, grid, None), grid)
    blended = seam_score(stitched(tissue, grid, (grid.patch - grid.stride) // 2), grid)
    assert hard > 1.5
    assert 1.0 < blended < hard  # a cross-fade spreads the step over the band


def test_the_score_matches_a_direct_computation(tissue, grid):
    image = stitched(tissue, grid, 0)
    luma = image.astype(np.float64) @ LUMA.astype(np.float64)
    dx, dy = np.abs(np.diff(luma, axis=1)), np.abs(np.diff(luma, axis=0))
    at = seam_lines(grid) - 1
    on = np.concatenate([dx[:, at].ravel(), dy[at, :].ravel()])
    off = np.concatenate([np.delete(dx, at, axis=1).ravel(), np.delete(dy, at, axis=0).ravel()])
    assert seam_score(image, grid) == pytest.approx(on.mean() / off.mean(), rel=1e-5)


def test_urcdm_seams_streams_a_pyramid_to_the_in_memory_score(tissue, grid, tmp_path, capsys):
    image = stitched(tissue, grid, None)
    slide = tmp_path / "stitched.tiff"
    write_pyramid(ArraySource(image), slide, quality=None, progress=False)
    assert main(["seams", str(slide), "--config", "tiny", "--band-rows", "37", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seam_score"] == pytest.approx(seam_score(image, grid), abs=1e-4)
    assert result["seam_lines_per_axis"] == len(seam_lines(grid))


def test_urcdm_seams_refuses_what_it_cannot_score(tissue, grid, tmp_path, capsys):
    slide = tmp_path / "small.tiff"
    write_pyramid(ArraySource(tissue[:300, :300]), slide, quality=None, progress=False)
    assert main(["seams", str(slide)]) == 2
    assert "no manifest beside the slide" in capsys.readouterr().err
    assert main(["seams", str(slide), "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "stitches 512x512" in err and err.count("\n") == 1

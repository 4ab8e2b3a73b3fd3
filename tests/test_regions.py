import pytest

from urcdm.slides.regions import best_level, clip_window, fit_within, infer_downsample, plan_blocks, restrict_block


@pytest.mark.parametrize(
    "downsample, expected",
    [(0.5, 0), (1.0, 0), (1.9, 0), (2.0, 1), (3.99, 1), (4.0, 2), (100.0, 3)],
)
def test_best_level_picks_coarsest_level_not_coarser_than_request(downsample, expected):
    assert best_level((1.0, 2.0, 4.0, 8.0), downsample) == expected


def test_best_level_tolerates_rounded_downsamples():
    assert best_level((1.0, 2.0005), 2.0) == 1


def test_blocks_tile_the_output_exactly_and_respect_the_budget():
    budget = 1_000_000
    blocks = plan_blocks((10.5, 20.25, 5010.5, 3020.25), (1250, 750), max_source_pixels=budget)
    covered = [[0] * 1250 for _ in range(750)]
    for block in blocks:
        assert block.src_w * block.src_h <= budget * 1.5
        for y in range(block.out_y, block.out_y + block.out_h):
            for x in range(block.out_x, block.out_x + block.out_w):
                covered[y][x] += 1
        # The fractional box lies inside the window with room for the filter on every side.
        left, top, right, bottom = block.box
        assert left >= 3 and top >= 3 and right <= block.src_w - 3 and bottom <= block.src_h - 3
    assert all(count == 1 for row in covered for count in row)
    assert len(blocks) > 1


def test_clip_window_and_fit_within():
    assert clip_window(-5, -5, 10, 10, 100, 100) == (0, 0, 5, 5)
    assert clip_window(95, 0, 10, 10, 100, 100) == (95, 0, 5, 10)
    assert clip_window(100, 0, 10, 10, 100, 100) is None
    assert fit_within(4000, 2000, 1000) == (1000, 500)
    assert fit_within(300, 200, 1000) == (300, 200)


def test_infer_downsample_recovers_integer_factors_from_rounded_sizes():
    assert infer_downsample((4443, 3567), (2221, 1783)) == 2.0  # floor, as Aperio writes
    assert infer_downsample((1500, 1900), (188, 238)) == 8.0  # ceil, as our writer does
    assert infer_downsample((1000, 1000), (1000, 1000)) == 1.0
    assert infer_downsample((1000, 900), (300, 300)) == (1000 / 300 + 3) / 2  # no integer explains it


def test_restrict_block_cuts_the_window_at_the_bounds_and_keeps_the_box_in_place():
    (block,) = plan_blocks((100.0, 50.5, 164.0, 114.5), (32, 32))
    cut = restrict_block(block, (100, 40, 300, 300))
    assert (cut.src_x, cut.src_y) == (100, block.src_y) and cut.src_x + cut.src_w == block.src_x + block.src_w
    # The same source rectangle in absolute coordinates, now starting at the window's left edge.
    assert cut.src_x + cut.box[0] == pytest.approx(block.src_x + block.box[0]) and cut.box[0] == pytest.approx(0.0)
    assert cut.src_y + cut.box[1] == pytest.approx(block.src_y + block.box[1])
    with pytest.raises(ValueError, match="outside its bounds"):
        restrict_block(block, (110, 40, 300, 300))  # the region itself starts left of the bounds

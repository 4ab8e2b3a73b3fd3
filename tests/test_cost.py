"""What a slide costs: evaluations counted from the geometry, FLOPs counted on the real unets."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from urcdm.config import paper, tiny
from urcdm.sampling.cost import gpu_hours, unet_calls, with_flops
from urcdm.models import build_unet


def test_evaluations_follow_the_grid_steps_and_the_white_skip():
    config = paper()
    calls = {(c.level, c.unet): c.calls for c in unet_calls(config)}
    # 1, 7 x 7 and 46 x 46 patches; 1024 / 256 / 256 steps per unet of each cascade
    assert calls[(0, 0)] == 1024 and calls[(1, 1)] == 49 * 256 and calls[(2, 2)] == 2116 * 256
    skipped = {(c.level, c.unet): c.patches for c in unet_calls(config, glass_fraction=0.25)}
    assert skipped[(2, 0)] == 1587 and skipped[(1, 0)] == 49  # only the last level's glass is upsampled
    outpaint = unet_calls(config, method="outpaint")
    assert {c.level for c in outpaint} == {2} and len(outpaint) == 3
    assert gpu_hours(3.6e15, 1e12, 0.5) == pytest.approx(2.0)


@pytest.mark.parametrize("level, unet", [(0, 0), (2, 1)])
def test_flops_on_the_meta_device_equal_a_real_forward(level, unet):
    """The meta-device count misses nothing a real CPU forward of the same unet does."""
    config = tiny()
    counted = with_flops([c for c in unet_calls(config) if (c.level, c.unet) == (level, unet)], config)[0]
    size = config.unets[unet].image_size
    torch.manual_seed(0)
    network = build_unet(config, level, unet)
    extra = {"lowres_cond_img": torch.rand(1, 3, size, size), "lowres_noise_times": torch.rand(1)} if unet else {}
    if level:
        extra["cond_images"] = torch.rand(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.rand(1, 3, size, size), torch.rand(1), **extra)
    assert counted.flops_per_call == counter.get_total_flops() > 0
    assert counted.flops == counted.flops_per_call * counted.calls

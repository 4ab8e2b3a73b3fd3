"""What one slide costs to sample: unet evaluations from the geometry, FLOPs from the unets themselves.

Counting is pure: every patch of level L runs each unet of that level's cascade for its sampling steps
(one network evaluation per step: URCDM does not use classifier-free guidance), except last-level
patches over glass, which the white skip upsamples instead. FLOPs per evaluation are counted by
torch's ``FlopCounterMode`` on a forward pass of the real imagen-pytorch unet built on the ``meta``
device, so no weights are allocated and a 1.6-billion-parameter unet costs seconds on a laptop.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from urcdm.config import URCDMConfig, has_context, method_levels


@dataclass(frozen=True)
class UnetCost:
    level: int
    unet: int
    size: int               # pixels a side the unet works at
    patches: int            # patches of the level that this unet runs on
    steps: int              # sampling steps per patch
    flops_per_call: float | None = None

    @property
    def calls(self) -> int:
        return self.patches * self.steps

    @property
    def flops(self) -> float | None:
        return None if self.flops_per_call is None else self.flops_per_call * self.calls


def unet_calls(config: URCDMConfig, method: str = "urcdm", glass_fraction: float = 0.0) -> list[UnetCost]:
    """Evaluations per (level, unet) for one slide; ``glass_fraction`` of last-level patches are skipped."""
    levels = method_levels(config, method)
    costs = []
    for level in levels:
        patches = config.levels[level].grid ** 2
        if level == levels[-1] and method == "urcdm":
            patches = round(patches * (1.0 - glass_fraction))
        for index, spec in enumerate(config.unets):
            costs.append(UnetCost(level, index, spec.image_size, patches, spec.sample_steps or spec.timesteps))
    return costs


@functools.lru_cache(maxsize=64)  # a counting pass costs about a second; plans and benchmarks ask again
def forward_flops(config: URCDMConfig, level: int, unet: int, method: str = "urcdm") -> float:
    """FLOPs of one forward pass (batch 1) of the level's unet, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from urcdm.models import build_unet

    size = config.unets[unet].image_size
    with torch.device("meta"):
        network = build_unet(config, level, unet, method)
        image = torch.empty(1, 3, size, size)
        extra = {"lowres_cond_img": torch.empty(1, 3, size, size), "lowres_noise_times": torch.empty(1)} if unet else {}
        if has_context(method, level):
            extra["cond_images"] = torch.empty(1, 3, size, size)
        counter = FlopCounterMode(display=False)
        with counter:
            network(image, torch.empty(1), **extra)
    return float(counter.get_total_flops())


def with_flops(costs: list[UnetCost], config: URCDMConfig, method: str = "urcdm") -> list[UnetCost]:
    """The same rows with FLOPs per evaluation (counted once per distinct unet: levels with and
    without a context differ only in their input channels)."""
    counted: dict[tuple, float] = {}
    rows = []
    for cost in costs:
        key = (cost.unet, has_context(method, cost.level))
        if key not in counted:
            counted[key] = forward_flops(config, cost.level, cost.unet, method)
        rows.append(UnetCost(**{**cost.__dict__, "flops_per_call": counted[key]}))
    return rows


def gpu_hours(total_flops: float, peak_flops: float, utilisation: float) -> float:
    """Hours at ``utilisation`` of ``peak_flops`` (FLOP/s)."""
    return total_flops / (peak_flops * utilisation) / 3600

"""In which order patches are made: lists of waves of patches that can be diffused together (pure).

A patch is outpainted against the neighbours made in earlier waves, so no two patches of one wave may
overlap: they would invent the shared pixels twice. Every overlapping pair then lies in different
waves, and the later one keeps the earlier one's pixels.

- ``raster``: one patch per wave, row by row (the outpainting baseline's order).
- ``wavefront``: wave ``2 x row + col``. Plain anti-diagonals (row + col) are not enough: with any
  overlap, diagonal neighbours such as (r, c) and (r - 1, c + 1) share a corner of
  (patch - stride)^2 pixels, so one anti-diagonal holds overlapping patches. With ``2r + c`` every
  patch's left, upper-left, upper and upper-right neighbours come in earlier waves, and patches of a
  wave are two columns apart. ``3 (n - 1) + 1`` waves for an n x n grid.
- ``checkerboard``: four phases by (row parity, column parity). Patches of a phase are at least two
  strides apart, which clears the patch side whenever overlap < 50 %, so any grid needs 4 waves.
"""

from __future__ import annotations

from urcdm.sampling.geometry import LevelGrid, Patch

SCHEDULERS = ("raster", "wavefront", "checkerboard")


def waves(grid: LevelGrid, scheduler: str = "checkerboard") -> list[list[Patch]]:
    patches = grid.patches
    if scheduler == "raster":
        return [[patch] for patch in patches]
    if scheduler == "wavefront":
        key = lambda p: 2 * p[0] + p[1]  # noqa: E731
    elif scheduler == "checkerboard":
        key = lambda p: 2 * (p[0] % 2) + p[1] % 2  # noqa: E731
    else:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    grouped: dict[int, list[Patch]] = {}
    for patch in patches:
        grouped.setdefault(key(patch), []).append(patch)
    return [grouped[k] for k in sorted(grouped)]


def finished_neighbours(grid: LevelGrid, schedule: list[list[Patch]]) -> dict[Patch, list[Patch]]:
    """For each patch, the overlapping patches made in earlier waves (whose pixels it keeps)."""
    wave_of = {patch: i for i, wave in enumerate(schedule) for patch in wave}
    return {patch: [n for n in grid.neighbours(patch) if wave_of[n] < wave_of[patch]] for patch in wave_of}


def batches(wave: list[Patch], batch_size: int) -> list[list[Patch]]:
    """A wave's patches in model batches of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    return [wave[i:i + batch_size] for i in range(0, len(wave), batch_size)]

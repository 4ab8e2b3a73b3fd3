"""Density and coverage (Naeem et al., ICML 2020, "Reliable Fidelity and Diversity Metrics for Generative Models").

With r_i the distance from real sample X_i to its k-th nearest neighbour among the real samples
(the sample itself counted as its own 0-th neighbour, as the authors' ``prdc`` package does), over
N real and M fake samples:

    density  = 1 / (k M) * sum_j sum_i 1[ |Y_j - X_i| < r_i ]
    coverage = 1 / N     * sum_i 1[ min_j |Y_j - X_i| < r_i ]

Why our own code rather than calling ``prdc.compute_prdc`` (the authors' package, kept as the test
oracle): prdc materialises three full distance matrices (real-real, fake-fake, real-fake). At the
50k samples of an FID protocol each one is 50k x 50k float32 = 10 GB, and the fake-fake one is only
needed for precision/recall, which torch-fidelity already gives us. Here the same formulas run over
float64 row blocks (``_blocks``), so memory is O(N·d + block²), and the tests check the numbers
against prdc and a brute-force computation.
"""

from __future__ import annotations

import numpy as np
import torch

from evaluation.defaults import DENSITY_NEIGHBOURHOOD as DENSITY_COVERAGE_K
from evaluation.metrics._blocks import DEFAULT_BLOCK_SIZE, RowBlocks, squared_distances, upper_triangle
from evaluation.metrics._inputs import checked_feature_sets


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = DENSITY_COVERAGE_K, *,
                     block_size: int = DEFAULT_BLOCK_SIZE,
                     device: str | torch.device | None = None) -> tuple[float, float]:
    """(density, coverage) of the fake samples against the real ones' k-NN balls (Naeem et al. 2020).

    The k-NN radii are taken among the real samples only, so the real side needs k + 1 samples
    (itself and k neighbours); the fake side needs one. ``device`` (default CPU) runs the blocks.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    real, fake = checked_feature_sets(real, fake, "density/coverage", min_real=k + 1, min_fake=1,
                                      why=f" (k = {k} nearest neighbours among the real samples)")
    real_blocks = RowBlocks(real, block_size, device)
    fake_blocks = RowBlocks(fake, block_size, device)
    squared_radii = _squared_knn_radii(real_blocks, k)
    fakes_inside = 0  # sum over fake j and real i of 1[|Y_j - X_i| < r_i]
    squared_nearest_fake = torch.full((len(real_blocks),), torch.inf, dtype=torch.float64, device=real_blocks.device)
    for fake_block in fake_blocks:
        for real_block in real_blocks:
            squared = squared_distances(fake_block, real_block)  # (fakes, reals)
            radii = squared_radii[real_block.start:real_block.stop]
            fakes_inside += int((squared < radii).sum())
            nearest = squared_nearest_fake[real_block.start:real_block.stop]
            torch.minimum(nearest, squared.amin(dim=0), out=nearest)
    density = fakes_inside / (k * len(fake_blocks))
    coverage = float((squared_nearest_fake < squared_radii).double().mean())
    return density, coverage


def _squared_knn_radii(blocks: RowBlocks, k: int) -> torch.Tensor:
    """Squared distance from each sample to its k-th nearest neighbour in the same set (itself is the 0-th).

    Keeps the k + 1 smallest squared distances of every row while the blocks go by; each
    off-diagonal block serves its rows and, transposed, its columns.
    """
    keep = k + 1
    smallest = torch.full((len(blocks), keep), torch.inf, dtype=torch.float64, device=blocks.device)

    def merge(start: int, stop: int, candidates: torch.Tensor) -> None:
        merged = torch.cat([smallest[start:stop], candidates], dim=1)
        smallest[start:stop] = merged.topk(keep, dim=1, largest=False).values

    for first, second in upper_triangle(blocks):
        squared = squared_distances(first, second)
        if first.start == second.start:
            squared.fill_diagonal_(0.0)  # exactly 0 to itself, as prdc's (sklearn's) distance matrix has it
        merge(first.start, first.stop, squared.topk(min(keep, squared.shape[1]), dim=1, largest=False).values)
        if first.start != second.start:
            merge(second.start, second.stop, squared.topk(min(keep, squared.shape[0]), dim=0, largest=False).values.T)
    return smallest.amax(dim=1)

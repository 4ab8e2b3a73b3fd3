"""Features -> numbers, one module per metric (as torch-fidelity lays them out).

- ``fid``: Fréchet distance (FID / pFID); ``kid``: Kernel Inception Distance; ``prc``: improved
  precision/recall. Thin wrappers over torch-fidelity, so our numbers are the reference tool's on
  the same features; tests check them against clean-fid and closed forms as well.
- ``cmmd``: CMMD (Jayasumana et al. 2024) on CLIP embeddings, as its reference implementation computes it.
- ``density_coverage``: density and coverage (Naeem et al. 2020), checked against the authors' ``prdc``.

The last two run over float64 row blocks, so 50k x 50k pairs never need an N x N matrix.
"""

from evaluation.metrics.cmmd import CMMD_SCALE, CMMD_SIGMA, cmmd
from evaluation.metrics.density_coverage import DENSITY_COVERAGE_K, density_coverage
from evaluation.metrics.fid import frechet_distance
from evaluation.metrics.kid import KID_SUBSET_SIZE, KID_SUBSETS, kernel_inception_distance
from evaluation.metrics.prc import PRC_NEIGHBOURHOOD, precision_recall

__all__ = [
    "CMMD_SCALE", "CMMD_SIGMA", "DENSITY_COVERAGE_K", "KID_SUBSETS", "KID_SUBSET_SIZE", "PRC_NEIGHBOURHOOD",
    "cmmd", "density_coverage", "frechet_distance", "kernel_inception_distance", "precision_recall",
]

"""From nearest-neighbour similarities to a copy threshold, a copy rate and authenticity (pure maths).

**The threshold.** "How similar is suspiciously similar" depends on the feature space, the tissue
and the scale, so it is not a constant: it is measured. Crops of *held-out* real slides (same
kind of tissue, never seen in training) are searched against the training lattice exactly as the
synthetic crops are; their nearest-neighbour similarities are what honest, novel tissue scores.
The threshold is their ``quantile`` (default 0.99) with numpy's ``higher`` method, i.e. an observed
similarity, and a crop is flagged only when strictly above it: so at most 1 - quantile of the
held-out crops are flagged (in-sample), and a synthetic set with no more copies than real held-out
tissue gets a copy rate near 1 - quantile. The 99th rather than the 95th percentile, because a
copy is an extreme event: at 0.95 one crop in twenty of perfectly honest output would be called a
copy, which drowns a real memorisation rate of a few percent. Copy rates at other quantiles are
reported too.

**Authenticity** (Alaa et al. 2022, as layer6ai-labs/dgm-eval's ``authpct`` computes it): in the
raw (unnormalised) feature space with Euclidean distances, a generated sample is authentic when its
nearest training sample lies closer to *another* training sample than to it (strictly); authpct is
100 x the share of authentic generated samples. It uses the whole training set and no held-out set.
"""

from __future__ import annotations

import math

import numpy as np

from evaluation.defaults import COPY_QUANTILE as DEFAULT_QUANTILE
from urcdm.errors import UserError

REPORTED_QUANTILES = (0.95, 0.99, 0.999)
SUMMARY_PERCENTILES = (0, 1, 5, 25, 50, 75, 95, 99, 100)
HISTOGRAM_BINS = 40


def copy_threshold(heldout_similarity: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> float:
    """The similarity above which a crop counts as a copy: an observed held-out similarity."""
    if not 0.0 < quantile < 1.0:
        raise UserError(f"--threshold-quantile must be in (0, 1), got {quantile:g}")
    values = np.asarray(heldout_similarity, dtype=np.float64)
    if values.size == 0:
        raise UserError("no held-out crops to calibrate the copy threshold on")
    return float(np.quantile(values, quantile, method="higher"))


def is_copy(similarity: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(similarity) > threshold


def copy_rate(similarity: np.ndarray, threshold: float) -> float:
    """Share of crops whose nearest training crop is more similar than ``threshold``."""
    values = np.asarray(similarity)
    return float(is_copy(values, threshold).mean()) if values.size else math.nan


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound at 0 and at small n, unlike p +- z se)."""
    if trials == 0:
        return math.nan, math.nan
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(similarity: np.ndarray) -> dict:
    """Count, mean and percentiles (keys ``p0`` ... ``p100``) of a set of similarities."""
    values = np.asarray(similarity, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    percentiles = np.percentile(values, SUMMARY_PERCENTILES)
    return {"n": int(values.size), "mean": float(values.mean()),
            **{f"p{p:g}": float(v) for p, v in zip(SUMMARY_PERCENTILES, percentiles)}}


def histograms(named: dict[str, np.ndarray], bins: int = HISTOGRAM_BINS) -> dict:
    """Counts of each set over one shared set of bin edges, so the sets can be drawn together."""
    joined = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in named.values()])
    low, high = (float(joined.min()), float(joined.max())) if joined.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 1e-6, high + 1e-6
    edges = np.linspace(low, high, bins + 1)
    return {"edges": edges.tolist(),
            "counts": {name: np.histogram(values, edges)[0].tolist() for name, values in named.items()}}


def authenticity_percent(generated_distance: np.ndarray, generated_nearest: np.ndarray,
                         training_nearest_distance: np.ndarray) -> float:
    """authpct: 100 x share of generated samples g whose nearest training sample t is nearer to
    another training sample than to g (``d(t, t') < d(g, t)``, strict).

    ``generated_distance[i]`` and ``generated_nearest[i]``: distance from generated sample i to its
    nearest training sample and that sample's row; ``training_nearest_distance[j]``: distance from
    training sample j to its nearest other training sample.
    """
    distance = np.asarray(generated_distance).reshape(-1)
    if distance.size == 0:
        return math.nan
    nearest = np.asarray(generated_nearest).reshape(-1)
    authentic = np.asarray(training_nearest_distance)[nearest] < distance
    return float(100.0 * authentic.mean())

"""Metrics against magnification: where along the zoom a generator fails.

At each scale (a URCDM level's span, a span in level-0 pixels, or a resolution in µm/px) fixed-scale
crops are read from the pyramid level that matches it, on both sides. The real side gets twice the
crops: at each of ``splits`` random halvings, one half is the reference the generators are compared
with and the other half is compared with it too. That real-vs-real value is what the metric reads
when nothing differs but the sample: the sampling-noise floor at this n. The spread over the
halvings is the bar drawn on every point.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.comparison import MetricSettings, compare
from evaluation.report import SETTING_KEYS
from evaluation.stats import FeatureStats
from urcdm.errors import UserError

REAL_VS_REAL = "real-vs-real"


@dataclass(frozen=True)
class Scale:
    label: str
    level: int | None = None
    span: int | None = None
    mpp: float | None = None

    def protocol_scale(self) -> dict:
        return {key: value for key, value in (("level", self.level), ("span", self.span), ("mpp", self.mpp)) if value is not None}


def _numbers(text: str, option: str, kind: type, coarse_first_descending: bool) -> list:
    """The values in the plot's order, coarse to fine (a larger span or mpp is coarser; a larger level
    finer), whatever order they were typed in."""
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{option} {text}: expected comma-separated {kind.__name__}s") from None
    if not values:
        raise UserError(f"{option}: no scales given")
    if not all(math.isfinite(value) for value in values):  # nan and inf parse as floats
        raise UserError(f"{option} {text}: expected finite numbers")
    if len(set(values)) != len(values):
        raise UserError(f"{option} {text}: a scale is named twice")
    return sorted(values, reverse=coarse_first_descending)


def parse_scales(levels: str | None = None, spans: str | None = None, mpps: str | None = None,
                 config_spans: tuple[int, ...] | None = None, config_name: str = "") -> list[Scale]:
    """The scales one option names (default: the paper's three magnification levels)."""
    if config_spans is not None:
        return [Scale(f"{config_name} level {i} ({span} px)", span=span) for i, span in enumerate(config_spans)]
    if spans is not None:
        return [Scale(f"{span} px", span=span) for span in _numbers(spans, "--spans", int, True)]
    if mpps is not None:
        return [Scale(f"{mpp:g} µm/px", mpp=mpp) for mpp in _numbers(mpps, "--mpp", float, True)]
    return [Scale(f"level {level}", level=level)
            for level in _numbers("0,1,2" if levels is None else levels, "--levels", int, False)]


def fake_label(spec: str) -> str:
    """A short name for a synthetic input: its folder, or for a glob the folder it searches."""
    parts = Path(spec).parts
    for index, part in enumerate(parts):
        if glob.has_magic(part):
            parts = parts[:index]
            break
    return Path(*parts).name if parts else spec


def real_splits(total: int, reference: int, splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` random halvings of ``total`` real crops into a reference and a held-back half."""
    if total < 2 * reference:
        raise UserError(f"a real-vs-real split needs {2 * reference} real crops, got {total}")
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(splits):
        order = rng.permutation(total)
        halves.append((np.sort(order[:reference]), np.sort(order[reference:2 * reference])))
    return halves


def mean_and_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def scale_rows(scale: Scale, real: FeatureStats, fakes: dict[str, FeatureStats], n: int, splits: int, seed: int,
               metrics: tuple[str, ...], space: str, settings: MetricSettings) -> list[dict]:
    """One scale's table rows: every generator and the real-vs-real floor, per metric, over the splits."""
    values: dict[tuple[str, str], list[float]] = {}
    for reference_rows, held_back_rows in real_splits(real.n, n, splits, seed):
        reference = real.subset(reference_rows)
        compared = fakes | {REAL_VS_REAL: real.subset(held_back_rows)}
        for label, other in compared.items():
            for name, value in compare(reference, other, metrics, space, settings).items():
                if not name.endswith(("_std", "_subset_size")) and name not in SETTING_KEYS:
                    values.setdefault((label, name), []).append(float(value))
    rows = []
    for (label, name), numbers in values.items():
        mean, spread = mean_and_spread(numbers)
        rows.append({"scale": scale.label, **scale.protocol_scale(), "set": label, "metric": name, "mean": mean,
                     "std": spread, "values": numbers, "n_reference": n,
                     "n_compared": n if label == REAL_VS_REAL else fakes[label].n})
    return rows


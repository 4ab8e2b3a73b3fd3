"""Two sides' statistics -> the chosen metrics, each named by the feature space it was computed in.

In the FID Inception's space the metrics keep their published names (``pfid``/``fid``, ``kid``,
``precision``...). In any other space every name carries the space (``fd_dinov2_vitl14``,
``kd_uni``, ``precision_uni``), so a number can never be mistaken for its Inception namesake.
CMMD is defined on CLIP embeddings (its RBF bandwidth is chosen for them), so it is computed only
in a CLIP space: ``cmmd`` in the paper's (CLIP ViT-L/14 at 336 px), ``cmmd_<space>`` in another.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluation import metrics as m
from evaluation.defaults import DENSITY_NEIGHBOURHOOD, KID_SUBSET_SIZE, KID_SUBSETS, METRICS, PRC_NEIGHBOURHOOD
from evaluation.stats import FeatureStats
from urcdm.errors import UserError

METRIC_HELP = {"fd": "Fréchet distance (FID/pFID in Inception space)", "kid": "kernel distance (KID in Inception space)",
               "prc": "improved precision and recall", "cmmd": "CLIP maximum mean discrepancy (CLIP spaces only)",
               "dc": "density and coverage (Naeem et al. 2020)"}
INCEPTION_SPACE = "inception"
CMMD_SPACE = "clip_vitl14_336"  # the embedding Jayasumana et al. define CMMD in


@dataclass(frozen=True)
class MetricSettings:
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    prc_k: int = PRC_NEIGHBOURHOOD
    dc_k: int = DENSITY_NEIGHBOURHOOD
    cmmd_estimator: str = "unbiased"  # the paper's U-statistic; "reference": the authors' code (all pairs)


def is_clip_space(space: str) -> bool:
    return space.startswith("clip")


def parse_metrics(text: str | None, command: str, space: str) -> tuple[str, ...]:
    """``--metric fd,kid``, else the command's own metric (``all``: every metric the space allows)."""
    if text is not None:
        chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        unknown = [m for m in chosen if m not in METRICS]
        if unknown or not chosen:
            raise UserError(f"--metric {text}: choose from {', '.join(METRICS)} (comma-separated)")
    elif command == "all":
        chosen = tuple(m for m in METRICS if m != "cmmd" or is_clip_space(space))
    else:
        chosen = {"pfid": ("fd",), "fid": ("fd",), "scales": ("fd",)}.get(command, (command,))
    if "cmmd" in chosen and not is_clip_space(space):
        raise UserError(f"CMMD is defined on CLIP embeddings, not in the {space} space; "
                        f"use --extractor clip-vitl14-336 (the CMMD paper's) or clip-vitb32")
    return chosen


def metric_name(base: str, space: str, patches: bool = False) -> str:
    """The key a metric is reported under: its published name in Inception space, else suffixed."""
    if base == "fd":
        return ("pfid" if patches else "fid") if space == INCEPTION_SPACE else f"{'p' if patches else ''}fd_{space}"
    if base == "cmmd":
        return "cmmd" if space == CMMD_SPACE else f"cmmd_{space}"
    return base if space == INCEPTION_SPACE else f"{'kd' if base == 'kid' else base}_{space}"


def compare(real: FeatureStats, fake: FeatureStats, metrics: tuple[str, ...], space: str,
            settings: MetricSettings = MetricSettings()) -> dict:
    """The metrics between two sides, as a flat dict of named numbers (with their settings)."""
    if real.dim != fake.dim:
        raise UserError(f"feature dimensions differ: {real.dim} (real) vs {fake.dim} (fake)")
    patches = real.protocol.mode == "pfid"
    name = lambda base: metric_name(base, space, patches)  # noqa: E731
    out: dict = {}
    if "fd" in metrics:
        out[name("fd")] = m.frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
    if "kid" in metrics:
        kid, kid_std, size = m.kernel_inception_distance(real.require_features("KID"), fake.require_features("KID"),
                                                         settings.kid_subsets, settings.kid_subset_size)
        out |= {name("kid"): kid, f"{name('kid')}_std": kid_std, f"{name('kid')}_subset_size": size}
    if "prc" in metrics:
        precision, recall = m.precision_recall(real.require_features("precision/recall"),
                                               fake.require_features("precision/recall"), settings.prc_k)
        out |= {metric_name("precision", space): precision, metric_name("recall", space): recall, "prc_k": settings.prc_k}
    if "cmmd" in metrics:
        out[name("cmmd")] = m.cmmd(real.require_features("CMMD"), fake.require_features("CMMD"),
                                   unbiased=settings.cmmd_estimator == "unbiased")
        out["cmmd_estimator"] = settings.cmmd_estimator
    if "dc" in metrics:
        density, coverage = m.density_coverage(real.require_features("density/coverage"),
                                               fake.require_features("density/coverage"), settings.dc_k)
        out |= {metric_name("density", space): density, metric_name("coverage", space): coverage, "dc_k": settings.dc_k}
    return out

"""Which metrics a comparison computes and what each is called: Inception's published names, every
other space's name on every number, CMMD only where it is defined (CLIP embeddings)."""

import numpy as np
import pytest

from evaluation.comparison import MetricSettings, compare, metric_name, parse_metrics
from evaluation.crops import CropProtocol
from evaluation.metrics import cmmd, density_coverage, frechet_distance
from evaluation.stats import FeatureStats
from urcdm.errors import UserError


def _side(seed: int, n: int = 40, shift: float = 0.0, mode: str = "fixed") -> FeatureStats:
    features = np.random.default_rng(seed).normal(shift, 1.0, size=(n, 6)).astype(np.float32)
    protocol = CropProtocol(mode="pfid") if mode == "pfid" else CropProtocol(mode="fixed", span=256)
    return FeatureStats.from_features(features, protocol=protocol, extractor="x", fingerprint="0", seed=0,
                                      images=["a"], crops=np.zeros((n, 8)))


def test_names_carry_the_space_except_inceptions_published_ones():
    assert metric_name("fd", "inception", patches=True) == "pfid" and metric_name("fd", "inception") == "fid"
    assert metric_name("kid", "inception") == "kid" and metric_name("precision", "inception") == "precision"
    assert metric_name("fd", "dinov2_vitl14") == "fd_dinov2_vitl14" and metric_name("fd", "uni", patches=True) == "pfd_uni"
    assert metric_name("kid", "uni") == "kd_uni" and metric_name("coverage", "uni") == "coverage_uni"
    assert metric_name("cmmd", "clip_vitl14_336") == "cmmd" and metric_name("cmmd", "clip_vitb32") == "cmmd_clip_vitb32"


def test_all_means_every_metric_the_space_allows():
    assert "cmmd" not in parse_metrics(None, "all", "inception") and "dc" in parse_metrics(None, "all", "inception")
    assert "cmmd" in parse_metrics(None, "all", "clip_vitb32")
    assert parse_metrics(None, "pfid", "uni") == ("fd",) and parse_metrics("kid,fd,kid", "fid", "uni") == ("kid", "fd")
    with pytest.raises(UserError, match="CLIP"):
        parse_metrics("cmmd", "all", "uni")
    with pytest.raises(UserError, match="CLIP"):
        parse_metrics(None, "cmmd", "inception")
    with pytest.raises(UserError, match="choose from"):
        parse_metrics("fid", "all", "inception")


def test_values_are_the_metric_modules_on_the_same_features():
    real, fake = _side(0), _side(1, shift=0.4)
    out = compare(real, fake, ("fd", "cmmd", "dc"), "clip_vitb32", MetricSettings(dc_k=3))
    assert out["fd_clip_vitb32"] == pytest.approx(frechet_distance(real.mean, real.cov, fake.mean, fake.cov))
    assert out["cmmd_clip_vitb32"] == pytest.approx(cmmd(real.features, fake.features, unbiased=True))
    assert out["cmmd_estimator"] == "unbiased"
    density, coverage = density_coverage(real.features, fake.features, 3)
    assert (out["density_clip_vitb32"], out["coverage_clip_vitb32"], out["dc_k"]) == (pytest.approx(density), pytest.approx(coverage), 3)
    reference = compare(real, fake, ("cmmd",), "clip_vitl14_336", MetricSettings(cmmd_estimator="reference"))
    assert reference["cmmd"] == pytest.approx(cmmd(real.features, fake.features, unbiased=False))
    assert reference["cmmd"] > out["cmmd_clip_vitb32"]  # the all-pairs average includes k(x, x) = 1


def test_patch_protocol_names_the_patch_distance():
    assert list(compare(_side(0, mode="pfid"), _side(1, mode="pfid"), ("fd",), "inception")) == ["pfid"]
    with pytest.raises(UserError, match="dimensions differ"):
        compare(_side(0), FeatureStats.from_features(np.ones((5, 3)) * np.arange(5)[:, None], protocol=_side(0).protocol,
                                                     extractor="x", fingerprint="0", seed=0, images=["a"],
                                                     crops=np.zeros((5, 8))), ("fd",), "uni")

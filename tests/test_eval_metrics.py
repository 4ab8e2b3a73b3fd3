"""Metrics against the reference libraries and closed forms, on identical feature arrays."""

import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance as cleanfid_frechet
from cleanfid.fid import kernel_distance as cleanfid_kernel_distance
from scipy import linalg
from scipy.spatial.distance import cdist
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from evaluation.metrics import frechet_distance, kernel_inception_distance, precision_recall


def _features(seed, n=600, d=24, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) * scale @ mixing + shift).astype(np.float32)


def _stats(x):
    return x.mean(axis=0, dtype=np.float64), np.cov(x, rowvar=False)


def test_frechet_matches_clean_fid_and_scipy():
    a, b = _features(0), _features(1, shift=0.4, scale=1.3)
    ours = frechet_distance(*_stats(a), *_stats(b))
    assert ours == pytest.approx(cleanfid_frechet(*_stats(a), *_stats(b)), rel=1e-6)
    (m1, s1), (m2, s2) = _stats(a), _stats(b)
    by_scipy = float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
    assert ours == pytest.approx(by_scipy, rel=1e-6)


def test_frechet_of_a_set_with_itself_is_zero():
    a = _features(2)
    assert abs(frechet_distance(*_stats(a), *_stats(a))) < 1e-6


def test_frechet_closed_form_for_known_gaussians():
    # Commuting covariances (same eigenvectors): FID = |mu1 - mu2|^2 + sum (sqrt(l1) - sqrt(l2))^2.
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    l1, l2 = rng.uniform(0.5, 3, 8), rng.uniform(0.5, 3, 8)
    m1, m2 = rng.normal(size=8), rng.normal(size=8)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    got = frechet_distance(m1, q @ np.diag(l1) @ q.T, m2, q @ np.diag(l2) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)


def _unbiased_mmd2_poly(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m = len(x)
    return (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_on_the_full_set_matches_clean_fid_and_the_formula():
    a, b = _features(4, n=300), _features(5, n=300, shift=0.2)
    kid, std, size = kernel_inception_distance(a, b, subsets=3, subset_size=300)
    # every subset is the whole set, in another order: torch-fidelity sums in float32, so only rounding
    assert size == 300 and std <= 1e-6 * kid
    assert kid == pytest.approx(_unbiased_mmd2_poly(a, b), rel=1e-6)
    assert kid == pytest.approx(cleanfid_kernel_distance(a, b, num_subsets=1, max_subset_size=300), rel=1e-5)


def test_kid_subsets_match_torch_fidelity():
    a, b = _features(6, n=400), _features(7, n=350, shift=0.3)
    kid, std, size = kernel_inception_distance(a, b, subsets=20, subset_size=100, seed=11)
    reference = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=20, kid_subset_size=100,
                                       kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                       kid_kernel_poly_coef0=1, rng_seed=11, verbose=False)
    assert size == 100
    assert kid == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-6)
    assert std == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-6)


def test_kid_subset_shrinks_to_the_smaller_set():
    assert kernel_inception_distance(_features(8, n=50), _features(9, n=70), subsets=2)[2] == 50


def _knn_precision_recall(real, fake, k):
    """Kynkäänniemi et al. 2019 by brute force with scipy distances."""
    real_radius = np.sort(cdist(real, real), axis=1)[:, k]
    fake_radius = np.sort(cdist(fake, fake), axis=1)[:, k]
    precision = np.mean((cdist(fake, real) <= real_radius[None, :]).any(axis=1))
    recall = np.mean((cdist(real, fake) <= fake_radius[None, :]).any(axis=1))
    return precision, recall


def test_precision_recall_match_brute_force_and_torch_fidelity():
    real, fake = _features(10, n=300), _features(11, n=250, shift=0.5, scale=0.6)
    precision, recall = precision_recall(real, fake, k=3)
    expected = _knn_precision_recall(real.astype(np.float64), fake.astype(np.float64), 3)
    assert (precision, recall) == pytest.approx(expected, abs=1e-6)
    reference = prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=3,
                                       prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert (precision, recall) == pytest.approx((reference["precision"], reference["recall"]), abs=1e-6)


def test_precision_and_recall_are_not_swapped():
    # Fakes collapsed onto one mode of the real data: every fake is realistic (precision ~1),
    # but most of the real distribution is missed (low recall).
    rng = np.random.default_rng(12)
    real = rng.normal(size=(400, 8)).astype(np.float32)
    fake = (real[:200] * 0.1).astype(np.float32)
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9 and recall < 0.5

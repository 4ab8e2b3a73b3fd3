"""CMMD and density/coverage against the reference formulas, the authors' prdc package and hand-worked cases."""

import math

import numpy as np
import prdc
import pytest
from scipy.spatial.distance import cdist

from evaluation.metrics import CMMD_SCALE, CMMD_SIGMA, cmmd, density_coverage
from urcdm.errors import UserError


def _features(seed, n, d=12, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * scale + shift).astype(np.float32)


# --- CMMD -------------------------------------------------------------------------------------

def _rbf_kernel_matrix(x, y, sigma):
    return np.exp(-cdist(x, y, "sqeuclidean") / (2 * sigma ** 2))


def _cmmd_by_numpy(x, y, sigma=10.0, scale=1000.0, unit_norm=True, unbiased=True):
    """google-research cmmd/distance.py's estimator (means over all pairs) or the U-statistic, in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if unit_norm:  # the reference's CLIP model hands out unit-norm embeddings
        x, y = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    kxx, kyy, kxy = _rbf_kernel_matrix(x, x, sigma), _rbf_kernel_matrix(y, y, sigma), _rbf_kernel_matrix(x, y, sigma)
    if unbiased:
        m, n = len(x), len(y)
        within = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    else:
        within = kxx.mean() + kyy.mean()
    return scale * (within - 2 * kxy.mean())


def test_cmmd_defaults_are_the_papers():
    assert (CMMD_SIGMA, CMMD_SCALE) == (10.0, 1000.0)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("block_size", [7, 4096])  # ragged blocks of both sets, and one block each
def test_cmmd_matches_the_formula(unbiased, block_size):
    real, fake = _features(0, 130), _features(1, 95, shift=0.3, scale=1.4)
    got = cmmd(real, fake, unbiased=unbiased, block_size=block_size)
    assert got == pytest.approx(_cmmd_by_numpy(real, fake, unbiased=unbiased), rel=1e-10)


def test_cmmd_raw_features_and_another_bandwidth():
    real, fake = _features(2, 60, d=5), _features(3, 70, d=5, shift=0.5)
    got = cmmd(real, fake, sigma=2.0, scale=1.0, unit_norm=False, block_size=16)
    assert got == pytest.approx(_cmmd_by_numpy(real, fake, sigma=2.0, scale=1.0, unit_norm=False), rel=1e-10)


def test_cmmd_by_hand_in_one_dimension():
    # Real {0, 0}, fake {10, 20}, sigma 10: k(0, 10) = e^-0.5, k(0, 20) = e^-2, k(10, 20) = e^-0.5.
    real, fake = np.array([[0.0], [0.0]]), np.array([[10.0], [20.0]])
    within_fake_all_pairs = (2 + 2 * math.exp(-0.5)) / 4
    between = (math.exp(-0.5) + math.exp(-2)) / 2
    assert cmmd(real, fake, unit_norm=False, unbiased=False) == pytest.approx(1000 * (1 + within_fake_all_pairs - 2 * between))
    within_fake_distinct_pairs = math.exp(-0.5)
    assert cmmd(real, fake, unit_norm=False, unbiased=True) == pytest.approx(
        1000 * (1 + within_fake_distinct_pairs - 2 * between))


def test_cmmd_normalises_embeddings_and_is_zero_for_one_set_against_itself():
    real, fake = _features(4, 80), _features(5, 90, shift=0.2)
    # Powers of two: the scaled float32 features are exact, so only the normalisation can undo the scale.
    assert cmmd(real * 8.0, fake * 0.125) == pytest.approx(cmmd(real, fake), rel=1e-12)
    assert cmmd(real * 8.0, fake * 0.125, unit_norm=False) != pytest.approx(cmmd(real, fake, unit_norm=False), rel=1e-3)
    assert cmmd(real, real, unbiased=False) == pytest.approx(0.0, abs=1e-10)
    assert cmmd(real, real) < 0  # the U-statistic (the default) is not clipped at zero


# --- density and coverage ---------------------------------------------------------------------

def _density_coverage_brute_force(real, fake, k):
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    radii = np.sort(cdist(real, real), axis=1)[:, k]  # column 0 is the sample itself
    fake_to_real = cdist(fake, real)
    density = (fake_to_real < radii[None, :]).sum() / (k * len(fake))
    coverage = (fake_to_real.min(axis=0) < radii).mean()
    return density, coverage


@pytest.mark.parametrize("block_size", [9, 4096])
def test_density_coverage_match_prdc_and_brute_force(block_size):
    real, fake = _features(6, 220), _features(7, 170, shift=0.4, scale=0.8)
    got = density_coverage(real, fake, k=5, block_size=block_size)
    reference = prdc.compute_prdc(real.astype(np.float64), fake.astype(np.float64), nearest_k=5)
    assert got == pytest.approx((reference["density"], reference["coverage"]), abs=1e-12)
    assert got == pytest.approx(_density_coverage_brute_force(real, fake, 5), abs=1e-12)


def test_density_coverage_match_prdc_on_float32_features():
    real, fake = _features(8, 200, d=64), _features(9, 210, d=64, shift=0.1)
    got = density_coverage(real, fake, k=3, block_size=50)
    reference = prdc.compute_prdc(real, fake, nearest_k=3)
    assert got == pytest.approx((reference["density"], reference["coverage"]), abs=1e-12)


def test_density_coverage_by_hand_on_a_line():
    # Reals 0, 1, ..., 9 with k = 1: every radius is 1, and a ball is open (|Y - X| < r, as in prdc).
    # The fake at 0.5 is inside the balls of reals 0 and 1; the fake at 3 inside real 3's only
    # (reals 2 and 4 are exactly 1 away); the fake at 20 in none. Density = 3 / (k * 3 fakes),
    # coverage = reals 0, 1 and 3 of 10.
    real, fake = np.arange(10.0)[:, None], np.array([[0.5], [3.0], [20.0]])
    assert density_coverage(real, fake, k=1) == pytest.approx((1.0, 0.3))
    reference = prdc.compute_prdc(real, fake, nearest_k=1)
    assert (reference["density"], reference["coverage"]) == pytest.approx((1.0, 0.3))
    # Sides swapped, the radii are those of {0.5, 3, 20}: 2.5, 2.5 and 17, which hold 3 + 5 + 6 of
    # the ten points 0..9, and every one of the three balls holds at least one.
    assert density_coverage(fake, real, k=1) == pytest.approx((1.4, 1.0))


def test_a_collapsed_generator_is_dense_but_covers_little():
    rng = np.random.default_rng(10)
    real = rng.normal(size=(400, 8))
    fake = real[:5].repeat(40, axis=0) + rng.normal(scale=0.01, size=(200, 8))
    density, coverage = density_coverage(real, fake)
    assert density > 1.0 and coverage < 0.1


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: density_coverage(_features(0, 5), _features(1, 50), k=5), "at least 6 real and 1 fake"),
    (lambda: density_coverage(_features(0, 50), _features(1, 0), k=5), "at least 6 real and 1 fake"),
    (lambda: density_coverage(_features(0, 50), _features(1, 50, d=7)), "dimensions differ: 12 .real. vs 7 .fake."),
    (lambda: cmmd(_features(0, 1), _features(1, 50)), "at least 2 real and 2 fake"),
    (lambda: cmmd(_features(0, 50), _features(1, 50, d=7)), "dimensions differ"),
    (lambda: cmmd(np.zeros(50), _features(1, 50)), "2-D array"),
    (lambda: cmmd(np.full((4, 12), np.nan), _features(1, 50)), "NaN"),
    (lambda: cmmd(np.zeros((4, 12)), _features(1, 50)), "cannot be L2-normalised"),
])
def test_bad_input_is_a_user_error(call, message):
    with pytest.raises(UserError, match=message):
        call()

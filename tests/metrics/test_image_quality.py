"""Fréchet distance vs SciPy's sqrtm and closed forms; KID vs a direct estimator and a known MMD; MAE, PSNR."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from jaxvae.metrics.image_quality import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    kernel_inception_distance,
    mean_absolute_error,
    mmd2_unbiased,
    psnr,
)
from tests import stats


def _spd(rng, f, rank=None):
    a = rng.normal(size=(f, rank or f))
    return a @ a.T / (rank or f) + (0 if rank else 0.1) * np.eye(f)


def _fd_scipy(m1, s1, m2, s2):
    """The usual implementation: sqrtm of the (non-symmetric) product."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(covmean)))


@pytest.mark.parametrize("f", [1, 3, 16])
def test_frechet_matches_scipy_sqrtm(f):
    rng = np.random.default_rng(f)
    m1, m2 = rng.normal(size=f), rng.normal(size=f)
    s1, s2 = _spd(rng, f), _spd(rng, f)
    np.testing.assert_allclose(frechet_distance(m1, s1, m2, s2), _fd_scipy(m1, s1, m2, s2), rtol=1e-8, atol=1e-10)


def test_frechet_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0, rel=1e-12)
    # Commuting (diagonal) covariances: sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    assert frechet_distance(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(
        3.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=1e-12
    )
    # Identical Gaussians: 0; rotation of one covariance: tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2).
    rng = np.random.default_rng(0)
    s = _spd(rng, 5)
    assert frechet_distance(np.ones(5), s, np.ones(5), s) == pytest.approx(0.0, abs=1e-10)
    # Scaled covariance c^2 S: (1 - c)^2 tr(S).
    assert frechet_distance(np.zeros(5), s, np.zeros(5), 4.0 * s) == pytest.approx(np.trace(s), rel=1e-6)


def test_frechet_singular_covariances_stay_real_and_exact():
    """Rank-deficient covariances (fewer samples than features): no complex values, still the closed form.

    The square roots of the round-off-sized (~1e-16) zero eigenvalues contribute ~1e-8 each: rel 1e-6.
    """
    rng = np.random.default_rng(1)
    s = _spd(rng, 8, rank=3)
    assert np.linalg.matrix_rank(s) == 3
    d = frechet_distance(np.zeros(8), s, np.zeros(8), 0.25 * s)
    assert isinstance(d, float) and d == pytest.approx(0.25 * np.trace(s), rel=1e-6)
    assert frechet_distance(np.zeros(8), np.zeros((8, 8)), np.zeros(8), s) == pytest.approx(np.trace(s), rel=1e-6)


def test_frechet_from_features_converges_to_the_population_value():
    rng = np.random.default_rng(2)
    m1, m2 = np.zeros(3), np.array([1.0, 0.0, -1.0])
    s1, s2 = np.diag([1.0, 2.0, 0.5]), np.diag([2.0, 2.0, 1.0])
    x = rng.multivariate_normal(m1, s1, 200_000)
    y = rng.multivariate_normal(m2, s2, 200_000)
    exact = frechet_distance(m1, s1, m2, s2)  # 2.257
    # The leading error is 2 (m1 - m2) . (mean errors): sd 2 sqrt(sum dm^2 (s1 + s2) / N) = 0.0095; allow 5 sd.
    assert frechet_distance_from_features(x, y) == pytest.approx(exact, abs=5 * 0.0095)
    mu, cov = gaussian_statistics(x[:5])
    np.testing.assert_allclose(cov, np.cov(x[:5].T), rtol=1e-12)
    np.testing.assert_allclose(mu, x[:5].mean(0), rtol=1e-12)


def _mmd2_loops(x, y):
    def k(a, b):
        return (a @ b / len(a) + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_mmd2_matches_the_direct_double_sum():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 4)), rng.normal(size=(9, 4)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-12)


def test_mmd2_is_unbiased_for_the_known_population_value():
    """1-D cubic kernel (xy + 1)^3 = 1 + 3xy + 3x^2y^2 + x^3y^3, so for X ~ N(a, 1), Y ~ N(b, 1):
    MMD^2 = 3 (a - b)^2 + 3 (a^2 - b^2)^2 + (a^3 + 3a - b^3 - 3b)^2."""
    a, b = 0.5, 0.0
    exact = 3 * (a - b) ** 2 + 3 * (a**2 - b**2) ** 2 + (a**3 + 3 * a - b**3 - 3 * b) ** 2
    rng = np.random.default_rng(4)
    reps = np.array([mmd2_unbiased(rng.normal(a, 1, (100, 1)), rng.normal(b, 1, (100, 1))) for _ in range(400)])
    stats.assert_mean_matches(reps, exact, what="unbiased MMD^2")
    # Same distribution: zero on average.
    null = np.array([mmd2_unbiased(rng.normal(size=(50, 2)), rng.normal(size=(50, 2))) for _ in range(400)])
    stats.assert_mean_matches(null, 0.0, what="MMD^2 under the null")


def test_kid_subsets():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 5)), rng.normal(size=(250, 5)) + 0.5
    r = kernel_inception_distance(x, y, num_subsets=20, subset_size=100, seed=0)
    assert r.values.shape == (20,) and r.mean == pytest.approx(r.values.mean())
    assert r.std == pytest.approx(r.values.std(ddof=1)) and r.stderr == pytest.approx(r.std / np.sqrt(20))
    assert r.mean > 5 * r.stderr  # clearly different sets
    # Deterministic in the seed; the subset size is capped at the smaller set; one full subset is the U-statistic.
    assert kernel_inception_distance(x, y, num_subsets=20, subset_size=100, seed=0).mean == r.mean
    full = kernel_inception_distance(x[:250], y, num_subsets=1, subset_size=10_000)
    assert full.mean == pytest.approx(mmd2_unbiased(x[:250], y), rel=1e-12)
    assert np.isnan(full.std)


def test_mae_and_psnr():
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, size=(3, 4, 4, 2)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, size=x.shape), -1, 1).astype(np.float32)
    np.testing.assert_allclose(mean_absolute_error(x, y), np.abs(x - y).mean((1, 2, 3)), rtol=1e-6)
    mse = np.square(x.astype(np.float64) - y).mean((1, 2, 3))
    np.testing.assert_allclose(psnr(x, y), 10 * np.log10(4.0 / mse), rtol=1e-5)
    # The same images in [0, 1] give the same PSNR (and dm-pix's, which assumes [0, 1]).
    import dm_pix

    x01, y01 = (x + 1) / 2, (y + 1) / 2
    np.testing.assert_allclose(psnr(x01, y01, value_range=(0, 1)), psnr(x, y), rtol=1e-5)
    np.testing.assert_allclose(psnr(x01, y01, value_range=(0, 1)), dm_pix.psnr(x01, y01), rtol=1e-5)
    assert np.all(np.isinf(psnr(x, x))) and np.all(psnr(x, x) > 0)
    assert mean_absolute_error(x, y).shape == psnr(x, y).shape == (3,)


def test_errors():
    with pytest.raises(ValueError, match="`sigma1` must be symmetric"):
        frechet_distance([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]], [0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match=r"`sigma2` must be \[F, F\]"):
        frechet_distance([0.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(3))
    with pytest.raises(ValueError, match="`mu1` and `mu2` must be vectors"):
        frechet_distance([0.0], [[1.0]], [0.0, 1.0], np.eye(2))
    with pytest.raises(ValueError, match="`mu2` must be finite"):
        frechet_distance([0.0], [[1.0]], [np.nan], [[1.0]])
    with pytest.raises(ValueError, match=r"`features1` must be features \[N, F\] with N >= 2"):
        frechet_distance_from_features(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="one feature size"):
        frechet_distance_from_features(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="`features2` must be finite"):
        kernel_inception_distance(np.zeros((4, 2)), np.full((4, 2), np.inf))
    with pytest.raises(ValueError, match="`num_subsets` must be a positive int"):
        kernel_inception_distance(np.zeros((4, 2)), np.zeros((4, 2)), num_subsets=0)
    with pytest.raises(ValueError, match="`subset_size` must be >= 2"):
        kernel_inception_distance(np.zeros((4, 2)), np.zeros((4, 2)), subset_size=1)
    with pytest.raises(ValueError, match="`x` and `x_hat` must be images"):
        psnr(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="`value_range` must be finite with low < high"):
        psnr(np.zeros((2, 3)), np.zeros((2, 3)), value_range=(1, 0))
    with pytest.raises(ValueError, match="`x_hat` must be finite"):
        mean_absolute_error(np.zeros((2, 3)), np.full((2, 3), np.nan))

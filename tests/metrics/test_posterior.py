"""Posterior diagnostics: mean posterior variance and the aggregate-posterior KL estimators (quadrature, bounds)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from jaxvae.metrics.posterior import METHODS, aggregate_posterior_kl, mean_posterior_variance
from jaxvae.objectives.regularizers import per_sample_kl, population_kl
from tests import stats


def test_mean_posterior_variance():
    log_var = np.log(np.array([[0.5, 2.0], [1.5, 0.01], [1.0, 0.03]]))
    np.testing.assert_allclose(mean_posterior_variance(log_var), [1.0, 2.04 / 3], rtol=1e-6)
    assert mean_posterior_variance(log_var).shape == (2,)


def _quadrature_kl(loc, log_var):
    sd = np.exp(0.5 * log_var)

    def integrand(z):
        q = np.mean(sps.norm.pdf(z, loc, sd))
        return q * (np.log(q) - sps.norm.logpdf(z)) if q > 0 else 0.0

    return integrate.quad(integrand, -30, 30, limit=400, epsabs=1e-11)[0]


def test_estimators_against_quadrature_and_each_other():
    """D = 1, N = 5: MC within 5 se of the quadrature value, sandwiched by the closed-form bounds."""
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(5, 1)) * 1.5
    log_var = rng.normal(size=(5, 1)) * 0.5 - 1.0
    exact = _quadrature_kl(loc[:, 0], log_var[:, 0])
    mc = aggregate_posterior_kl(loc, log_var, key=jax.random.key(0), num_samples=20_000)
    assert mc.method == "mc" and mc.stderr > 0
    stats.assert_close_clt(mc.estimate, exact, mc.stderr, what="aggregate-posterior KL")
    lower = aggregate_posterior_kl(loc, log_var, method="moment_matched")
    upper = aggregate_posterior_kl(loc, log_var, method="upper_bound")
    assert lower.stderr == upper.stderr == 0.0
    assert lower.estimate <= exact <= upper.estimate
    assert lower.estimate == pytest.approx(float(population_kl(loc, log_var, include_variance=True)), rel=1e-6)
    assert upper.estimate == pytest.approx(float(np.mean(per_sample_kl(loc, log_var))), rel=1e-5)
    means = aggregate_posterior_kl(loc, log_var, method="means_only")
    assert means.estimate == pytest.approx(float(population_kl(loc, log_var)), rel=1e-6)


def test_mc_is_chunked_without_changing_the_estimator():
    """A small memory budget splits the draws into chunks of S = max_elements // (N D); all draws are used."""
    rng = np.random.default_rng(1)
    loc, log_var = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) * 0.3
    small = aggregate_posterior_kl(loc, log_var, key=jax.random.key(1), num_samples=1000, max_elements=40 * 3 * 64)
    big = aggregate_posterior_kl(loc, log_var, key=jax.random.key(2), num_samples=1000)
    # Two independent estimates of the same KL agree within their combined standard error.
    stats.assert_close_clt(small.estimate - big.estimate, 0.0, np.hypot(small.stderr, big.stderr))
    # 1000 draws in chunks of 64 -> 16 chunks = 1024 draws: the stderr reflects all of them.
    assert small.stderr > 0


def test_collapsed_posteriors_have_zero_kl():
    """Every posterior equal to the prior: the mixture is the prior, every estimator of its KL gives 0.

    Rivera's means-only term ignores the variances, so identical means make it +inf (log 0).
    """
    loc, log_var = np.zeros((6, 4)), np.zeros((6, 4))
    for method in METHODS:
        r = aggregate_posterior_kl(loc, log_var, method=method, key=jax.random.key(0), num_samples=64)
        if method == "means_only":
            assert r.estimate == np.inf
        else:
            assert r.estimate == pytest.approx(0.0, abs=1e-6), method


def test_errors():
    with pytest.raises(ValueError, match=r"`log_var` must be \[N, D\]"):
        mean_posterior_variance(np.zeros(3))
    with pytest.raises(ValueError, match="`method` must be one of"):
        aggregate_posterior_kl(np.zeros((3, 2)), np.zeros((3, 2)), method="exact")
    with pytest.raises(ValueError, match="`key` must be a PRNG key"):
        aggregate_posterior_kl(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`num_samples` must be an int >= 2"):
        aggregate_posterior_kl(np.zeros((3, 2)), np.zeros((3, 2)), key=jax.random.key(0), num_samples=1)
    with pytest.raises(ValueError, match="`loc` must have the shape of `log_var`"):
        aggregate_posterior_kl(np.zeros((3, 1)), np.zeros((3, 2)), method="upper_bound")
    with pytest.raises(ValueError, match="N >= 2"):
        aggregate_posterior_kl(np.zeros((1, 2)), np.zeros((1, 2)), method="moment_matched")
    with pytest.raises(ValueError, match="`loc` must be finite"):
        aggregate_posterior_kl(np.full((3, 2), np.nan), np.zeros((3, 2)), method="upper_bound")

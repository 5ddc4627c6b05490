"""Rivera's latent regularisers against direct formulas, quadrature and the bounds that sandwich the mixture KL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from jaxvae.distributions import MixtureNormal, kl_normal_std
from jaxvae.objectives.regularizers import (
    aggregate_posterior,
    per_sample_kl,
    population_kl,
    population_kl_mc,
    variance_regularizer,
)
from tests import stats

RNG = np.random.default_rng(0)
_kl_mc = jax.jit(population_kl_mc, static_argnames=("num_samples", "stratified"))
LOC = RNG.normal(size=(6, 5))
LOG_VAR = RNG.normal(size=(6, 5)) * 0.8


def test_variance_regularizer_direct_formula(variant):
    s2 = np.exp(LOG_VAR)
    ref = 0.1 * np.sum(s2 - LOG_VAR - 1.0, axis=-1)
    got = variant(variance_regularizer)(jnp.asarray(LOG_VAR, jnp.float32))
    assert got.shape == (6,)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose(variance_regularizer(LOG_VAR, weight=2.5), ref * 25, rtol=1e-5)
    # 2w KL(N(0, sigma^2) || N(0, 1)): the per-sample KL without its mean term.
    np.testing.assert_allclose(got, 0.2 * np.sum(kl_normal_std(0.0, LOG_VAR), -1), rtol=1e-5)


def test_variance_regularizer_minimum_and_precision():
    np.testing.assert_array_equal(variance_regularizer(jnp.zeros((3, 4))), np.zeros(3))
    # Near the minimum exp(v) - 1 - v ~ v^2 / 2 keeps full relative precision in float32, on both
    # sides of the switch between the series and expm1 (|v| = 0.1).
    v64 = np.array([[-0.3, -0.1, -0.09999, -1e-3, 1e-6, 1e-4, 0.05, 0.09999, 0.1, 0.3]]).T
    ref = np.expm1(v64[:, 0]) - v64[:, 0]  # float64: cancellation error ~1e-16 / v, negligible here
    got = variance_regularizer(jnp.asarray(v64, jnp.float32), weight=1.0)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    g = jax.grad(lambda lv: jnp.sum(variance_regularizer(lv)))(jnp.asarray([[-1.0, 0.0, 1.0]]))
    np.testing.assert_allclose(g, 0.1 * (np.exp([[-1.0, 0.0, 1.0]]) - 1.0), rtol=1e-6)


def test_per_sample_kl_direct_formula(variant):
    ref = 0.5 * np.sum(LOC**2 + np.exp(LOG_VAR) - LOG_VAR - 1.0, axis=-1)
    got = variant(per_sample_kl)(jnp.asarray(LOC, jnp.float32), jnp.asarray(LOG_VAR, jnp.float32))
    assert got.shape == (6,)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_aggregate_posterior_is_the_uniform_mixture_of_the_batch():
    q = aggregate_posterior(LOC, LOG_VAR)
    assert isinstance(q, MixtureNormal) and q.num_components == 6 and q.event_size == 5
    x = RNG.normal(size=(7, 5))
    dens = np.stack([sps.norm(LOC[i], np.exp(0.5 * LOG_VAR[i])).pdf(x[:, None, :]).prod(-1)[:, 0] for i in range(6)])
    np.testing.assert_allclose(q.log_prob(jnp.asarray(x, jnp.float32)), np.log(dens.mean(0)), rtol=1e-4)
    assert aggregate_posterior(np.zeros((2, 3, 4)), np.zeros((2, 3, 4))).batch_shape == (2,)


def _quadrature_kl_1d(loc, log_var):
    """KL(mixture || N(0, 1)) for D = 1 by adaptive quadrature (float64)."""
    sd = np.exp(0.5 * log_var)

    def q(z):
        return np.mean(sps.norm.pdf(z, loc, sd))

    def integrand(z):
        qz = q(z)
        return qz * (np.log(qz) - sps.norm.logpdf(z)) if qz > 0 else 0.0

    return integrate.quad(integrand, -30, 30, limit=400, epsabs=1e-11)[0]


@pytest.mark.parametrize("stratified", [True, False], ids=["stratified", "ancestral"])
def test_population_kl_mc_matches_quadrature(stratified):
    loc = np.array([[-1.5], [0.2], [2.0], [0.5]])
    log_var = np.log(np.array([[0.3], [1.2], [0.5], [0.05]]))
    exact = _quadrature_kl_1d(loc[:, 0], log_var[:, 0])
    est = _kl_mc(jax.random.key(1), loc, log_var, num_samples=4000, stratified=stratified)
    assert est.estimate.shape == () and float(est.stderr) > 0
    stats.assert_close_clt(est.estimate, exact, est.stderr, what="MC KL of the batch mixture")
    # The closed forms sandwich it: moment-matched population KL <= KL <= mean per-sample KL.
    assert float(population_kl(loc, log_var, include_variance=True)) <= exact + 1e-9
    assert exact <= float(jnp.mean(per_sample_kl(loc, log_var))) + 1e-9


def test_population_kl_mc_exact_when_components_coincide():
    """B identical components: the mixture is one Gaussian, KL is the per-sample KL, known exactly."""
    loc = np.tile([[0.3, -1.0]], (5, 1))
    log_var = np.tile([[0.4, -0.7]], (5, 1))
    exact = float(per_sample_kl(loc[:1], log_var[:1])[0])
    est = _kl_mc(jax.random.key(2), loc, log_var, num_samples=2000)
    stats.assert_close_clt(est.estimate, exact, est.stderr)
    np.testing.assert_allclose(float(population_kl(loc, log_var, include_variance=True)), exact, rtol=1e-5)


def test_population_kl_mc_is_differentiable():
    def kl(m, lv):
        return population_kl_mc(jax.random.key(3), m, lv, 4).estimate

    g_loc, g_lv = jax.jit(jax.grad(kl, argnums=(0, 1)))(jnp.asarray(LOC), jnp.asarray(LOG_VAR))
    for g in (g_loc, g_lv):
        assert g.shape == LOC.shape and np.all(np.isfinite(g)) and np.all(g != 0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="`log_var` must have at least 1"):
        variance_regularizer(1.0)
    with pytest.raises(ValueError, match="`log_var` must be finite"):
        variance_regularizer(jnp.asarray([[0.0, jnp.inf]]))
    with pytest.raises(ValueError, match="`weight` must be finite and >= 0"):
        variance_regularizer(LOG_VAR, weight=-0.1)
    with pytest.raises(ValueError, match="`loc` must have the shape of `log_var`"):
        per_sample_kl(LOC[:, :3], LOG_VAR)
    with pytest.raises(ValueError, match=r"`log_var` must have at least 2 dimension\(s\) \(\[..., B, D\]\)"):
        aggregate_posterior(LOC[0], LOG_VAR[0])
    with pytest.raises(ValueError, match="`loc` must be finite"):
        population_kl_mc(jax.random.key(0), np.full((2, 2), np.nan), np.zeros((2, 2)), 4)
    with pytest.raises(ValueError, match="`num_samples` must be >= 2"):
        population_kl_mc(jax.random.key(0), LOC, LOG_VAR, 1)

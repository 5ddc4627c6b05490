"""ELBO terms against the linear-Gaussian oracle.

Model: ``p(z) = N(0, I_D)``, ``p(x|z) = N(W z + b, s^2 I_X)`` with orthogonal columns of ``W``, so
the exact posterior is a diagonal Normal and every reference quantity (``log p(x)``, posterior,
``KL(q || posterior)``, ``E_q log p(x|z)``) has a closed form, computed here in float64 NumPy/SciPy.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from jaxvae.distributions.normal import Normal, kl_normal_normal, normal_log_prob
from jaxvae.objectives.elbo import ElboTerms, analytic_kl_terms, elbo, kl_mc_terms, mc_kl_terms, sum_event
from tests import stats


def _f(a):
    """To the default float dtype (float64 inside ``jax.enable_x64()``, else float32)."""
    return jnp.asarray(a, dtype=jnp.result_type(float))


def kl_diag_normals(mq, sq, mp, sp):
    """KL(N(mq, sq^2) || N(mp, sp^2)) summed over the last axis, float64 NumPy."""
    mq, sq, mp, sp = (np.asarray(a, np.float64) for a in (mq, sq, mp, sp))
    return np.sum(np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5, axis=-1)


@dataclasses.dataclass(frozen=True)
class LinearGaussian:
    w: np.ndarray  # [X, D], orthogonal columns
    b: np.ndarray  # [X]
    s: float

    @classmethod
    def make(cls, seed: int, d: int = 2, x_dim: int = 4, s: float = 0.7) -> LinearGaussian:
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(x_dim, d)))
        return cls(w=q * rng.uniform(0.5, 2.0, d), b=rng.normal(size=x_dim), s=s)

    @property
    def dims(self):
        return self.w.shape[1], self.w.shape[0]

    def sample_x(self, rng, n):
        d, x_dim = self.dims
        return rng.normal(size=(n, d)) @ self.w.T + self.b + self.s * rng.normal(size=(n, x_dim))

    def log_px(self, x):
        cov = self.w @ self.w.T + self.s**2 * np.eye(self.dims[1])
        return np.atleast_1d(sps.multivariate_normal(self.b, cov).logpdf(np.asarray(x, np.float64)))

    def posterior_params(self, x):
        prec = 1.0 + np.sum(self.w**2, axis=0) / self.s**2  # diagonal: W^T W = diag(|w_d|^2)
        var = 1.0 / prec
        mean = var * ((np.asarray(x, np.float64) - self.b) @ self.w) / self.s**2
        return mean, np.broadcast_to(np.sqrt(var), mean.shape)

    def expected_log_px_z(self, x, mq, sq):
        """E_{N(mq, sq^2)} log p(x|z) = -X/2 log(2 pi s^2) - (|x - W mq - b|^2 + tr(W diag(sq^2) W^T)) / (2 s^2)."""
        x_dim = self.dims[1]
        resid = np.asarray(x, np.float64) - mq @ self.w.T - self.b
        trace = np.sum(sq**2 * np.sum(self.w**2, axis=0), axis=-1)
        return -0.5 * x_dim * math.log(2 * math.pi * self.s**2) - (np.sum(resid**2, -1) + trace) / (2 * self.s**2)

    def posterior(self, x) -> Normal:
        m, sd = self.posterior_params(x)
        return Normal(_f(m), _f(sd))

    def wrong_q(self, x, *, shift: float, scale_factor: float) -> Normal:
        m, sd = self.posterior_params(x)
        return Normal(_f(m + shift * sd), _f(sd * scale_factor))

    @staticmethod
    def prior() -> Normal:
        return Normal(_f(0.0), _f(1.0))

    def log_likelihood(self, x):
        w, b, xs = _f(self.w), _f(self.b), _f(x)

        def fn(z):  # z [B, D] -> [B]
            return jnp.sum(normal_log_prob(xs, z @ w.T + b[None, :], self.s), axis=-1)

        return fn


def test_exact_posterior_makes_the_mc_elbo_equal_log_px_for_every_draw(key):
    with jax.enable_x64():
        model = LinearGaussian.make(seed=0)
        x = model.sample_x(np.random.default_rng(0), 64)
        post, ll = model.posterior(x), model.log_likelihood(x)
        terms_fn = jax.jit(lambda k: mc_kl_terms(k, post, model.prior(), ll))
        for i in range(3):
            terms = terms_fn(jax.random.fold_in(key, i))
            assert terms.log_px_z.shape == terms.kl_z.shape == (64,)
            np.testing.assert_allclose(elbo(terms), model.log_px(x), rtol=0, atol=1e-9)
        assert np.std(np.asarray(terms.log_px_z)) > 1e-2  # the terms vary with z; only their combination is exact


def test_analytic_kl_term_is_the_closed_form(key):
    with jax.enable_x64():
        model = LinearGaussian.make(seed=1)
        x = model.sample_x(np.random.default_rng(1), 8)
        q = model.wrong_q(x, shift=0.3, scale_factor=0.8)
        terms = analytic_kl_terms(key, q, model.prior(), model.log_likelihood(x), kl_fn=kl_normal_normal)
        want = kl_diag_normals(q.loc, q.scale, 0.0, 1.0)
        np.testing.assert_allclose(terms.kl_z, want, rtol=1e-12)
        z = q.sample(key)  # same draw as inside analytic_kl_terms
        np.testing.assert_allclose(terms.log_px_z, model.log_likelihood(x)(z), rtol=1e-12)


@pytest.mark.statistical
def test_analytic_and_mc_kl_elbos_agree_with_the_oracle_in_expectation(key):
    """E[ELBO] = log p(x) - KL(q || posterior) for both KL estimators; E[log p(x|z)] is analytic too."""
    reps = 20000
    with jax.enable_x64():
        model = LinearGaussian.make(seed=2)
        x1 = model.sample_x(np.random.default_rng(2), 1)
        x = np.repeat(x1, reps, axis=0)
        q = model.wrong_q(x, shift=0.5, scale_factor=1.5)
        ll = model.log_likelihood(x)
        analytic = jax.jit(lambda k: analytic_kl_terms(k, q, model.prior(), ll, kl_fn=kl_normal_normal))(key)
        mc = jax.jit(lambda k: mc_kl_terms(k, q, model.prior(), ll))(key)  # same key: paired draws
        e_an, e_mc = np.asarray(elbo(analytic)), np.asarray(elbo(mc))
    mp, sp = model.posterior_params(x1)
    mq, sq = np.asarray(q.loc[:1]), np.asarray(q.scale[:1])
    oracle = float(model.log_px(x1)[0] - kl_diag_normals(mq, sq, mp, sp)[0])
    se = lambda v: v.std(ddof=1) / math.sqrt(reps)
    stats.assert_close_clt(e_an.mean(), oracle, se(e_an), what="analytic-KL ELBO")
    stats.assert_close_clt(e_mc.mean(), oracle, se(e_mc), what="MC-KL ELBO")
    stats.assert_close_clt((e_mc - e_an).mean(), 0.0, se(e_mc - e_an), what="MC - analytic ELBO")
    lpz = np.asarray(analytic.log_px_z)
    stats.assert_close_clt(lpz.mean(), float(model.expected_log_px_z(x1, mq, sq)[0]), se(lpz), what="E log p(x|z)")
    assert float(model.log_px(x1)[0]) - oracle > 20 * se(e_an)  # q is measurably off the posterior


def test_elbo_combines_terms(variant):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7).astype(np.float32), np.abs(rng.normal(size=7)).astype(np.float32)
    np.testing.assert_allclose(variant(elbo)(ElboTerms(a, b)), a - b, rtol=1e-6)
    np.testing.assert_allclose(variant(lambda t, beta: elbo(t, beta))(ElboTerms(a, b), 0.25), a - 0.25 * b, rtol=1e-6)
    np.testing.assert_array_equal(elbo(ElboTerms(a, b), 0.0), a)


def test_sum_event_and_kl_mc_terms():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(sum_event(x, 0), x)
    np.testing.assert_array_equal(sum_event(x, 1), x.sum(-1))
    np.testing.assert_array_equal(sum_event(x, 2), x.sum((-1, -2)))
    np.testing.assert_array_equal(kl_mc_terms(x, 2 * x, event_ndims=1), (-x).sum(-1))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: elbo(ElboTerms(np.zeros(3), np.zeros((3, 1)))), "same"),
        (lambda: elbo(ElboTerms(np.zeros(3), np.zeros(3)), -1.0), "beta"),
        (lambda: elbo(ElboTerms(np.zeros(3), np.zeros(3)), float("nan")), "beta"),
        (lambda: elbo(ElboTerms(np.zeros(3), np.zeros(3)), np.ones(3)), "beta"),
        (lambda: sum_event(np.zeros((2, 3)), 3), "ndims"),
        (lambda: sum_event(np.zeros((2, 3)), -1), "ndims"),
        (lambda: kl_mc_terms(np.zeros((2, 3)), np.zeros((2,))), "log_qz_x"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_log_likelihood_must_be_event_summed(key):
    q = Normal(jnp.zeros((4, 2)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="log_likelihood"):
        mc_kl_terms(key, q, Normal(0.0, 1.0), lambda z: z)
    with pytest.raises(ValueError, match="log_likelihood"):
        analytic_kl_terms(key, q, Normal(0.0, 1.0), lambda z: z, kl_fn=kl_normal_normal)


def test_beta_may_be_traced():
    f = jax.jit(lambda beta: elbo(ElboTerms(jnp.ones(3), jnp.ones(3)), beta))
    np.testing.assert_allclose(f(0.5), 0.5 * np.ones(3))

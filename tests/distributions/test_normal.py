"""Normal: log-density vs SciPy, sampler moments and KS, entropy, KL vs quadrature, gradients, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate
from scipy import stats as sps

from jaxvae.distributions.normal import (
    Normal,
    kl_normal_normal,
    kl_normal_std,
    normal_log_prob,
    normal_log_prob_logvar,
)
from tests import stats

LOC = np.array([0.0, -1.5, 3.0, 0.2])
SCALE = np.array([1.0, 0.3, 2.5, 1e-2])


def _normal(loc=LOC, scale=SCALE, dtype=jnp.float32):
    return Normal(jnp.asarray(loc, dtype), jnp.asarray(scale, dtype))


def test_log_prob_matches_scipy(variant):
    x = LOC + np.array([0.5, -0.1, 4.0, 0.03])
    got = variant(lambda d, x: d.log_prob(x))(_normal(), jnp.asarray(x, jnp.float32))
    want = sps.norm.logpdf(x, LOC, SCALE)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    log_var = 2 * np.log(SCALE)
    np.testing.assert_allclose(normal_log_prob_logvar(x, LOC, log_var), want, rtol=1e-5)
    np.testing.assert_allclose(normal_log_prob(x, LOC, SCALE), want, rtol=1e-5)


def test_density_integrates_to_one():
    with jax.enable_x64(True):
        for loc, scale in zip(LOC, SCALE):
            log_p = jax.jit(Normal(jnp.float64(loc), jnp.float64(scale)).log_prob)
            total = integrate.quad(lambda x: float(np.exp(log_p(x))), -np.inf, np.inf, points=None)[0]
            np.testing.assert_allclose(total, 1.0, rtol=1e-9)


@pytest.mark.statistical
def test_sampler_moments_and_ks(variant):
    n = 20_000
    d = _normal()
    x = np.asarray(variant(lambda k: d.sample(k, n))(jax.random.key(21)), np.float64)
    assert x.shape == (n, 4)
    stats.assert_mean_matches(x, LOC, SCALE**2, what="Normal mean")
    stats.assert_var_matches(x, SCALE**2, what="Normal variance")
    for j in range(4):
        stats.ks_test(x[:, j], sps.norm(LOC[j], SCALE[j]).cdf, what=f"Normal column {j}")


def test_closed_form_moments_and_entropy():
    d = _normal()
    chex.assert_trees_all_close(
        (d.mean(), d.variance(), d.entropy()),
        (LOC, SCALE**2, sps.norm.entropy(LOC, SCALE)),
        rtol=1e-5,
    )


@pytest.mark.parametrize("q, p", [((0.0, 1.0), (0.0, 1.0)), ((0.3, 0.5), (-1.0, 2.0)), ((2.0, 3.0), (1.5, 0.4))])
def test_kl_matches_quadrature(q, p):
    integrand = lambda x: sps.norm.pdf(x, *q) * (sps.norm.logpdf(x, *q) - sps.norm.logpdf(x, *p))  # noqa: E731
    want = integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    with jax.enable_x64(True):
        got = kl_normal_normal(Normal(*map(jnp.float64, q)), Normal(*map(jnp.float64, p)))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    got32 = kl_normal_normal(Normal(*map(jnp.float32, q)), Normal(*map(jnp.float32, p)))
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-7)


def test_kl_self_zero_and_std_form():
    q = _normal()
    np.testing.assert_array_equal(kl_normal_normal(q, q), 0.0)
    log_var = jnp.asarray(2 * np.log(SCALE), jnp.float32)
    np.testing.assert_allclose(
        kl_normal_std(jnp.asarray(LOC, jnp.float32), log_var),
        kl_normal_normal(q, Normal(jnp.zeros(4), jnp.ones(4))),
        rtol=1e-5,
        atol=1e-6,
    )


def test_kl_large_sample_mc_value_and_gradient():
    """MC log q(z) - log p(z) with reparameterised z: value and pathwise gradient vs closed form (z = 5 se)."""
    n = 50_000
    q_par = jnp.array([0.3, 0.5])
    p = Normal(jnp.float32(-1.0), jnp.float32(2.0))

    def per_sample(qp, key):
        q = Normal(qp[0], qp[1])
        z = q.sample(key)
        return q.log_prob(z) - p.log_prob(z)

    keys = jax.random.split(jax.random.key(22), n)
    vals, grads = jax.jit(jax.vmap(jax.value_and_grad(per_sample), in_axes=(None, 0)))(q_par, keys)
    exact = lambda qp: kl_normal_normal(Normal(qp[0], qp[1]), p)  # noqa: E731
    vals, grads = np.asarray(vals, np.float64), np.asarray(grads, np.float64)
    stats.assert_close_clt(vals.mean(), exact(q_par), vals.std(ddof=1) / np.sqrt(n), what="MC KL")
    stats.assert_close_clt(grads.mean(0), jax.grad(exact)(q_par), grads.std(0, ddof=1) / np.sqrt(n), what="MC KL grad")


def test_check_grads_x64():
    with jax.enable_x64(True):
        loc, scale = jnp.asarray(LOC), jnp.asarray(SCALE + 0.5)
        x = jnp.asarray(LOC + 0.3)

        def f(loc, scale, lp, sp):
            q = Normal(loc, scale)
            return (
                q.log_prob(x),
                normal_log_prob_logvar(x, loc, 2 * jnp.log(scale)),
                q.entropy(),
                kl_normal_normal(q, Normal(lp, sp)),
                kl_normal_std(loc, jnp.log(scale)),
            )

        # Second order in reverse mode, first order forward: the order-2 fwd check only re-compiles
        # the same derivatives and doubles the cost.
        jf, jargs = jax.jit(f), (loc, scale, loc[::-1], scale[::-1])
        check_grads(jf, jargs, order=1, modes=("fwd",))
        check_grads(jf, jargs, order=2, modes=("rev",))


def test_small_scale_finite_values_and_grads(key):
    def total(loc, scale):
        q = Normal(loc, scale)
        z = q.sample(key)
        return jnp.sum(q.log_prob(z) + q.entropy() + kl_normal_normal(q, Normal(0.0 * loc, 1.0 + 0.0 * scale)))

    loc, scale = jnp.array([0.0, 3.0, -50.0]), jnp.array([1e-6, 1e-6, 1e-6])
    chex.assert_tree_all_finite((total(loc, scale), jax.grad(total, argnums=(0, 1))(loc, scale)))


def test_log_prob_of_sample_batch_broadcasts(key):
    """log_prob of [N, B] samples against [B] parameters (the usual Monte Carlo call)."""
    d = _normal()
    z = d.sample(key, 5)
    chex.assert_shape(d.log_prob(z), (5, 4))


def test_jit_and_vmap_agree_with_eager(key):
    d = _normal()
    x = jnp.asarray(LOC + 0.1, jnp.float32)
    eager = (d.sample(key), d.log_prob(x), kl_normal_normal(d, _normal(LOC[::-1], SCALE[::-1])))
    jitted = jax.jit(lambda d, k: (d.sample(k), d.log_prob(x), kl_normal_normal(d, _normal(LOC[::-1], SCALE[::-1]))))(
        d, key
    )
    chex.assert_trees_all_close(eager, jitted, rtol=1e-6)
    vm = jax.vmap(lambda m, s, x: Normal(m, s).log_prob(x))(d.loc, d.scale, x)
    np.testing.assert_allclose(vm, eager[1], rtol=1e-6)


@pytest.mark.parametrize(
    "loc_shape, scale_shape, sample_shape",
    [((), (), ()), ((3,), (), 4), ((2, 1), (3,), (4, 5))],
    ids=["scalar", "batch3-n4", "broadcast-2x3"],
)
def test_shapes(loc_shape, scale_shape, sample_shape, key):
    d = Normal(jnp.zeros(loc_shape), jnp.ones(scale_shape))
    batch = tuple(np.broadcast_shapes(loc_shape, scale_shape))
    s = (sample_shape if isinstance(sample_shape, tuple) else (sample_shape,)) + batch
    chex.assert_shape(d.sample(key, sample_shape), s)
    for f in (d.mean, d.variance, d.entropy):
        chex.assert_shape(f(), batch)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="`scale`"):
        Normal(jnp.zeros(2), jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="`scale`"):
        Normal(0.0, 0.0)
    with pytest.raises(ValueError, match="`scale`"):
        Normal(0.0, jnp.nan)
    with pytest.raises(ValueError, match="`loc`"):
        Normal(jnp.array([jnp.inf]), 1.0)
    with pytest.raises(ValueError, match="`loc`.*`scale`"):
        Normal(jnp.zeros(2), jnp.ones(3))
    with pytest.raises(ValueError, match="sample_shape"):
        Normal(0.0, 1.0).sample(jax.random.key(0), (-2,))

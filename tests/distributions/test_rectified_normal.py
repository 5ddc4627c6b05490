"""Rectified Normal: mixed-measure density vs SciPy, normalisation, spike mass, KS of the slab,
moments/entropy/KL vs quadrature, MC KL value and gradient, extremes, gradients, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate
from scipy import stats as sps

from jaxvae.distributions.normal import Normal, kl_normal_normal
from jaxvae.distributions.rectified_normal import (
    RectifiedNormal,
    kl_rectified_mc,
    kl_rectified_rectified,
)
from tests import stats

PARAMS = [(0.3, 1.0), (-1.2, 0.5), (2.5, 0.8), (-0.1, 2.0), (4.0, 0.3)]
KL_PAIRS = [
    ((0.3, 1.0), (-0.5, 1.5)),
    ((-1.0, 0.5), (2.0, 0.7)),
    ((-3.0, 2.0), (1.0, 0.3)),
    ((1.5, 0.4), (1.2, 0.5)),
    ((-6.0, 1.0), (5.0, 1.0)),
]


def _rn(loc, scale, dtype=jnp.float32):
    return RectifiedNormal(jnp.asarray(loc, dtype), jnp.asarray(scale, dtype))


def _quad(f):
    return integrate.quad(f, 0.0, np.inf, epsabs=1e-13, epsrel=1e-12, limit=200)[0]


def _kl_quad(mq, sq, mp, sp):
    """Spike term in closed form (SciPy logcdf) + slab term by quadrature, in float64."""
    a, b = mq / sq, mp / sp
    spike = sps.norm.cdf(-a) * (sps.norm.logcdf(-a) - sps.norm.logcdf(-b))
    slab = _quad(lambda z: sps.norm.pdf(z, mq, sq) * (sps.norm.logpdf(z, mq, sq) - sps.norm.logpdf(z, mp, sp)))
    return spike + slab


def test_log_prob_matches_scipy(variant):
    loc = np.array([p[0] for p in PARAMS])
    scale = np.array([p[1] for p in PARAMS])
    z = np.array([[0.0] * 5, [0.4, 1e-3, 3.0, 2.2, 4.5]])  # spike, slab
    got = np.asarray(variant(lambda d, z: d.log_prob(z))(_rn(loc, scale), z))
    np.testing.assert_allclose(got[0], sps.norm.logcdf(-loc / scale), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[1], sps.norm.logpdf(z[1], loc, scale), rtol=1e-6)


def test_log_prob_outside_the_support_is_minus_inf_under_jit_and_refused_eagerly():
    """Traced values cannot be checked, so the compiled density is -inf below 0; eager calls raise."""
    d = _rn(np.array([0.3, -1.2]), np.array([1.0, 0.5]))
    z = jnp.array([-0.2, -3.0])
    assert np.all(np.asarray(jax.jit(lambda z: d.log_prob(z))(z)) == -np.inf)
    with pytest.raises(ValueError, match="`z` must be >= 0"):
        d.log_prob(z)


@pytest.mark.parametrize("loc, scale", PARAMS)
def test_mixed_measure_integrates_to_one(loc, scale):
    with jax.enable_x64(True):
        d = RectifiedNormal(jnp.float64(loc), jnp.float64(scale))
        log_p = jax.jit(d.log_prob)
        slab = _quad(lambda z: float(np.exp(log_p(z))))
        np.testing.assert_allclose(float(np.exp(log_p(0.0))) + slab, 1.0, rtol=1e-10)
        np.testing.assert_allclose(d.prob_zero(), sps.norm.cdf(-loc / scale), rtol=1e-12)


@pytest.mark.parametrize("loc, scale", PARAMS)
def test_moments_and_entropy_match_quadrature(loc, scale):
    """Closed forms vs float64 quadrature of the slab (spike contributes 0 to moments, -P0 log P0 to H)."""
    pdf = lambda z: sps.norm.pdf(z, loc, scale)  # noqa: E731
    mean = _quad(lambda z: z * pdf(z))
    var = _quad(lambda z: z * z * pdf(z)) - mean**2
    p0 = sps.norm.cdf(-loc / scale)
    entropy = -p0 * np.log(p0) - _quad(lambda z: pdf(z) * sps.norm.logpdf(z, loc, scale))
    with jax.enable_x64(True):
        d = RectifiedNormal(jnp.float64(loc), jnp.float64(scale))
        np.testing.assert_allclose(d.mean(), mean, rtol=1e-10)
        np.testing.assert_allclose(d.variance(), var, rtol=1e-9)
        np.testing.assert_allclose(d.entropy(), entropy, rtol=1e-9, atol=1e-12)
    d32 = _rn(loc, scale)
    np.testing.assert_allclose(d32.mean(), mean, rtol=1e-5)
    np.testing.assert_allclose(d32.variance(), var, rtol=1e-4)


@pytest.mark.statistical
def test_sampler_moments_spike_mass_and_slab_ks(variant):
    n = 50_000
    loc = np.array([0.3, -1.2, 2.5])
    scale = np.array([1.0, 0.5, 0.8])
    d = _rn(loc, scale)
    z = np.asarray(variant(lambda k: d.sample(k, n))(jax.random.key(7)), np.float64)
    assert z.shape == (n, 3) and np.all(z >= 0)
    with jax.enable_x64(True):
        d64 = RectifiedNormal(jnp.asarray(loc), jnp.asarray(scale))
        mean, var, p0 = (np.asarray(f()) for f in (d64.mean, d64.variance, d64.prob_zero))
    stats.assert_mean_matches(z, mean, var, what="rectified mean")
    stats.assert_var_matches(z, var, what="rectified variance")
    frac0 = (z == 0).mean(0)
    stats.assert_close_clt(frac0, p0, np.sqrt(p0 * (1 - p0) / n), what="mass at 0")
    for j in range(3):
        pos = z[z[:, j] > 0, j]
        slab = sps.truncnorm(-loc[j] / scale[j], np.inf, loc=loc[j], scale=scale[j])
        stats.ks_test(pos, slab.cdf, what=f"slab {j} vs truncnorm")


@pytest.mark.parametrize("q, p", KL_PAIRS)
def test_kl_matches_quadrature_value_and_gradient(q, p):
    with jax.enable_x64(True):
        kl = lambda *a: kl_rectified_rectified(RectifiedNormal(a[0], a[1]), RectifiedNormal(a[2], a[3]))  # noqa: E731
        args = tuple(np.float64(v) for v in (*q, *p))
        np.testing.assert_allclose(kl(*args), _kl_quad(*args), rtol=1e-9, atol=1e-12)
        grad = np.asarray(jax.grad(kl, argnums=(0, 1, 2, 3))(*args))
    h = 1e-5
    fd = []
    for i in range(4):
        up, dn = list(args), list(args)
        up[i] += h
        dn[i] -= h
        fd.append((_kl_quad(*up) - _kl_quad(*dn)) / (2 * h))
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    # float32 agrees too.
    np.testing.assert_allclose(kl_rectified_rectified(_rn(*q), _rn(*p)), _kl_quad(*args), rtol=2e-5, atol=1e-6)


def test_kl_self_is_zero_and_nonnegative():
    loc = jnp.linspace(-30.0, 30.0, 13)
    for scale in (1.0, 1e-3, 5.0):
        q = _rn(loc, jnp.full_like(loc, scale))
        np.testing.assert_array_equal(kl_rectified_rectified(q, q), 0.0)
    rng = np.random.default_rng(0)
    q = _rn(rng.normal(size=50) * 3, np.exp(rng.normal(size=50)))
    p = _rn(rng.normal(size=50) * 3, np.exp(rng.normal(size=50)))
    assert np.all(np.asarray(kl_rectified_rectified(q, p)) >= -1e-6)


def test_kl_tends_to_gaussian_kl_for_large_loc():
    """With both units far in the slab (a, b >= 12; Phi(-12) ~ 2e-33), the rectification is invisible."""
    with jax.enable_x64(True):
        lq, sq = jnp.array([12.0, 30.0, 60.0]), jnp.array([1.0, 1.5, 2.0])
        lp, sp = jnp.array([13.0, 28.0, 66.0]), jnp.array([0.8, 2.0, 2.5])
        got = kl_rectified_rectified(RectifiedNormal(lq, sq), RectifiedNormal(lp, sp))
        want = kl_normal_normal(Normal(lq, sq), Normal(lp, sp))
        np.testing.assert_allclose(got, want, rtol=1e-12)
        # ... and the gap shrinks monotonically as loc_q grows.
        gaps = [
            abs(
                float(
                    kl_rectified_rectified(RectifiedNormal(m, 1.0), RectifiedNormal(m - 0.5, 1.2))
                    - kl_normal_normal(Normal(m, 1.0), Normal(m - 0.5, 1.2))
                )
            )
            for m in (0.0, 1.0, 2.0, 3.0, 4.0)
        ]
        assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:])), gaps


@pytest.mark.statistical
def test_kl_mc_unbiased_value_and_gradient():
    """R independent MC estimates (value and grad wrt q's and p's parameters) vs the closed form, z = 5 se.

    The first three KL_PAIRS run as one batch (the distributions are elementwise, so the gradient
    of the batch sum holds each pair's own gradient) in a single compiled program.
    """
    reps, n = 200, 500
    keys = jax.random.split(jax.random.key(11), reps)
    params = jnp.array([[*q, *p] for q, p in KL_PAIRS[:3]]).T  # [4, 3]: loc_q, scale_q, loc_p, scale_p

    def mc(prm, key):
        qd, pd = RectifiedNormal(prm[0], prm[1]), RectifiedNormal(prm[2], prm[3])
        kl = kl_rectified_mc(key, qd, pd, n)
        return jnp.sum(kl), kl

    def exact(prm):
        return jnp.sum(kl_rectified_rectified(RectifiedNormal(prm[0], prm[1]), RectifiedNormal(prm[2], prm[3])))

    grad_fn = jax.vmap(jax.grad(mc, has_aux=True), in_axes=(None, 0))
    grads, vals = jax.jit(grad_fn)(params, keys)  # [R, 4, 3], [R, 3]
    vals, grads = np.asarray(vals, np.float64), np.asarray(grads, np.float64)
    exact_vals = kl_rectified_rectified(RectifiedNormal(params[0], params[1]), RectifiedNormal(params[2], params[3]))
    stats.assert_close_clt(vals.mean(0), exact_vals, vals.std(0, ddof=1) / np.sqrt(reps), what="MC KL value")
    stats.assert_close_clt(
        grads.mean(0), jax.grad(exact)(params), grads.std(0, ddof=1) / np.sqrt(reps), what="MC KL gradient"
    )


@pytest.mark.statistical
def test_kl_mc_gradient_without_boundary_term_is_biased():
    """The plain pathwise gradient misses the jump of log q - log p at 0 (why the correction exists)."""
    reps, n = 100, 500
    keys = jax.random.split(jax.random.key(12), reps)
    p = RectifiedNormal(-0.5, 1.5)

    def mc(loc, key):
        return kl_rectified_mc(key, RectifiedNormal(loc, 1.0), p, n, boundary_correction=False)

    g = np.asarray(jax.jit(jax.vmap(jax.grad(mc), in_axes=(None, 0)))(0.3, keys), np.float64)
    exact = float(jax.grad(lambda m: kl_rectified_rectified(RectifiedNormal(m, 1.0), p))(0.3))
    assert abs(g.mean() - exact) > 5 * g.std(ddof=1) / np.sqrt(reps)


@pytest.mark.parametrize("scale", [1.0, 1e-3], ids=["scale1", "scale1e-3"])
def test_extremes_finite_values_and_grads(scale, key):
    """loc/scale in [-30, 30]: units deep in the spike or far in the slab; a sample exactly at 0."""
    ratio = jnp.linspace(-30.0, 30.0, 25)
    loc = ratio * scale
    sc = jnp.full_like(loc, scale)
    p = RectifiedNormal(-loc[::-1], sc * 2.0)

    def total(loc, sc):
        d = RectifiedNormal(loc, sc)
        z = d.sample(key, 4)
        return (
            jnp.sum(d.log_prob(z))
            + jnp.sum(d.log_prob(0.0))
            + jnp.sum(d.prob_zero() + d.mean() + d.variance() + d.entropy())
            + jnp.sum(kl_rectified_rectified(d, p) + kl_rectified_rectified(p, d))
            + jnp.sum(kl_rectified_mc(key, d, p, 4) + kl_rectified_mc(key, p, d, 4))
        )

    d = RectifiedNormal(loc, sc)
    assert np.any(np.asarray(d.sample(key, 4)) == 0.0)
    chex.assert_tree_all_finite(jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(loc, sc))
    assert np.all(np.asarray(d.variance()) >= 0)


def test_check_grads_x64():
    with jax.enable_x64(True):
        loc = jnp.array([0.3, -1.2, 2.5, -4.0])
        scale = jnp.array([1.0, 0.5, 0.8, 1.3])
        z = jnp.array([0.0, 0.7, 2.0, 0.0])

        def f(loc, scale, lp, sp):
            d = RectifiedNormal(loc, scale)
            return (
                d.log_prob(z),
                d.mean(),
                d.variance(),
                d.entropy(),
                kl_rectified_rectified(d, RectifiedNormal(lp, sp)),
            )

        args = (loc, scale, loc[::-1] * 0.5, scale[::-1] * 1.4)
        # Second order in reverse mode, first order forward: the order-2 fwd check only re-compiles
        # the same derivatives and doubles the cost.
        jf, jargs = jax.jit(f), args
        check_grads(jf, jargs, order=1, modes=("fwd",))
        check_grads(jf, jargs, order=2, modes=("rev",))


def test_jit_and_vmap_agree_with_eager(key):
    d = _rn([0.3, -1.2, 2.5], [1.0, 0.5, 0.8])
    p = _rn([0.0, 0.5, 1.0], [1.5, 1.0, 0.4])
    eager = (d.sample(key, 3), d.entropy(), d.variance(), kl_rectified_rectified(d, p), kl_rectified_mc(key, d, p, 8))
    jitted = jax.jit(
        lambda d, p, k: (
            d.sample(k, 3),
            d.entropy(),
            d.variance(),
            kl_rectified_rectified(d, p),
            kl_rectified_mc(k, d, p, 8),
        )
    )(d, p, key)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-7)
    z = eager[0]
    vm = jax.vmap(lambda loc, sc, z: RectifiedNormal(loc, sc).log_prob(z), in_axes=(0, 0, 1), out_axes=1)(
        d.loc, d.scale, z
    )
    np.testing.assert_allclose(vm, d.log_prob(z), rtol=1e-6)


@pytest.mark.parametrize(
    "loc_shape, scale_shape, sample_shape",
    [((), (), ()), ((3,), (), 4), ((2, 1), (3,), (4, 5))],
    ids=["scalar", "batch3-n4", "broadcast-2x3"],
)
def test_shapes(loc_shape, scale_shape, sample_shape, key):
    d = RectifiedNormal(jnp.zeros(loc_shape), jnp.ones(scale_shape))
    batch = np.broadcast_shapes(loc_shape, scale_shape)
    s = (sample_shape if isinstance(sample_shape, tuple) else (sample_shape,)) + batch

    def outputs():
        z = d.sample(key, sample_shape)
        per_batch = [f() for f in (d.mean, d.variance, d.entropy, d.prob_zero, d.log_prob_zero)]
        return z, d.log_prob(z), per_batch + [kl_rectified_mc(key, d, RectifiedNormal(0.0, 1.0), 3)]

    z, lp, per_batch = jax.eval_shape(outputs)  # shapes without compiling anything
    chex.assert_shape([z, lp], s)
    chex.assert_shape(per_batch, batch)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="`scale`"):
        RectifiedNormal(jnp.zeros(2), jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="`scale`"):
        RectifiedNormal(0.0, 0.0)
    with pytest.raises(ValueError, match="`loc`"):
        RectifiedNormal(jnp.array([jnp.nan]), 1.0)
    with pytest.raises(ValueError, match="`scale`"):
        RectifiedNormal(0.0, jnp.inf)
    with pytest.raises(ValueError, match="`loc`.*`scale`"):
        RectifiedNormal(jnp.zeros(2), jnp.ones(3))
    d = _rn([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="`z`"):
        d.log_prob(jnp.zeros(3))
    with pytest.raises(ValueError, match="`q`.*`p`"):
        kl_rectified_rectified(d, _rn(jnp.zeros(3), 1.0))
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="`num_samples`"):
            kl_rectified_mc(jax.random.key(0), d, d, bad)

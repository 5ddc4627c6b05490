"""MixtureNormal: density vs a float64 oracle, normalisation, sampler laws, moments, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate
from scipy import stats as sps

from jaxvae.distributions.mixture import MixtureNormal
from tests import stats


def _params(key, batch=(), c=3, d=2, dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(key, 3)
    logits = jax.random.normal(k1, batch + (c,), dtype)
    loc = 2.0 * jax.random.normal(k2, batch + (c, d), dtype)
    scale = jnp.exp(0.5 * jax.random.normal(k3, batch + (c, d), dtype))
    return logits, loc, scale


def _np_log_prob(x, logits, loc, scale):
    """float64 transcription: log sum_c softmax(logits)_c prod_d N(x_d; loc_cd, scale_cd)."""
    x, logits, loc, scale = (np.asarray(a, np.float64) for a in (x, logits, loc, scale))
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    comp = sps.norm.pdf(x[..., None, :], loc, scale).prod(-1)
    return np.log((w * comp).sum(-1))


@pytest.mark.parametrize(
    "batch, sample_shape", [((), (2, 3)), ((4,), ()), ((2, 3), (3,))], ids=["scalar-s2x3", "b4-s0", "b2x3-s3"]
)
def test_shapes(key, batch, sample_shape):
    q = MixtureNormal(*_params(key, batch))

    def shapes(q, key):
        x = q.sample(key, sample_shape)
        return (
            x,
            q.log_prob(x),
            q.mean(),
            q.variance(),
            q.weights(),
            q.sample_per_component(key, 5),
            q.expectation(key, q.log_prob, 5),
        )

    got = [a.shape for a in jax.eval_shape(shapes, q, key)]
    assert got == [
        sample_shape + batch + (2,),
        sample_shape + batch,
        batch + (2,),
        batch + (2,),
        batch + (3,),
        (5, 3) + batch + (2,),
        batch,
    ]


def test_broadcast_parameters(key):
    logits, loc, scale = _params(key, (4,))
    q = MixtureNormal(logits, loc[0], scale[0])  # loc/scale shared over the batch
    assert q.batch_shape == (4,)
    x = jnp.ones((4, 2))
    full = MixtureNormal(logits, jnp.broadcast_to(loc[0], (4, 3, 2)), jnp.broadcast_to(scale[0], (4, 3, 2)))
    np.testing.assert_allclose(q.log_prob(x), full.log_prob(x), rtol=1e-6)


def test_log_prob_matches_float64_oracle(key):
    logits, loc, scale = _params(key, (5,))
    x = 2.0 * jax.random.normal(jax.random.key(7), (5, 2))
    q = MixtureNormal(logits, loc, scale)
    np.testing.assert_allclose(q.log_prob(x), _np_log_prob(x, logits, loc, scale), rtol=1e-5, atol=1e-5)


def test_log_prob_far_tail_is_finite():
    q = MixtureNormal(jnp.array([0.0, 1.0]), jnp.array([[0.0], [1.0]]), jnp.array([[1e-3], [1e-3]]))
    lp = q.log_prob(jnp.array([[50.0], [0.5]]))
    assert np.all(np.isfinite(lp))
    g = jax.grad(lambda loc: MixtureNormal(q.logits, loc, q.scale).log_prob(jnp.array([0.5])))(q.loc)
    assert np.all(np.isfinite(g))


def test_one_component_is_the_gaussian(key):
    _, loc, scale = _params(key, (), c=1, d=3)
    x = jax.random.normal(key, (6, 3))
    q = MixtureNormal(jnp.zeros((1,)), loc, scale)
    expected = sps.norm.logpdf(np.asarray(x), np.asarray(loc[0]), np.asarray(scale[0])).sum(-1)
    np.testing.assert_allclose(q.log_prob(x), expected, rtol=1e-5, atol=1e-5)


def test_log_prob_integrates_to_one_1d():
    logits = np.array([0.2, -0.5, 1.0])
    loc = np.array([[-2.0], [0.5], [3.0]])
    scale = np.array([[0.3], [1.5], [0.7]])
    q = MixtureNormal(jnp.asarray(logits), jnp.asarray(loc), jnp.asarray(scale))
    with jax.enable_x64():
        q64 = MixtureNormal(jnp.asarray(logits), jnp.asarray(loc), jnp.asarray(scale))
        f = jax.jit(lambda t: jnp.exp(q64.log_prob(jnp.reshape(t, (1,)))))
        total, err = integrate.quad(lambda t: float(f(t)), -30, 30, limit=200, points=[-2.0, 0.5, 3.0])
    assert abs(total - 1.0) < 1e-6 + err
    assert q.log_prob(jnp.zeros((1,))).dtype == jnp.float32


@pytest.mark.statistical
def test_component_frequencies_and_conditional_laws(key):
    logits, loc, scale = _params(jax.random.key(3), (), c=4, d=2)
    q = MixtureNormal(logits, loc, scale)
    n = 20_000
    x, c = jax.jit(q.sample_and_component, static_argnums=1)(key, (n,))
    x, c = np.asarray(x, np.float64), np.asarray(c)
    w = np.asarray(q.weights(), np.float64)
    stats.chi2_test(np.bincount(c, minlength=4), w, what="component frequencies")
    for j in range(4):
        for d in range(2):
            xs = x[c == j, d]
            stats.ks_test(xs, sps.norm(float(loc[j, d]), float(scale[j, d])).cdf, what=f"component {j} dim {d}")


@pytest.mark.statistical
def test_sample_moments(key):
    q = MixtureNormal(*_params(jax.random.key(4), (), c=3, d=2))
    x = np.asarray(q.sample(key, (50_000,)), np.float64)
    stats.assert_mean_matches(x, q.mean(), q.variance(), what="mixture mean")
    stats.assert_var_matches(x, q.variance(), what="mixture variance")


def test_moments_against_numpy(key):
    logits, loc, scale = (np.asarray(a, np.float64) for a in _params(key, (3,)))
    q = MixtureNormal(*_params(key, (3,)))
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    m = (w[..., None] * loc).sum(-2)
    second = (w[..., None] * (scale**2 + loc**2)).sum(-2)
    np.testing.assert_allclose(q.mean(), m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.variance(), second - m**2, rtol=1e-4, atol=1e-5)


@pytest.mark.statistical
def test_expectation_unbiased_value_and_logit_gradient():
    """E_q[|x|^2] = sum_c pi_c (|mu_c|^2 + |sigma_c|^2); value and d/dlogits within the CLT band over repeats."""
    logits, loc, scale = _params(jax.random.key(5), (), c=3, d=2)

    def closed(lg):
        w = jax.nn.softmax(lg)
        return jnp.sum(w * jnp.sum(loc**2 + scale**2, -1))

    def est(lg, k):
        q = MixtureNormal(lg, loc, scale)
        return q.expectation(k, lambda x: jnp.sum(x**2, -1), 4)

    keys = jax.random.split(jax.random.key(6), 2000)
    vals, grads = jax.vmap(jax.value_and_grad(est), in_axes=(None, 0))(logits, keys)
    vals, grads = np.asarray(vals, np.float64), np.asarray(grads, np.float64)
    stats.assert_mean_matches(vals, closed(logits), what="expectation value")
    stats.assert_mean_matches(grads, jax.grad(closed)(logits), what="d expectation / d logits")
    assert np.all(np.abs(grads.std(0)) > 0)  # the gradient does reach the weights


@pytest.mark.parametrize("method", ["log_prob", "mean", "variance"])
def test_check_grads_x64(method):
    with jax.enable_x64():
        logits, loc, scale = _params(jax.random.key(8), (2,), dtype=jnp.float64)
        x = jnp.array([[0.3, -0.4], [1.0, 2.0]])

        def f(lg, mu, log_s):
            q = MixtureNormal(lg, mu, jnp.exp(log_s))
            return q.log_prob(x) if method == "log_prob" else getattr(q, method)()

        # order 2 in reverse mode, order 1 forward (an order-2 fwd check re-compiles the same derivatives)
        check_grads(jax.jit(f), (logits, loc, jnp.log(scale)), order=1, modes=("fwd",))
        check_grads(jax.jit(f), (logits, loc, jnp.log(scale)), order=2, modes=("rev",))


def test_jit_equals_nojit(key, variant):
    q = MixtureNormal(*_params(key, (4,)))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    np.testing.assert_allclose(variant(lambda q, x: q.log_prob(x))(q, x), q.log_prob(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(variant(lambda q, k: q.sample(k, (3,)))(q, key), q.sample(key, (3,)), rtol=1e-6)


def test_vmap_equals_loop(key):
    logits, loc, scale = _params(key, (5,))
    x = jax.random.normal(jax.random.key(1), (5, 2))
    out = jax.vmap(lambda a, b, c, x: MixtureNormal(a, b, c).log_prob(x))(logits, loc, scale, x)
    loop = np.stack([MixtureNormal(logits[i], loc[i], scale[i]).log_prob(x[i]) for i in range(5)])
    np.testing.assert_allclose(out, loop, rtol=1e-6)


def test_sample_pathwise_gradient_finite(key):
    logits, loc, scale = _params(key)
    g = jax.grad(lambda mu, s: jnp.sum(MixtureNormal(logits, mu, s).sample(key, (8,)) ** 2), argnums=(0, 1))(loc, scale)
    assert all(np.all(np.isfinite(a)) for a in g)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(scale=-1.0), "scale"),
        (dict(scale=0.0), "scale"),
        (dict(loc=np.nan), "loc"),
        (dict(logits=np.inf), "logits"),
    ],
    ids=["neg-scale", "zero-scale", "nan-loc", "inf-logits"],
)
def test_bad_values_raise(kwargs, name):
    logits, loc, scale = (np.array(a) for a in _params(jax.random.key(0)))
    args = dict(logits=logits, loc=loc, scale=scale)
    args[name] = args[name].copy()
    args[name].flat[0] = kwargs[name]
    with pytest.raises(ValueError, match=f"`{name}`"):
        MixtureNormal(**args)


def test_bad_shapes_raise(key):
    logits, loc, scale = _params(key, c=3, d=2)
    with pytest.raises(ValueError, match="`loc`.*C = 4"):
        MixtureNormal(jnp.zeros(4), loc, scale)
    with pytest.raises(ValueError, match="`loc`"):
        MixtureNormal(logits, loc[0], scale)
    with pytest.raises(ValueError, match="event size"):
        MixtureNormal(logits, loc, scale[..., :1])
    with pytest.raises(ValueError, match="do not broadcast"):
        MixtureNormal(jnp.zeros((2, 3)), jnp.zeros((4, 3, 2)), jnp.ones((4, 3, 2)))
    with pytest.raises(ValueError, match="`x`"):
        MixtureNormal(logits, loc, scale).log_prob(jnp.zeros(3))

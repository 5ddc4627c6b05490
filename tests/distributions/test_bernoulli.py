"""Bernoulli: log-mass vs SciPy, sampler frequencies, closed forms, extremes, gradients, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special as sps_special
from scipy import stats as sps

from jaxvae.distributions.bernoulli import Bernoulli, bernoulli_log_prob, kl_bernoulli_bernoulli
from tests import stats

LOGITS = np.array([-4.0, -1.3, -0.2, 0.0, 0.7, 2.5, 6.0])


def _np_log_prob(x, logits):
    """float64 reference: log p(1) = -log1p(exp(-l)), log p(0) = -log1p(exp(l)) (logaddexp form)."""
    x = np.asarray(x, np.float64)
    logits = np.asarray(logits, np.float64)
    return -x * np.logaddexp(0.0, -logits) - (1.0 - x) * np.logaddexp(0.0, logits)


@pytest.mark.parametrize("x", [0.0, 1.0])
def test_log_prob_matches_scipy(x, variant):
    got = variant(lambda lg: Bernoulli(lg).log_prob(x))(jnp.asarray(LOGITS, jnp.float32))
    want = sps.bernoulli.logpmf(int(x), sps_special.expit(LOGITS))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


def test_log_prob_extreme_logits_match_float64_formula():
    logits = np.array([-50.0, -30.0, 30.0, 50.0], np.float32)
    for x in (0.0, 1.0, 0.3):
        got = np.asarray(bernoulli_log_prob(x, logits))
        want = _np_log_prob(x, logits)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-30)


def test_moments_and_entropy_match_scipy():
    d = Bernoulli(jnp.asarray(LOGITS, jnp.float32))
    p = sps_special.expit(LOGITS)
    np.testing.assert_allclose(d.probs, p, rtol=1e-6)
    np.testing.assert_allclose(d.mean(), sps.bernoulli.mean(p), rtol=1e-6)
    np.testing.assert_allclose(d.variance(), sps.bernoulli.var(p), rtol=1e-5)
    np.testing.assert_allclose(d.entropy(), sps.bernoulli.entropy(p), rtol=1e-5, atol=1e-7)


def test_log_prob_sums_to_one():
    d = Bernoulli(jnp.asarray(LOGITS, jnp.float32))
    total = jnp.exp(d.log_prob(0.0)) + jnp.exp(d.log_prob(1.0))
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)


@pytest.mark.statistical
def test_sample_frequencies(variant):
    n = 20_000
    d = Bernoulli(jnp.asarray(LOGITS, jnp.float32))
    x = np.asarray(variant(lambda k: d.sample(k, n))(jax.random.key(1)))
    assert x.shape == (n, LOGITS.size)
    assert set(np.unique(x)) <= {0.0, 1.0}
    p = sps_special.expit(LOGITS)
    stats.assert_close_clt(x.mean(0), p, np.sqrt(p * (1 - p) / n), what="Bernoulli frequency")


@pytest.mark.parametrize(
    "batch_shape, sample_shape",
    [((), ()), ((3,), ()), ((3,), 4), ((2, 3), (4, 5))],
    ids=["scalar", "batch3", "batch3-n4", "batch2x3-n4x5"],
)
def test_shapes(batch_shape, sample_shape, key):
    d = Bernoulli(jnp.zeros(batch_shape))
    expected = (sample_shape if isinstance(sample_shape, tuple) else (sample_shape,)) + batch_shape
    # eval_shape: shapes and dtypes without compiling anything.
    s, lp, *moments = jax.eval_shape(
        lambda: (
            d.sample(key, sample_shape),
            d.log_prob(d.sample(key, sample_shape)),
            d.mean(),
            d.variance(),
            d.entropy(),
        )
    )
    chex.assert_shape([s, lp], expected)
    chex.assert_shape(moments, batch_shape)
    assert s.dtype == jnp.float32


def test_kl_matches_direct_sum_and_zero_on_self():
    lq = jnp.asarray(LOGITS, jnp.float32)
    lp = jnp.asarray(LOGITS[::-1] * 0.7 + 0.1, jnp.float32)
    got = kl_bernoulli_bernoulli(Bernoulli(lq), Bernoulli(lp))
    q1, p1 = sps_special.expit(np.float64(lq)), sps_special.expit(np.float64(lp))
    want = q1 * np.log(q1 / p1) + (1 - q1) * np.log((1 - q1) / (1 - p1))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
    np.testing.assert_array_equal(kl_bernoulli_bernoulli(Bernoulli(lq), Bernoulli(lq)), 0.0)


def test_extremes_finite_values_and_grads():
    logits = jnp.array([-50.0, 50.0, -1e3, 1e3])

    def total(lg):
        d = Bernoulli(lg)
        return (
            jnp.sum(d.log_prob(0.0) + d.log_prob(1.0) + d.log_prob(0.5))
            + jnp.sum(d.entropy() + d.variance())
            + jnp.sum(kl_bernoulli_bernoulli(d, Bernoulli(-lg)))
        )

    chex.assert_tree_all_finite(total(logits))
    chex.assert_tree_all_finite(jax.grad(total)(logits))


def test_check_grads_x64():
    with jax.enable_x64(True):
        lg = jnp.array([-3.0, -0.4, 0.5, 2.0], jnp.float64)
        lp = jnp.array([0.3, 1.1, -2.0, 0.2], jnp.float64)
        x = jnp.array([0.0, 1.0, 1.0, 0.25], jnp.float64)

        def f(a, b):  # one check_grads call over every smooth output keeps compilations few
            q = Bernoulli(a)
            return bernoulli_log_prob(x, a), q.entropy(), kl_bernoulli_bernoulli(q, Bernoulli(b))

        # Second order in reverse mode, first order forward: the order-2 fwd check only re-compiles
        # the same derivatives and doubles the cost.
        jf, jargs = jax.jit(f), (lg, lp)
        check_grads(jf, jargs, order=1, modes=("fwd",))
        check_grads(jf, jargs, order=2, modes=("rev",))


def test_jit_and_vmap_agree_with_eager():
    lg = jnp.asarray(np.linspace(-3, 3, 12).reshape(4, 3), jnp.float32)
    x = (np.arange(12).reshape(4, 3) % 2).astype(np.float32)
    eager = Bernoulli(lg).log_prob(x)
    jitted = jax.jit(lambda d, x: d.log_prob(x))(Bernoulli(lg), x)
    vmapped = jax.vmap(lambda lg, x: Bernoulli(lg).log_prob(x))(lg, x)
    np.testing.assert_array_equal(eager, jitted)
    np.testing.assert_array_equal(eager, vmapped)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="`logits`"):
        Bernoulli(jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="`logits`"):
        Bernoulli(jnp.array([jnp.inf]))
    with pytest.raises(ValueError, match="`x`"):
        Bernoulli(jnp.zeros(3)).log_prob(jnp.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="`x`.*`logits`"):
        Bernoulli(jnp.zeros(3)).log_prob(jnp.zeros(4))
    with pytest.raises(ValueError, match="sample_shape"):
        Bernoulli(jnp.zeros(3)).sample(jax.random.key(0), (-1,))


def test_log_prob_gradient_is_x_minus_sigmoid_everywhere():
    # including the tie of max(l, 0) at l = 0 and saturated logits
    logits = jnp.asarray([-80.0, -30.0, -1.0, 0.0, 1e-6, 1.0, 30.0, 80.0], jnp.float32)
    for x in (0.0, 0.3, 1.0):
        g = jax.grad(lambda l: jnp.sum(bernoulli_log_prob(x, l)))(logits)
        np.testing.assert_allclose(g, x - jax.nn.sigmoid(logits), rtol=1e-6, atol=1e-7)

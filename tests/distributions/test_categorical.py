"""Categorical: log-mass vs SciPy, chi-square sampler test, entropy/KL vs SciPy, extremes, gradients, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special as sps_special
from scipy import stats as sps

from jaxvae.distributions.categorical import Categorical, kl_categorical_categorical
from tests import stats

LOGITS = np.array([[0.3, -1.2, 2.0, 0.0, -0.5], [-3.0, 1.0, 1.0, 0.2, 4.0]])  # [2, 5]


def test_log_prob_matches_scipy(variant):
    d = Categorical(jnp.asarray(LOGITS, jnp.float32))
    idx = np.array([[0, 1], [2, 4], [3, 3]])  # [3, 2] against batch (2,)
    got = variant(lambda d, i: d.log_prob(i))(d, idx)
    got_oh = variant(lambda d, x: d.log_prob_one_hot(x))(d, np.eye(5, dtype=np.float32)[idx])
    p = sps_special.softmax(LOGITS, axis=-1)
    want = np.array([[sps.multinomial(1, p[b]).logpmf(np.eye(5)[idx[n, b]]) for b in range(2)] for n in range(3)])
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(got_oh, want, rtol=2e-6, atol=1e-6)


def test_extreme_logits_finite_and_exact():
    logits = np.array([[50.0, -50.0, 0.0], [-50.0, -50.0, 50.0]], np.float32)
    d = Categorical(jnp.asarray(logits))
    want = sps_special.log_softmax(np.float64(logits), axis=-1)
    for c in range(3):
        got = d.log_prob(np.full((2,), c))
        np.testing.assert_allclose(got, want[:, c], rtol=1e-6)
    q = Categorical(-jnp.asarray(logits))

    def total(lg):
        d = Categorical(lg)
        return (
            jnp.sum(d.log_prob(jnp.array([1, 0])))
            + jnp.sum(d.entropy())
            + jnp.sum(kl_categorical_categorical(d, q) + kl_categorical_categorical(q, d))
        )

    chex.assert_tree_all_finite(total(jnp.asarray(logits)))
    chex.assert_tree_all_finite(jax.grad(total)(jnp.asarray(logits)))


def test_probabilities_sum_to_one():
    d = Categorical(jnp.asarray(LOGITS, jnp.float32))
    total = sum(jnp.exp(d.log_prob(np.full((2,), c))) for c in range(5))
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)


@pytest.mark.statistical
def test_sample_chi_square(variant):
    n = 20_000
    d = Categorical(jnp.asarray(LOGITS, jnp.float32))
    x = np.asarray(variant(lambda k: d.sample(k, n))(jax.random.key(2)))
    assert x.shape == (n, 2) and np.issubdtype(x.dtype, np.integer)
    p = sps_special.softmax(LOGITS, axis=-1)
    for b in range(2):
        stats.chi2_test(np.bincount(x[:, b], minlength=5), p[b], what=f"Categorical row {b}")


def test_sample_one_hot_matches_index_sample(key):
    d = Categorical(jnp.asarray(LOGITS, jnp.float32))
    idx = d.sample(key, 7)
    oh = d.sample_one_hot(key, 7)
    chex.assert_shape(oh, (7, 2, 5))
    assert oh.dtype == jnp.float32
    np.testing.assert_array_equal(jnp.argmax(oh, -1), idx)
    np.testing.assert_array_equal(oh.sum(-1), 1.0)


@pytest.mark.parametrize(
    "batch_shape, sample_shape",
    [((), ()), ((3,), ()), ((3,), 4), ((2, 3), (4, 5))],
    ids=["scalar", "batch3", "batch3-n4", "batch2x3-n4x5"],
)
def test_shapes(batch_shape, sample_shape, key):
    d = Categorical(jnp.zeros(batch_shape + (4,)))
    expected = (sample_shape if isinstance(sample_shape, tuple) else (sample_shape,)) + batch_shape

    def outputs():
        s = d.sample(key, sample_shape)
        return s, d.log_prob(s), d.log_prob_one_hot(d.sample_one_hot(key, sample_shape)), d.entropy(), d.mode()

    s, lp, lp_oh, ent, mode = jax.eval_shape(outputs)  # shapes without compiling anything
    chex.assert_shape([s, lp, lp_oh], expected)
    chex.assert_shape([ent, mode], batch_shape)


def test_entropy_and_kl_match_scipy():
    q_logits = jnp.asarray(LOGITS, jnp.float32)
    p_logits = jnp.asarray(LOGITS[::-1] * 0.5 + 0.3, jnp.float32)
    q, p = Categorical(q_logits), Categorical(p_logits)
    pq = sps_special.softmax(np.float64(q_logits), -1)
    pp = sps_special.softmax(np.float64(p_logits), -1)
    np.testing.assert_allclose(q.entropy(), sps.entropy(pq, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(kl_categorical_categorical(q, p), sps.entropy(pq, pp, axis=-1), rtol=1e-5)
    np.testing.assert_array_equal(kl_categorical_categorical(q, q), 0.0)
    # Broadcasting a single p against a batch of q.
    p0 = Categorical(p_logits[0])
    np.testing.assert_allclose(
        kl_categorical_categorical(q, p0), sps.entropy(pq, pp[:1].repeat(2, 0), axis=-1), rtol=1e-5
    )


def test_check_grads_x64():
    with jax.enable_x64(True):
        lq = jnp.asarray(LOGITS, jnp.float64)
        lp = jnp.asarray(LOGITS[::-1] * 0.5, jnp.float64)
        x_soft = jnp.asarray(sps_special.softmax(LOGITS * 0.3, -1))

        def f(a, b):  # one check_grads call over every smooth output keeps compilations few
            q = Categorical(a)
            return (
                q.log_prob(jnp.array([4, 1])),
                q.log_prob_one_hot(x_soft),
                q.entropy(),
                kl_categorical_categorical(q, Categorical(b)),
            )

        # Second order in reverse mode, first order forward: the order-2 fwd check only re-compiles
        # the same derivatives and doubles the cost.
        jf, jargs = jax.jit(f), (lq, lp)
        check_grads(jf, jargs, order=1, modes=("fwd",))
        check_grads(jf, jargs, order=2, modes=("rev",))


def test_jit_and_vmap_agree_with_eager():
    lg = jnp.asarray(np.linspace(-3, 3, 24).reshape(6, 4), jnp.float32)
    idx = np.arange(6) % 4
    eager = Categorical(lg).log_prob(idx)
    jitted = jax.jit(lambda d, i: d.log_prob(i))(Categorical(lg), idx)
    vmapped = jax.vmap(lambda lg, i: Categorical(lg).log_prob(i))(lg, idx)
    np.testing.assert_array_equal(eager, jitted)
    np.testing.assert_array_equal(eager, vmapped)
    np.testing.assert_allclose(Categorical(lg).entropy(), jax.jit(lambda d: d.entropy())(Categorical(lg)), rtol=1e-6)


def test_bad_inputs_raise():
    d = Categorical(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="`logits`"):
        Categorical(jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="`logits`"):
        Categorical(jnp.array(1.0))
    with pytest.raises(ValueError, match="`x`.*integer"):
        d.log_prob(jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"`x`.*\[0, 3\)"):
        d.log_prob(jnp.array([0, 3]))
    with pytest.raises(ValueError, match="`x`.*-1"):
        d.log_prob(jnp.array([-1, 0]))
    with pytest.raises(ValueError, match="`x`"):
        d.log_prob(jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="`x`.*last axis 3"):
        d.log_prob_one_hot(jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="`q` and `p`"):
        kl_categorical_categorical(d, Categorical(jnp.zeros((2, 4))))
    with pytest.raises(ValueError, match="`q`.*`p`"):
        kl_categorical_categorical(d, Categorical(jnp.zeros((5, 3))))

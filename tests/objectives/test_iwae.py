"""IWAE bound and streaming log-sum-exp.

The statistical tests use the linear-Gaussian model of ``test_elbo.py`` (analytic ``log p(x)``,
posterior and ``KL(q || posterior)``), computed independently in float64 NumPy/SciPy.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from jaxvae.distributions.normal import Normal
from jaxvae.objectives.elbo import elbo, mc_kl_terms
from jaxvae.objectives.iwae import (
    chunked_logsumexp,
    importance_log_weights,
    iwae_bound,
    logsumexp_finalize,
    logsumexp_init,
    logsumexp_update,
    streaming_iwae_bound,
)
from tests import stats
from tests.objectives.test_elbo import LinearGaussian, kl_diag_normals


def test_iwae_with_one_sample_is_the_elbo_with_the_same_draw(key):
    model = LinearGaussian.make(seed=1)
    x = model.sample_x(np.random.default_rng(0), 16)
    q = model.wrong_q(x, shift=0.7, scale_factor=1.4)
    ll = model.log_likelihood(x)
    mc_elbo = jax.jit(lambda k: elbo(mc_kl_terms(k, q, model.prior(), ll)))
    lw = jax.jit(lambda k: importance_log_weights(k, q, model.prior(), ll, num_samples=1))(key)
    assert lw.shape == (1, 16)
    got, want = iwae_bound(lw), mc_elbo(key)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    other = mc_elbo(jax.random.key(1))
    assert np.max(np.abs(np.asarray(other - want))) > 1e-2  # the draw matters: the comparison is not vacuous


def test_exact_posterior_gives_log_px_for_every_k(key):
    with jax.enable_x64():
        model = LinearGaussian.make(seed=2)
        x = model.sample_x(np.random.default_rng(1), 32)
        post, ll = model.posterior(x), model.log_likelihood(x)
        for k in (1, 3, 17):
            bound = jax.jit(lambda kk: iwae_bound(importance_log_weights(kk, post, model.prior(), ll, num_samples=k)))
            np.testing.assert_allclose(bound(jax.random.fold_in(key, k)), model.log_px(x), rtol=0, atol=1e-9)


def _chi2_divergence(mp, sp, mq, sq) -> float:
    """E_q[(p/q)^2] - 1 for diagonal Gaussians p, q (1-D quadrature per dimension)."""
    total = 1.0
    for a, b, c, d in zip(mp, sp, mq, sq):
        f = lambda z: math.exp(
            2 * (-0.5 * ((z - a) / b) ** 2 - math.log(b))
            + 0.5 * ((z - c) / d) ** 2
            + math.log(d)
            - 0.5 * math.log(2 * math.pi)
        )
        total *= integrate.quad(f, -np.inf, np.inf)[0]
    return total - 1.0


@pytest.mark.statistical
def test_iwae_sandwich_monotone_in_k_and_converging(key):
    """E[ELBO] = log p(x) - KL(q||post) <= E[IWAE_K] <= E[IWAE_4K] <= log p(x); gap -> 0 like chi2 / (2K)."""
    reps, ks = 4000, (1, 4, 16, 64, 256)
    with jax.enable_x64():
        model = LinearGaussian.make(seed=3)
        x1 = model.sample_x(np.random.default_rng(2), 1)
        x = np.repeat(x1, reps, axis=0)  # the batch holds independent replicates for one x
        q = model.wrong_q(x, shift=0.4, scale_factor=1.3)
        log_px = float(model.log_px(x1)[0])
        mp, sp = model.posterior_params(x1)
        mq, sq = np.asarray(q.loc[0]), np.asarray(q.scale[0])
        kl_q_post = float(kl_diag_normals(mq, sq, mp[0], sp[0]))
        chi2 = _chi2_divergence(mp[0], sp[0], mq, sq)
        means, ses = [], []
        ll = model.log_likelihood(x)
        for k in ks:
            bound = jax.jit(lambda kk: iwae_bound(importance_log_weights(kk, q, model.prior(), ll, num_samples=k)))
            v = np.asarray(bound(jax.random.fold_in(key, k)))
            means.append(v.mean())
            ses.append(v.std(ddof=1) / math.sqrt(reps))
    means, ses = np.array(means), np.array(ses)
    # K = 1 is the ELBO, whose expectation is known exactly; q is far enough off to make the test bite.
    stats.assert_close_clt(means[0], log_px - kl_q_post, ses[0], what="E[IWAE_1] = ELBO")
    assert kl_q_post > 20 * ses[0]
    for i in range(len(ks) - 1):
        slack = stats.Z * math.hypot(ses[i], ses[i + 1])
        assert means[i] <= means[i + 1] + slack, f"IWAE_{ks[i]} > IWAE_{ks[i + 1]}: {means}"
    assert np.all(means <= log_px + stats.Z * ses), (means, log_px)
    # Monotone increase is real, not just within noise: K=1 -> K=256 closes most of the gap.
    assert means[-1] - means[0] > stats.Z * math.hypot(ses[0], ses[-1])
    # Delta method: log p(x) - E[IWAE_K] = chi2 / (2K) + O(K^-2); allow twice the first-order term.
    assert log_px - means[-1] <= chi2 / ks[-1] + stats.Z * ses[-1], (log_px - means[-1], chi2)


def test_iwae_bound_matches_numpy_and_handles_zero_weights(variant):
    rng = np.random.default_rng(0)
    lw = (rng.normal(size=(9, 5)) * 20).astype(np.float32)
    lw[:4, 2] = -np.inf  # some zero weights in one column
    m = lw.max(0)
    want = m + np.log(np.exp(lw - m).sum(0)) - math.log(9)
    got = variant(iwae_bound)(lw)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    grad = jax.grad(lambda a: iwae_bound(a).sum())(jnp.asarray(lw))
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(np.asarray(grad).sum(0), np.ones(5), rtol=1e-5)  # softmax weights sum to 1


@pytest.mark.parametrize(
    "lw, match",
    [
        (np.zeros(5, np.float32), r"\[K, B"),
        (np.zeros((0, 3), np.float32), "K >= 1"),
        (np.zeros((2, 3), np.int32), "float"),
        (np.array([[0.0, np.nan]], np.float32), "NaN"),
        (np.array([[0.0, np.inf]], np.float32), r"\+inf"),
    ],
)
def test_iwae_bound_rejects_bad_weights(lw, match):
    with pytest.raises(ValueError, match=match):
        iwae_bound(lw)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000, 5000])
def test_chunked_logsumexp_equals_logsumexp(chunk_size):
    rng = np.random.default_rng(4)
    k, b = 1000, 7
    with jax.enable_x64():
        x = rng.normal(size=(k, b)) * 30
        x[::3, 1] = -np.inf
        x[:, 4] = -np.inf  # an all-zero-weight column stays -inf, never NaN
        x[:, 5] += 500.0  # large values: needs the max shift
        got = np.asarray(chunked_logsumexp(jnp.asarray(x), chunk_size))
        want = np.asarray(jax.nn.logsumexp(jnp.asarray(x), axis=0))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert got[4] == -np.inf
    x32 = x.astype(np.float32)
    got32 = np.asarray(chunked_logsumexp(x32, chunk_size))
    want32 = np.asarray(jax.nn.logsumexp(x32, axis=0))
    # Both sum K positive terms in float32: each is within K*eps of the exact sum (relative), so the
    # logs differ by at most 2*K*eps.
    np.testing.assert_allclose(got32, want32, rtol=0, atol=2 * k * np.finfo(np.float32).eps)


def test_streaming_state_counts_and_rejects_bad_chunks():
    s = logsumexp_init((3,))
    s = logsumexp_update(s, jnp.zeros((2, 3)))
    s = logsumexp_update(s, jnp.zeros((5, 3)))
    assert int(s.count) == 7
    np.testing.assert_allclose(logsumexp_finalize(s), np.full(3, math.log(7)), rtol=1e-6)
    with pytest.raises(ValueError, match="chunk"):
        logsumexp_update(s, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_logsumexp(jnp.zeros((3, 2)), 0)


@pytest.mark.parametrize("num_samples, chunk_size", [(50, 16), (5, 64)])
def test_streaming_iwae_equals_the_bound_on_the_same_weights(key, num_samples, chunk_size):
    model = LinearGaussian.make(seed=5)
    x = model.sample_x(np.random.default_rng(3), 6)
    q = model.wrong_q(x, shift=0.5, scale_factor=1.2)

    def log_weight_fn(k, n):
        return importance_log_weights(k, q, model.prior(), model.log_likelihood(x), num_samples=n)

    got = jax.jit(lambda k: streaming_iwae_bound(log_weight_fn, k, num_samples=num_samples, chunk_size=chunk_size))(key)
    size = min(chunk_size, num_samples)
    sizes = [size] * (num_samples // size) + ([num_samples % size] if num_samples % size else [])
    chunk_fn = jax.jit(log_weight_fn, static_argnums=1)
    lw = jnp.concatenate([chunk_fn(jax.random.fold_in(key, c), n) for c, n in enumerate(sizes)])
    assert lw.shape == (num_samples, 6)
    np.testing.assert_allclose(got, iwae_bound(lw), rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="num_samples"):
        streaming_iwae_bound(log_weight_fn, key, num_samples=0, chunk_size=4)


def test_importance_weights_check_the_likelihood_shape(key):
    q = Normal(jnp.zeros((4, 2)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="log_likelihood"):
        importance_log_weights(key, q, Normal(0.0, 1.0), lambda z: z, num_samples=3)  # forgot the event sum
    with pytest.raises(ValueError, match="num_samples"):
        importance_log_weights(key, q, Normal(0.0, 1.0), lambda z: z.sum(-1), num_samples=0)

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import logsumexp

from jaxvae.metrics.iw_nll import iw_log_likelihood, make_iw_log_likelihood, mean_and_stderr
from jaxvae.models import vae
from tests import stats

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I): log p(x) = log N(x; b, W W^T + s^2 I).

    q(z|x) is a deliberately imperfect diagonal Gaussian: the exact posterior mean shrunk and
    shifted, and 1.5x the posterior marginal standard deviations (wide enough that the importance
    weights have finite variance).
    """

    def __init__(self, dx=4, dz=2, s=0.5, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(dx, dz))
        self.b = rng.normal(size=dx)
        self.s = s
        self.sigma_post = np.linalg.inv(np.eye(dz) + self.W.T @ self.W / s**2)
        self.q_scale = 1.5 * np.sqrt(np.diag(self.sigma_post))

    def sample_x(self, n, seed=1):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, self.W.shape[1]))
        return (z @ self.W.T + self.b + self.s * rng.normal(size=(n, self.W.shape[0]))).astype(np.float32)

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * np.eye(self.W.shape[0])
        return sps.multivariate_normal(self.b, cov).logpdf(np.asarray(x, np.float64))

    def log_weight_fn(self, key, x, num_samples):
        W = jnp.asarray(self.W, jnp.float32)
        b = jnp.asarray(self.b, jnp.float32)
        post_mean = (x - b[None]) @ W @ jnp.asarray(self.sigma_post, jnp.float32) / self.s**2  # [B, dz]
        loc = 0.7 * post_mean + 0.1
        scale = jnp.asarray(self.q_scale, jnp.float32)[None, None]
        eps = jax.random.normal(key, (num_samples,) + loc.shape)
        z = loc[None] + scale * eps  # [K, B, dz]
        log_q = jnp.sum(-0.5 * eps**2 - jnp.log(scale) - _HALF_LOG_2PI, axis=-1)
        log_pz = jnp.sum(-0.5 * z**2 - _HALF_LOG_2PI, axis=-1)
        mean_x = z @ W.T + b[None, None]
        log_px_z = jnp.sum(-0.5 * ((x[None] - mean_x) / self.s) ** 2 - math.log(self.s) - _HALF_LOG_2PI, axis=-1)
        return log_px_z + log_pz - log_q


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


def _reference(log_weight_fn, x, key, num_samples, chunk):
    """Unchunked float64 log-mean-exp over the documented key schedule (example i, chunk c)."""
    out = []
    for i in range(x.shape[0]):
        ki = jax.random.fold_in(key, i)
        lw = np.concatenate(
            [
                np.asarray(log_weight_fn(jax.random.fold_in(ki, c), x[i : i + 1], chunk))[:, 0]
                for c in range(-(-num_samples // chunk))
            ]
        )[:num_samples].astype(np.float64)
        out.append(logsumexp(lw) - np.log(num_samples))
    return np.array(out)


def test_k1_equals_elbo_same_draw():
    """With K = 1 the estimate is the single-sample ELBO (MC KL) at the same key and draw."""
    cfg = vae.Config(latent_dim=3, hidden=(16,), kl="mc")
    params, ms = vae.init(cfg, jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).random((6, 784)) < 0.3, jnp.float32)
    key = jax.random.key(7)
    got = iw_log_likelihood(vae.make_log_weight_fn(cfg, params, ms), x, key, num_samples=1, batch_size=4)
    ev = jax.jit(vae.make_eval_fn(cfg))
    want = [
        ev(params, ms, {"x": x[i : i + 1]}, jax.random.fold_in(jax.random.fold_in(key, i), 0))["elbo"][0]
        for i in range(6)
    ]
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "num_samples,chunk", [(50, 7), (50, 50), (20, 8)], ids=["partial-last-chunk", "one-chunk", "k20c8"]
)
def test_chunked_equals_unchunked_reference(lg, num_samples, chunk):
    x = lg.sample_x(5)
    key = jax.random.key(3)
    got = iw_log_likelihood(lg.log_weight_fn, x, key, num_samples=num_samples, sample_chunk=chunk, batch_size=2)
    want = _reference(lg.log_weight_fn, x, key, num_samples, chunk)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_streaming_logsumexp_is_stable_for_wild_log_weights():
    """Log-weights around -1e4 with a spread of 40 nats and some -inf: no underflow, no NaN."""

    def wild(key, x, num_samples):
        k1, k2 = jax.random.split(key)
        lw = 40.0 * jax.random.normal(k1, (num_samples, x.shape[0])) - 1e4 + x[None, :, 0]
        return jnp.where(jax.random.uniform(k2, lw.shape) < 0.3, -jnp.inf, lw)

    x = np.linspace(0, 1, 6, dtype=np.float32)[:, None]
    key = jax.random.key(5)
    got = iw_log_likelihood(wild, x, key, num_samples=64, sample_chunk=10, batch_size=4)
    want = _reference(wild, x, key, 64, 10)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_all_minus_inf_gives_minus_inf():
    def zero_mass(key, x, num_samples):
        return jnp.full((num_samples, x.shape[0]), -jnp.inf)

    got = iw_log_likelihood(zero_mass, np.zeros((3, 2), np.float32), jax.random.key(0), num_samples=10, sample_chunk=4)
    assert np.all(np.isneginf(got))


def test_independent_of_batch_size_and_padding(lg):
    x = lg.sample_x(7)
    key = jax.random.key(1)
    runs = [
        iw_log_likelihood(lg.log_weight_fn, x, key, num_samples=30, sample_chunk=10, batch_size=b) for b in (1, 3, 16)
    ]
    for r in runs[1:]:
        np.testing.assert_allclose(r, runs[0], rtol=1e-6, atol=1e-6)


def test_compiles_once_per_shape(lg):
    traces = []

    def counting(key, x, num_samples):
        traces.append(x.shape)
        return lg.log_weight_fn(key, x, num_samples)

    est = make_iw_log_likelihood(counting, num_samples=12, sample_chunk=5, batch_size=4)
    est(lg.sample_x(10), jax.random.key(0))  # 3 batches, the last one padded
    est(lg.sample_x(6), jax.random.key(1))
    assert len(traces) == 1, traces


@pytest.mark.statistical
def test_converges_to_exact_log_likelihood(lg):
    """L_K -> log p(x): at K = 5000 the mean error over 100 examples is within its CLT band plus
    the first-order bias r/(2K) (r = relative variance of the weights, estimated; allowance r/K)."""
    n, k = 100, 5000
    x = lg.sample_x(n, seed=2)
    exact = lg.exact_log_px(x)
    est = np.asarray(
        iw_log_likelihood(lg.log_weight_fn, x, jax.random.key(0), num_samples=k, sample_chunk=1000, batch_size=20),
        np.float64,
    )
    d = est - exact
    # Relative variance of w per example from an independent draw: E[w^2]/E[w]^2 - 1.
    lw = np.asarray(
        jax.vmap(lambda kk, xi: lg.log_weight_fn(kk, xi[None], 4000)[:, 0])(
            jax.random.split(jax.random.key(9), n), jnp.asarray(x)
        ),
        np.float64,
    )
    r = np.exp(logsumexp(2 * lw, axis=1) - np.log(lw.shape[1]) - 2 * (logsumexp(lw, axis=1) - np.log(lw.shape[1]))) - 1
    se = np.std(d, ddof=1) / np.sqrt(n)
    # The band is ~0.01 nats here (se ~ sqrt(r/K/n)); the ELBO gap of this q is ~2.7 nats.
    assert abs(d.mean()) <= stats.Z * se + np.mean(r) / k, (d.mean(), se, np.mean(r))


@pytest.mark.statistical
def test_estimate_rises_with_k_and_stays_below_truth(lg):
    """E[L_1] < E[L_4] < E[L_64] <= log p(x): paired differences over 2000 examples, each
    significant at 5 se, with independent keys per K (expected gains ~2.6 and ~0.2 nats against
    se ~0.05 and ~0.015)."""
    n = 2000
    x = lg.sample_x(n, seed=3)
    exact = lg.exact_log_px(x)
    ks = (1, 4, 64)
    est = {
        k: np.asarray(
            iw_log_likelihood(lg.log_weight_fn, x, jax.random.key(k), num_samples=k, sample_chunk=k, batch_size=250),
            np.float64,
        )
        for k in ks
    }
    for lo, hi in zip(ks[:-1], ks[1:]):
        diff = est[hi] - est[lo]
        se = np.std(diff, ddof=1) / np.sqrt(n)
        assert diff.mean() > stats.Z * se, (lo, hi, diff.mean(), se)
    gap = est[ks[-1]] - exact
    assert gap.mean() <= stats.Z * np.std(gap, ddof=1) / np.sqrt(n)


def test_mean_and_stderr():
    v = np.random.default_rng(0).normal(size=50)
    m, se = mean_and_stderr(v)
    assert m == pytest.approx(v.mean()) and se == pytest.approx(v.std(ddof=1) / np.sqrt(50))
    with pytest.raises(ValueError, match="values"):
        mean_and_stderr([])


def test_bad_arguments_raise(lg):
    x = lg.sample_x(3)
    key = jax.random.key(0)
    for kw, name in [
        ({"num_samples": 0}, "num_samples"),
        ({"sample_chunk": -1}, "sample_chunk"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_samples": 2.5}, "num_samples"),
    ]:
        with pytest.raises(ValueError, match=name):
            iw_log_likelihood(lg.log_weight_fn, x, key, **kw)
    with pytest.raises(ValueError, match="`x`"):
        iw_log_likelihood(lg.log_weight_fn, np.float32(1.0), key, num_samples=2)
    with pytest.raises(ValueError, match="log_weight_fn"):
        iw_log_likelihood(lambda k, x, n: jnp.zeros((x.shape[0], n)), x, key, num_samples=4, sample_chunk=2)
    with pytest.raises(FloatingPointError, match="NaN"):
        iw_log_likelihood(lambda k, x, n: jnp.full((n, x.shape[0]), jnp.nan), x, key, num_samples=4)
    with pytest.raises(ValueError, match="log_weight_fn"):
        iw_log_likelihood(None, x, key)


_SHARDED_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    sys.path.insert(0, os.getcwd())
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.device_count() == 8, jax.devices()
    from jaxvae.metrics.iw_nll import iw_log_likelihood
    from jaxvae.models import vae
    from tests.metrics.test_iw_nll import LinearGaussian
    mesh = Mesh(np.array(jax.devices()), ("data",))
    lg = LinearGaussian()
    x = lg.sample_x(21)
    for f, xs in [(lg.log_weight_fn, x)]:
        a = iw_log_likelihood(f, xs, jax.random.key(0), num_samples=40, sample_chunk=16, batch_size=8)
        b = iw_log_likelihood(f, xs, jax.random.key(0), num_samples=40, sample_chunk=16, batch_size=8, mesh=mesh)
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
    cfg = vae.Config(latent_dim=3, hidden=(16,))
    params, ms = vae.init(cfg, jax.random.key(1))
    xv = (np.random.default_rng(0).random((11, 784)) < 0.3).astype(np.float32)
    f = vae.make_log_weight_fn(cfg, params, ms)
    a = iw_log_likelihood(f, xv, jax.random.key(2), num_samples=20, sample_chunk=10, batch_size=8)
    b = iw_log_likelihood(f, xv, jax.random.key(2), num_samples=20, sample_chunk=10, batch_size=8, mesh=mesh)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-4)
    print("SHARDED_OK")
    """
)


@pytest.mark.multidevice
def test_sharded_equals_single_device():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    res = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0 and "SHARDED_OK" in res.stdout, res.stdout[-2000:] + res.stderr[-4000:]

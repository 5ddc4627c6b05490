"""EDM preconditioning, loss and deterministic Heun sampler against their formulas.

The sampler tests use Gaussian data N(m, s^2), whose exact denoiser is affine,
``D(x; sigma) = m + s^2 / (s^2 + sigma^2) (x - m)``, so the whole sampler is an affine map
``x_0 -> a x_0 + b``; ``(a, b)`` is computed here independently in float64 by running EDM's
Algorithm 1 on the coefficient pair.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from jaxvae.objectives.diffusion import (
    P_MEAN,
    P_STD,
    SIGMA_MAX,
    SIGMA_MIN,
    denoising_loss,
    edm_denoiser,
    edm_loss,
    edm_loss_weight,
    edm_precond,
    edm_sample,
    edm_sigma_steps,
    heun_sample,
    sample_sigma,
)
from tests import stats

SIGMAS = np.array([0.002, 0.05, 0.5, 1.0, 3.0, 80.0])


# ----------------------------------------------------------------------------- preconditioning


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_precond_matches_edm_table_1(sigma_data):
    c_skip, c_out, c_in, c_noise = (np.asarray(v, np.float64) for v in edm_precond(SIGMAS, sigma_data))
    s, d = SIGMAS, sigma_data
    np.testing.assert_allclose(c_skip, d**2 / (s**2 + d**2), rtol=1e-6)
    np.testing.assert_allclose(c_out, s * d / np.sqrt(s**2 + d**2), rtol=1e-6)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + d**2), rtol=1e-6)
    np.testing.assert_allclose(c_noise, np.log(s) / 4, rtol=1e-6)
    lam = np.asarray(edm_loss_weight(SIGMAS, sigma_data), np.float64)
    np.testing.assert_allclose(lam, (s**2 + d**2) / (s * d) ** 2, rtol=1e-6)
    np.testing.assert_allclose(lam * c_out**2, 1.0, rtol=1e-5)  # unit effective weight


@pytest.mark.parametrize(
    "call",
    [
        lambda: edm_precond(np.array([0.5, 0.0])),
        lambda: edm_precond(np.array([0.5]), sigma_data=0.0),
        lambda: edm_loss_weight(np.array([-1.0])),
        lambda: sample_sigma(jax.random.key(0), (3,), p_std=0.0),
        lambda: edm_denoiser("not callable"),
    ],
)
def test_precond_errors(call):
    with pytest.raises(ValueError):
        call()


def test_edm_denoiser_feeds_the_network_c_in_x_and_c_noise():
    seen = {}

    def net(x_in, c_noise):
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return jnp.sin(x_in) + c_noise[:, None, None]

    x = jax.random.normal(jax.random.key(0), (3, 4, 2))
    sigma = jnp.array([0.1, 1.0, 20.0])
    d = edm_denoiser(net, 0.7)(x, sigma)
    c_skip, c_out, c_in, c_noise = edm_precond(sigma, 0.7)
    np.testing.assert_allclose(seen["x_in"], c_in[:, None, None] * x, rtol=1e-6)
    np.testing.assert_allclose(seen["c_noise"], c_noise, rtol=1e-6)
    per = lambda v: v[:, None, None]
    want = per(c_skip) * x + per(c_out) * (jnp.sin(per(c_in) * x) + per(c_noise))
    np.testing.assert_allclose(d, want, rtol=1e-5, atol=1e-6)


def test_edm_denoiser_checks_shapes():
    den = edm_denoiser(lambda x, c: x[:, :1])
    with pytest.raises(ValueError, match="net"):
        den(jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match="sigma"):
        edm_denoiser(lambda x, c: x)(jnp.ones((2, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match="x"):
        edm_denoiser(lambda x, c: x)(jnp.ones((2, 3), jnp.int32), jnp.ones(2))


# ----------------------------------------------------------------------------- training loss


def test_sigma_is_log_normal():
    sig = np.asarray(sample_sigma(jax.random.key(3), (20_000,)), np.float64)
    stats.ks_test(np.log(sig), sps.norm(P_MEAN, P_STD).cdf, what="ln sigma")


def test_denoising_loss_is_the_weighted_squared_error_with_the_keys_noise():
    net = lambda x, c: 0.3 * x - c[:, None]
    y = jax.random.normal(jax.random.key(0), (5, 6)) * 0.5
    sigma = jnp.array([0.01, 0.2, 1.0, 5.0, 50.0])
    key = jax.random.key(1)
    got = denoising_loss(key, net, y, sigma)
    n = jax.random.normal(key, y.shape)
    d = edm_denoiser(net)(y + sigma[:, None] * n, sigma)
    want = edm_loss_weight(sigma) * jnp.sum(jnp.square(d - y), axis=1)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_edm_loss_splits_the_key_into_sigma_and_noise():
    net = lambda x, c: 0.3 * x
    y = jax.random.normal(jax.random.key(0), (7, 2, 2, 1)) * 0.5
    key = jax.random.key(4)
    k_sigma, k_noise = jax.random.split(key)
    want = denoising_loss(k_noise, net, y, sample_sigma(k_sigma, (7,)))
    got = jax.jit(lambda k, yy: edm_loss(k, net, yy))(key, y)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(got, edm_loss(jax.random.key(5), net, y))


def _gaussian_raw_net(m, s, sigma_data):
    """The raw network whose preconditioned denoiser is the exact one of N(m, s^2) data."""

    def net(x_in, c_noise):
        sigma = jnp.exp(4.0 * c_noise)[:, None]
        c_skip, c_out, c_in, _ = edm_precond(sigma, sigma_data)
        x = x_in / c_in
        d = m + s**2 / (s**2 + sigma**2) * (x - m)
        return (d - c_skip * x) / c_out

    return net


@pytest.mark.parametrize("sigma", [0.05, 0.5, 4.0])
def test_loss_of_the_exact_denoiser_has_the_posterior_variance(sigma):
    """Exact denoiser: ``D - y ~ N(0, v)``, ``v = s^2 sigma^2 / (s^2 + sigma^2)`` a pixel: loss ~ lambda v chi2_P."""
    m, s, sd, b, p = 0.2, 0.6, 0.5, 4000, 4
    y = m + s * jax.random.normal(jax.random.key(0), (b, p))
    loss = np.asarray(denoising_loss(jax.random.key(1), _gaussian_raw_net(m, s, sd), y, jnp.full(b, sigma)), np.float64)
    v = s**2 * sigma**2 / (s**2 + sigma**2)
    lam = float(edm_loss_weight(sigma, sd))
    mean, var = lam * v * p, 2 * p * (lam * v) ** 2
    stats.assert_close_clt(loss.mean(), mean, math.sqrt(var / b), what="E[loss]")


# ----------------------------------------------------------------------------- schedule


def test_sigma_steps_formula():
    t = np.asarray(edm_sigma_steps(18, dtype=jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    i = np.arange(18)
    want = (SIGMA_MAX ** (1 / 7) + i / 17 * (SIGMA_MIN ** (1 / 7) - SIGMA_MAX ** (1 / 7))) ** 7
    assert t.shape == (19,) and t[-1] == 0
    np.testing.assert_allclose(t[:-1], want, rtol=1e-6)
    np.testing.assert_allclose([t[0], t[-2]], [80.0, 0.002], rtol=1e-6)
    assert np.all(np.diff(t) < 0)
    np.testing.assert_array_equal(edm_sigma_steps(1), [80.0, 0.0])


@pytest.mark.parametrize(
    "kwargs",
    [{"num_steps": 0}, {"num_steps": 2.5}, {"sigma_min": 80.0}, {"sigma_min": -1.0}, {"rho": 0.0}],
)
def test_sigma_steps_errors(kwargs):
    with pytest.raises(ValueError):
        edm_sigma_steps(**kwargs)


# ----------------------------------------------------------------------------- sampler


def _gaussian_denoiser(m, s):
    return lambda x, sigma: m + (s**2 / (s**2 + jnp.square(sigma)))[:, None] * (x - m)


def _affine_gain(m, s, sigmas):
    """(a, b) with sampler(x_0) = a x_0 + b, by Algorithm 1 on coefficient pairs (float64 NumPy)."""
    sigmas = np.asarray(sigmas, np.float64)

    def d(pair, t):  # the ODE direction (x - D(x; t)) / t of the affine x = pair[0] x_0 + pair[1]
        k = s**2 / (s**2 + t**2)
        return np.array([(1 - k) * pair[0] / t, (1 - k) * (pair[1] - m) / t])

    x = np.array([1.0, 0.0])
    for i in range(len(sigmas) - 1):
        t, t_next = sigmas[i], sigmas[i + 1]
        d_cur = d(x, t)
        x_euler = x + (t_next - t) * d_cur
        x = x + (t_next - t) * (0.5 * d_cur + 0.5 * d(x_euler, t_next)) if t_next > 0 else x_euler
    return x


@pytest.mark.parametrize("m, s", [(0.3, 0.5), (-1.0, 2.0)])
def test_heun_sampler_is_the_affine_map_of_algorithm_1(m, s):
    sigmas = edm_sigma_steps(18)
    a, b = _affine_gain(m, s, sigmas)
    n = 20_000
    x0 = SIGMA_MAX * np.random.default_rng(0).standard_normal((n, 1)).astype(np.float32)
    out = np.asarray(jax.jit(heun_sample, static_argnums=0)(_gaussian_denoiser(m, s), x0, sigmas), np.float64)[:, 0]
    np.testing.assert_allclose(out, a * x0[:, 0] + b, rtol=2e-4, atol=2e-4 * s)
    # Output moments against the sampler's own gain (not against (m, s): see the next test).
    stats.assert_mean_matches(out, b, (a * SIGMA_MAX) ** 2, what="sample mean")
    stats.assert_var_matches(out, (a * SIGMA_MAX) ** 2, what="sample variance")


def test_discretisation_error_is_second_order():
    """With the exact denoiser the 18-step gain exceeds s by ~5 %, and the error falls ~4x per doubling of N."""
    m, s = 0.3, 0.5
    with jax.enable_x64():
        errs = []
        for n in (18, 36, 72):
            sigmas = edm_sigma_steps(n, dtype=jnp.float64)
            out = heun_sample(_gaussian_denoiser(m, s), jnp.array([[0.0], [SIGMA_MAX]]), sigmas)
            a = float(out[1, 0] - out[0, 0]) / SIGMA_MAX
            np.testing.assert_allclose([a, float(out[0, 0])], _affine_gain(m, s, sigmas), rtol=1e-9, atol=1e-12)
            errs.append(a * SIGMA_MAX / s - 1)
    assert 0.04 < errs[0] < 0.07, errs  # papers.md 5.2: 3.6 - 6.5 % too wide for s = 2 ... 0.3
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(3.5 < r < 5.5 for r in ratios), (errs, ratios)


def _toy_denoiser(x, sigma):
    return jnp.tanh(x) * (1.0 / (1.0 + jnp.square(sigma)))[:, None, None, None]


def test_sampler_is_deterministic_per_seed():
    sample = jax.jit(lambda k: edm_sample(k, _toy_denoiser, (4, 3, 3, 1)))
    a, b = sample(jax.random.key(7)), sample(jax.random.key(7))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, sample(jax.random.key(8)))
    eager = edm_sample(jax.random.key(7), _toy_denoiser, (4, 3, 3, 1))
    np.testing.assert_allclose(eager, a, rtol=1e-6, atol=1e-6)


def test_indexed_samples_do_not_depend_on_the_batch():
    key = jax.random.key(3)
    big = edm_sample(key, _toy_denoiser, (3, 2, 2, 1), indices=jnp.array([10, 11, 12]))
    small = edm_sample(key, _toy_denoiser, (2, 2, 2, 1), indices=jnp.array([12, 10]))
    np.testing.assert_array_equal(np.asarray(small), np.asarray(big)[np.array([2, 0])])


def test_one_step_sampler_is_one_euler_step_to_zero():
    out = heun_sample(_gaussian_denoiser(0.3, 0.5), jnp.array([[2.0]]), jnp.array([4.0, 0.0]))
    d = _gaussian_denoiser(0.3, 0.5)(jnp.array([[2.0]]), jnp.array([4.0]))
    np.testing.assert_allclose(out, d, rtol=1e-6)  # x + (0 - t) (x - D) / t = D


@pytest.mark.parametrize(
    "sigmas, x, match",
    [
        ([80.0, 1.0], [[0.0]], "sigmas"),
        ([80.0, 90.0, 0.0], [[0.0]], "sigmas"),
        ([[80.0, 0.0]], [[0.0]], "sigmas"),
        ([80.0, 0.0], [0, 1], "x_init"),
    ],
)
def test_heun_sample_errors(sigmas, x, match):
    with pytest.raises(ValueError, match=match):
        heun_sample(_gaussian_denoiser(0.0, 1.0), jnp.asarray(x), jnp.asarray(sigmas))


def test_sample_errors():
    with pytest.raises(ValueError, match="denoiser"):
        heun_sample(lambda x, s: x[:, :0], jnp.ones((2, 2)), edm_sigma_steps(2))
    with pytest.raises(ValueError, match="indices"):
        edm_sample(jax.random.key(0), _toy_denoiser, (2, 1, 1, 1), indices=jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        edm_sample(jax.random.key(0), _toy_denoiser, (0, 1))

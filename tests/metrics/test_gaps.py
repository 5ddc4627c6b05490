"""The three gaps on a linear-Gaussian model, where every ELBO and the optimal ``q`` are closed form.

Model: ``p(z) = N(0, I_D)``, ``p(x|z) = N(W z + c, sigma^2 I_P)``. For a diagonal ``q = N(m, diag s^2)``::

    ELBO = -P/2 log(2 pi sigma^2) - (||x - W m - c||^2 + sum_pd W_pd^2 s_d^2) / (2 sigma^2) - KL(q || N(0, I))

and the best diagonal ``q`` has ``m = Lambda^-1 W^T (x - c) / sigma^2``, ``s_d^2 = 1 / Lambda_dd`` with
``Lambda = I + W^T W / sigma^2``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.distributions.normal import normal_log_prob
from jaxvae.metrics.gaps import (
    amortization_gap,
    elbo_estimate,
    generalization_gap,
    robustness_gap,
    skl_attack,
    symmetric_kl,
)
from jaxvae.metrics.ssim import ms_ssim
from tests import stats


class LinearGaussian:
    def __init__(self, d=2, p=6, sigma=0.5, seed=0):
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((p, d))
        self.c = rng.standard_normal(p)
        self.sigma, self.d, self.p = sigma, d, p
        self.lam = np.eye(d) + self.w.T @ self.w / sigma**2

    def sample_x(self, n, seed):
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.d))
        return (z @ self.w.T + self.c + self.sigma * rng.standard_normal((n, self.p))).astype(np.float32)

    def log_likelihood(self, x, z):
        w, c = jnp.asarray(self.w, jnp.float32), jnp.asarray(self.c, jnp.float32)
        return jnp.sum(normal_log_prob(x, z @ w.T + c[None], self.sigma), axis=-1)

    def elbo(self, x, m, s):
        x, m, s = (np.asarray(v, np.float64) for v in (x, m, s))
        resid = x - m @ self.w.T - self.c
        rec = -0.5 * self.p * math.log(2 * math.pi * self.sigma**2) - (
            np.sum(resid**2, -1) + np.sum(s**2 @ (self.w**2).T, -1)
        ) / (2 * self.sigma**2)
        return rec - 0.5 * np.sum(s**2 + m**2 - 1 - np.log(s**2), -1)

    def best_q(self, x):
        m = np.linalg.solve(self.lam, (self.w.T @ (np.asarray(x, np.float64) - self.c).T) / self.sigma**2).T
        return m, np.broadcast_to(1 / np.sqrt(np.diag(self.lam)), m.shape)

    def encoder(self, shift=0.0, scale_factor=1.0):
        """The best q, shifted and rescaled (``shift=0, scale_factor=1``: exact)."""

        def encode(x):
            a = jnp.asarray(np.linalg.solve(self.lam, self.w.T) / self.sigma**2, jnp.float32)
            loc = (x - jnp.asarray(self.c, jnp.float32)[None]) @ a.T + shift
            scale = jnp.broadcast_to(jnp.asarray(1 / np.sqrt(np.diag(self.lam)), jnp.float32) * scale_factor, loc.shape)
            return loc, scale

        return encode

    def ll_std(self, x, m, s, n=20000, seed=0):
        """Per-example std of log p(x|z) under q (NumPy reference for standard errors)."""
        rng = np.random.default_rng(seed)
        z = m[None] + s[None] * rng.standard_normal((n,) + m.shape)
        resid = x[None] - z @ self.w.T - self.c
        return np.std(-np.sum(resid**2, -1) / (2 * self.sigma**2), axis=0)


MODEL = LinearGaussian()


# ----------------------------------------------------------------------------- the ELBO estimator


@pytest.mark.parametrize("mc_kl", [False, True])
def test_elbo_estimate_is_unbiased(mc_kl):
    x = np.repeat(MODEL.sample_x(1, seed=1), 4000, axis=0)
    loc, scale = MODEL.encoder(shift=0.4, scale_factor=1.7)(x)
    log_prior = (lambda z: jnp.sum(normal_log_prob(z, 0.0, 1.0), -1)) if mc_kl else None
    est = np.asarray(elbo_estimate(jax.random.key(0), x, loc, scale, MODEL.log_likelihood, log_prior=log_prior))
    stats.assert_mean_matches(est, MODEL.elbo(x[:1], loc[:1], scale[:1])[0], what="ELBO estimate")


def test_elbo_estimate_shapes_and_errors():
    x = MODEL.sample_x(3, seed=0)
    loc, scale = MODEL.encoder()(x)
    assert elbo_estimate(jax.random.key(0), x, loc, scale, MODEL.log_likelihood, num_samples=5).shape == (3,)
    with pytest.raises(ValueError, match="loc, scale"):
        elbo_estimate(jax.random.key(0), x, loc[:2], scale[:2], MODEL.log_likelihood)
    with pytest.raises(ValueError, match="log_likelihood"):
        elbo_estimate(jax.random.key(0), x, loc, scale, lambda xx, z: z)
    with pytest.raises(ValueError, match="num_samples"):
        elbo_estimate(jax.random.key(0), x, loc, scale, MODEL.log_likelihood, num_samples=0)


# ----------------------------------------------------------------------------- generalization gap


def test_generalization_gap_is_the_difference_of_the_two_mean_elbos():
    x_tr, x_te = MODEL.sample_x(700, seed=2), MODEL.sample_x(300, seed=3) + 0.5  # a shifted "test" set
    encode = MODEL.encoder(shift=0.2, scale_factor=1.3)
    g = generalization_gap(jax.random.key(0), encode, MODEL.log_likelihood, x_tr, x_te, num_samples=4, batch_size=128)
    e_tr = MODEL.elbo(x_tr, *map(np.asarray, encode(x_tr))).mean()
    e_te = MODEL.elbo(x_te, *map(np.asarray, encode(x_te))).mean()
    # given the sets, only the MC draws are random: the reported standard errors bound them (they also hold the
    # spread over examples, so this is conservative) and the gap is clearly positive
    stats.assert_close_clt(g.train_elbo, e_tr, g.train_se, what="train ELBO")
    stats.assert_close_clt(g.test_elbo, e_te, g.test_se, what="test ELBO")
    assert g.gap == pytest.approx(g.train_elbo - g.test_elbo) and g.gap_se == pytest.approx(
        math.hypot(g.train_se, g.test_se)
    )
    assert g.gap > 5 * g.gap_se


def test_generalization_gap_of_one_set_against_itself_is_noise():
    x = MODEL.sample_x(500, seed=4)
    g = generalization_gap(
        jax.random.key(1), MODEL.encoder(), MODEL.log_likelihood, x, x, num_samples=2, batch_size=200
    )
    assert g.train_elbo != g.test_elbo  # different draws on the two sides
    assert abs(g.gap) < 5 * g.gap_se


# ----------------------------------------------------------------------------- amortization gap


@pytest.fixture(scope="module")
def amortized():
    x = MODEL.sample_x(6, seed=5)
    encode = MODEL.encoder(shift=-0.8, scale_factor=2.5)  # a poor amortised q
    res = amortization_gap(
        jax.random.key(2),
        encode,
        MODEL.log_likelihood,
        x,
        eval_samples=2000,
        record_every=100,
        batch_size=4,
    )
    return x, encode, res


def test_amortization_gap_converges_to_the_best_q(amortized):
    x, encode, res = amortized
    m_star, s_star = MODEL.best_q(x)
    np.testing.assert_allclose(res.loc, m_star, atol=0.03)
    np.testing.assert_allclose(res.scale, s_star, rtol=0.05)
    elbo_star = MODEL.elbo(x, m_star, s_star)
    assert np.all(MODEL.elbo(x, res.loc, res.scale) > elbo_star - 0.01)  # the final q is (nearly) optimal
    se = MODEL.ll_std(x, m_star, s_star) / math.sqrt(2000)
    stats.assert_close_clt(res.elbo_optimized, elbo_star, se + 0.01, what="ELBO*")


def test_amortization_gap_records_the_trajectory(amortized):
    x, encode, res = amortized
    loc, scale = (np.asarray(v, np.float64) for v in encode(x))
    se = MODEL.ll_std(x, loc, scale) / math.sqrt(2000)
    stats.assert_close_clt(res.elbo_amortized, MODEL.elbo(x, loc, scale), se, what="ELBO of the encoder's q")
    np.testing.assert_array_equal(res.steps, [0, 100, 200, 300, 400, 500])
    assert res.trajectory.shape == (6, 6)
    np.testing.assert_array_equal(res.gap, res.trajectory[-1] - res.trajectory[0])
    assert np.all(res.gap > 1.0)  # the poor encoder leaves a large gap
    assert np.all(np.abs(res.trajectory[-1] - res.trajectory[-2]) < 0.05 * res.gap)  # flat at the end: converged


def test_amortization_gap_of_the_best_encoder_is_nearly_zero():
    x = MODEL.sample_x(4, seed=6)
    res = amortization_gap(jax.random.key(3), MODEL.encoder(), MODEL.log_likelihood, x, eval_samples=500)
    moved = MODEL.elbo(x, res.loc, res.scale) - MODEL.elbo(x, *MODEL.best_q(x))  # <= 0: it starts at the optimum
    assert np.all(moved > -0.01)
    # the gap is a difference of two estimates with the same draws: it tracks the true change closely
    np.testing.assert_allclose(res.gap, moved, atol=0.01)


def test_amortization_results_do_not_depend_on_the_batch_size():
    x = MODEL.sample_x(5, seed=7)
    kw = dict(num_steps=20, eval_samples=10, record_every=10)
    a = amortization_gap(jax.random.key(4), MODEL.encoder(0.3), MODEL.log_likelihood, x, batch_size=5, **kw)
    b = amortization_gap(jax.random.key(4), MODEL.encoder(0.3), MODEL.log_likelihood, x, batch_size=2, **kw)
    np.testing.assert_allclose(a.trajectory, b.trajectory, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(a.loc, b.loc, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs", [{"num_steps": 0}, {"learning_rate": -1.0}, {"record_every": 0}, {"eval_samples": 0}]
)
def test_amortization_gap_errors(kwargs):
    with pytest.raises(ValueError):
        amortization_gap(jax.random.key(0), MODEL.encoder(), MODEL.log_likelihood, MODEL.sample_x(2, 0), **kwargs)


# ----------------------------------------------------------------------------- SKL attack


def test_symmetric_kl_closed_form():
    rng = np.random.default_rng(0)
    ma, mb = rng.standard_normal((2, 3, 4))
    sa, sb = np.exp(rng.standard_normal((2, 3, 4)))
    kl = lambda m1, s1, m2, s2: np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    want = 0.5 * np.sum(kl(ma, sa, mb, sb) + kl(mb, sb, ma, sa), -1)
    np.testing.assert_allclose(symmetric_kl(ma, sa, mb, sb), want, rtol=1e-5)
    np.testing.assert_allclose(symmetric_kl(ma, sa, ma, sa), 0.0, atol=1e-6)


def _linear_encoder(a, s=0.1):
    a = jnp.asarray(a, jnp.float32)
    return lambda x: (x.reshape(x.shape[0], -1) @ a.T, jnp.full((x.shape[0], a.shape[0]), s, jnp.float32))


@pytest.mark.parametrize("update", ["clipped", "sign"])
def test_attack_reaches_the_corner_that_maximises_the_skl(update):
    """Linear mean, fixed scale: SKL = ||A eps||^2 / (2 s^2); with one row a it peaks at eps = +-delta sign(a)."""
    a = np.random.default_rng(1).standard_normal((1, 12))
    x = jnp.full((3, 12), 0.5)
    res = jax.jit(lambda k: skl_attack(k, _linear_encoder(a), x, radius=0.1, update=update))(jax.random.key(0))
    eps = np.asarray(res.x_adv - x)
    np.testing.assert_allclose(np.abs(eps), 0.1, rtol=1e-5)
    np.testing.assert_allclose(np.abs(np.sign(eps) @ np.sign(a).T), 12)  # +-delta sign(a): both are maxima
    best = (0.1 * np.abs(a).sum()) ** 2 / (2 * 0.1**2)
    np.testing.assert_allclose(res.skl[-1], best, rtol=1e-4)
    assert res.skl.shape == (51, 3) and np.all(np.asarray(res.skl[0]) < best)


def test_attack_stays_in_the_ball_and_the_data_range():
    a = np.random.default_rng(2).standard_normal((3, 16))
    x = jnp.asarray(np.random.default_rng(3).integers(0, 2, (4, 16)), jnp.float32)  # binary: on the range's edges
    res = skl_attack(jax.random.key(1), _linear_encoder(a), x, radius=0.1, num_steps=10)
    eps = np.asarray(res.x_adv - x)
    assert np.all(np.abs(eps) <= 0.1 + 1e-6) and np.all((res.x_adv >= 0) & (res.x_adv <= 1))
    assert np.all(np.asarray(res.skl[-1]) > 0)
    other = skl_attack(jax.random.key(2), _linear_encoder(a), x, radius=0.1, num_steps=10)
    assert not np.allclose(other.x_adv, res.x_adv)  # the seed sets the random start


@pytest.mark.parametrize(
    "kwargs", [{"radius": 0.0}, {"num_steps": 0}, {"step_size": -1.0}, {"update": "adam"}, {"data_range": (1.0, 0.0)}]
)
def test_attack_errors(kwargs):
    with pytest.raises(ValueError):
        skl_attack(jax.random.key(0), _linear_encoder(np.ones((1, 4))), jnp.zeros((2, 4)), **kwargs)


# ----------------------------------------------------------------------------- robustness gap


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 16, 16, 1), np.float32)
    x[:, 3:-3, 3:-3] = rng.random((n, 10, 10, 1)) < 0.4
    return jnp.asarray(x)


def test_robustness_gap_is_eq_5():
    a = np.random.default_rng(4).standard_normal((3, 256)) * 0.3
    encode = _linear_encoder(a, s=0.05)
    wd = jnp.asarray(np.random.default_rng(5).standard_normal((3, 256)), jnp.float32)
    decode = lambda z: jax.nn.sigmoid(z @ wd).reshape(z.shape[0], 16, 16, 1)
    x = _images(5)
    res = robustness_gap(jax.random.key(0), encode, decode, x, num_seeds=3, num_steps=5)
    assert res.per_pair.shape == (5, 3) and res.x_adv.shape == (3, 5, 16, 16, 1)
    np.testing.assert_allclose(res.per_pair, res.ms_ssim_inputs - res.ms_ssim_recons, rtol=1e-6)
    assert res.gap == pytest.approx(res.per_pair.mean())
    for s in range(3):
        np.testing.assert_allclose(res.ms_ssim_inputs[:, s], ms_ssim(x, res.x_adv[s]), rtol=1e-5)
        assert np.all(np.abs(res.x_adv[s] - np.asarray(x)) <= 0.1 + 1e-6)
    assert np.all(res.ms_ssim_inputs < 1) and np.all(res.skl > 0)
    again = robustness_gap(jax.random.key(0), encode, decode, x, num_seeds=3, num_steps=5)
    np.testing.assert_array_equal(again.per_pair, res.per_pair)


def test_an_input_blind_encoder_has_identical_reconstructions():
    """If q ignores x (and is nearly a point), x~_a = x~_r, so G_r = mean MS-SSIM(x_r, x_a) - 1."""
    encode = lambda x: (
        jnp.zeros((x.shape[0], 2)) + 0.0 * x.reshape(x.shape[0], -1)[:, :2],
        jnp.full((x.shape[0], 2), 1e-7),
    )
    decode = lambda z: jax.nn.sigmoid(jnp.ones((z.shape[0], 16, 16, 1)) + jnp.sum(z, -1)[:, None, None, None])
    x = _images(4, seed=1)
    res = robustness_gap(jax.random.key(1), encode, decode, x, num_seeds=2, num_steps=3)
    np.testing.assert_allclose(res.ms_ssim_recons, 1.0, atol=2e-4)  # float32 rounding of a constant image's variance
    np.testing.assert_allclose(res.gap, res.ms_ssim_inputs.mean() - 1.0, atol=2e-4)


def test_robustness_gap_flat_inputs_need_an_image_shape():
    a = np.ones((2, 256)) * 0.01
    decode = lambda z: jnp.zeros((z.shape[0], 256)) + 0.5
    x = _images(2).reshape(2, 256)
    with pytest.raises(ValueError, match="image_shape"):
        robustness_gap(jax.random.key(0), _linear_encoder(a), decode, x, num_seeds=1, num_steps=1)
    res = robustness_gap(
        jax.random.key(0), _linear_encoder(a), decode, x, num_seeds=1, num_steps=1, image_shape=(16, 16, 1)
    )
    assert res.per_pair.shape == (2, 1)
    with pytest.raises(ValueError, match="image_shape"):
        robustness_gap(
            jax.random.key(0), _linear_encoder(a), decode, x, num_seeds=1, num_steps=1, image_shape=(8, 8, 1)
        )

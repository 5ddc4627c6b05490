"""Bijectors: log-dets vs slogdet(jacfwd), round trips, change-of-variables normalisation, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate
from scipy import stats as sps

from jaxvae.distributions.bijectors import ScaledSigmoid, SoftmaxCentered, Softplus


def _box():
    return ScaledSigmoid(jnp.array([-1.5, 0.0, 2.0]), jnp.array([1.5, 0.1, 5.0]))


BIJECTORS = {
    "sigmoid_box": (_box, 3),
    "sigmoid_scalar_box": (lambda: ScaledSigmoid(jnp.array(-2.0), jnp.array(3.0)), 3),
    "softplus": (Softplus, 3),
    "softmax_centered": (SoftmaxCentered, 3),  # u in R^3 -> simplex in R^4
}


def _square_forward(b):
    """The map whose Jacobian is square: SoftmaxCentered keeps the first K-1 coordinates."""
    if isinstance(b, SoftmaxCentered):
        return lambda u: b.forward(u)[..., :-1]
    return b.forward


@pytest.mark.parametrize("name", list(BIJECTORS))
def test_log_det_matches_slogdet_of_jacobian(name):
    with jax.enable_x64():
        make, d = BIJECTORS[name]
        b = make()
        us = 2.0 * jax.random.normal(jax.random.key(1), (5, d), jnp.float64)
        jac = jax.vmap(jax.jacfwd(_square_forward(b)))(us)  # [5, d, d]
        sign, logdet = jnp.linalg.slogdet(jac)
        assert np.all(np.asarray(sign) != 0)
        np.testing.assert_allclose(b.forward_log_det_jacobian(us), logdet, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(BIJECTORS))
def test_round_trips_float32(name):
    make, d = BIJECTORS[name]
    b = make()
    u = 2.0 * jax.random.normal(jax.random.key(2), (4, 7, d))
    z = b.forward(u)
    assert z.dtype == jnp.float32
    assert b.forward_log_det_jacobian(u).shape == (4, 7)
    np.testing.assert_allclose(b.inverse(z), u, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(b.forward(b.inverse(z)), z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.inverse_log_det_jacobian(z), -b.forward_log_det_jacobian(u), rtol=1e-3, atol=1e-3)


def test_box_images_inside_and_simplex_sums_to_one():
    u = jnp.linspace(-8.0, 8.0, 30).reshape(10, 3)
    z = _box().forward(u)
    z, low, high = np.asarray(z), np.asarray(_box().low), np.asarray(_box().high)
    assert np.all((z >= low) & (z <= high))
    s = SoftmaxCentered().forward(u)
    assert s.shape == (10, 4)
    np.testing.assert_allclose(s.sum(-1), 1.0, rtol=1e-6)
    assert np.all(Softplus().forward(u) > 0)


@pytest.mark.parametrize("make", [lambda: ScaledSigmoid(jnp.array([-1.0]), jnp.array([2.0])), Softplus])
def test_pushforward_density_integrates_to_one(make):
    """log p_z(z) = log N(u; 0.3, 1.2^2) - fldj(u) at u = inverse(z) integrates to 1 over the image."""
    with jax.enable_x64():
        b = make()

        @jax.jit
        def density(z):
            u = b.inverse(jnp.reshape(z, (1,)))
            return jnp.exp(jnp.sum(jax.scipy.stats.norm.logpdf(u, 0.3, 1.2)) - b.forward_log_det_jacobian(u))

        lo, hi = (-1.0, 2.0) if isinstance(b, ScaledSigmoid) else (0.0, 60.0)
        eps = 1e-12
        total, err = integrate.quad(lambda t: float(density(jnp.asarray(t))), lo + eps, hi - eps, limit=200)
    assert abs(total - 1.0) < 1e-6 + err


def test_softmax_centered_pushforward_k2_integrates_to_one():
    """K = 2: z_1 = sigmoid(u), a 1-D density on (0, 1) in the first coordinate."""
    with jax.enable_x64():
        b = SoftmaxCentered()

        def density(z1):
            z = jnp.array([z1, 1.0 - z1])
            u = b.inverse(z)
            return float(jnp.exp(jax.scipy.stats.norm.logpdf(u[0], -0.4, 0.8) - b.forward_log_det_jacobian(u)))

        total, err = integrate.quad(density, 1e-12, 1 - 1e-12, limit=200)
        # same as the logit-normal: compare with scipy's normal over u
        assert abs(total - 1.0) < 1e-6 + err
        z1 = 0.3
        u = np.log(z1 / (1 - z1))
        expected = sps.norm.pdf(u, -0.4, 0.8) / (z1 * (1 - z1))
        np.testing.assert_allclose(density(z1), expected, rtol=1e-10)


def test_sigmoid_log_det_finite_for_large_inputs():
    u = jnp.array([[-80.0, 0.0, 80.0]])
    ld = _box().forward_log_det_jacobian(u)
    assert np.all(np.isfinite(ld))
    g = jax.grad(lambda u: jnp.sum(_box().forward_log_det_jacobian(u)))(u)
    assert np.all(np.isfinite(g))
    assert np.all(np.isfinite(Softplus().forward_log_det_jacobian(u)))
    assert np.all(np.isfinite(SoftmaxCentered().forward_log_det_jacobian(u)))


@pytest.mark.parametrize("name", list(BIJECTORS))
def test_check_grads_x64(name):
    with jax.enable_x64():
        make, d = BIJECTORS[name]
        b = make()
        u = jax.random.normal(jax.random.key(3), (2, d), jnp.float64)
        check_grads(jax.jit(b.forward_log_det_jacobian), (u,), order=2, modes=("fwd", "rev"))
        check_grads(jax.jit(b.forward), (u,), order=1, modes=("rev",))


def test_box_parameters_differentiable_and_jit(variant):
    u = jnp.ones((2, 3))
    f = variant(lambda b, u: jnp.sum(b.forward(u)) + jnp.sum(b.forward_log_det_jacobian(u)))
    np.testing.assert_allclose(
        f(_box(), u), jnp.sum(_box().forward(u)) + jnp.sum(_box().forward_log_det_jacobian(u)), rtol=1e-6
    )
    g = jax.grad(lambda b: jnp.sum(b.forward_log_det_jacobian(u)))(_box())
    np.testing.assert_allclose(g.high, 2.0 / (_box().high - _box().low), rtol=1e-6)


@pytest.mark.parametrize(
    "low, high", [(1.0, 1.0), (2.0, 1.0), ([0.0, 0.0], [1.0, 0.0])], ids=["empty", "reversed", "one-face"]
)
def test_bad_box_raises(low, high):
    with pytest.raises(ValueError, match="`high` must be > `low`"):
        ScaledSigmoid(jnp.asarray(low), jnp.asarray(high))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="`low`"):
        ScaledSigmoid(jnp.array(jnp.nan), jnp.array(1.0))
    with pytest.raises(ValueError, match="`z`"):
        _box().inverse(jnp.array([[0.0, 0.05, 6.0]]))
    with pytest.raises(ValueError, match="`z`"):
        Softplus().inverse(jnp.array([1.0, -0.5]))
    with pytest.raises(ValueError, match="`z`.*sum to 1"):
        SoftmaxCentered().inverse(jnp.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="`u`"):
        SoftmaxCentered().forward(jnp.array(1.0))

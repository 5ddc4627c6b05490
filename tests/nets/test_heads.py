import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.nets.heads import GaussianHead, LogitsHead, gaussian_scale


@pytest.mark.parametrize("scale_param", ["softplus", "log_var"])
def test_gaussian_head_shapes(key, scale_param):
    head = GaussianHead(5, scale_param=scale_param)
    h = jax.random.normal(key, (3, 2, 7))
    loc, log_var = head.apply(head.init(key, h), h)
    assert loc.shape == (3, 2, 5) and log_var.shape == (3, 2, 5)


def test_softplus_scale_is_softplus_of_raw_plus_floor(key):
    head = GaussianHead(4, scale_param="softplus", min_scale=1e-3)
    h = jax.random.normal(key, (6, 3))
    params = head.init(key, h)
    _, log_var = head.apply(params, h)
    p = params["params"]["scale"]
    raw = h @ p["kernel"] + p["bias"][None]
    np.testing.assert_allclose(gaussian_scale(log_var), jax.nn.softplus(raw) + 1e-3, rtol=1e-5)


def test_log_var_head_returns_raw(key):
    head = GaussianHead(4, scale_param="log_var")
    h = jax.random.normal(key, (6, 3))
    params = head.init(key, h)
    _, log_var = head.apply(params, h)
    p = params["params"]["scale"]
    np.testing.assert_allclose(log_var, h @ p["kernel"] + p["bias"][None], rtol=1e-5, atol=1e-6)


def test_softplus_head_stays_finite_for_extreme_features(key):
    """The reason softplus is the default: huge raw outputs give finite scales and gradients."""
    head = GaussianHead(3, scale_param="softplus", min_scale=1e-4)
    h = 1e4 * jax.random.normal(key, (8, 5))
    params = head.init(key, h)

    def f(params):
        loc, log_var = head.apply(params, h)
        z = loc + gaussian_scale(log_var)  # a reparameterised sample at eps = 1
        return jnp.sum(z) + jnp.sum(log_var)

    _, log_var = head.apply(params, h)
    assert jnp.all(jnp.isfinite(log_var))
    assert jnp.all(gaussian_scale(log_var) >= 1e-4 * (1 - 1e-6))
    grads = jax.grad(f)(params)
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


def test_bad_head_arguments(key):
    with pytest.raises(ValueError, match="scale_param"):
        GaussianHead(3, scale_param="exp").init(key, jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="latent_dim"):
        GaussianHead(0).init(key, jnp.ones((1, 2)))


def test_logits_head_shape(key):
    head = LogitsHead((28, 28, 1))
    h = jnp.ones((4, 3, 6))
    assert head.apply(head.init(key, h), h).shape == (4, 3, 28, 28, 1)


def test_init_scale_starts_sigma_there(key):
    head = GaussianHead(4, min_scale=1e-3, init_scale=1.0)
    h = jnp.zeros((2, 3))  # the scale layer outputs its bias
    _, log_var = head.apply(head.init(key, h), h)
    np.testing.assert_allclose(gaussian_scale(log_var), 1.0 + 1e-3, rtol=1e-6)
    for bad in (dict(init_scale=0.0), dict(init_scale=1.0, scale_param="log_var")):
        with pytest.raises(ValueError, match="`init_scale` must be None or > 0"):
            GaussianHead(4, **bad).init(key, h)

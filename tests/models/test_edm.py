"""The EDM model wrapper: wiring of data scaling, preconditioning and loss; the sampler's determinism."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.models import edm
from jaxvae.objectives import diffusion

CFG = edm.Config(x_shape=(8, 8, 1), channels=8, channel_mult=(1, 2), attn_resolutions=(), num_groups=4, num_steps=3)


@pytest.fixture(scope="module")
def params():
    return edm.init(CFG, 0)[0]


def test_config_validation():
    with pytest.raises(ValueError, match="x_shape"):
        edm.Config(x_shape=(32, 32))
    with pytest.raises(ValueError, match="divisible"):
        edm.Config(x_shape=(30, 30, 1), channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="sigma_min"):
        edm.Config(sigma_min=100.0)


def test_untrained_loss_is_the_skip_connection_only(params):
    """The U-Net's output layer starts at zero, so D = c_skip x and the loss has a closed form."""
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    key = jax.random.key(2)
    terms, _ = edm.objective_terms(CFG, params, {}, {"x": x}, key)
    y = 2 * x - 1
    k_sigma, k_noise = jax.random.split(key)
    sigma = diffusion.sample_sigma(k_sigma, (4,))
    n = jax.random.normal(k_noise, y.shape)
    c_skip = 0.25 / (sigma**2 + 0.25)
    d = c_skip[:, None, None, None] * (y + sigma[:, None, None, None] * n)
    want = (sigma**2 + 0.25) / (0.25 * sigma**2) * jnp.sum((d - y) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(terms.edm_loss, want, rtol=1e-5)


def test_loss_and_eval_fn(params):
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    out = edm.make_loss_fn(CFG)(params, {}, {"x": x}, jax.random.key(3))
    assert out.loss.shape == () and np.isfinite(out.loss)
    ev = edm.make_eval_fn(CFG)(params, {}, {"x": x}, jax.random.key(3))
    assert set(ev) == {"edm_loss", "edm_loss_grid"} and all(v.shape == (4,) for v in ev.values())
    with pytest.raises(ValueError, match="x"):
        edm.make_loss_fn(CFG)(params, {}, {"y": x}, jax.random.key(3))


def test_eval_sigmas_are_lognormal_quantiles():
    s = np.asarray(edm.eval_sigmas(dataclasses.replace(CFG, eval_sigmas=3)))
    np.testing.assert_allclose(np.log(s[1]), CFG.p_mean, atol=1e-6)
    assert np.all(np.diff(s) > 0)


@pytest.mark.slow
def test_sampler_deterministic_and_batch_independent(params):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    noise = [0.05 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)]
    params = jax.tree.unflatten(tree, [p + n for p, n in zip(leaves, noise)])  # a non-trivial network
    a = np.asarray(edm.sample_images(CFG, params, 5, np.arange(4)))
    b = np.asarray(edm.sample_images(CFG, params, 5, np.arange(4)))
    c = np.asarray(edm.sample_images(CFG, params, 5, np.array([2, 3])))
    d = np.asarray(edm.sample_images(CFG, params, 6, np.arange(4)))
    assert a.shape == (4, 8, 8, 1) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[2:], c, atol=1e-4)
    assert np.abs(a - d).max() > 1e-2  # another key, other images
    with pytest.raises(ValueError, match="indices"):
        edm.sample_images(CFG, params, 5, np.zeros((2, 2), int))

"""The residual conv VAE of Xiao et al.: shapes, width knobs, BatchNorm modes, likelihood wiring."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.distributions.logistic_mixture import discretized_logistic_mixture_log_prob
from jaxvae.models import xiao

CFG = xiao.Config(x_shape=(8, 8, 1), m_z=1, n_c=4)


def _x(n=3, seed=0):
    return (np.random.default_rng(seed).random((n, 8, 8, 1)) < 0.4).astype(np.float32)


def test_config_validation():
    with pytest.raises(ValueError, match="x_shape"):
        xiao.Config(x_shape=(30, 30, 1))
    with pytest.raises(ValueError, match="likelihood"):
        xiao.Config(likelihood="gaussian")
    assert xiao.Config(m_z=3).latent_shape == (8, 8, 192)


@pytest.mark.slow
def test_width_knobs_split_the_parameters():
    """m_z changes only Theta_z (linearly in d_z); n_c changes both."""
    z1, r1 = xiao.parameter_split(xiao.init(CFG, 0)[0])
    z2, r2 = xiao.parameter_split(xiao.init(dataclasses.replace(CFG, m_z=2), 0)[0])
    assert r1 == r2
    n = CFG.n_c  # e_out: n * 2 d_z + 2 d_z, d_in: d_z * n + n
    assert z1 == 3 * 64 * n + 2 * 64 + n and z2 == 3 * 128 * n + 2 * 128 + n
    _, r3 = xiao.parameter_split(xiao.init(dataclasses.replace(CFG, n_c=8), 0)[0])
    assert r3 > r1


def test_training_updates_batch_stats_and_eval_is_per_example():
    params, state = xiao.init(CFG, 0)
    x = _x(4)
    out = xiao.make_loss_fn(CFG)(params, state, {"x": x}, jax.random.key(1))
    assert np.isfinite(out.loss) and set(out.metrics) == {"log_px_z", "kl", "elbo"}
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), out.model_state, state)
    assert any(jax.tree.leaves(changed))
    ev = xiao.make_eval_fn(CFG)
    full = ev(params, out.model_state, {"x": x}, jax.random.key(2))
    encode, ll, _ = xiao.gap_fns(CFG, params, out.model_state)
    loc_all, _ = encode(x)
    loc_one, _ = encode(x[1:2])
    np.testing.assert_allclose(loc_all[1:2], loc_one, rtol=1e-5, atol=1e-6)
    assert full["elbo"].shape == (4,) and np.all(full["elbo"] <= 0)


@pytest.mark.slow  # ~20 s on the 2-core machine (the conv VAE compiled with the mixture head)
def test_mixture_likelihood_wiring():
    cfg = dataclasses.replace(CFG, likelihood="logistic_mixture", num_mixtures=2)
    out = jax.random.normal(jax.random.key(0), (2, 8, 8, 6))
    x = jnp.round(jax.random.uniform(jax.random.key(1), (2, 8, 8, 1)) * 255) / 255
    p = out.reshape(2, 8, 8, 1, 3, 2)
    want = discretized_logistic_mixture_log_prob(2 * x - 1, p[..., 0, :], p[..., 1, :], p[..., 2, :])
    np.testing.assert_allclose(xiao.log_likelihood(cfg, x, out), jnp.sum(want, axis=(1, 2, 3)), rtol=1e-5)
    params, state = xiao.init(cfg, 0)
    rec = xiao.reconstruct(cfg, params, state, np.asarray(x))
    assert rec.shape == (2, 8, 8, 1) and float(rec.min()) >= 0 and float(rec.max()) <= 1


def test_zero_init_posterior_starts_at_the_prior():
    """With ``zero_init_posterior`` q(z|x) = N(0, I) at initialisation (KL 0); by default it is not."""
    x = _x(3)
    cfg = dataclasses.replace(CFG, zero_init_posterior=True)
    params, state = xiao.init(cfg, 0)
    loc, scale = xiao.gap_fns(cfg, params, state)[0](x)
    np.testing.assert_array_equal(loc, 0.0)
    np.testing.assert_array_equal(scale, 1.0)
    kl = xiao.make_eval_fn(cfg)(params, state, {"x": x}, jax.random.key(0))["kl"]
    np.testing.assert_allclose(kl, 0.0, atol=1e-5)
    p_default, s_default = xiao.init(CFG, 0)
    assert np.abs(xiao.gap_fns(CFG, p_default, s_default)[0](x)[0]).max() > 1e-3
    assert xiao.parameter_split(params) == xiao.parameter_split(p_default)

"""β-STCVAE model: s = 1 is β-TCVAE bitwise, the standard ELBO and the decomposition, per-batch β, the nets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.distributions.normal import Normal
from jaxvae.models import stcvae
from jaxvae.objectives.total_correlation import beta_tcvae_objective, total_correlation_terms

SMALL = stcvae.Config(arch="conv", latent_dim=6, hidden=32, conv_channels=(4, 8), x_shape=(16, 16, 1), dataset_size=500)


def _batch(cfg, b=8, seed=0):
    x = (np.random.default_rng(seed).random((b, *cfg.x_shape)) > 0.7).astype(np.float32)
    return {"x": jnp.asarray(x)}


def _loss_and_grad(cfg, params, batch, key):
    return jax.value_and_grad(lambda p: stcvae.make_loss_fn(cfg)(p, {}, batch, key).loss)(params)


def _reference_tcvae_loss(cfg, params, batch, key):
    """β-TCVAE written out from the library's pieces, independently of the model's objective path."""
    model = stcvae.STCVAE(cfg)
    loc, log_var = model.apply({"params": params}, batch["x"], method=stcvae.STCVAE.encode_params)
    scale = jnp.exp(0.5 * log_var)
    z = Normal(loc, scale).sample(key)
    logits = model.apply({"params": params}, z, method=stcvae.STCVAE.decode)
    log_px_z = jnp.sum(bernoulli_log_prob(batch["x"], logits), axis=(1, 2, 3))
    t = total_correlation_terms(z, loc, scale, dataset_size=cfg.dataset_size)
    return -jnp.mean(beta_tcvae_objective(log_px_z, t, jnp.asarray(cfg.beta, jnp.float32)))


# variant 2 (the default) in the default tier; 1 and 3 in the slow tier (each compiles the conv net again)
@pytest.mark.parametrize(
    "variant", [pytest.param(1, marks=pytest.mark.slow), 2, pytest.param(3, marks=pytest.mark.slow)]
)
def test_granularity_one_is_beta_tcvae_bitwise(variant):
    cfg = dataclasses.replace(SMALL, group_size=1, variant=variant, beta=6.0)
    params, _ = stcvae.init(cfg, 0)
    batch, key = _batch(cfg), jax.random.key(3)
    loss, grad = _loss_and_grad(cfg, params, batch, key)
    ref_loss, ref_grad = jax.value_and_grad(lambda p: _reference_tcvae_loss(cfg, p, batch, key))(params)
    assert np.asarray(loss) == np.asarray(ref_loss)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_granularity_above_one_changes_the_objective_not_the_elbo():
    params, _ = stcvae.init(SMALL, 0)
    batch, key = _batch(SMALL), jax.random.key(1)
    out = {}
    for s in (1, 2, 3):
        cfg = dataclasses.replace(SMALL, group_size=s)
        out[s] = stcvae.make_eval_fn(cfg)(params, {}, batch, key)
    np.testing.assert_allclose(out[1]["elbo"], out[2]["elbo"], rtol=1e-6)
    assert not np.allclose(out[1]["objective"], out[2]["objective"])
    assert np.all(out[1]["tc_within"] == 0)
    assert np.all(np.asarray(out[2]["tc_within"]) != 0)


def test_terms_decompose_the_kl_and_the_elbo_is_the_standard_one():
    cfg = dataclasses.replace(SMALL, group_size=2)
    params, _ = stcvae.init(cfg, 1)
    batch, key = _batch(cfg, seed=2), jax.random.key(2)
    t = stcvae.make_eval_fn(cfg)(params, {}, batch, key)
    np.testing.assert_allclose(t["tc"], t["tc_between"] + t["tc_within"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(t["kl"], t["mi"] + t["tc"] + t["dwkl"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(t["elbo"], t["log_px_z"] - t["kl"], rtol=1e-6)
    # the standard single-sample ELBO: log p(x|z) + log p(z) - log q(z|x) at the same sample
    model = stcvae.STCVAE(cfg)
    loc, log_var = model.apply({"params": params}, batch["x"], method=stcvae.STCVAE.encode_params)
    z = Normal(loc, jnp.exp(0.5 * log_var)).sample(key)
    log_q = jnp.sum(Normal(loc, jnp.exp(0.5 * log_var)).log_prob(z), -1)
    log_p = jnp.sum(Normal(jnp.zeros_like(z), jnp.ones_like(z)).log_prob(z), -1)
    np.testing.assert_allclose(t["kl"], log_q - log_p, rtol=1e-5, atol=1e-4)
    # variant 2 objective, written out: rewards the batch-mean within-group TC with weight beta / 2
    want = t["log_px_z"] - t["mi"] - cfg.beta * t["tc_between"] + cfg.beta / 2 * jnp.mean(t["tc_within"]) - t["dwkl"]
    np.testing.assert_allclose(t["objective"], want, rtol=1e-5, atol=1e-3)


def test_beta_from_the_batch_overrides_the_config():
    cfg = dataclasses.replace(SMALL, beta=2.0)
    params, _ = stcvae.init(cfg, 0)
    batch, key = _batch(cfg), jax.random.key(0)
    a = stcvae.make_loss_fn(dataclasses.replace(cfg, beta=7.0))(params, {}, batch, key).loss
    b = stcvae.make_loss_fn(cfg)(params, {}, {**batch, "beta": jnp.float32(7.0)}, key).loss
    assert np.asarray(a) == np.asarray(b)
    with pytest.raises(ValueError, match="beta"):
        stcvae.make_loss_fn(cfg)(params, {}, {**batch, "beta": jnp.ones(3)}, key)


@pytest.mark.parametrize(
    "cfg",
    [
        SMALL,
        stcvae.Config(arch="mlp", latent_dim=4, hidden=16, layers=1, x_shape=(8, 8, 1), group_size=2),
        stcvae.Config(arch="code", latent_dim=16, hidden=24, layers=2, x_shape=(64, 64, 1)),
    ],
    ids=["conv", "mlp", "code"],
)
@pytest.mark.slow
def test_nets_shapes_and_finite_training_step(cfg):
    params, state = stcvae.init(cfg, 0)
    batch = _batch(cfg, b=4)
    loss, grad = _loss_and_grad(cfg, params, batch, jax.random.key(0))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))
    loc, scale = stcvae.make_posterior_fn(cfg, params)(batch["x"])
    assert loc.shape == scale.shape == (4, cfg.latent_dim)
    assert stcvae.make_decode_fn(cfg, params)(jnp.zeros((2, 3, cfg.latent_dim))).shape == (2, 3, *cfg.x_shape)


def test_code_net_layout():
    """The code's conv-MLP: convs 16-32-64 to 8x8x64 and dense layers of `hidden` units (papers.md 3.4)."""
    cfg = stcvae.Config(hidden=24)
    params, _ = stcvae.init(cfg, 0)
    flat = {
        "/".join(str(getattr(k, "key", k)) for k in path): v.shape
        for path, v in jax.tree_util.tree_leaves_with_path(params)
    }
    kernels = sorted(v for k, v in flat.items() if k.endswith("kernel") and len(v) == 4)
    assert (4, 4, 16, 32) in kernels and (4, 4, 32, 64) in kernels and (4, 4, 1, 16) in kernels
    assert any(v == (4096, 24) for v in flat.values())  # 8x8x64 flattened into the first dense layer


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"group_size": 0}, "group_size"),
        ({"group_size": 17}, "group_size"),
        ({"variant": 5}, "variant"),
        ({"arch": "resnet"}, "arch"),
        ({"x_shape": (60, 60, 1)}, "x_shape"),
        ({"beta": -1.0}, "beta"),
        ({"estimator": "exact"}, "estimator"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        stcvae.Config(**kw)


def test_bad_batch_names_the_entry():
    params, _ = stcvae.init(SMALL, 0)
    with pytest.raises(ValueError, match="'x'"):
        stcvae.make_loss_fn(SMALL)(params, {}, {"image": jnp.zeros((2, 16, 16, 1))}, jax.random.key(0))
    with pytest.raises(ValueError, match="x"):
        stcvae.make_loss_fn(SMALL)(params, {}, {"x": jnp.zeros((2, 16, 16))}, jax.random.key(0))

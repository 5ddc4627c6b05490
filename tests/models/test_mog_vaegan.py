"""Rivera's VAE-GAN: each term against its formula, the losses' structure, the players' gradients, the
paper's parameter counts, bad configurations.

A tiny configuration (16x16x1, two stages of width 4, latent 4) keeps compile times to seconds. Terms
are recomputed in NumPy/jax from the module's pieces at ``train=False`` (no dropout, running batch
statistics), with the same key split as ``objective_terms``; float32 agreement to rtol 1e-5.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.models import mog_vaegan as m
from jaxvae.nets.resnet import count_parameters

TINY = m.Config(
    x_shape=(16, 16, 1),
    latent_dim=4,
    enc_widths=(4, 4, 4),
    dec_widths=(4, 4, 4),
    enc_blocks=1,
    dec_blocks=1,
    bottleneck_channels=2,
    disc_features=(4, 4, 1),
    disc_strides=(2, 1, 1),
)


def terms(cfg, params, ms, batch, key, train):
    """``objective_terms`` under jit (eager Linen dispatches every op separately: minutes under load)."""
    return _jit_terms(cfg, train)(params, ms, batch, key)


@functools.cache
def _jit_terms(cfg, train):
    return jax.jit(lambda p, s, b, k: m.objective_terms(cfg, p, s, b, k, train=train))


def softplus(x):
    return np.logaddexp(0.0, x)


@pytest.fixture(scope="module")
def tiny():
    params, ms = m.init(TINY, 0)
    batch = m.random_batch(TINY, 8, seed=3)
    return params, ms, batch


def test_kl_terms_equal_their_formulas():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(8, 5)).astype(np.float32)
    lv = rng.normal(scale=0.5, size=(8, 5)).astype(np.float32)
    s2 = np.exp(lv)
    per = 0.5 * np.sum(loc**2 + s2 - lv - 1.0, -1)
    np.testing.assert_allclose(m.kl_term(dataclasses.replace(TINY, kl="per_sample"), loc, lv), per, rtol=1e-5)
    mean, var = loc.mean(0), loc.var(0)
    pop = -0.5 * np.sum(1 + np.log(var) - mean**2 - var)
    got = m.kl_term(dataclasses.replace(TINY, kl="population"), loc, lv)
    np.testing.assert_allclose(got, np.full(8, pop), rtol=1e-5)  # one value per batch, broadcast
    var_m = var + s2.mean(0)
    mom = -0.5 * np.sum(1 + np.log(var_m) - mean**2 - var_m)
    np.testing.assert_allclose(m.kl_term(dataclasses.replace(TINY, kl="population_moment"), loc, lv), mom, rtol=1e-5)


def test_objective_terms_equal_the_code_losses(tiny):
    params, ms, batch = tiny
    key = jax.random.key(7)
    t, ms_out = terms(TINY, params, ms, batch, key, False)
    x = batch["x"]
    loc, lv = m.encode(TINY, params, ms, x)
    k_eps = jax.random.split(key, 3)[0]
    z = loc + jnp.exp(0.5 * lv) * jax.random.normal(k_eps, loc.shape)
    x_hat = np.asarray(m.decode(TINY, params, ms, z))
    mae = np.abs(x - x_hat).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(t.mae, mae, rtol=1e-5)
    np.testing.assert_allclose(t.rec, 5000.0 * mae, rtol=1e-5)
    np.testing.assert_allclose(t.var_reg, 0.1 * np.sum(np.exp(lv) - lv - 1.0, -1), rtol=1e-4, atol=1e-6)
    d = m.discriminator(TINY)
    apply = jax.jit(lambda v, img: d.apply(v, img, train=False))
    real = np.asarray(apply({"params": params["disc"], **ms["disc"]}, x))
    fake = np.asarray(apply({"params": params["disc"], **ms["disc"]}, x_hat))
    assert real.shape == (8, 8, 8, 1)  # a patch map, averaged per example
    np.testing.assert_allclose(t.adv, 100.0 * softplus(-fake).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(t.disc, 100.0 * (softplus(-real) + softplus(fake)).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(t.gen, t.rec + t.kl + t.var_reg + t.adv, rtol=1e-6)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), ms_out, ms))  # eval: stats unchanged


def test_training_pass_updates_both_players_batch_statistics(tiny):
    params, ms, batch = tiny
    _, new = terms(TINY, params, ms, batch, jax.random.key(0), True)
    assert jax.tree.structure(new) == jax.tree.structure(ms)
    for player in ("vae", "disc"):
        changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new[player], ms[player]))
        assert any(changed), player
    enc_changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new["vae"], ms["vae"])
    assert any(jax.tree.leaves(enc_changed["batch_stats"]["encoder"]))  # the encoder's too, not only the decoder's


@pytest.mark.slow
def test_without_adversary_no_discriminator_and_zero_gan_terms():
    cfg = dataclasses.replace(TINY, adversarial=False, kl="per_sample", var_reg_weight=0.0)
    params, ms = m.init(cfg, 0)
    assert set(params) == {"vae"} and set(m.make_optimizers(cfg)) == {"vae"}
    t, _ = terms(cfg, params, ms, m.random_batch(cfg, 4), jax.random.key(0), False)
    assert np.all(np.asarray(t.adv) == 0) and np.all(np.asarray(t.disc) == 0) and np.all(np.asarray(t.var_reg) == 0)
    out = jax.jit(m.make_loss_fn(cfg))(params, ms, m.random_batch(cfg, 4), jax.random.key(0))
    np.testing.assert_allclose(out.loss, out.metrics["gen"], rtol=1e-6)
    with pytest.raises(ValueError, match="make_adversarial_loss_fn"):
        m.make_loss_fn(TINY)
    with pytest.raises(ValueError, match="make_loss_fn"):
        m.make_adversarial_loss_fn(cfg)


@pytest.mark.slow
def test_generator_gradient_carries_the_adversarial_term(tiny):
    params, ms, batch = tiny
    key = jax.random.key(1)

    def g(cfg):
        fn = m.make_adversarial_loss_fn(cfg)
        return jax.jit(jax.grad(lambda p: fn(p, ms, batch, key).gen_loss))(params)

    with_adv, no_adv = g(TINY), g(dataclasses.replace(TINY, adv_weight=0.0))
    diff = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), with_adv["vae"], no_adv["vae"]))
    assert max(diff) > 1e-3  # the generator is trained through D(x_hat)
    # and the generator's loss depends on the discriminator's weights (so a joint gradient would move D)
    assert max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(with_adv["disc"])) > 0


def test_paper_configuration_parameter_counts():
    shapes = jax.eval_shape(lambda: m._init(m.Config(), jax.random.key(0)))
    params, ms = shapes
    vae = count_parameters({"params": params["vae"], **ms["vae"]})
    disc = count_parameters({"params": params["disc"], **ms["disc"]})
    head = 2 * (1024 * 512 + 512)  # the Gaussian head, missing from the Keras summary (nets/resnet.py)
    assert vae - head == 9_932_466  # Keras summary, "vae"
    assert disc == 412_101  # Keras summary, "discriminator"


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"kl": "analytic"}, "kl"),
        ({"x_shape": (30, 30, 1)}, "divisible"),
        ({"dec_widths": (4, 4)}, "dec_widths"),
        ({"gan_loss": "wasserstein"}, "gan_loss"),
        ({"disc_strides": (2, 1)}, "disc_strides"),
        ({"b1": 1.0}, "b1"),
        ({"rec_weight": -1.0}, "rec_weight"),
    ],
)
def test_bad_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **kw)


def test_population_kl_needs_two_examples_and_images_in_range(tiny):
    params, ms, _ = tiny
    one = m.random_batch(TINY, 1)
    with pytest.raises(ValueError, match="B >= 2"):
        m.objective_terms(TINY, params, ms, one, jax.random.key(0))
    with pytest.raises(ValueError, match=r"\[-1.0, 1.0\]"):
        m.objective_terms(TINY, params, ms, {"x": one["x"] * 0 + 2.0}, jax.random.key(0))

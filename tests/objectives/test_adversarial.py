"""GAN losses: direct formulas (float64 NumPy), patch averaging to [B], gradient signs, stability at huge logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.objectives.adversarial import (
    KINDS,
    DiscriminatorTerms,
    bce_with_logits,
    discriminator_fake_loss,
    discriminator_loss,
    discriminator_real_loss,
    discriminator_terms,
    generator_loss,
    per_example_mean,
)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# Direct float64 formulas, elementwise.
REFERENCE = {
    "nonsaturating": (
        lambda r: -np.log(_sig(r)),
        lambda f: -np.log(1.0 - _sig(f)),
        lambda f: -np.log(_sig(f)),
    ),
    "hinge": (lambda r: np.maximum(0.0, 1.0 - r), lambda f: np.maximum(0.0, 1.0 + f), lambda f: -f),
    "least_squares": (lambda r: 0.5 * (r - 1.0) ** 2, lambda f: 0.5 * f**2, lambda f: 0.5 * (f - 1.0) ** 2),
}

RNG = np.random.default_rng(0)
REAL = RNG.normal(size=(5, 4, 4, 1)) * 3  # a PatchGAN-like logit map [B, H', W', 1]
FAKE = RNG.normal(size=(5, 4, 4, 1)) * 3


@pytest.mark.parametrize("kind", KINDS)
def test_against_direct_formulas_patch_averaged(kind, variant):
    real_ref, fake_ref, gen_ref = REFERENCE[kind]
    axes = (1, 2, 3)
    r32, f32 = jnp.asarray(REAL, jnp.float32), jnp.asarray(FAKE, jnp.float32)
    terms = variant(lambda r, f: discriminator_terms(r, f, kind))(r32, f32)
    assert isinstance(terms, DiscriminatorTerms)
    np.testing.assert_allclose(terms.real, real_ref(REAL).mean(axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms.fake, fake_ref(FAKE).mean(axes), rtol=1e-5, atol=1e-6)
    loss = variant(lambda r, f: discriminator_loss(r, f, kind))(r32, f32)
    np.testing.assert_allclose(loss, real_ref(REAL).mean(axes) + fake_ref(FAKE).mean(axes), rtol=1e-5, atol=1e-6)
    g = variant(lambda f: generator_loss(f, kind))(f32)
    np.testing.assert_allclose(g, gen_ref(FAKE).mean(axes), rtol=1e-5, atol=1e-6)
    assert loss.shape == g.shape == (5,)


@pytest.mark.parametrize("kind", KINDS)
def test_scalar_logits_per_example(kind):
    l = jnp.asarray([-2.0, 0.0, 3.0])
    assert discriminator_real_loss(l, kind).shape == (3,)
    np.testing.assert_allclose(discriminator_real_loss(l, kind), REFERENCE[kind][0](np.asarray(l)), rtol=1e-6)


def test_nonsaturating_is_keras_bce_with_logits():
    """BCE(1, l) and BCE(0, l) (Rivera's code) equal the real / fake / generator terms."""
    np.testing.assert_allclose(discriminator_real_loss(REAL), bce_with_logits(REAL, 1.0).mean((1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(discriminator_fake_loss(FAKE), bce_with_logits(FAKE, 0.0).mean((1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(generator_loss(FAKE), bce_with_logits(FAKE, 1.0).mean((1, 2, 3)), rtol=1e-6)
    t = np.full(REAL.shape, 0.3)
    ref = -(t * np.log(_sig(REAL)) + (1 - t) * np.log(1 - _sig(REAL)))
    np.testing.assert_allclose(bce_with_logits(REAL, t), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_signs(kind):
    """Where D is wrong, it raises real logits and lowers fake ones; the generator raises fake logits."""
    l = jnp.asarray([[-0.5], [0.0], [0.5]])  # below every real / generator target
    g_real = jax.grad(lambda x: jnp.sum(discriminator_real_loss(x, kind)))(l)
    g_gen = jax.grad(lambda x: jnp.sum(generator_loss(x, kind)))(l)
    g_fake = jax.grad(lambda x: jnp.sum(discriminator_fake_loss(x, kind)))(l + 0.75)  # above every fake target
    assert np.all(g_real < 0) and np.all(g_fake > 0) and np.all(g_gen < 0)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_values(kind):
    """d/dl of the per-example mean of a [B, P] map is the elementwise derivative divided by P."""
    l = jnp.asarray(RNG.normal(size=(2, 4)), jnp.float32)
    g = jax.grad(lambda x: jnp.sum(generator_loss(x, kind)))(l)
    ln = np.asarray(l, np.float64)
    ref = {"nonsaturating": -_sig(-ln), "hinge": -np.ones_like(ln), "least_squares": ln - 1.0}[kind] / 4
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-7)


def test_stable_at_huge_logits():
    """No overflow or NaN at |l| = 1e4 in float32: exact linear tails, gradients in [-1, 1]."""
    l = jnp.asarray([[-1e4], [-50.0], [50.0], [1e4]], jnp.float32)
    real = discriminator_real_loss(l)
    fake = discriminator_fake_loss(l)
    gen = generator_loss(l)
    np.testing.assert_allclose(real, [1e4, 50.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(fake, [0.0, 0.0, 50.0, 1e4], atol=1e-6)
    np.testing.assert_allclose(gen, real)
    for f in (discriminator_real_loss, discriminator_fake_loss, generator_loss):
        g = jax.grad(lambda x: jnp.sum(f(x)))(l)
        assert np.all(np.isfinite(g)) and np.all(np.abs(g) <= 1.0)
    g = jax.grad(lambda x: jnp.sum(generator_loss(x)))(l)
    np.testing.assert_allclose(g[:, 0], [-1.0, -1.0, 0.0, 0.0], atol=1e-6)  # saturates only where D is fooled


def test_unpaired_terms_and_paired_loss():
    r = jnp.zeros((4, 2, 2, 1))
    f = jnp.zeros((3, 2, 2, 1))
    terms = discriminator_terms(r, f)
    assert terms.real.shape == (4,) and terms.fake.shape == (3,)
    with pytest.raises(ValueError, match="same batch size"):
        discriminator_loss(r, f)


def test_per_example_mean():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_allclose(per_example_mean(x), [5.5, 17.5])
    np.testing.assert_array_equal(per_example_mean(jnp.asarray([1.0, 2.0])), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"`x` must be \[B, ...\]"):
        per_example_mean(jnp.asarray(1.0))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        generator_loss(REAL, "wasserstein")
    with pytest.raises(ValueError, match="`fake_logits` must be finite"):
        generator_loss(jnp.asarray([0.0, jnp.nan]))
    with pytest.raises(ValueError, match=r"`real_logits` must be \[B, ...\]"):
        discriminator_real_loss(1.0)
    with pytest.raises(ValueError, match="`real_logits` must be a floating array"):
        discriminator_real_loss(jnp.asarray([1, 2]))
    with pytest.raises(ValueError, match=r"`targets` must lie in \[0, 1\]"):
        bce_with_logits(REAL, 2.0)
    with pytest.raises(ValueError, match="shapes do not broadcast"):
        bce_with_logits(jnp.zeros((3,)), jnp.zeros((2,)))

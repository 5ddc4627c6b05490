import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.nets.conv import ConvDecoder, ConvEncoder

# Small widths keep compile time low; the 28x28x1 geometry is the one the VAE uses.
ENC = ConvEncoder(channels=(4, 8), hidden=8)
DEC = ConvDecoder(channels=(4, 8), hidden=8)


@pytest.fixture(scope="module")
def params():
    key = jax.random.key(0)
    pe = jax.jit(ENC.init)(key, jnp.ones((1, 28, 28, 1)))
    pd = jax.jit(DEC.init)(key, jnp.ones((1, 5)))
    return pe, pd


@pytest.mark.parametrize("lead", [(2,), (3, 2)], ids=["B", "K-B"])
def test_encoder_decoder_shapes_mnist(params, lead):
    pe, pd = params
    assert jax.jit(ENC.apply)(pe, jnp.ones(lead + (28, 28, 1))).shape == lead + (8,)
    assert jax.jit(DEC.apply)(pd, jnp.ones(lead + (5,))).shape == lead + (28, 28, 1)


def test_leading_axes_fold_into_batch(params):
    """A [K, B, D] decode equals decoding each [B, D] slice (leading axes are batch axes)."""
    _, pd = params
    z = jax.random.normal(jax.random.key(1), (3, 2, 5))
    apply = jax.jit(DEC.apply)
    full = apply(pd, z)
    for k in range(3):
        np.testing.assert_allclose(full[k], apply(pd, z[k]), rtol=1e-5, atol=1e-5)


def test_encoder_output_depends_on_input(params):
    pe, _ = params
    x = jax.random.uniform(jax.random.key(2), (2, 28, 28, 1))
    h = jax.jit(ENC.apply)(pe, x)
    assert jnp.all(jnp.isfinite(h))
    assert not np.allclose(h[0], h[1])


def test_other_image_shape():
    shape = (16, 16, 3)
    enc = ConvEncoder(image_shape=shape, channels=(4, 4, 8), hidden=6)
    dec = ConvDecoder(image_shape=shape, channels=(4, 4, 8), hidden=6)
    x, z = jnp.ones((2,) + shape), jnp.ones((2, 4))
    assert jax.eval_shape(enc.init_with_output, jax.random.key(0), x)[0].shape == (2, 6)
    assert jax.eval_shape(dec.init_with_output, jax.random.key(0), z)[0].shape == (2,) + shape


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match=r"`x`.*\(28, 28, 1\)"):
        jax.eval_shape(ENC.init, jax.random.key(0), jnp.ones((2, 784)))


def test_indivisible_image_shape_raises():
    with pytest.raises(ValueError, match="image_shape"):
        jax.eval_shape(ConvEncoder(image_shape=(30, 30, 1)).init, jax.random.key(0), jnp.ones((1, 30, 30, 1)))
    with pytest.raises(ValueError, match="image_shape"):
        jax.eval_shape(ConvDecoder(image_shape=(28, 28)).init, jax.random.key(0), jnp.ones((1, 4)))

"""PatchGAN: the paper's parameter count and logit-map geometry, train/eval modes, explicit dropout keys, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.nets import RIVERA_PATCHGAN, PatchGAN, count_parameters

SMALL = PatchGAN(features=(4, 4, 1), strides=(2, 1, 1))
X = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))


@pytest.fixture(scope="module")
def variables():
    return jax.jit(lambda k, x: SMALL.init(k, x, train=False))(jax.random.key(0, impl="rbg"), X)


def _apply(module, train):
    if train:
        return jax.jit(lambda v, x, k: module.apply(v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"])[0])
    return jax.jit(lambda v, x: module.apply(v, x, train=False))


def test_paper_parameter_count_and_logit_map():
    """``params + batch_stats`` = 412,101, the authors' Keras summary; a 32x32x1 logit map at 256x256x3."""
    x = jnp.zeros((2, 256, 256, 3))
    v = jax.eval_shape(lambda k: RIVERA_PATCHGAN.init(k, x, train=False), jax.random.key(0))
    assert count_parameters(v) == 412_101
    assert count_parameters(v, ("batch_stats",)) == 2 * (3 * 128 + 2 * 64 + 1)
    out = jax.eval_shape(lambda v, x: RIVERA_PATCHGAN.apply(v, x, train=False), v, x)
    assert out.shape == (2, 32, 32, 1)
    # BatchNorm on the logit map too, as in the official code.
    assert "bn_5" in v["params"]


def test_small_shapes_and_leading_axes(variables):
    out = _apply(SMALL, False)(variables, X)
    assert out.shape == (3, 4, 4, 1)
    lead = jax.jit(lambda v, x: SMALL.apply(v, x, train=False))(variables, jnp.stack([X, X]))
    assert lead.shape == (2, 3, 4, 4, 1)
    np.testing.assert_allclose(lead[1], out, rtol=1e-5, atol=1e-5)


def test_dropout_key_is_explicit(variables):
    train = _apply(SMALL, True)
    a = train(variables, X, jax.random.key(1))
    b = train(variables, X, jax.random.key(1))
    c = train(variables, X, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # Dropout zeroes about a quarter of the logits in train mode (rate 0.25, after the last layer too).
    frac = float(jnp.mean(a == 0))
    n = a.size
    assert abs(frac - 0.25) <= 5 * np.sqrt(0.25 * 0.75 / n)
    with pytest.raises(Exception, match="dropout"):
        SMALL.apply(variables, X, train=True, mutable=["batch_stats"])  # no key: refused, never hidden RNG


def test_eval_mode_is_deterministic_and_uses_running_averages(variables):
    ev = _apply(SMALL, False)
    np.testing.assert_array_equal(ev(variables, X), ev(variables, X))
    no_drop = SMALL.clone(dropout_rate=0.0)
    vs = jax.jit(lambda v, x: no_drop.apply(v, x, train=True, mutable=["batch_stats"]))(variables, X)
    out_train, upd = vs
    assert not np.allclose(out_train, ev(variables, X), atol=1e-4)
    assert any(
        not np.allclose(a, b)
        for a, b in zip(
            jax.tree_util.tree_leaves(upd["batch_stats"]), jax.tree_util.tree_leaves(variables["batch_stats"])
        )
    )


def test_norm_logits_off_leaves_the_last_convolution_bare():
    d = SMALL.clone(norm_logits=False, dropout_rate=0.5)
    v = jax.eval_shape(lambda k: d.init(k, X, train=False), jax.random.key(0))
    assert "bn_2" not in v["params"] and "bn_1" in v["params"]
    vv = jax.jit(lambda k, x: d.init(k, x, train=False))(jax.random.key(0, impl="rbg"), X)
    out = jax.jit(lambda v, x, k: d.apply(v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"])[0])(
        vv, X, jax.random.key(3)
    )
    assert not np.any(out == 0)  # no dropout on the logit map


def test_without_batch_norm_there_are_no_batch_stats():
    d = SMALL.clone(use_batch_norm=False)
    v = jax.eval_shape(lambda k: d.init(k, X, train=False), jax.random.key(0))
    assert "batch_stats" not in v
    assert count_parameters(v) == (9 * 1 * 4 + 4) + (9 * 4 * 4 + 4) + (9 * 4 * 1 + 1)


def test_leaky_relu_slope_is_keras_default():
    assert RIVERA_PATCHGAN.negative_slope == 0.3
    assert RIVERA_PATCHGAN.dropout_rate == 0.25


@pytest.mark.parametrize(
    "module, x, match",
    [
        (SMALL.clone(strides=(2, 1)), X, "`strides` must have one entry per convolution"),
        (SMALL.clone(features=(4, 0, 1)), X, "`features`"),
        (SMALL.clone(dropout_rate=1.0), X, "`dropout_rate`"),
        (SMALL.clone(negative_slope=-0.1), X, "`negative_slope`"),
        (SMALL.clone(kernel_size=0), X, "`kernel_size`"),
        (SMALL, jnp.ones((3, 7, 8, 1)), "divisible by the product of `strides` \\(2\\)"),
        (SMALL, jnp.ones((8, 8)), r"`x` must be \[..., H, W, C\]"),
    ],
)
def test_bad_configuration_raises(module, x, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda k: module.init(k, x, train=False), jax.random.key(0))

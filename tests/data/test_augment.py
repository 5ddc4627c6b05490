"""ADA-style augmentations: exact geometry, per-op probability b, parameter laws, binary outputs."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from jaxvae.data.augment import AUG_NAIVE, AUG_TUNED, OPS, AugmentConfig, _forward_matrix, _resample, augment
from tests import stats

KEY = jax.random.key(0)


def digits(b=16, size=32, seed=0):
    """Binary, asymmetric blobs on a blank border (stand-ins for padded MNIST digits)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((b, size, size, 1), np.float32)
    x[:, 6:-6, 6:-6] = rng.random((b, size - 12, size - 12, 1)) < 0.3
    x[:, 6:12, 6:9] = 1.0  # a stroke that no flip or quarter turn maps to itself
    return jnp.asarray(x)


def run(cfg, x, key=KEY):
    return np.asarray(jax.jit(augment, static_argnums=2)(key, x, cfg))


def test_probability_zero_or_no_ops_is_the_identity():
    x = digits()
    np.testing.assert_array_equal(run(AUG_NAIVE.with_probability(0.0), x), x)
    np.testing.assert_array_equal(run(AugmentConfig(ops=()), x), x)


def test_xflip_and_quarter_turns_are_exact():
    x = digits()
    np.testing.assert_array_equal(run(AugmentConfig(ops=("xflip",), probability=1.0), x), np.asarray(x)[:, :, ::-1])
    out = run(AugmentConfig(ops=("rotate90",), probability=1.0), digits(400, size=16))
    xs = np.asarray(digits(400, size=16))
    ks = []
    for o, xi in zip(out, xs):
        match = [k for k in range(4) if np.array_equal(np.rot90(xi, k), o)]
        assert len(match) == 1
        ks.append(match[0])
    stats.chi2_test(np.bincount(ks, minlength=4), np.full(4, 0.25), what="quarter turns")


def test_resampling_follows_the_forward_map():
    x = digits(1)[0]
    rot = jnp.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # row' = -col, col' = row about the centre
    np.testing.assert_array_equal(_resample(x, rot, "nearest"), np.rot90(np.asarray(x), 1))
    shift = jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]])
    want = np.zeros_like(np.asarray(x))
    want[2:, :-3] = np.asarray(x)[:-2, 3:]  # content moves 2 rows down and 3 columns left, zeros enter
    np.testing.assert_array_equal(_resample(x, shift, "nearest"), want)


def test_integer_translation_moves_a_pixel_within_the_bound():
    x = np.zeros((300, 32, 32, 1), np.float32)
    x[:, 16, 16] = 1.0
    out = run(AugmentConfig(ops=("xint",), probability=1.0, xint_max=0.125), jnp.asarray(x))
    assert np.all(out.reshape(300, -1).sum(1) == 1)
    pos = np.argwhere(out[..., 0] == 1)[:, 1:] - 16
    assert np.abs(pos).max() <= 4 and len(np.unique(pos[:, 0])) == 9  # round(U[-4, 4]): all of -4..4 occur


@pytest.mark.parametrize("b", [0.1, 0.5])
def test_each_op_fires_with_probability_b_independently(b):
    n = 4000
    x = digits(n, size=16)
    cfg = AugmentConfig(ops=("xflip", "lumaflip"), probability=b)
    out = run(cfg, x)
    xs = np.asarray(x)
    flipped = np.array([not np.array_equal(o, xi) and not np.array_equal(1 - o, xi) for o, xi in zip(out, xs)])
    inverted = out.reshape(n, -1)[:, 0] == 1  # the corner pixel is background
    cells = np.bincount(2 * flipped + inverted, minlength=4)
    stats.chi2_test(cells, [(1 - b) ** 2, (1 - b) * b, b * (1 - b), b**2], what="joint (xflip, lumaflip)")
    # the flip coin of an example does not change when another op is added to the pipeline
    only_flip = run(AugmentConfig(ops=("xflip",), probability=b), x)
    np.testing.assert_array_equal(flipped, np.any(only_flip != xs, axis=(1, 2, 3)))


def _matrices(cfg, n=3000, size=(32, 32)):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(KEY, jnp.arange(n))
    return np.asarray(jax.jit(jax.vmap(lambda k: _forward_matrix(k, cfg, size)))(keys), np.float64)


def test_parameter_laws_follow_ada():
    m = _matrices(AugmentConfig(ops=("scale",), probability=1.0, scale_std=0.2))
    stats.ks_test(np.log2(m[:, 0, 0]), sps.norm(0, 0.2).cdf, what="log2 scale")
    np.testing.assert_allclose(m[:, 0, 0], m[:, 1, 1])
    m = _matrices(AugmentConfig(ops=("aniso",), probability=1.0, aniso_std=0.2))
    stats.ks_test(np.log2(m[:, 0, 0]), sps.norm(0, 0.2).cdf, what="log2 aniso")
    np.testing.assert_allclose(m[:, 0, 0] * m[:, 1, 1], 1.0, rtol=1e-6)
    m = _matrices(AugmentConfig(ops=("rotate",), probability=1.0, rotate_max=1 / 12))
    stats.ks_test(np.arctan2(m[:, 1, 0], m[:, 0, 0]), sps.uniform(-math.pi / 12, math.pi / 6).cdf, what="angle")
    m = _matrices(AugmentConfig(ops=("xfrac",), probability=1.0, xfrac_std=0.03))
    stats.ks_test(m[:, :2, 2], sps.norm(0, 0.03 * 32).cdf, what="fractional shift")


def test_presets_keep_binary_images_binary():
    x = digits(64)
    for cfg in (AUG_NAIVE, AUG_TUNED):
        out = run(cfg.with_probability(1.0), x)
        assert set(np.unique(out)) <= {0.0, 1.0}
        assert np.mean(out != np.asarray(x)) > 0.01
    grey = run(dataclasses.replace(AUG_TUNED, probability=1.0, interpolation="bilinear"), x)
    assert grey.min() >= 0 and grey.max() <= 1 and np.any((grey > 0.01) & (grey < 0.99))


def test_presets_op_lists():
    assert AUG_NAIVE.ops == ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "lumaflip")
    assert AUG_TUNED.ops == ("xint", "scale", "rotate", "aniso", "xfrac")
    assert AugmentConfig(ops=("cutout", "xflip")).ops == ("xflip", "cutout")  # canonical order


def test_cutout_zeroes_one_square():
    x = jnp.ones((50, 32, 32, 1))
    out = run(AugmentConfig(ops=("cutout",), probability=1.0, cutout_size=0.5), x)
    for o in out[..., 0]:
        rows, cols = np.where(o == 0)
        assert 0 < len(rows) <= 256
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a filled rectangle
        assert rows.max() - rows.min() + 1 <= 16 and cols.max() - cols.min() + 1 <= 16


def test_keys_batches_and_shapes():
    x = digits(8)
    cfg = AUG_NAIVE.with_probability(0.5)
    a, b = run(cfg, x), run(cfg, x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(cfg, x, jax.random.key(1)))
    np.testing.assert_array_equal(run(cfg, x[:4]), a[:4])  # example i's draws depend on (key, i) only
    np.testing.assert_array_equal(run(cfg, x[..., 0]), a[..., 0])  # [B, H, W] input


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ops": ("shear",)},
        {"ops": ("xflip", "xflip")},
        {"ops": ("xflip",), "probability": 1.5},
        {"ops": ("xflip",), "scale_std": -0.1},
        {"ops": ("xflip",), "rotate_max": 2.0},
        {"ops": ("xflip",), "interpolation": "cubic"},
    ],
)
def test_config_errors(kwargs):
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)


def test_input_errors():
    with pytest.raises(ValueError, match="float"):
        augment(KEY, jnp.ones((2, 8, 8, 1), jnp.int32), AUG_TUNED)
    with pytest.raises(ValueError, match="float"):
        augment(KEY, jnp.ones((2, 64)), AUG_TUNED)
    with pytest.raises(ValueError, match="AugmentConfig"):
        augment(KEY, jnp.ones((2, 8, 8, 1)), OPS)

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvae.nets.unet as unet_module
from jaxvae.nets import UNet

SMALL = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), num_groups=4)
APPLY = jax.jit(SMALL.apply)  # one compilation shared by the tests (same shapes)


@pytest.fixture(scope="module")
def small_params():
    return jax.jit(SMALL.init)(jax.random.key(0), jnp.zeros((2, 16, 16, 1)), jnp.zeros(2))


@pytest.fixture(scope="module")
def trained_like(small_params):
    """The parameters moved off their initial values (the zero-initialised layers included)."""
    leaves, tree = jax.tree.flatten(small_params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def test_untrained_output_is_zero(small_params):
    """Zero-initialised output layer: F = 0, so EDM's denoiser starts as c_skip x."""
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
    out = APPLY(small_params, x, jnp.array([-1.0, 0.5]))
    assert out.shape == x.shape
    np.testing.assert_array_equal(np.asarray(out), 0.0)


def test_output_depends_on_input_and_noise_level(trained_like):
    params, apply = trained_like, APPLY
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
    base = apply(params, x, jnp.array([0.1, 0.1]))
    assert np.all(np.isfinite(base)) and np.abs(base).max() > 1e-4
    assert np.abs(apply(params, x, jnp.array([0.1, -1.0])) - base)[1].max() > 1e-5
    assert np.abs(apply(params, x, jnp.array([0.1, -1.0])) - base)[0].max() == 0  # examples are independent
    assert np.abs(apply(params, x.at[1].multiply(-1.0), jnp.array([0.1, 0.1])) - base)[1].max() > 1e-5


def test_gradients_reach_every_parameter(trained_like):
    params = trained_like
    x = jax.random.normal(jax.random.key(2), (2, 16, 16, 1))
    g = jax.jit(jax.grad(lambda p: jnp.sum(jnp.square(SMALL.apply(p, x, jnp.array([0.3, -0.4])) - x))))(params)
    norms = {jax.tree_util.keystr(k): float(jnp.linalg.norm(v)) for k, v in jax.tree_util.tree_leaves_with_path(g)}
    assert all(np.isfinite(v) for v in norms.values())
    assert all(v > 0 for v in norms.values()), [k for k, v in norms.items() if v == 0]


def test_default_size_for_32x32_mnist():
    net = UNet()
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)), jnp.zeros(1))
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes)) == 1_112_801
    out = jax.eval_shape(
        lambda: net.apply(
            net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), jnp.zeros(1)),
            jnp.zeros((3, 32, 32, 1)),
            jnp.zeros(3),
        )
    )
    assert out.shape == (3, 32, 32, 1)


def test_width_knobs_and_no_attention():
    net = UNet(channels=4, channel_mult=(1, 1, 2), num_res_blocks=2, attn_resolutions=(), num_groups=2, out_channels=3)
    params = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 8, 8, 2)), jnp.zeros(1))
    assert not any("attn" in jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(params))
    out = jax.eval_shape(lambda p: net.apply(p, jnp.zeros((2, 8, 8, 2)), jnp.zeros(2)), params)
    assert out.shape == (2, 8, 8, 3)


@pytest.mark.parametrize(
    "net, x_shape, label_shape, match",
    [
        (UNet(channels=7, num_groups=1), (1, 32, 32, 1), (1,), "even"),
        (UNet(channels=8, num_groups=3), (1, 32, 32, 1), (1,), "num_groups"),
        (UNet(channels=8, num_groups=4, channel_mult=(1, 2, 2)), (1, 30, 30, 1), (1,), "divisible by 4"),
        (UNet(channels=8, num_groups=4), (1, 32, 32), (1,), r"\[B, H, W, C\]"),
        (UNet(channels=8, num_groups=4), (2, 32, 32, 1), (1,), "noise_label"),
        (UNet(channels=8, num_groups=4, channel_mult=()), (1, 32, 32, 1), (1,), "channel_mult"),
        (UNet(channels=8, num_groups=4, num_heads=3), (1, 32, 32, 1), (1,), "num_heads"),
        (UNet(channels=8, num_groups=4, num_res_blocks=-1), (1, 32, 32, 1), (1,), "num_res_blocks"),
    ],
)
def test_configuration_errors(net, x_shape, label_shape, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(net.init, jax.random.key(0), jnp.zeros(x_shape), jnp.zeros(label_shape))


def test_the_convolution_is_chosen_in_one_place():
    """Every convolution goes through the module-level ``Conv`` (one import to switch implementations)."""
    source = inspect.getsource(unet_module)
    assert source.count("import Conv") == 1 and "nn.Conv(" not in source and "linen.Conv(" not in source

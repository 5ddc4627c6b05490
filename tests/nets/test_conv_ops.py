"""The fast convolutions equal lax / flax in values and in both gradients, and refuse what they do not cover."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvae.nets import conv_ops
from jaxvae.nets.conv_ops import NHWC, Conv, ConvTranspose, conv_general_dilated

RTOL, ATOL = 1e-4, 1e-4


def _rand(key, shape):
    return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def _check_vjp(f, ref, x, w, grad_atol=1e-3):
    y, y_ref = f(x, w), ref(x, w)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    dy = _rand(7, y_ref.shape)
    (dx, dw), (dx_ref, dw_ref) = jax.vjp(f, x, w)[1](dy), jax.vjp(ref, x, w)[1](dy)
    # float32 tolerance relative to the gradients' scale (sums over up to a few hundred products)
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL, atol=grad_atol)
    np.testing.assert_allclose(dw, dw_ref, rtol=RTOL, atol=grad_atol)


# strides 1, 2, 3; kernels 1, 3, 4; SAME / VALID / explicit asymmetric pairs; odd and even sizes
# The full grid is the slow tier; the default tier runs a subset that still covers every option.
STRIDED_ALL = list(
    itertools.product(
        [(9, 8), (7, 7)],
        [1, 3, 4],
        [1, 2, 3],
        ["SAME", "VALID", ((1, 2), (0, 1)), ((2, 0), (3, 1))],
        ["xla", "im2col", "gemm"],
    )
)
STRIDED_QUICK = [
    ((9, 8), 4, 2, "SAME", "xla"),
    ((9, 8), 4, 2, "SAME", "im2col"),
    ((7, 7), 3, 2, "VALID", "xla"),
    ((9, 8), 3, 1, "SAME", "im2col"),
    ((7, 7), 4, 3, ((2, 0), (3, 1)), "xla"),
    ((9, 8), 3, 2, ((1, 2), (0, 1)), "im2col"),
    ((9, 8), 4, 2, "SAME", "gemm"),
    ((7, 7), 1, 2, "SAME", "gemm"),  # kernel smaller than the stride: phases p >= K dropped
    ((9, 8), 4, 3, ((2, 0), (3, 1)), "gemm"),  # M = 2 taps per axis, padding cropped to s * (H_out + M - 1)
    ((7, 7), 3, 1, "VALID", "gemm"),
]
STRIDED = [pytest.param(*c, marks=pytest.mark.slow) for c in STRIDED_ALL if c not in STRIDED_QUICK] + STRIDED_QUICK


@pytest.mark.parametrize("hw,k,s,pad,weight_grad", STRIDED)
def test_strided_conv_matches_lax(hw, k, s, pad, weight_grad):
    x, w = _rand(0, (2,) + hw + (3,)), _rand(1, (k, k, 3, 5))

    def ref(x, w):
        return lax.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=NHWC)

    def fast(x, w):
        return conv_general_dilated(x, w, (s, s), pad, dimension_numbers=NHWC, impl="fast", weight_grad=weight_grad)

    _check_vjp(jax.jit(fast), ref, x, w)


DILATED_ALL = list(
    itertools.product(
        [(5, 4), (6, 6)],
        [1, 3, 4],
        [2, 3],
        [((1, 2), (2, 1)), ((3, 3), (0, 0)), ((0, 4), (-1, 2))],
        ["xla", "phase", "gemm"],
    )
)
DILATED_QUICK = [
    ((5, 4), 4, 2, ((1, 2), (2, 1)), "phase"),
    ((6, 6), 3, 2, ((3, 3), (0, 0)), "xla"),
    ((5, 4), 3, 3, ((0, 4), (-1, 2)), "phase"),
    ((5, 4), 4, 2, ((1, 2), (2, 1)), "gemm"),
    ((6, 6), 3, 3, ((0, 4), (-1, 2)), "gemm"),
]
DILATED = [pytest.param(*c, marks=pytest.mark.slow) for c in DILATED_ALL if c not in DILATED_QUICK] + DILATED_QUICK


@pytest.mark.parametrize("hw,k,s,pad,weight_grad", DILATED)
def test_lhs_dilated_conv_matches_lax(hw, k, s, pad, weight_grad):
    x, w = _rand(2, (2,) + hw + (3,)), _rand(3, (k, k, 3, 5))  # > PHASE_MIN_OUT_CHANNELS: by phases

    def ref(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), pad, lhs_dilation=(s, s), dimension_numbers=NHWC)

    def fast(x, w):
        return conv_general_dilated(
            x, w, (1, 1), pad, lhs_dilation=(s, s), dimension_numbers=NHWC, impl="fast", weight_grad=weight_grad
        )

    _check_vjp(jax.jit(fast), ref, x, w)


@pytest.mark.parametrize("cin,cout", [(6, 2), (2, 6)])  # both branches: dy shifted (O <= C), x shifted (C < O)
def test_stride1_weight_grad_equals_autodiff(cin, cout):
    x, w = _rand(10, (3, 7, 6, cin)), _rand(11, (3, 2, cin, cout))
    dy = _rand(12, (3, 5, 5, cout))
    ref = jax.vjp(lambda v: lax.conv_general_dilated(x, v, (1, 1), "VALID", dimension_numbers=NHWC), w)[1](dy)[0]
    np.testing.assert_allclose(conv_ops.stride1_weight_grad(x, dy, (3, 2)), ref, rtol=RTOL, atol=1e-3)
    with pytest.raises(ValueError, match="`dy` must be"):
        conv_ops.stride1_weight_grad(x, dy[:, :4], (3, 2))


def test_auto_weight_grad_choice():
    """The per-layer choice of weight_grad='auto' (the measured rule of _auto_weight_grad)."""
    choose = conv_ops._auto_weight_grad
    assert choose((64, 16, 16, 32), (4, 4, 32, 64), (1, 1), (2, 2)) == "gemm"  # any transposed convolution
    assert choose((64, 64, 64, 1), (4, 4, 1, 32), (2, 2), (1, 1)) == "gemm"  # strided, >= 32x32 pixels
    assert choose((64, 16, 16, 32), (4, 4, 32, 64), (2, 2), (1, 1)) == "xla"  # strided, small input
    assert choose((64, 32, 32, 16), (1, 1, 16, 16), (2, 2), (1, 1)) == "im2col"  # 1x1 strided: a subsampling
    assert choose((64, 32, 32, 16), (3, 3, 16, 16), (1, 1), (1, 1)) == "xla"  # stride 1
    assert choose((64, 32, 32, 1), (3, 3, 1, 16), (1, 1), (1, 1)) == "im2col"  # stride 1, few input channels


def test_dilated_conv_by_phases_differs_per_phase():
    """A non-symmetric kernel: each output phase uses its own sub-kernel (a wrong phase order fails)."""
    x = _rand(4, (1, 4, 5, 1))
    w = jnp.arange(16.0).reshape(4, 4, 1, 1)
    pads = ((2, 1), (1, 2))
    ref = lax.conv_general_dilated(x, w, (1, 1), pads, lhs_dilation=(2, 2), dimension_numbers=NHWC)
    np.testing.assert_allclose(conv_ops.dilated_conv_by_phases(x, w, (2, 2), pads), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "strides,padding,impl", [(2, "SAME", "fast"), (1, "SAME", "fast"), (2, 1, "fast"), (3, ((1, 0), (2, 1)), "xla")]
)
def test_conv_module_equals_flax_conv(strides, padding, impl):
    x = _rand(5, (3, 2, 9, 10, 3))  # two leading batch axes
    ref_mod = nn.Conv(4, (3, 4), strides=strides, padding=padding)
    mod = Conv(4, (3, 4), strides=strides, padding=padding, impl=impl)
    params = ref_mod.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, mod.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_array_equal(mod.init(jax.random.key(0), x)["params"]["kernel"], params["params"]["kernel"])
    y, y_ref = mod.apply(params, x), ref_mod.apply(params, x)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    dy = _rand(6, y_ref.shape)
    g = jax.vjp(lambda x, p: mod.apply(p, x), x, params)[1](dy)
    g_ref = jax.vjp(lambda x, p: ref_mod.apply(p, x), x, params)[1](dy)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-3)


@pytest.mark.parametrize(
    "strides,padding,k,impl,features",
    [
        (2, "SAME", 4, "fast", 6),
        (2, "SAME", 3, "fast", 6),
        (2, "VALID", 3, "fast", 6),
        (3, 1, 4, "fast", 6),
        (2, "SAME", 4, "fast", 1),  # few output channels: XLA's forward and weight gradient
        (1, "SAME", 3, "xla", 6),
    ],
)
def test_conv_transpose_module_equals_flax(strides, padding, k, impl, features):
    x = _rand(8, (2, 5, 7, 3))
    ref_mod = nn.ConvTranspose(features, (k, k), strides=(strides, strides), padding=padding)
    mod = ConvTranspose(features, (k, k), strides=(strides, strides), padding=padding, impl=impl)
    params = ref_mod.init(jax.random.key(0), x)
    mine = mod.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, mine) == jax.tree.map(jnp.shape, params)
    np.testing.assert_array_equal(mine["params"]["kernel"], params["params"]["kernel"])
    y, y_ref = mod.apply(params, x), ref_mod.apply(params, x)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    dy = _rand(9, y_ref.shape)
    g = jax.vjp(lambda x, p: mod.apply(p, x), x, params)[1](dy)
    g_ref = jax.vjp(lambda x, p: ref_mod.apply(p, x), x, params)[1](dy)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-3)


def test_auto_is_fast_on_cpu_and_the_program_has_no_dilated_conv():
    """On the CPU the default path computes the strided conv's input gradient without an lhs dilation."""
    assert jax.default_backend() == "cpu"
    x, w = _rand(0, (2, 8, 8, 3)), _rand(1, (4, 4, 3, 5))

    def loss(x, w, impl):
        return conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=NHWC, impl=impl).sum()

    def hlo(impl):
        return jax.jit(jax.grad(loss), static_argnums=2).lower(x, w, impl).as_text()

    assert "lhs_dilate = [2, 2]" in hlo("xla")
    assert "lhs_dilate = [2, 2]" not in hlo("auto")


def test_unsupported_arguments_raise_under_fast_and_fall_back_under_auto():
    x, w = _rand(0, (2, 8, 8, 4)), _rand(1, (3, 3, 2, 4))
    with pytest.raises(ValueError, match="feature/batch groups"):
        conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2, impl="fast")
    y = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2, impl="auto")
    ref = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2)
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    w4 = _rand(1, (3, 3, 4, 4))
    with pytest.raises(ValueError, match="kernel \\(rhs\\) dilation"):
        conv_general_dilated(x, w4, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=NHWC, impl="fast")
    with pytest.raises(ValueError, match="not both a stride"):
        conv_general_dilated(x, w4, (2, 2), "SAME", lhs_dilation=(2, 2), dimension_numbers=NHWC, impl="fast")
    with pytest.raises(ValueError, match="dimension_numbers"):
        conv_general_dilated(x, w4, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"), impl="fast")
    with pytest.raises(ValueError, match="`impl`"):
        conv_general_dilated(x, w4, (1, 1), "SAME", dimension_numbers=NHWC, impl="cuda")
    with pytest.raises(ValueError, match="`weight_grad`"):
        conv_general_dilated(x, w4, (1, 1), "SAME", dimension_numbers=NHWC, impl="fast", weight_grad="fft")
    with pytest.raises(ValueError, match="`impl`"):
        Conv(4, (3, 3), impl="gpu").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="kernel_dilation"):
        ConvTranspose(4, (3, 3), strides=(2, 2), kernel_dilation=2).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="padding"):
        ConvTranspose(4, (3, 3), strides=(2, 2), padding="CIRCULAR").init(jax.random.key(0), x)


def test_conv_transpose_padding_matches_lax_conv_transpose():
    for k, s, pad in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], ["SAME", "VALID"]):
        x, w = _rand(0, (1, 5, 5, 1)), _rand(1, (k, k, 1, 1))
        ref = lax.conv_transpose(x, w, (s, s), pad, dimension_numbers=NHWC)
        p = conv_ops.transpose_padding(k, s, pad)
        y = lax.conv_general_dilated(x, w, (1, 1), (p, p), lhs_dilation=(s, s), dimension_numbers=NHWC)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5, err_msg=f"k={k} s={s} {pad}")


def test_use_impl_selects_the_form_at_trace_time():
    x, w = _rand(0, (2, 8, 8, 3)), _rand(1, (4, 4, 3, 5))

    def grad_hlo():
        f = jax.grad(lambda x: conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=NHWC).sum())
        return jax.jit(f).lower(x).as_text()

    with conv_ops.use_impl("xla"):
        assert "lhs_dilate = [2, 2]" in grad_hlo()
    assert "lhs_dilate = [2, 2]" not in grad_hlo()
    with pytest.raises(ValueError, match="`impl`"), conv_ops.use_impl("tpu"):
        pass

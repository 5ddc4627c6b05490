r"""2-D convolutions (NHWC images, HWIO kernels) with a backward pass that XLA:CPU runs fast.

The maths is that of :func:`jax.lax.conv_general_dilated`; only the form of the computation changes.
XLA:CPU runs a stride-1 convolution well but an *lhs-dilated* one (zeros inserted between the input
pixels) slowly, and that is exactly what the input gradient of a strided convolution and the forward
pass of a transposed convolution are. Here every lhs-dilated convolution is computed by the **phase
(sub-pixel) decomposition**: along one spatial axis with dilation ``s``, kernel size ``K`` and
padding ``(lo, hi)``, the output ``y[t] = sum_k xd[t + k - lo] w[k]`` (``xd`` the dilated input)
only meets real pixels at kernel taps ``k = s m + c`` with ``c = (lo - t) mod s``, so with
``t - lo = s q - c``::

    y[t] = sum_{m < M} x[q + m] w[s m + c],        M = ceil(K / s)

i.e. ``s`` stride-1 convolutions of the *un-dilated* input with the sub-kernels ``w[c::s]`` (zero
padded to ``M`` taps), one per output phase. All ``s_h s_w`` phases are computed by **one**
stride-1 convolution whose kernel stacks the sub-kernels along the output channels
(``[M_h, M_w, C_in, s_h s_w C_out]``), followed by a depth-to-space interleave and a crop. It does
``s_h s_w`` times fewer multiply-adds than the dilated form (which multiplies the inserted zeros).

:func:`conv_general_dilated` is a ``jax.custom_vjp`` operation:

* strided convolution (``window_strides = s``): forward as XLA's; input gradient = the
  lhs-dilated convolution of the cotangent with the flipped, I/O-swapped kernel, by phases;
  weight gradient by space-to-depth and one GEMM (:func:`strided_weight_grad`), an im2col, or XLA's;
* transposed convolution (``lhs_dilation = s``): forward by phases; input gradient = a strided
  convolution of the cotangent (XLA's, fast); weight gradient = the weight gradient of the
  stride-1 phase convolution as one GEMM (:func:`stride1_weight_grad`), un-stacked. With at most
  :data:`PHASE_MIN_OUT_CHANNELS` output channels (an image-emitting layer) the forward stays XLA's.

**Weight gradients as one GEMM.** XLA:CPU computes a weight gradient as a convolution whose window
is the whole cotangent image, and a matrix product that contracts the leading (pixel) axes of both
operands, at a fraction of its matmul rate. :func:`stride1_weight_grad` writes the stride-1 weight
gradient as a plain ``[T m, N] @ [N, n]`` product over the ``N`` flattened pixels, where the ``T``
kernel taps become shifts of the flat pixel index of the operand with fewer channels ``m``; a strided
convolution first becomes a stride-1 one by space-to-depth. Which form ``"auto"`` takes per layer was
measured (``_auto_weight_grad``).

``impl``: ``"auto"`` uses this form on the CPU backend and :func:`jax.lax.conv_general_dilated`
elsewhere (GPU/TPU libraries handle dilations themselves); ``"fast"`` forces this form (an error
for arguments it does not cover: only 2-D NHWC/HWIO, no kernel dilation, no feature groups, not
both a stride and an lhs dilation above 1); ``"xla"`` is plain ``lax.conv_general_dilated``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("auto", "fast", "xla")
WEIGHT_GRADS = ("auto", "xla", "im2col", "phase", "gemm")
NHWC = ("NHWC", "HWIO", "NHWC")
# im2col weight gradients below this many input channels (measured on the 2-core CPU: XLA's weight
# gradient of a 64x64x1 -> 32 stride-2 convolution is 2-3x slower than the im2col, at 32 channels the
# im2col is the slower one; benchmarks/README.md)
IM2COL_MAX_IN_CHANNELS = 4
# strided convolutions on inputs of at least this many pixels take the GEMM weight gradient under "auto"
# (64x64 and 32x32 layers of the paper models; at 16x16 and below XLA's measured as fast or faster)
GEMM_MIN_PIXELS = 32 * 32
# A transposed convolution with this many output channels or fewer (an image-emitting last layer) keeps
# XLA's forward: its phase kernel has only s*s*C_out outputs, and XLA's dilated form measured faster there
# (64x64 decoder's 32 -> 1 layer, batch 64: forward 10 ms vs 22 under load)
PHASE_MIN_OUT_CHANNELS = 4


def _pairs(name: str, value, n: int = 2) -> tuple[int, ...]:
    if value is None:
        return (1,) * n
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    out = tuple(int(v) for v in value)
    if len(out) != n:
        raise ValueError(f"`{name}` must be an int or {n} ints; got {value!r}.")
    return out


def transpose_padding(kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """Explicit padding of the lhs-dilated convolution that :func:`jax.lax.conv_transpose` builds."""
    if padding == "SAME":
        pad_len = kernel + stride - 2
        pad_a = kernel - 1 if stride > kernel - 1 else int(np.ceil(pad_len / 2))
    elif padding == "VALID":
        pad_len = kernel + stride - 2 + max(kernel - stride, 0)
        pad_a = kernel - 1
    else:
        raise ValueError(f"`padding` must be 'SAME', 'VALID' or explicit pairs; got {padding!r}.")
    return pad_a, pad_len - pad_a


def _flip_io(w: jax.Array) -> jax.Array:
    """``w[K_h, K_w, I, O] -> w[::-1, ::-1, O, I]`` (the kernel of a convolution's transpose)."""
    return jnp.swapaxes(w[::-1, ::-1], 2, 3)


def _crop_pad(x: jax.Array, pads: Sequence[tuple[int, int]]) -> jax.Array:
    """Zero-pad (positive) or crop (negative) the two spatial axes of an NHWC array."""
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return x
    cfg = [(0, 0, 0)] + [(int(lo), int(hi), 0) for lo, hi in pads] + [(0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), cfg)


def _plain(x, w, strides, pads, lhs_dilation=(1, 1), precision=None):
    return lax.conv_general_dilated(
        x, w, strides, pads, lhs_dilation=lhs_dilation, dimension_numbers=NHWC, precision=precision
    )


def dilated_conv_by_phases(
    x: jax.Array, w: jax.Array, dilation: Sequence[int], pads: Sequence[tuple[int, int]], precision=None, conv=None
) -> jax.Array:
    """``lax.conv_general_dilated(x, w, (1, 1), pads, lhs_dilation=dilation)`` as one stride-1 conv.

    ``x [B, H, W, C_in]``, ``w [K_h, K_w, C_in, C_out]``; see the module docstring for the
    decomposition. Differentiable by ordinary autodiff (pads, crops, reshapes and a stride-1 conv);
    ``conv(x, w)``, if given, replaces that stride-1 'VALID' convolution (same maths, e.g.
    :func:`_stride1_conv` with its GEMM weight gradient).
    """
    b, cin, cout = x.shape[0], x.shape[3], w.shape[3]
    in_pads, crops, ms, qs = [], [], [], []
    for ax in range(2):
        n, k, s = x.shape[1 + ax], w.shape[ax], int(dilation[ax])
        lo, hi = pads[ax]
        t = s * (n - 1) + 1 + lo + hi - k + 1
        if t < 1:
            raise ValueError(f"convolution output would be empty (spatial axis {ax}: size {t}).")
        m = -(-k // s)
        q0 = (s - 1 - lo) // s
        q1 = (t + s - 2 - lo) // s + 1
        in_pads.append((-q0, q1 + m - 1 - n))
        crops.append((s - 1 - lo - s * q0, t))
        ms.append(m)
        qs.append(q1 - q0)
    (sh, sw), (mh, mw) = dilation, ms
    # stacked kernel: [M_h, M_w, C_in, (r_h, r_w, C_out)], phase r <-> tap s*m + (s-1-r)
    wp = jnp.pad(w, ((0, mh * sh - w.shape[0]), (0, mw * sw - w.shape[1]), (0, 0), (0, 0)))
    wp = wp.reshape(mh, sh, mw, sw, cin, cout)[:, ::-1, :, ::-1]
    wp = wp.transpose(0, 2, 4, 1, 3, 5).reshape(mh, mw, cin, sh * sw * cout)
    xin = _crop_pad(x, in_pads)
    z = _plain(xin, wp, (1, 1), "VALID", precision=precision) if conv is None else conv(xin, wp)
    z = z.reshape(b, qs[0], qs[1], sh, sw, cout).transpose(0, 1, 3, 2, 4, 5)
    z = z.reshape(b, qs[0] * sh, qs[1] * sw, cout)
    (oh, th), (ow, tw) = crops
    return z[:, oh : oh + th, ow : ow + tw, :]


def _im2col_weight_grad(x, dy, kernel_hw, strides, pads, precision=None):
    """``dL/dw`` of a strided convolution as ``patches^T @ dy``, patches from ``K_h K_w`` strided slices."""
    kh, kw = kernel_hw
    (sh, sw), (oh, ow) = strides, dy.shape[1:3]
    xp = _crop_pad(x, pads)
    cols = [
        lax.slice(
            xp, (0, i, j, 0), (xp.shape[0], i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1, xp.shape[3]), (1, sh, sw, 1)
        )
        for i in range(kh)
        for j in range(kw)
    ]
    patches = jnp.stack(cols, axis=3).reshape(-1, kh * kw * x.shape[3])
    dw = jnp.matmul(patches.T, dy.reshape(-1, dy.shape[3]), precision=precision)
    return dw.reshape(kh, kw, x.shape[3], dy.shape[3])


def stride1_weight_grad(x: jax.Array, dy: jax.Array, kernel_hw: Sequence[int], precision=None) -> jax.Array:
    """``dL/dw`` of the stride-1 'VALID' convolution ``y = conv(x, w)`` as **one** matrix product.

    ``x [B, H, W, C]``, ``dy [B, H - K_h + 1, W - K_w + 1, O]`` -> ``[K_h, K_w, C, O]``.

    Flatten the pixels, ``n = (b H + h) W + w``: ``X = x.reshape(B H W, C)`` and ``D`` = ``dy`` zero-padded
    to ``H x W`` then flattened to ``[B H W, O]``. Tap ``(i, j)`` is a shift of the flat index by
    ``s = i W + j``, and a shifted pixel never crosses into another row or image where ``D`` is
    non-zero, so::

        dw[i, j] = sum_n X[n + s]^T D[n] = sum_m X[m]^T D[m - s]

    The operand with fewer channels is the one shifted: its ``K_h K_w`` shifted copies, transposed, are
    stacked into the left factor ``[K_h K_w min(C, O), B H W]``, and the other stays in its natural
    row-major ``[B H W, max(C, O)]`` layout as the right factor. That is a plain (non-transposed) GEMM
    with a long contraction, which XLA:CPU runs at ~60% of its square-matmul rate (the 64x64 VAE's
    32x32x32 layer), where its own weight gradient (a convolution whose window is the whole image) and a
    product contracting the leading axes of both operands measured 2-10x slower. The zero padding of
    ``dy`` costs ``H W / (H_out W_out)`` extra multiply-adds (1.1-1.3x for the 4x4/stride-2 layers of
    the paper models after :func:`strided_weight_grad`).
    """
    b, h, w, c = x.shape
    kh, kw = (int(k) for k in kernel_hw)
    oh, ow, o = dy.shape[1], dy.shape[2], dy.shape[3]
    if (oh, ow) != (h - kh + 1, w - kw + 1) or dy.shape[0] != b:
        raise ValueError(
            f"`dy` must be [{b}, {h - kh + 1}, {w - kw + 1}, O] for x {x.shape}, kernel {kernel_hw}; got {dy.shape}."
        )
    n = b * h * w
    shifts = [i * w + j for i in range(kh) for j in range(kw)]
    smax = shifts[-1]
    d = jnp.pad(dy, ((0, 0), (0, h - oh), (0, w - ow), (0, 0))).reshape(n, o)
    xf = x.reshape(n, c)
    if o <= c:
        # dw[t]^T = sum_m D[m - s_t]^T X[m]: shift D (column m + smax of dt is D[m])
        dt = jnp.pad(d.T, ((0, 0), (smax, 0)))
        left = jnp.concatenate([dt[:, smax - s : smax - s + n] for s in shifts], axis=0)
        prod = jnp.matmul(left, xf, precision=precision)  # [T O, C]
        return prod.reshape(kh, kw, o, c).transpose(0, 1, 3, 2)
    xt = jnp.pad(xf.T, ((0, 0), (0, smax)))
    left = jnp.concatenate([xt[:, s : s + n] for s in shifts], axis=0)
    return jnp.matmul(left, d, precision=precision).reshape(kh, kw, c, o)  # [T C, O]


def strided_weight_grad(x, dy, kernel_hw, strides, pads, precision=None):
    """``dL/dw`` of ``conv(x, w, strides, pads)`` by space-to-depth and :func:`stride1_weight_grad`.

    With stride ``s`` and ``M = ceil(K / s)`` taps per axis, ``x_s[b, i, j, (p, q, c)] = x_pad[b, s i + p,
    s j + q, c]`` turns the strided convolution into a stride-1 ``M x M`` convolution of ``x_s`` with
    the kernel ``w_s[a, e, (p, q, c)] = w[s a + p, s e + q, c]`` (taps beyond ``K`` zero; phases
    ``p >= K`` dropped); its weight gradient, rearranged and cropped to ``K``, is the strided one.
    """
    kh, kw = kernel_hw
    (sh, sw), (oh, ow) = strides, dy.shape[1:3]
    mh, mw = -(-kh // sh), -(-kw // sw)
    hs, ws = oh + mh - 1, ow + mw - 1
    xp = _crop_pad(x, pads)
    xp = _crop_pad(xp, ((0, sh * hs - xp.shape[1]), (0, sw * ws - xp.shape[2])))
    b, c = x.shape[0], x.shape[3]
    ph, pw = min(sh, kh), min(sw, kw)  # phases p >= K meet no tap (a 1x1 stride-2 kernel reads 1 of 4)
    xs = xp.reshape(b, hs, sh, ws, sw, c)[:, :, :ph, :, :pw]
    xs = xs.transpose(0, 1, 3, 2, 4, 5).reshape(b, hs, ws, ph * pw * c)
    dws = stride1_weight_grad(xs, dy, (mh, mw), precision)
    # tap s a + p; when p < s is cut (K < s), M = 1 and the index is p alone
    dws = dws.reshape(mh, mw, ph, pw, c, -1).transpose(0, 2, 1, 3, 4, 5).reshape(mh * ph, mw * pw, c, -1)
    return dws[:kh, :kw]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _stride1_conv(x, w, precision=None):
    """Stride-1 'VALID' convolution whose weight gradient is :func:`stride1_weight_grad`."""
    return _plain(x, w, (1, 1), "VALID", precision=precision)


def _stride1_conv_fwd(x, w, precision):
    return _stride1_conv(x, w, precision), (x, w)


def _stride1_conv_bwd(precision, res, dy):
    x, w = res
    dx = jax.vjp(lambda u: _plain(u, w, (1, 1), "VALID", precision=precision), x)[1](dy)[0]
    return dx, stride1_weight_grad(x, dy, w.shape[:2], precision)


_stride1_conv.defvjp(_stride1_conv_fwd, _stride1_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _fast_conv(x, w, strides, pads, lhs_dilation, weight_grad, precision):
    if max(lhs_dilation) > 1 and w.shape[3] > PHASE_MIN_OUT_CHANNELS:
        return dilated_conv_by_phases(x, w, lhs_dilation, pads, precision)
    return _plain(x, w, strides, pads, lhs_dilation, precision=precision)


def _fast_conv_fwd(x, w, strides, pads, lhs_dilation, weight_grad, precision):
    return _fast_conv(x, w, strides, pads, lhs_dilation, weight_grad, precision), (x, w)


def _fast_conv_bwd(strides, pads, lhs_dilation, weight_grad, precision, res, dy):
    x, w = res
    k = w.shape[:2]
    if max(lhs_dilation) > 1:
        # y = conv(dilate(x, s), w, pads): dx is a stride-s convolution of dy with the flipped kernel
        dpads = []
        for ax in range(2):
            n, t, kk, s, lo = x.shape[1 + ax], dy.shape[1 + ax], k[ax], lhs_dilation[ax], pads[ax][0]
            dpads.append((kk - 1 - lo, s * (n - 1) + kk - t - (kk - 1 - lo)))
        dx = _plain(_crop_pad(dy, dpads), _flip_io(w), lhs_dilation, "VALID", precision=precision)
        if weight_grad == "xla":
            dw = jax.vjp(lambda v: _plain(x, v, (1, 1), pads, lhs_dilation, precision), w)[1](dy)[0]
        elif weight_grad == "gemm":
            conv_s1 = functools.partial(_stride1_conv, precision=precision)
            dw = jax.vjp(lambda v: dilated_conv_by_phases(x, v, lhs_dilation, pads, conv=conv_s1), w)[1](dy)[0]
        else:
            dw = jax.vjp(lambda v: dilated_conv_by_phases(x, v, lhs_dilation, pads, precision), w)[1](dy)[0]
        return dx, dw
    # y = conv(x, w, stride s, pads): dx is the lhs-dilated convolution of dy with the flipped kernel
    dpads = []
    for ax in range(2):
        n, o, kk, s, lo = x.shape[1 + ax], dy.shape[1 + ax], k[ax], strides[ax], pads[ax][0]
        dpads.append((kk - 1 - lo, n + lo - s * (o - 1) - 1))
    dx = dilated_conv_by_phases(dy, _flip_io(w), strides, dpads, precision)
    if weight_grad == "im2col":
        dw = _im2col_weight_grad(x, dy, k, strides, pads, precision)
    elif weight_grad == "gemm":
        dw = strided_weight_grad(x, dy, k, strides, pads, precision)
    else:
        dw = jax.vjp(lambda v: _plain(x, v, strides, pads, precision=precision), w)[1](dy)[0]
    return dx, dw


_fast_conv.defvjp(_fast_conv_fwd, _fast_conv_bwd)


_AUTO = ["auto"]  # what impl="auto" means while tracing (use_impl)


@contextlib.contextmanager
def use_impl(impl: str):
    """Within the block, ``impl="auto"`` convolutions traced here use ``impl`` ("fast" or "xla").

    For comparisons (benchmarks): it acts at trace time, so a function jitted outside the block and
    already traced keeps the form it was traced with.
    """
    if impl not in IMPLS:
        raise ValueError(f"`impl` must be one of {IMPLS}; got {impl!r}.")
    old = _AUTO[0]
    _AUTO[0] = impl
    try:
        yield
    finally:
        _AUTO[0] = old


def _resolve_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"`impl` must be one of {IMPLS}; got {impl!r}.")
    if impl == "auto":
        impl = _AUTO[0]
    if impl == "auto":
        return "fast" if jax.default_backend() == "cpu" else "xla"
    return impl


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    *,
    impl: str = "auto",
    weight_grad: str = "auto",
) -> jax.Array:
    """Drop-in for :func:`jax.lax.conv_general_dilated` (same arguments) with the fast backward pass.

    ``impl`` selects the form (module docstring); ``weight_grad`` the form of the weight gradient:
    ``"gemm"`` (one matrix product: :func:`strided_weight_grad` for strided convolutions, the phase
    form with :func:`stride1_weight_grad` for transposed ones), ``"im2col"`` (strided only),
    ``"phase"`` (transposed only: autodiff of the phase form), ``"xla"``, or ``"auto"`` (per layer,
    what measured fastest on XLA:CPU: ``_auto_weight_grad``). With ``impl="auto"`` arguments the fast
    form does not cover go to ``lax``.
    """
    chosen = _resolve_impl(impl)
    if weight_grad not in WEIGHT_GRADS:
        raise ValueError(f"`weight_grad` must be one of {WEIGHT_GRADS}; got {weight_grad!r}.")
    strides = _pairs("window_strides", window_strides, max(lhs.ndim - 2, 0))
    lhs_dil = _pairs("lhs_dilation", lhs_dilation, max(lhs.ndim - 2, 0))
    rhs_dil = _pairs("rhs_dilation", rhs_dilation, max(lhs.ndim - 2, 0))
    problem = _unsupported(
        lhs, rhs, strides, lhs_dil, rhs_dil, dimension_numbers, feature_group_count, batch_group_count
    )
    if chosen == "fast" and problem is not None:
        if impl == "fast":
            raise ValueError(f"impl='fast' does not cover this convolution: {problem}; use impl='xla'.")
        chosen = "xla"
    if chosen == "xla" or preferred_element_type is not None:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            strides,
            padding,
            lhs_dil,
            rhs_dil,
            dimension_numbers,
            feature_group_count,
            batch_group_count,
            precision,
            preferred_element_type,
        )
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID", "SAME_LOWER"):
            raise ValueError(f"`padding` must be 'SAME', 'SAME_LOWER', 'VALID' or pairs; got {padding!r}.")
        pads = tuple(lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding))
    else:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
        if len(pads) != 2:
            raise ValueError(f"`padding` must hold 2 (low, high) pairs for a 2-D convolution; got {padding!r}.")
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if weight_grad == "auto":
        weight_grad = _auto_weight_grad(lhs.shape, rhs.shape, strides, lhs_dil)
    elif weight_grad == "im2col" and max(lhs_dil) > 1:
        raise ValueError("`weight_grad='im2col'` is for strided convolutions; use 'phase' or 'xla'.")
    elif weight_grad == "phase" and max(lhs_dil) == 1:
        raise ValueError("`weight_grad='phase'` is for transposed (lhs-dilated) convolutions; use 'im2col' or 'xla'.")
    if lhs.dtype != rhs.dtype:
        raise ValueError(f"`lhs` and `rhs` must share a dtype; got {lhs.dtype} and {rhs.dtype}.")
    return _fast_conv(lhs, rhs, strides, pads, lhs_dil, weight_grad, _hashable(precision))


def _auto_weight_grad(x_shape, w_shape, strides, lhs_dil) -> str:
    """The weight-gradient form measured fastest on XLA:CPU for this layer (benchmarks/README.md).

    Transposed convolutions: always the GEMM (2-10x XLA's and the phase autodiff). Strided ones with a
    kernel at least the stride, on inputs of at least :data:`GEMM_MIN_PIXELS` pixels: the GEMM after
    space-to-depth (smaller inputs: XLA's, whose direct loop wins when the im2col copies dominate).
    A 1x1 strided kernel reads a subsampled input: one slice and one matmul (im2col). Stride 1: XLA's,
    except for inputs of at most :data:`IM2COL_MAX_IN_CHANNELS` channels (im2col).
    """
    if max(lhs_dil) > 1:
        return "gemm"
    k, pixels = w_shape[:2], x_shape[1] * x_shape[2]
    if max(strides) > 1:
        if max(k) == 1:
            return "im2col"
        if min(k[0] - strides[0], k[1] - strides[1]) >= 0 and pixels >= GEMM_MIN_PIXELS:
            return "gemm"
    return "im2col" if x_shape[3] <= IM2COL_MAX_IN_CHANNELS else "xla"


def _hashable(precision):
    if isinstance(precision, list):
        return tuple(precision)
    return precision


def _unsupported(lhs, rhs, strides, lhs_dil, rhs_dil, dimension_numbers, groups, batch_groups) -> str | None:
    if lhs.ndim != 4 or rhs.ndim != 4:
        return f"only 2-D convolutions (4-d lhs and rhs); got lhs {lhs.shape}, rhs {rhs.shape}"
    if dimension_numbers is None or _canonical_dn(dimension_numbers) != NHWC:
        return f"only dimension_numbers {NHWC}; got {dimension_numbers!r}"
    if max(rhs_dil) != 1:
        return f"no kernel (rhs) dilation; got {rhs_dil}"
    if groups != 1 or batch_groups != 1:
        return f"no feature/batch groups; got feature_group_count={groups}, batch_group_count={batch_groups}"
    if max(strides) > 1 and max(lhs_dil) > 1:
        return f"not both a stride {strides} and an lhs dilation {lhs_dil}"
    if min(strides) < 1 or min(lhs_dil) < 1:
        return f"strides and dilations must be >= 1; got {strides}, {lhs_dil}"
    return None


def _canonical_dn(dn) -> tuple[str, str, str] | None:
    if isinstance(dn, lax.ConvDimensionNumbers):
        return NHWC if dn == lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), NHWC) else None
    try:
        return tuple(dn)
    except TypeError:
        return None


@dataclasses.dataclass(frozen=True)
class ConvFn:
    """Hashable ``lax.conv_general_dilated``-like callable with ``impl``/``weight_grad`` bound.

    Given to :class:`flax.linen.Conv` as ``conv_general_dilated`` (it must compare equal across
    module clones, hence a frozen dataclass rather than a ``functools.partial``).
    """

    impl: str = "auto"
    weight_grad: str = "auto"

    def __call__(self, *args, **kwargs):
        return conv_general_dilated(*args, impl=self.impl, weight_grad=self.weight_grad, **kwargs)


class Conv(nn.Conv):
    """:class:`flax.linen.Conv` whose convolution is :func:`conv_general_dilated` (same parameters).

    Parameter names, shapes and initialisation are :class:`flax.linen.Conv`'s, so checkpoints and
    parameter counts do not change. ``impl``/``weight_grad`` as in :func:`conv_general_dilated`
    (convolutions the fast form does not cover, e.g. 1-D or grouped, run through ``lax`` under
    ``"auto"``).
    """

    impl: str = "auto"
    weight_grad: str = "auto"

    def __post_init__(self) -> None:
        if self.impl not in IMPLS:
            raise ValueError(f"`impl` must be one of {IMPLS}; got {self.impl!r}.")
        if self.conv_general_dilated is None and self.conv_general_dilated_cls is None:
            object.__setattr__(self, "conv_general_dilated", ConvFn(self.impl, self.weight_grad))
        super().__post_init__()


class ConvTranspose(nn.ConvTranspose):
    """:class:`flax.linen.ConvTranspose` (NHWC, 2-D) computed by phases on the CPU (same parameters).

    Same maths as ``lax.conv_transpose`` with ``transpose_kernel=False`` (flax's default): the
    lhs-dilated convolution of the input by the strides, with the padding ``lax.conv_transpose``
    derives from ``'SAME'``/``'VALID'`` or the explicit pairs given. Not covered (``ValueError``):
    ``'CIRCULAR'`` padding, kernel dilation, ``transpose_kernel``, a mask, inputs that are not
    ``[..., H, W, C]`` with a 2-D kernel.
    """

    impl: str = "auto"
    weight_grad: str = "auto"

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if self.impl not in IMPLS:
            raise ValueError(f"`impl` must be one of {IMPLS}; got {self.impl!r}.")
        ksize = _pairs("kernel_size", self.kernel_size)
        strides = _pairs("strides", self.strides)
        if _pairs("kernel_dilation", self.kernel_dilation) != (1, 1):
            raise ValueError(f"ConvTranspose: `kernel_dilation` is not supported; got {self.kernel_dilation!r}.")
        if self.transpose_kernel or self.mask is not None:
            raise ValueError("ConvTranspose: `transpose_kernel=True` and `mask` are not supported.")
        if isinstance(self.padding, str) and self.padding not in ("SAME", "VALID"):
            raise ValueError(f"ConvTranspose: `padding` must be 'SAME', 'VALID' or pairs; got {self.padding!r}.")
        if inputs.ndim < 3:
            raise ValueError(f"ConvTranspose: `inputs` must be [..., H, W, C]; got shape {inputs.shape}.")
        lead = inputs.shape[:-3]
        x = inputs.reshape((-1,) + inputs.shape[-3:])
        kernel = self.param("kernel", self.kernel_init, ksize + (x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = self.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if isinstance(self.padding, str):
            pads = tuple(transpose_padding(k, s, self.padding) for k, s in zip(ksize, strides))
        else:
            pads = nn.linear.canonicalize_padding(self.padding, 2)
        y = conv_general_dilated(
            x,
            kernel,
            (1, 1),
            pads,
            lhs_dilation=strides,
            dimension_numbers=NHWC,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
            impl=self.impl,
            weight_grad=self.weight_grad,
        )
        if bias is not None:
            y = y + bias.reshape((1, 1, 1, -1))
        return y.reshape(lead + y.shape[1:])

r"""SSIM and multi-scale SSIM (Wang et al. 2003/2004) in jax, images channels-last ``[..., H, W, C]``.

SSIM at one scale, with Gaussian-weighted local statistics (window ``11``, ``sigma = 1.5``, ``'valid'``
filtering, so the map is ``(H - 10) x (W - 10)``)::

    l  = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)        C1 = (K1 L)^2, K1 = 0.01
    cs = (2 s_ab + C2) / (s_a^2 + s_b^2 + C2)                C2 = (K2 L)^2, K2 = 0.03, L = max_val
    SSIM = mean over the map of l * cs,   CS = mean of cs     (per channel, then averaged over channels)

MS-SSIM over ``M`` scales (2x2 average pooling between scales)::

    MS-SSIM = relu(CS_1)^w_1 ... relu(CS_{M-1})^w_{M-1} relu(SSIM_M)^w_M

with the standard weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` for ``M = 5`` and the relu
of ``pytorch-msssim`` (it keeps the fractional powers real). With 5 scales and an 11-pixel window
the coarsest scale (``size / 16``) must still hold the window: images need at least 176 pixels a
side. The 5-scale form matches ``pytorch_msssim.ms_ssim`` (``tests/metrics/test_ssim.py``).

**Small images** (MNIST's 28 or 32 pixels; Xiao et al. do not say what they used): by default
:func:`ms_ssim` keeps the window (11, 1.5) and uses as many scales as fit, the finest ones, with
the standard weights of those scales renormalised to sum to 1 (:func:`ms_ssim_weights`). At 28-32 px
that is **2 scales** with weights ``(0.0448, 0.2856) / 0.3304 = (0.1356, 0.8644)``: each retained
scale is computed exactly as in standard MS-SSIM, and identical images still score 1. An odd size
is cropped by one pixel before pooling (pytorch-msssim pads instead; the test images avoid odd sizes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvae.config import check_positive, check_positive_int

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim", "ms_ssim_weights", "ssim", "ssim_and_cs"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float, dtype) -> jax.Array:
    coords = jnp.arange(size, dtype=dtype) - size // 2
    g = jnp.exp(-jnp.square(coords) / (2.0 * sigma**2))
    return g / jnp.sum(g)


def _check_pair(a: ArrayLike, b: ArrayLike) -> tuple[jax.Array, jax.Array]:
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"`a` {a.shape} and `b` {b.shape} must have the same shape [..., H, W, C].")
    if a.ndim < 3:
        raise ValueError(f"`a` and `b` must be images [..., H, W, C]; got shape {a.shape}.")
    dtype = jnp.result_type(a.dtype, b.dtype, jnp.float32)
    return a.astype(dtype), b.astype(dtype)


def _blur(x: jax.Array, window: jax.Array) -> jax.Array:
    """Separable 'valid' Gaussian filter of ``x [N, H, W, 1]``."""
    k = window.shape[0]
    dn = ("NHWC", "HWIO", "NHWC")
    prec = jax.lax.Precision.HIGHEST
    x = jax.lax.conv_general_dilated(
        x, window.reshape(k, 1, 1, 1), (1, 1), "VALID", dimension_numbers=dn, precision=prec
    )
    return jax.lax.conv_general_dilated(
        x, window.reshape(1, k, 1, 1), (1, 1), "VALID", dimension_numbers=dn, precision=prec
    )


def ssim_and_cs(
    a: ArrayLike,
    b: ArrayLike,
    *,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[jax.Array, jax.Array]:
    """Per-channel SSIM and contrast-structure term at one scale: two arrays ``[..., C]``.

    Args:
      a, b: images ``[..., H, W, C]`` with ``H, W >= filter_size``.
      max_val: the dynamic range ``L`` (1 for images in [0, 1]).
      filter_size, filter_sigma: the Gaussian window.
      k1, k2: the stabilising constants.
    """
    a, b = _check_pair(a, b)
    filter_size = check_positive_int("filter_size", filter_size)
    filter_sigma = check_positive("filter_sigma", filter_sigma)
    max_val = check_positive("max_val", max_val)
    check_positive("k1", k1), check_positive("k2", k2)
    h, w, c = a.shape[-3:]
    if min(h, w) < filter_size:
        raise ValueError(f"images must be at least `filter_size`={filter_size} pixels a side; got {h}x{w}.")
    lead = a.shape[:-3]
    window = _gaussian_window(filter_size, filter_sigma, a.dtype)

    def planes(x: jax.Array) -> jax.Array:  # [..., H, W, C] -> [N * C, H, W, 1]
        return jnp.moveaxis(x.reshape((-1, h, w, c)), -1, 1).reshape(-1, h, w, 1)

    pa, pb = planes(a), planes(b)
    mu_a, mu_b = _blur(pa, window), _blur(pb, window)
    var_a = _blur(pa * pa, window) - mu_a * mu_a
    var_b = _blur(pb * pb, window) - mu_b * mu_b
    cov = _blur(pa * pb, window) - mu_a * mu_b
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    cs_map = (2.0 * cov + c2) / (var_a + var_b + c2)
    lum_map = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    ssim_c = jnp.mean(lum_map * cs_map, axis=(1, 2, 3)).reshape(lead + (c,))
    cs_c = jnp.mean(cs_map, axis=(1, 2, 3)).reshape(lead + (c,))
    return ssim_c, cs_c


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    *,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """SSIM of each image pair, ``[..., H, W, C] -> [...]`` (the mean over channels of the per-channel SSIM)."""
    s, _ = ssim_and_cs(a, b, max_val=max_val, filter_size=filter_size, filter_sigma=filter_sigma, k1=k1, k2=k2)
    return jnp.mean(s, axis=-1)


def _pool_size(n: int) -> int:
    return (n - n % 2) // 2


def ms_ssim_weights(size: int, filter_size: int = 11) -> tuple[float, ...]:
    """The scale weights :func:`ms_ssim` uses for images whose smaller side is ``size``.

    The standard 5 weights when the coarsest of 5 scales holds the window; otherwise the first ``M``
    standard weights renormalised to sum to 1, ``M`` the most scales that hold the window
    (2 for 28-32 px with an 11-pixel window).

    Raises:
      ValueError: if even one scale is smaller than the window.
    """
    size = check_positive_int("size", size)
    filter_size = check_positive_int("filter_size", filter_size)
    scales, n = 0, size
    while scales < len(MS_SSIM_WEIGHTS) and n >= filter_size:
        scales, n = scales + 1, _pool_size(n)
    if scales == 0:
        raise ValueError(f"images of {size} pixels are smaller than the {filter_size}-pixel window.")
    if scales == len(MS_SSIM_WEIGHTS):
        return MS_SSIM_WEIGHTS  # as published (they sum to 1.0001)
    w = MS_SSIM_WEIGHTS[:scales]
    total = math.fsum(w)
    return tuple(v / total for v in w)


def _avg_pool2(x: jax.Array) -> jax.Array:
    h, w = x.shape[-3] - x.shape[-3] % 2, x.shape[-2] - x.shape[-2] % 2
    x = x[..., :h, :w, :]
    x = x.reshape(x.shape[:-3] + (h // 2, 2, w // 2, 2, x.shape[-1]))
    return jnp.mean(x, axis=(-4, -2))


def ms_ssim(
    a: ArrayLike,
    b: ArrayLike,
    *,
    max_val: float = 1.0,
    weights: Sequence[float] | None = None,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Multi-scale SSIM of each image pair, ``[..., H, W, C] -> [...]`` (mean over channels).

    Args:
      a, b: images ``[..., H, W, C]``.
      max_val: the dynamic range ``L``.
      weights: one weight per scale (finest first); default :func:`ms_ssim_weights` of the image
        size: the standard five weights from 176 pixels up, fewer renormalised scales below.
      filter_size, filter_sigma, k1, k2: as in :func:`ssim_and_cs`.

    Raises:
      ValueError: for mismatched shapes, or ``weights`` with more scales than the images allow.
    """
    a, b = _check_pair(a, b)
    size = min(a.shape[-3:-1])
    if weights is None:
        weights = ms_ssim_weights(size, filter_size)
    weights = tuple(float(v) for v in weights)
    if not weights or not all(v >= 0 and math.isfinite(v) for v in weights):
        raise ValueError(f"`weights` must be a non-empty sequence of finite numbers >= 0; got {weights}.")
    n = size
    for _ in range(len(weights) - 1):
        n = _pool_size(n)
    if n < filter_size:
        raise ValueError(
            f"{len(weights)} scales need images whose coarsest scale holds the {filter_size}-pixel window; "
            f"{size} px gives {n} px (use weights=None for the small-image convention)."
        )
    kw = dict(max_val=max_val, filter_size=filter_size, filter_sigma=filter_sigma, k1=k1, k2=k2)
    out = None
    for i, wt in enumerate(weights):
        s, cs = ssim_and_cs(a, b, **kw)
        term = jax.nn.relu(s if i == len(weights) - 1 else cs) ** wt
        out = term if out is None else out * term
        if i < len(weights) - 1:
            a, b = _avg_pool2(a), _avg_pool2(b)
    return jnp.mean(out, axis=-1)

r"""Latents for figures (traversals, 2-D grids, interpolations) and image grids of decoded batches.

Pure functions returning latent codes; decode them with your model, then tile the images with
:func:`image_grid` (which maps ``value_range`` to [0, 1] and calls
:func:`jaxvae.train.writers.make_grid`). The figures of Rivera's code (``show_warps.py``):

* traversal :math:`z' = z + e_k \epsilon` (:func:`latent_traversal`), and its 2-D form over two
  units with offsets in units of the posterior standard deviation (:func:`latent_grid`,
  ``plot_latent_space``: :math:`z_i + \sigma_i t_i`, :math:`z_j + \sigma_j t_j` on a grid of ``t``);
* interpolation :math:`z'_k = (1 - \alpha_k) z_1 + \alpha_k z_2`, :math:`\alpha_k = k / (n - 1)`
  (:func:`interpolate`, ``plot_warping``); ``method="spherical"`` gives the slerp often preferred for
  Gaussian latents (it keeps the norm of high-dimensional codes typical).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.train.writers import make_grid

INTERPOLATIONS = ("linear", "spherical")


def _vector(name: str, z: ArrayLike) -> jax.Array:
    z = jnp.asarray(z)
    if z.ndim != 1 or z.shape[0] < 1:
        raise ValueError(f"`{name}` must be one latent code [D]; got shape {z.shape}.")
    return z


def _dims(dims: Sequence[int] | int, d: int) -> np.ndarray:
    idx = np.atleast_1d(np.asarray(dims))
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= d:
        raise ValueError(f"`dims` must be latent indices in [0, {d}); got {dims!r}.")
    return idx


def latent_traversal(
    z: ArrayLike, dims: Sequence[int] | int, offsets: ArrayLike, *, scale: ArrayLike | None = None
) -> jax.Array:
    r"""``[K, T, D]``: :math:`z + e_{k} \, t \, s_k` for each unit ``k`` in ``dims`` and offset ``t``.

    Args:
      z: ``[D]`` the code to start from (e.g. an encoder mean).
      dims: the ``K`` units to move.
      offsets: ``[T]`` offsets ``t``.
      scale: optional ``[D]`` per-unit unit of the offsets (e.g. the posterior standard deviation,
        as ``show_warps.py``); default 1.

    Returns:
      ``[K, T, D]``; row ``k`` varies unit ``dims[k]`` only.
    """
    z = _vector("z", z)
    idx = _dims(dims, z.shape[0])
    t = jnp.asarray(offsets, z.dtype).reshape(-1)
    s = jnp.ones_like(z) if scale is None else jnp.asarray(scale, z.dtype)
    if s.shape != z.shape:
        raise ValueError(f"`scale` must be [D] = {z.shape}; got {s.shape}.")
    onehot = jax.nn.one_hot(jnp.asarray(idx), z.shape[0], dtype=z.dtype) * s[None, :]  # [K, D]
    return z[None, None, :] + t[None, :, None] * onehot[:, None, :]


def latent_grid(
    z: ArrayLike,
    dims: tuple[int, int],
    values_row: ArrayLike,
    values_col: ArrayLike,
    *,
    scale: ArrayLike | None = None,
) -> jax.Array:
    r"""``[R, C, D]``: unit ``dims[0]`` moved by ``values_row[r]`` and unit ``dims[1]`` by ``values_col[c]``.

    ``show_warps.plot_latent_space`` is ``latent_grid(mu, (i, j), t[::-1], t, scale=sigma)`` with
    ``t = linspace(-s, s, n)`` (rows from top to bottom, so the first row has the largest offset).
    """
    z = _vector("z", z)
    idx = _dims(dims, z.shape[0])
    if idx.size != 2 or idx[0] == idx[1]:
        raise ValueError(f"`dims` must be two different latent indices; got {dims!r}.")
    s = jnp.ones_like(z) if scale is None else jnp.asarray(scale, z.dtype)
    if s.shape != z.shape:
        raise ValueError(f"`scale` must be [D] = {z.shape}; got {s.shape}.")
    r = jnp.asarray(values_row, z.dtype).reshape(-1)
    c = jnp.asarray(values_col, z.dtype).reshape(-1)
    e_i = jax.nn.one_hot(int(idx[0]), z.shape[0], dtype=z.dtype) * s
    e_j = jax.nn.one_hot(int(idx[1]), z.shape[0], dtype=z.dtype) * s
    return z[None, None, :] + r[:, None, None] * e_i[None, None, :] + c[None, :, None] * e_j[None, None, :]


def interpolate(z1: ArrayLike, z2: ArrayLike, num: int, *, method: str = "linear") -> jax.Array:
    r"""``[num, D]``: codes from ``z1`` to ``z2`` at :math:`\alpha_k = k / (num - 1)`, endpoints included.

    ``"linear"``: :math:`(1 - \alpha) z_1 + \alpha z_2` (Rivera). ``"spherical"`` (slerp):
    :math:`\frac{\sin((1-\alpha)\theta)}{\sin\theta} z_1 + \frac{\sin(\alpha\theta)}{\sin\theta} z_2`
    with :math:`\theta` the angle between the codes (linear when they are parallel).
    """
    z1, z2 = _vector("z1", z1), _vector("z2", z2)
    if z1.shape != z2.shape:
        raise ValueError(f"`z1` and `z2` must have one shape; got {z1.shape} and {z2.shape}.")
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"`num` must be an int >= 2 (both endpoints); got {num!r}.")
    if method not in INTERPOLATIONS:
        raise ValueError(f"`method` must be one of {INTERPOLATIONS}; got {method!r}.")
    alpha = jnp.linspace(0.0, 1.0, num, dtype=z1.dtype)[:, None]
    linear = (1.0 - alpha) * z1[None, :] + alpha * z2[None, :]
    if method == "linear":
        return linear
    n1, n2 = jnp.linalg.norm(z1), jnp.linalg.norm(z2)
    cos = jnp.clip(jnp.dot(z1, z2) / jnp.maximum(n1 * n2, jnp.finfo(z1.dtype).tiny), -1.0, 1.0)
    theta = jnp.arccos(cos)
    sin = jnp.sin(theta)
    safe = sin > 1e-6
    sin_safe = jnp.where(safe, sin, 1.0)
    w1 = jnp.sin((1.0 - alpha) * theta) / sin_safe
    w2 = jnp.sin(alpha * theta) / sin_safe
    return jnp.where(safe, w1 * z1[None, :] + w2 * z2[None, :], linear)


def to_unit_range(images: ArrayLike, value_range: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    """Map images from ``value_range`` to [0, 1] and clip (decoders may overshoot), as NumPy float32."""
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"`value_range` must have low < high; got {value_range!r}.")
    x = np.asarray(images, np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def image_grid(
    images: ArrayLike, *, value_range: Sequence[float] = (-1.0, 1.0), ncols: int | None = None, pad: int = 2
) -> np.ndarray:
    """A ``uint8`` grid of decoded images, ``[N, H, W, C]`` or ``[R, K, H, W, C]`` (``C`` in 1, 3).

    A 5-D input (e.g. decoded :func:`latent_traversal` or :func:`latent_grid` codes) becomes ``R``
    rows of ``K`` images. Pixels are mapped from ``value_range`` to [0, 1] and clipped
    (:func:`to_unit_range`), then tiled by :func:`jaxvae.train.writers.make_grid` (save with
    :func:`jaxvae.train.writers.save_png`).
    """
    x = to_unit_range(images, value_range)
    if x.ndim not in (4, 5) or x.shape[-1] not in (1, 3):
        raise ValueError(f"`images` must be [N, H, W, C] or [R, K, H, W, C] with C in (1, 3); got shape {x.shape}.")
    if x.ndim == 5:
        rows, cols = x.shape[:2]
        x = x.reshape((rows * cols,) + x.shape[2:])
        ncols = cols if ncols is None else ncols
    return make_grid(x, ncols=ncols, pad=pad)

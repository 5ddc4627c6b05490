"""Numerically stable scalar helpers shared by the distributions.

Every helper is elementwise, jit/vmap/grad-safe, and finite (values and gradients) in float32 over
the ranges the distributions use (standardised arguments in [-30, 30], log-probabilities down to
about -1e3).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_HALF = math.log(0.5)


def lead(x: ArrayLike, ndim: int) -> jax.Array:
    """``x`` reshaped to rank ``ndim`` by prepending size-1 axes (explicit rank promotion).

    Raises:
      ValueError: if ``x`` already has more than ``ndim`` dimensions.
    """
    x = jnp.asarray(x)
    if x.ndim > ndim:
        raise ValueError(f"cannot promote an array of rank {x.ndim} (shape {x.shape}) to rank {ndim}.")
    return jnp.reshape(x, (1,) * (ndim - x.ndim) + x.shape)


def same_rank(*xs: ArrayLike) -> list[jax.Array]:
    """The arrays ``xs`` promoted (with :func:`lead`) to the largest rank among them."""
    n = max(jnp.ndim(x) for x in xs)
    return [lead(x, n) for x in xs]


def log_ndtr(x: ArrayLike) -> jax.Array:
    r""":math:`\log\Phi(x)`, the log standard-normal CDF.

    ``jax.scipy.special.log_ndtr`` switches to an asymptotic series for ``x < -20`` (float32:
    ``log Phi(-30) = -454.3`` where ``log(ndtr(-30))`` would be ``-inf``), and its derivative
    ``phi(x)/Phi(x) ~ -x`` stays finite there.
    """
    return jax.scipy.special.log_ndtr(x)


def ndtr(x: ArrayLike) -> jax.Array:
    r""":math:`\Phi(x)`, the standard-normal CDF (underflows to 0 below about -13 in float32)."""
    return jax.scipy.special.ndtr(x)


def log_normal_pdf(x: ArrayLike) -> jax.Array:
    r""":math:`\log\varphi(x) = -x^2/2 - \tfrac12\log 2\pi`."""
    return -0.5 * jnp.square(x) - HALF_LOG_2PI


def normal_pdf(x: ArrayLike) -> jax.Array:
    r""":math:`\varphi(x)`, the standard-normal density."""
    return jnp.exp(log_normal_pdf(x))


def inverse_mills_ratio(x: ArrayLike) -> jax.Array:
    r""":math:`\varphi(x)/\Phi(x)`, computed as ``exp(log phi(x) - log Phi(x))``.

    The quotient form is ``0/0`` below about -13 in float32; in log space it tends smoothly to
    ``-x`` (e.g. 30.03 at ``x = -30``).
    """
    return jnp.exp(log_normal_pdf(x) - log_ndtr(x))


def log1mexp(x: ArrayLike) -> jax.Array:
    r""":math:`\log(1 - e^{x})` for :math:`x \le 0`.

    Uses ``log(-expm1(x))`` for ``x > log 1/2`` and ``log1p(-exp(x))`` otherwise, which is accurate
    to working precision on the whole half-line. Reference: M. Maechler, "Accurately Computing
    log(1 - exp(-|a|))", Rmpfr vignette, 2012, Eq. (7). ``x = 0`` gives ``-inf``.
    """
    x = jnp.asarray(x)
    # The unused branch gets a harmless argument so that its gradient is finite too.
    x_hi = jnp.where(x > _LOG_HALF, x, _LOG_HALF)
    x_lo = jnp.where(x > _LOG_HALF, _LOG_HALF, x)
    return jnp.where(x > _LOG_HALF, jnp.log(-jnp.expm1(x_hi)), jnp.log1p(-jnp.exp(x_lo)))


def xexpx(log_p: ArrayLike) -> jax.Array:
    r""":math:`p \log p` from :math:`\log p`: ``exp(l) * l``, which is 0 (not ``0 * -inf``) when ``p`` underflows.

    Valid for finite ``log_p``; its derivative ``exp(l) (l + 1)`` is finite too.
    """
    return jnp.exp(log_p) * log_p


def expm1_minus_x(x: ArrayLike) -> jax.Array:
    r""":math:`e^{x} - 1 - x` (>= 0), the Gaussian KL's ``r - 1 - log r`` with ``x = log r``.

    ``expm1`` keeps it accurate near ``x = 0`` and exactly 0 at ``x = 0``.
    """
    return jnp.expm1(x) - x

r"""The importance-weighted bound (IWAE, Burda et al. 2016) and a streaming log-sum-exp.

.. math::

    \mathcal{L}_K(x) = \log \frac1K \sum_{k=1}^K w_k, \qquad
    \log w_k = \log p(x|z_k) + \log p(z_k) - \log q(z_k|x), \quad z_k \sim q(z|x),

with :math:`\mathcal{L}_1 = \mathrm{ELBO} \le \mathcal{L}_K \le \mathcal{L}_{K+1} \le \log p(x)` in
expectation and :math:`\mathcal{L}_K \to \log p(x)` as :math:`K \to \infty`.

For large ``K`` (e.g. the 5000-sample test log-likelihood) the ``[K, B]`` weights need not be held
at once: :func:`logsumexp_update` folds chunks of ``K`` into a running maximum ``m`` and a running
sum ``s = sum_k exp(log w_k - m)`` (rescaled when ``m`` grows), and :func:`logsumexp_finalize`
returns ``m + log s``. :func:`streaming_iwae_bound` drives it with ``lax.scan``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.objectives.elbo import LogLikelihoodFn, sum_event
from jaxvae.typing import PRNGKey


def _check_log_w(name: str, log_w: jax.Array, *, min_rank: int = 2) -> None:
    if log_w.ndim < min_rank:
        raise ValueError(
            f"`{name}` must be [K, B, ...] (importance samples first, then the batch); got shape {log_w.shape}."
        )
    if log_w.shape[0] < 1:
        raise ValueError(f"`{name}` needs at least one importance sample (K >= 1); got shape {log_w.shape}.")
    if not jnp.issubdtype(log_w.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a float array; got dtype {log_w.dtype}.")
    if _checks.is_concrete(log_w):
        a = np.asarray(log_w)
        # -inf (a zero weight) is legitimate; NaN and +inf are not.
        if np.any(np.isnan(a)) or np.any(a == np.inf):
            bad = int(np.sum(np.isnan(a) | (a == np.inf)))
            raise ValueError(f"`{name}` must not hold NaN or +inf (-inf is a zero weight); found {bad}.")


def iwae_bound(log_w: ArrayLike) -> jax.Array:
    r"""Per-example IWAE bound :math:`\mathrm{logsumexp}_k \log w_k - \log K`.

    Args:
      log_w: ``[K, B]`` (or ``[K, *batch]``) log importance weights, samples on axis 0.

    Returns:
      ``[B]`` (``[*batch]``).

    Raises:
      ValueError: if ``log_w`` has rank < 2 (a ``[B]`` array would silently be read as ``K = B``
        samples of one example), ``K = 0``, a non-float dtype, or NaN / +inf values.
    """
    log_w = jnp.asarray(log_w)
    _check_log_w("log_w", log_w)
    return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


class LogSumExpState(NamedTuple):
    """Running state of a streaming log-sum-exp over axis 0 (``[*batch]`` each).

    Attributes:
      max: running maximum ``m`` (``-inf`` before any finite value).
      sum: :math:`\\sum \\exp(x - m)` over the values seen.
      count: number of values seen along the reduced axis (int32 scalar).
    """

    max: jax.Array
    sum: jax.Array
    count: jax.Array


def logsumexp_init(shape: tuple[int, ...], dtype: Any = jnp.float32) -> LogSumExpState:
    """Empty state for a reduction producing ``shape``."""
    return LogSumExpState(
        max=jnp.full(shape, -jnp.inf, dtype), sum=jnp.zeros(shape, dtype), count=jnp.zeros((), jnp.int32)
    )


def logsumexp_update(state: LogSumExpState, chunk: ArrayLike) -> LogSumExpState:
    """Fold a chunk ``[C, *batch]`` (reduced over axis 0) into ``state``."""
    chunk = jnp.asarray(chunk, state.sum.dtype)
    if chunk.ndim != state.max.ndim + 1 or chunk.shape[1:] != state.max.shape:
        raise ValueError(f"`chunk` must be [C, *{state.max.shape}]; got shape {chunk.shape}.")
    new_max = jnp.maximum(state.max, jnp.max(chunk, axis=0))
    # While everything seen is -inf, shift by 0 (not -inf) so exp(-inf - shift) = 0, never NaN.
    shift = jnp.where(jnp.isfinite(new_max), new_max, jnp.zeros_like(new_max))
    rescaled = state.sum * jnp.exp(state.max - shift)
    new_sum = rescaled + jnp.sum(jnp.exp(chunk - shift[None]), axis=0)
    return LogSumExpState(max=shift, sum=new_sum, count=state.count + chunk.shape[0])


def logsumexp_finalize(state: LogSumExpState) -> jax.Array:
    r""":math:`m + \log s`: the log-sum-exp of everything folded in (``-inf`` if all were ``-inf``)."""
    return state.max + jnp.log(state.sum)


def chunked_logsumexp(x: ArrayLike, chunk_size: int) -> jax.Array:
    """``logsumexp(x, axis=0)`` computed ``chunk_size`` rows at a time (equal up to float rounding).

    Args:
      x: ``[K, *batch]``.
      chunk_size: rows per chunk, ``>= 1``; the last chunk may be shorter.

    Returns:
      ``[*batch]``.
    """
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"`x` must be [K, ...] with K >= 1; got shape {x.shape}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int; got {chunk_size!r}.")
    dtype = jnp.result_type(x, jnp.float32)
    state = logsumexp_init(x.shape[1:], dtype)
    k = x.shape[0]
    full = k // chunk_size
    if full:
        body = x[: full * chunk_size].reshape((full, chunk_size) + x.shape[1:])
        state, _ = jax.lax.scan(lambda s, c: (logsumexp_update(s, c), None), state, body)
    if k % chunk_size:
        state = logsumexp_update(state, x[full * chunk_size :])
    return logsumexp_finalize(state)


def streaming_iwae_bound(
    log_weight_fn: Callable[[PRNGKey, int], jax.Array],
    key: PRNGKey,
    *,
    num_samples: int,
    chunk_size: int,
) -> jax.Array:
    r"""IWAE bound with ``num_samples`` weights drawn ``chunk_size`` at a time (memory ``O(chunk * B)``).

    Chunk ``c`` draws ``log_weight_fn(jax.random.fold_in(key, c), n_c) -> [n_c, B]``; the last
    chunk has ``num_samples mod chunk_size`` samples when that is non-zero.

    Returns:
      ``[B]``: :math:`\mathrm{logsumexp}` over all ``num_samples`` weights minus :math:`\log K`.
    """
    for name, v in (("num_samples", num_samples), ("chunk_size", chunk_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
    chunk_size = min(chunk_size, num_samples)
    full, rest = divmod(num_samples, chunk_size)

    def draw(c, n):
        lw = jnp.asarray(log_weight_fn(jax.random.fold_in(key, c), n))
        _check_log_w("log_weight_fn(key, n)", lw)
        if lw.shape[0] != n:
            raise ValueError(f"`log_weight_fn(key, {n})` must return [{n}, B]; got shape {lw.shape}.")
        return lw

    first = jax.eval_shape(lambda: draw(0, chunk_size))
    state = logsumexp_init(first.shape[1:], jnp.result_type(first.dtype, jnp.float32))
    state, _ = jax.lax.scan(lambda s, c: (logsumexp_update(s, draw(c, chunk_size)), None), state, jnp.arange(full))
    if rest:
        state = logsumexp_update(state, draw(full, rest))
    return logsumexp_finalize(state) - math.log(num_samples)


def importance_log_weights(
    key: PRNGKey,
    q_z: Any,
    p_z: Any,
    log_likelihood: LogLikelihoodFn,
    *,
    num_samples: int,
    z_event_ndims: int = 1,
) -> jax.Array:
    r"""``log w [K, B]`` for ``z_k = q_z.sample(key, (K,))``: :math:`\log p(x|z_k) + \log p(z_k) - \log q(z_k|x)`.

    Args:
      key: PRNG key; with ``num_samples=1`` the draw equals
        :func:`jaxvae.objectives.elbo.mc_kl_terms`'s with the same key.
      q_z: posterior distribution object, batch shape ``[B, *event]``.
      p_z: prior distribution object broadcastable with ``q_z``.
      log_likelihood: ``z [B, *event] -> [B]`` (vmapped over the K samples).
      num_samples: K >= 1.
      z_event_ndims: latent event axes to sum.

    Returns:
      ``[K, B]``.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    # Samplers written as `loc + scale * eps` broadcast [B, ...] against [K, B, ...]; allow that rank
    # promotion here (only here) so such samplers work when the user sets it to "raise".
    with jax.numpy_rank_promotion("allow"):
        z = q_z.sample(key, (num_samples,))  # [K, B, *event]
    # vmap over K rather than broadcasting [K, B, ...] against [B, ...] parameters (rank promotion).
    log_pz_qz = jax.vmap(lambda zk: sum_event(p_z.log_prob(zk) - q_z.log_prob(zk), z_event_ndims))(z)  # [K, B]
    log_px_z = jnp.asarray(jax.vmap(log_likelihood)(z))
    if log_px_z.shape != log_pz_qz.shape:
        raise ValueError(
            f"`log_likelihood(z)` must return the event-summed log p(x|z) of shape {log_pz_qz.shape[1:]}; "
            f"got {log_px_z.shape[1:]}."
        )
    return log_px_z + log_pz_qz

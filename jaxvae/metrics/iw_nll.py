r"""Importance-weighted estimate of the marginal log-likelihood ``log p(x)`` (Burda et al., 2016).

For each example ``x``::

    log p(x) ~= L_K(x) = logsumexp_k(log w_k) - log K,
    log w_k = log p(x, z_k) - log q(z_k | x),  z_k ~ q(z | x),  k = 1..K      (Burda et al., Eq. 8)

``L_K`` is a lower bound in expectation, non-decreasing in K, and converges to ``log p(x)``;
with K = 5000 it is the standard "test NLL" of the VAE literature (NLL = -L_K).

How it runs:

- **Samples in chunks.** The K samples are drawn ``sample_chunk`` at a time and folded into the
  streaming logsumexp of :mod:`jaxvae.objectives.iwae` (a running maximum ``m`` and a running sum
  ``s = sum exp(log w - m)``, rescaled when ``m`` grows), so memory is ``O(batch_size * sample_chunk)``
  whatever K is. A final partial chunk is masked (its extra samples get ``log w = -inf``), never recompiled.
- **Keys.** Example ``i`` (its index in ``x``) uses ``key_i = fold_in(key, i)`` and chunk ``c``
  uses ``fold_in(key_i, c)``. The estimate of an example therefore depends only on
  ``(key, i, num_samples, sample_chunk)``: not on ``batch_size``, padding or the device mesh.
- **Vectorised.** ``log_weight_fn`` is ``vmap``-ed over the examples of a batch (each call sees
  one example), so a model's decoder sees ``batch_size * sample_chunk`` rows per layer at once.
- **Sharded.** With a ``mesh``, each batch is split over the mesh's ``data`` axis with
  ``jax.shard_map`` (no collectives: examples are independent).
- **Compiled once.** One jitted function per (shape, settings); the last batch is padded.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxvae.objectives.iwae import logsumexp_finalize, logsumexp_init, logsumexp_update
from jaxvae.typing import PRNGKey

LogWeightFn = Callable[[PRNGKey, jax.Array, int], jax.Array]
"""``f(key, x [B, ...], num_samples) -> log_w [num_samples, B]``."""

DEFAULT_SAMPLE_CHUNK = 500
DEFAULT_ROWS = 4000  # target batch_size * sample_chunk: decoder matmuls of a few thousand rows


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
    return int(v)


def _resolve_sizes(num_samples, sample_chunk, batch_size, num_devices: int) -> tuple[int, int, int]:
    k = _positive_int("num_samples", num_samples)
    chunk = min(k, DEFAULT_SAMPLE_CHUNK) if sample_chunk is None else _positive_int("sample_chunk", sample_chunk)
    chunk = min(chunk, k)
    if batch_size is None:
        batch_size = max(1, DEFAULT_ROWS // chunk)
    b = _positive_int("batch_size", batch_size)
    b = -(-b // num_devices) * num_devices  # a multiple of the device count
    return k, chunk, b


def _streaming_estimate(log_weight_fn, x, idx, key, *, num_samples, chunk, varying_axis=None):
    """``L_K`` for a batch ``x [b, ...]`` with global indices ``idx [b]``: returns ``[b]``."""
    num_chunks = -(-num_samples // chunk)
    example_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)

    def one_example(k, xi):  # -> [chunk]
        lw = log_weight_fn(k, xi[None], chunk)
        if lw.shape != (chunk, 1):
            raise ValueError(
                f"`log_weight_fn(key, x[1, ...], {chunk})` must return shape ({chunk}, 1) "
                f"([num_samples, B]); got {lw.shape}."
            )
        return lw[:, 0]

    def body(state, c):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(example_keys, c)
        lw = jax.vmap(one_example)(keys, x)  # [b, chunk]
        valid = c * chunk + jnp.arange(chunk) < num_samples  # mask the tail of the last chunk
        return logsumexp_update(state, jnp.where(valid[:, None], lw.T, -jnp.inf)), None

    state = logsumexp_init((x.shape[0],), jnp.result_type(x.dtype, jnp.float32))
    if varying_axis is not None:  # inside shard_map the carry differs per device, like the batch
        state = jax.lax.pcast(state, (varying_axis,), to="varying")
    state, _ = jax.lax.scan(body, state, jnp.arange(num_chunks))
    return logsumexp_finalize(state) - math.log(num_samples)


def make_iw_log_likelihood(
    log_weight_fn: LogWeightFn,
    *,
    num_samples: int = 5000,
    sample_chunk: int | None = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str = "data",
) -> Callable[[ArrayLike, PRNGKey], jax.Array]:
    """Build ``estimate(x [N, ...], key) -> log p(x) estimates [N]`` (see the module docstring).

    Args:
      log_weight_fn: ``f(key, x [B, ...], num_samples) -> log_w [num_samples, B]``, pure and
        vmappable (e.g. :func:`jaxvae.models.vae.make_log_weight_fn`).
      num_samples: K, importance samples per example.
      sample_chunk: samples drawn per step (default ``min(K, 500)``); memory is
        ``O(batch_size * sample_chunk)``.
      batch_size: examples per compiled call (default ``4000 // sample_chunk``, at least 1);
        rounded up to a multiple of the mesh size.
      mesh: optional device mesh; batches are split over ``mesh.shape[axis_name]`` devices.
      axis_name: the data axis of ``mesh``.

    Returns:
      ``estimate(x, key)``; compiles once per example shape and dtype.
    """
    if not callable(log_weight_fn):
        raise ValueError(f"`log_weight_fn` must be callable; got {type(log_weight_fn).__name__}.")
    if mesh is not None and axis_name not in mesh.shape:
        raise ValueError(f"`mesh` has no axis {axis_name!r} (`axis_name`); its axes are {tuple(mesh.shape)}.")
    num_devices = 1 if mesh is None else int(mesh.shape[axis_name])
    k, chunk, b = _resolve_sizes(num_samples, sample_chunk, batch_size, num_devices)

    def batch_fn(x, idx, key):
        return _streaming_estimate(
            log_weight_fn, x, idx, key, num_samples=k, chunk=chunk, varying_axis=None if mesh is None else axis_name
        )

    if mesh is not None:
        batch_fn = jax.shard_map(
            batch_fn, mesh=mesh, in_specs=(P(axis_name), P(axis_name), P()), out_specs=P(axis_name)
        )
        x_sharding = NamedSharding(mesh, P(axis_name))

    @jax.jit
    def run(x, offset, key):
        idx = offset + jnp.arange(b, dtype=jnp.int32)
        return batch_fn(x, idx, key)

    def estimate(x: ArrayLike, key: PRNGKey) -> jax.Array:
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"`x` must have shape [N, ...] with N >= 1; got shape {x.shape}.")
        n = x.shape[0]
        out = []
        for start in range(0, n, b):
            xb = x[start : start + b]
            if xb.shape[0] < b:  # pad the last batch (same shape: no recompilation)
                pad = jnp.zeros((b - xb.shape[0],) + xb.shape[1:], xb.dtype)
                xb = jnp.concatenate([jnp.asarray(xb), pad])
            xb = jax.device_put(xb, x_sharding) if mesh is not None else jnp.asarray(xb)
            # Fetching each batch's result also syncs every step (long unsynced queues of collective steps
            # on virtual CPU devices abort the process).
            out.append(np.asarray(run(xb, jnp.int32(start), key)))
        res = np.concatenate(out)[:n]
        bad = ~np.isfinite(res) & ~np.isneginf(res)
        if bad.any():
            raise FloatingPointError(
                f"`log_weight_fn` produced NaN/+inf log-likelihood estimates for {int(bad.sum())} of {n} "
                f"example(s) (first index {int(np.argmax(bad))})."
            )
        return jnp.asarray(res)

    estimate.num_samples, estimate.sample_chunk, estimate.batch_size = k, chunk, b
    return estimate


_CACHE: weakref.WeakKeyDictionary[Callable, dict] = weakref.WeakKeyDictionary()


def iw_log_likelihood(
    log_weight_fn: LogWeightFn,
    x: ArrayLike,
    key: PRNGKey,
    *,
    num_samples: int = 5000,
    sample_chunk: int | None = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str = "data",
) -> jax.Array:
    """Importance-weighted ``log p(x)`` estimates ``[N]`` (NLL = ``-result``); see the module docstring.

    The compiled estimator is cached per ``log_weight_fn`` object and settings, so repeated
    calls with the same function and shapes do not recompile. Use :func:`mean_and_stderr` to
    report the mean over examples with its standard error.

    Raises:
      ValueError: for bad sizes, an ``x`` without a leading example axis, or a ``log_weight_fn``
        that does not return ``[num_samples, B]``.
      FloatingPointError: if any estimate is NaN or +inf.
    """
    settings = (num_samples, sample_chunk, batch_size, mesh, axis_name)
    try:
        per_fn = _CACHE.setdefault(log_weight_fn, {})
    except TypeError:  # not weak-referenceable: build without caching
        per_fn = {}
    if settings not in per_fn:
        per_fn[settings] = make_iw_log_likelihood(
            log_weight_fn,
            num_samples=num_samples,
            sample_chunk=sample_chunk,
            batch_size=batch_size,
            mesh=mesh,
            axis_name=axis_name,
        )
    return per_fn[settings](x, key)


def mean_and_stderr(values: ArrayLike) -> tuple[float, float]:
    """Mean over examples and its standard error ``std(ddof=1) / sqrt(N)`` (``nan`` se for N = 1)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("`values` must be non-empty.")
    se = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(np.mean(v)), se

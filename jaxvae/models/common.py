"""What every paper model shares: keys, Linen variables, batch checks and the reduction of ``Terms``.

A model file (see :mod:`jaxvae.models`) computes its objective as a NamedTuple of per-example ``[B]``
terms; these helpers turn such a tuple into the engine's :class:`~jaxvae.train.state.LossOutput`
(batch means) and into an ``eval_fn`` output (the ``[B]`` arrays themselves), so that
``make_loss_fn`` / ``make_eval_fn`` stay a few lines per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.train.state import LossOutput
from jaxvae.typing import PRNGKey, PyTree

__all__ = ["as_key", "check_images", "get_entry", "loss_output", "per_example", "variables"]


def as_key(key: Any, name: str = "key") -> PRNGKey:
    """A PRNG key from a key or an int seed (``jax.random.key(seed)``).

    Accepts a typed key (``jax.random.key``), a legacy ``uint32[2]`` key or a Python/NumPy int.

    Raises:
      ValueError: naming ``name`` for anything else (a float, an array of keys, ...).
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return jax.random.key(int(key))
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and np.shape(key) == ():
        return key
    if dtype == jnp.uint32 and np.shape(key) == (2,):
        return key
    raise ValueError(
        f"`{name}` must be a PRNG key (jax.random.key(seed)) or an int seed; got "
        f"{type(key).__name__} with dtype {dtype} and shape {np.shape(key)}."
    )


def variables(params: PyTree, model_state: PyTree | None) -> dict:
    """The Linen variables ``{"params": params, **model_state}`` (``model_state`` may be ``None``)."""
    return {"params": params, **dict(model_state or {})}


def get_entry(batch: Any, name: str, what: str) -> Any:
    """``batch[name]``, or a ``ValueError`` saying which entry the model needs (``what``: its shape)."""
    if not isinstance(batch, Mapping) or name not in batch:
        keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"`batch` must be a dict with entry {name!r} ({what}); got {keys}.")
    return batch[name]


def check_images(x: ArrayLike, x_shape: Sequence[int], name: str = "x", *, value_range=(0.0, 1.0)) -> jax.Array:
    """Validate a batch ``[B, *x_shape]`` of floats (in ``value_range`` when the values are concrete).

    The shape and dtype checks are static, so they run under ``jit`` too; the range check runs only on
    concrete values (eagerly). ``value_range=None`` skips it.

    Raises:
      ValueError: naming ``name`` and the expected shape, dtype or range.
    """
    x_shape = tuple(x_shape)
    shape = tuple(np.shape(x))
    if len(shape) != len(x_shape) + 1 or shape[1:] != x_shape:
        raise ValueError(f"`{name}` must have shape [B, *x_shape] = [B, {', '.join(map(str, x_shape))}]; got {shape}.")
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a floating array (e.g. float32); got dtype {dtype}.")
    if value_range is not None:
        lo, hi = value_range
        if (lo, hi) == (0.0, 1.0):
            _checks.check_probability(name, x)
        else:
            _checks.check_finite(name, x)
            a = np.asarray(x) if _checks.is_concrete(x) else None
            if a is not None and a.size and (a.min() < lo or a.max() > hi):
                raise ValueError(f"`{name}` must lie in [{lo}, {hi}]; got range [{a.min()!r}, {a.max()!r}].")
    return jnp.asarray(x)


def per_example(terms: NamedTuple) -> dict[str, jax.Array]:
    """The ``[B]`` fields of ``terms`` as a dict (fields that are ``None`` are left out): an ``eval_fn`` output."""
    return {k: v for k, v in terms._asdict().items() if v is not None}


def loss_output(objective: jax.Array, terms: NamedTuple, model_state: PyTree) -> LossOutput:
    """``LossOutput(loss = -mean(objective), metrics = batch means of terms, model_state)``.

    Args:
      objective: ``[B]`` per-example objective to maximise (e.g. the ELBO, or ``log p(x|z) - beta KL``).
      terms: NamedTuple of ``[B]`` arrays (or ``None``), logged as batch means.
      model_state: the updated non-parameter collections.
    """
    metrics = {k: jnp.mean(v) for k, v in per_example(terms).items()}
    return LossOutput(loss=-jnp.mean(objective), metrics=metrics, model_state=model_state)

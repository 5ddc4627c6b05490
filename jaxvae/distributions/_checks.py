"""Eager argument validation for distributions and objectives.

Values can only be inspected when they are concrete (outside ``jit``/``vmap``/``grad`` tracing);
under tracing these checks are skipped and the shape checks, which are static, still run. Every
error names the argument and says what was expected.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values that can be read on the host (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def should_validate(*xs: Any) -> bool:
    """True when every ``x`` is an array or a Python number.

    Pytree unflattening calls a dataclass's ``__init__`` with placeholders (abstract values,
    ``object()`` sentinels); validation in ``__post_init__`` is skipped for those.
    """
    return all(isinstance(x, (jax.Array, np.ndarray, np.generic, int, float)) for x in xs)


def arrays_from_sequences(obj: Any, *names: str) -> None:
    """Turn the fields ``names`` of a frozen dataclass that are Python lists or tuples into arrays.

    ``Normal([0.0], [1.0])`` then holds arrays like ``Normal(jnp.array([0.0]), ...)`` and its values are
    validated the same way (a list would otherwise skip validation and fail later inside ``jnp``).
    """
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, (list, tuple)):
            try:
                arr = jnp.asarray(value)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"`{name}` must be an array or a (nested) list of numbers; got {value!r} ({e})."
                ) from None
            object.__setattr__(obj, name, arr)


def _host(x: Any) -> np.ndarray | None:
    if not is_concrete(x):
        return None
    try:
        return np.asarray(x)
    except Exception:  # pragma: no cover - exotic array types
        return None


def check_finite(name: str, x: Any) -> None:
    """Raise ``ValueError`` if concrete ``x`` holds NaN or +-inf."""
    a = _host(x)
    if a is not None and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"`{name}` must be finite; found {bad} non-finite value(s) of {a.size}.")


def check_positive(name: str, x: Any) -> None:
    """Raise ``ValueError`` if concrete ``x`` is not finite and strictly positive everywhere."""
    check_finite(name, x)
    a = _host(x)
    if a is not None and not np.all(a > 0):
        raise ValueError(f"`{name}` must be > 0 everywhere; got minimum {a.min()!r}.")


def check_not_nan(name: str, x: Any) -> None:
    """Raise ``ValueError`` if concrete ``x`` holds NaN (a log-density of NaN would be a silent NaN)."""
    a = _host(x)
    if a is not None and a.dtype.kind in "fc" and np.isnan(a).any():
        raise ValueError(f"`{name}` holds {int(np.isnan(a).sum())} NaN value(s) of {a.size}.")


def check_nonnegative(name: str, x: Any) -> None:
    """Raise ``ValueError`` if concrete ``x`` holds NaN or a value below 0."""
    check_not_nan(name, x)
    a = _host(x)
    if a is not None and a.size and a.min() < 0:
        raise ValueError(f"`{name}` must be >= 0 (the support); got minimum {a.min()!r}.")


def check_simplex(name: str, y: Any, *, atol: float = 1e-4) -> None:
    """Raise ``ValueError`` if concrete ``y [..., C]`` leaves the simplex: NaN, an entry < 0, or a sum over
    the last axis off 1 by more than ``atol`` (float32 sums of C entries are within ~C * 1e-7)."""
    check_nonnegative(name, y)
    a = _host(y)
    if a is None or not a.size:
        return
    err = np.abs(a.sum(axis=-1, dtype=np.float64) - 1.0)
    if err.max() > atol:
        raise ValueError(
            f"`{name}` must lie on the simplex (entries >= 0 summing to 1 over the last axis); "
            f"got a sum off by up to {err.max():.3g}."
        )


def check_probability(name: str, x: Any, *, open_interval: bool = False) -> None:
    """Raise ``ValueError`` if concrete ``x`` leaves [0, 1] (or (0, 1) with ``open_interval``)."""
    check_finite(name, x)
    a = _host(x)
    if a is None:
        return
    ok = np.all((a > 0) & (a < 1)) if open_interval else np.all((a >= 0) & (a <= 1))
    if not ok:
        rng = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"`{name}` must lie in {rng}; got range [{a.min()!r}, {a.max()!r}].")


def broadcast_shapes(**named: Any) -> tuple[int, ...]:
    """Broadcast the shapes of the named arrays; the error names every argument and its shape."""
    shapes = {k: tuple(np.shape(v)) for k, v in named.items()}
    try:
        return tuple(np.broadcast_shapes(*shapes.values()))
    except ValueError:
        desc = ", ".join(f"`{k}` {s}" for k, s in shapes.items())
        raise ValueError(f"shapes do not broadcast: {desc}.") from None


def broadcast_batch(q: Any, p: Any) -> tuple[int, ...]:
    """The broadcast of two distributions' ``batch_shape``; the error names both (for the pairwise KLs)."""
    try:
        return tuple(np.broadcast_shapes(tuple(q.batch_shape), tuple(p.batch_shape)))
    except ValueError:
        raise ValueError(
            f"batch shapes do not broadcast: `q` {tuple(q.batch_shape)}, `p` {tuple(p.batch_shape)}."
        ) from None


def check_rank_at_least(name: str, x: Any, rank: int, what: str = "") -> None:
    """Raise ``ValueError`` if ``x`` has fewer than ``rank`` dimensions."""
    if np.ndim(x) < rank:
        extra = f" ({what})" if what else ""
        raise ValueError(f"`{name}` must have at least {rank} dimension(s){extra}; got shape {np.shape(x)}.")


def as_shape(sample_shape: Any) -> tuple[int, ...]:
    """Normalise ``sample_shape`` (int or sequence of ints) to a tuple."""
    if isinstance(sample_shape, (int, np.integer)):
        sample_shape = (int(sample_shape),)
    try:
        shape = tuple(int(s) for s in sample_shape)
    except TypeError:
        raise ValueError(f"`sample_shape` must be an int or a sequence of ints; got {sample_shape!r}.") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"`sample_shape` must be non-negative; got {shape}.")
    return shape

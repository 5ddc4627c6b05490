"""Eager argument validation for distributions and objectives.

Values can only be inspected when they are concrete (outside ``jit``/``vmap``/``grad`` tracing);
under tracing these checks are skipped and the shape checks, which are static, still run. Every
error names the argument and says what was expected.
"""

from __future__ import annotations

from typing import Any

import jax
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

"""Validation and serialisation of configuration values, shared by every ``Config`` in jaxvae.

Configs are frozen dataclasses (hashable, so usable as static ``jit`` arguments). Their
``__post_init__`` validates with these helpers, one call per field, so that every error has the same
form: it names the field, says what was expected and shows what was given::

    @dataclasses.dataclass(frozen=True)
    class Config:
        latent_dim: int = 50
        hidden: tuple[int, ...] = (500, 500)
        activation: str = "tanh"

        def __post_init__(self):
            check_positive_int("latent_dim", self.latent_dim)
            set_field(self, "hidden", as_widths("hidden", self.hidden))
            check_one_of("activation", self.activation, ACTIVATIONS)

The helpers import nothing from the rest of jaxvae, so any layer may use them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "as_shape",
    "as_widths",
    "check_finite_number",
    "check_in_range",
    "check_nonnegative",
    "check_one_of",
    "check_positive",
    "check_positive_int",
    "config_to_dict",
    "set_field",
    "to_json_value",
]


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def check_one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; else raise ``ValueError`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}.")
    return value


def check_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    """Return ``int(value)`` for an int ``>= 1`` (``>= 0`` with ``allow_zero``); bools are refused."""
    if not _is_int(value) or value < (0 if allow_zero else 1):
        want = "an int >= 0" if allow_zero else "a positive int"
        raise ValueError(f"`{name}` must be {want}; got {value!r}.")
    return int(value)


def check_finite_number(name: str, value: Any) -> float:
    """Return ``float(value)`` for a finite real number; bools, NaN and inf are refused."""
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be a finite number; got {value!r}.")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """Return ``float(value)`` for a finite number ``> 0``."""
    v = check_finite_number(name, value)
    if not v > 0:
        raise ValueError(f"`{name}` must be > 0; got {value!r}.")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """Return ``float(value)`` for a finite number ``>= 0``."""
    v = check_finite_number(name, value)
    if not v >= 0:
        raise ValueError(f"`{name}` must be >= 0; got {value!r}.")
    return v


def check_in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
) -> float:
    """Return ``float(value)`` if it lies in the interval from ``low`` to ``high``.

    ``low_closed`` / ``high_closed`` say whether the ends belong to it (``[low, high]`` by default).
    """
    v = check_finite_number(name, value)
    ok_low = v >= low if low_closed else v > low
    ok_high = v <= high if high_closed else v < high
    if not (ok_low and ok_high):
        interval = f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}"
        raise ValueError(f"`{name}` must lie in {interval}; got {value!r}.")
    return v


def as_widths(name: str, value: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """A sequence of positive ints (layer widths, channels) as a tuple; non-empty unless ``allow_empty``."""
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"`{name}` must be a sequence of positive ints; got {value!r}.") from None
    if (not items and not allow_empty) or not all(_is_int(v) and v >= 1 for v in items):
        what = "a sequence of positive ints" if allow_empty else "a non-empty sequence of positive ints"
        raise ValueError(f"`{name}` must be {what}; got {value!r}.")
    return tuple(int(v) for v in items)


def as_shape(name: str, value: Any) -> tuple[int, ...]:
    """The shape of one example (e.g. ``(784,)`` or ``(28, 28, 1)``): a non-empty tuple of positive ints."""
    return as_widths(name, value)


def set_field(obj: Any, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass from its ``__post_init__`` (e.g. to store a normalised tuple)."""
    object.__setattr__(obj, name, value)


def to_json_value(x: Any) -> Any:
    """``x`` with every part in a JSON form: dataclasses (nested) and mappings become dicts (string keys),
    tuples and lists lists, NumPy scalars numbers, arrays (NumPy, JAX) nested lists; anything else without
    a JSON form its ``str``."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_json_value(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): to_json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json_value(v) for v in x]
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "__array__"):
        return np.asarray(x).tolist()
    return str(x)


def config_to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a config: dataclasses (nested) become dicts, tuples lists, NumPy scalars numbers.

    Also accepts a mapping (its values are converted alike). Anything else without a JSON form is written
    as its ``str``.

    Raises:
      ValueError: if ``cfg`` is neither a dataclass instance nor a mapping.
    """
    if not ((dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)) or isinstance(cfg, dict)):
        raise ValueError(f"`cfg` must be a dataclass instance or a dict; got {type(cfg).__name__}.")
    out = to_json_value(cfg)
    json.dumps(out)  # every leaf is now a JSON value
    return out

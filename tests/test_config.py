"""The shared config validators and ``config_to_dict`` (``jaxvae.config``)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from jaxvae import config as C


def test_check_one_of_names_field_and_choices():
    assert C.check_one_of("kl", "mc", ("analytic", "mc")) == "mc"
    with pytest.raises(ValueError, match=r"`kl` must be one of \('analytic', 'mc'\); got 'x'"):
        C.check_one_of("kl", "x", ("analytic", "mc"))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
def test_check_positive_int_refuses(bad):
    with pytest.raises(ValueError, match="`latent_dim` must be a positive int"):
        C.check_positive_int("latent_dim", bad)


def test_check_positive_int_accepts_numpy_and_zero_when_allowed():
    assert C.check_positive_int("n", np.int64(3)) == 3 and type(C.check_positive_int("n", np.int64(3))) is int
    assert C.check_positive_int("n", 0, allow_zero=True) == 0
    with pytest.raises(ValueError, match="an int >= 0"):
        C.check_positive_int("n", -1, allow_zero=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, False, "1.0", None])
def test_check_finite_number_refuses(bad):
    with pytest.raises(ValueError, match="`beta` must be a finite number"):
        C.check_finite_number("beta", bad)


def test_positive_nonnegative_and_range():
    assert C.check_positive("lr", 1e-3) == 1e-3
    with pytest.raises(ValueError, match="`lr` must be > 0; got 0"):
        C.check_positive("lr", 0)
    assert C.check_nonnegative("beta", 0) == 0.0
    with pytest.raises(ValueError, match="`beta` must be >= 0"):
        C.check_nonnegative("beta", -0.1)
    assert C.check_in_range("momentum", 0.0, 0.0, 1.0, high_closed=False) == 0.0
    with pytest.raises(ValueError, match=r"`momentum` must lie in \[0.0, 1.0\); got 1.0"):
        C.check_in_range("momentum", 1.0, 0.0, 1.0, high_closed=False)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\]"):
        C.check_in_range("p", 0, 0, 1, low_closed=False)


def test_as_widths():
    assert C.as_widths("hidden", [500, np.int32(500)]) == (500, 500)
    assert C.as_widths("hidden", (), allow_empty=True) == ()
    for bad in [(), (0,), (3, -1), (2.0,), 5, (True,)]:
        with pytest.raises(ValueError, match="`hidden` must be a"):
            C.as_widths("hidden", bad)
    assert C.as_shape("x_shape", [28, 28, 1]) == (28, 28, 1)


def test_set_field_on_frozen_dataclass():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        hidden: tuple = (1,)

        def __post_init__(self):
            C.set_field(self, "hidden", C.as_widths("hidden", self.hidden))

    assert Cfg(hidden=[4, 5]).hidden == (4, 5)
    assert hash(Cfg(hidden=[4, 5])) == hash(Cfg(hidden=(4, 5)))


def test_config_to_dict_nested_and_json_ready():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        widths: tuple = (2, 3)
        scale: float = np.float32(0.5)

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner = Inner()
        name: str = "a"
        maybe: object = None

    d = C.config_to_dict(Outer())
    assert d == {"inner": {"widths": [2, 3], "scale": 0.5}, "name": "a", "maybe": None}
    assert json.loads(json.dumps(d)) == d
    assert C.config_to_dict({"a": (1, np.int64(2))}) == {"a": [1, 2]}
    with pytest.raises(ValueError, match="`cfg` must be a dataclass instance or a dict"):
        C.config_to_dict(Outer)


def test_to_json_value_converts_arrays_of_any_kind():
    import jax.numpy as jnp

    assert C.to_json_value({"a": jnp.arange(3), "b": np.float32(1.5), 2: (np.int64(4),)}) == {
        "a": [0, 1, 2],
        "b": 1.5,
        "2": [4],
    }

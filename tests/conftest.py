"""Suite-wide settings: strict rank promotion (catches [B] vs [B, 1] bugs at trace time).

Multi-device tests run in subprocesses that set ``XLA_FLAGS`` themselves (see
``tests/train/test_sharding.py``); this process keeps one CPU device.
"""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(params=["jit", "nojit"])
def variant(request):
    """Run a function with and without ``jax.jit``."""
    if request.param == "jit":
        return jax.jit
    return lambda f, **kw: f

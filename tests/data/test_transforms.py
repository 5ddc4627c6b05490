"""dynamic_binarize: Bernoulli(x) redrawn per batch, reproducible from the batch rng."""

import numpy as np
import pytest

from jaxvae.data.loader import BatchIterator
from jaxvae.data.transforms import compose, dynamic_binarize
from tests import stats


def test_bernoulli_mean_and_purity():
    p = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    x = np.tile(p, (4000, 1))
    batch = {"x": x, "y": np.arange(4000)}
    out = dynamic_binarize()(batch, np.random.default_rng(0))
    assert out["x"].dtype == np.float32 and out["x"].shape == x.shape
    assert set(np.unique(out["x"]).tolist()) <= {0.0, 1.0}
    assert out["y"] is batch["y"] and batch["x"] is x  # other keys untouched, input not modified
    assert np.all(out["x"][:, 0] == 0) and np.all(out["x"][:, -1] == 1)
    n = x.shape[0]
    se = np.sqrt(p * (1 - p) / n)
    stats.assert_close_clt(out["x"].mean(axis=0)[1:-1], p[1:-1], se[1:-1], what="Bernoulli frequency")


def test_same_rng_same_draw_new_rng_new_draw():
    x = {"x": np.full((32, 100), 0.5, np.float32)}
    f = dynamic_binarize(("x",))
    a = f(x, np.random.default_rng(1))["x"]
    np.testing.assert_array_equal(a, f(x, np.random.default_rng(1))["x"])
    assert not np.array_equal(a, f(x, np.random.default_rng(2))["x"])


def test_redrawn_every_epoch_in_the_loader():
    arrays = {"x": np.full((8, 300), 0.5, np.float32)}
    it = BatchIterator(arrays, 8, seed=0, shuffle=False, transform=dynamic_binarize())
    e0, e1 = next(it)["x"], next(it)["x"]  # same examples, two epochs
    assert not np.array_equal(e0, e1)


def test_compose_applies_in_order():
    def add_one(batch, rng):
        return {**batch, "x": batch["x"] + 1.0}

    out = compose(dynamic_binarize(), add_one)({"x": np.full((5, 5), 0.5, np.float32)}, np.random.default_rng(0))
    assert set(np.unique(out["x"]).tolist()) <= {1.0, 2.0}


@pytest.mark.parametrize(
    "batch, match",
    [
        ({"y": np.zeros(3)}, "no entry 'x'"),
        ({"x": np.zeros(3, np.uint8)}, "float"),
        ({"x": np.array([0.5, 1.2])}, r"\[0, 1\]"),
        ({"x": np.array([0.5, np.nan])}, "NaN"),
    ],
)
def test_bad_batches(batch, match):
    with pytest.raises(ValueError, match=match):
        dynamic_binarize()(batch, np.random.default_rng(0))
    with pytest.raises(ValueError, match="keys"):
        dynamic_binarize(())

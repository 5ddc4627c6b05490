"""BatchIterator / epoch_batches: coverage, determinism, exact resume, multi-host slicing, validation."""

import json

import numpy as np
import pytest

from jaxvae.data.loader import BatchIterator, epoch_batches
from jaxvae.data.transforms import dynamic_binarize

N, D = 103, 6


def make_arrays(n=N):
    rng = np.random.default_rng(0)
    return {"x": rng.random((n, D)).astype(np.float32), "idx": np.arange(n)}


def take(it, k):
    return [next(it) for _ in range(k)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.keys() == v.keys()
        for k in u:
            assert u[k].dtype == v[k].dtype
            np.testing.assert_array_equal(u[k], v[k])


@pytest.mark.parametrize("batch_size", [1, 10, 50, 103])
def test_each_epoch_is_a_permutation(batch_size):
    arrays = make_arrays()
    it = BatchIterator(arrays, batch_size, seed=3, drop_remainder=False)
    assert it.steps_per_epoch == -(-N // batch_size)
    orders = []
    for _ in range(3):
        batches = take(it, it.steps_per_epoch)
        seen = np.concatenate([b["idx"] for b in batches])
        assert sorted(seen.tolist()) == list(range(N))  # every example exactly once per epoch
        for b in batches:  # rows stay aligned across keys
            np.testing.assert_array_equal(b["x"], arrays["x"][b["idx"]])
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch


def test_drop_remainder_and_no_shuffle():
    it = BatchIterator(make_arrays(), 10, seed=0, shuffle=False)
    assert it.steps_per_epoch == 10 and it.local_batch_size == 10
    epoch0 = np.concatenate([b["idx"] for b in take(it, 10)])
    np.testing.assert_array_equal(epoch0, np.arange(100))
    assert it.epoch == 0
    np.testing.assert_array_equal(next(it)["idx"], np.arange(10))  # epoch 1 restarts in stored order
    assert it.epoch == 1


def test_orders_depend_on_seed_only():
    a = take(BatchIterator(make_arrays(), 16, seed=5), 20)
    b = take(BatchIterator(make_arrays(), 16, seed=5), 20)
    c = take(BatchIterator(make_arrays(), 16, seed=6), 20)
    assert_batches_equal(a, b)
    assert not all(np.array_equal(u["idx"], v["idx"]) for u, v in zip(a, c))


@pytest.mark.parametrize("stop", [0, 1, 6, 7, 13, 20])
@pytest.mark.parametrize("drop_remainder", [True, False])
def test_resume_is_bitwise_exact(stop, drop_remainder):
    """Stop after `stop` batches (crossing epoch ends), save as JSON, restore in a new iterator."""
    kwargs = dict(seed=11, drop_remainder=drop_remainder, transform=dynamic_binarize(("x",)))
    reference = take(BatchIterator(make_arrays(), 16, **kwargs), stop + 9)
    first = BatchIterator(make_arrays(), 16, **kwargs)
    take(first, stop)
    state = json.loads(json.dumps(first.get_state()))
    assert state["epoch"] == first.epoch and state["seed"] == 11
    resumed = BatchIterator(make_arrays(), 16, **kwargs)
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 9), reference[stop:])


@pytest.mark.parametrize("process_count", [2, 4])
def test_processes_split_the_global_batch(process_count):
    global_it = BatchIterator(make_arrays(), 16, seed=2)
    locals_ = [
        BatchIterator(make_arrays(), 16, seed=2, process_index=p, process_count=process_count)
        for p in range(process_count)
    ]
    for _ in range(15):  # crosses an epoch boundary (6 steps per epoch)
        g = next(global_it)
        parts = [next(it) for it in locals_]
        assert all(len(p["idx"]) == 16 // process_count for p in parts)
        np.testing.assert_array_equal(np.concatenate([p["idx"] for p in parts]), g["idx"])


def test_state_saved_by_process_0_resumes_every_process():
    # a multi-host checkpoint holds process 0's iterator state; each process resumes its own slice
    its = [BatchIterator(make_arrays(), 16, seed=2, process_index=p, process_count=2) for p in range(2)]
    ref = [BatchIterator(make_arrays(), 16, seed=2, process_index=p, process_count=2) for p in range(2)]
    for _ in range(8):
        for it in its + ref:
            next(it)
    state = its[0].get_state()
    for p in range(2):
        resumed = BatchIterator(make_arrays(), 16, seed=2, process_index=p, process_count=2)
        resumed.set_state(state)
        assert_batches_equal(take(resumed, 5), take(ref[p], 5))
    with pytest.raises(ValueError, match="process_count"):
        BatchIterator(make_arrays(), 16, seed=2, process_index=0, process_count=4).set_state(state)


def test_processes_draw_independent_transform_noise():
    arrays = {"x": np.full((64, 200), 0.5, np.float32)}
    t = dynamic_binarize()
    a = next(BatchIterator(arrays, 64, seed=0, transform=t, process_index=0, process_count=2))["x"]
    b = next(BatchIterator(arrays, 64, seed=0, transform=t, process_index=1, process_count=2))["x"]
    assert not np.array_equal(a, b)  # P(equal) = 2^-6400


@pytest.mark.parametrize(
    "arrays, batch_size, kwargs, match",
    [
        ({"x": np.zeros((10, 2)), "y": np.zeros(9)}, 2, {}, "same leading length"),
        ({"x": np.array([[0.0], [np.nan]])}, 1, {}, r"arrays\['x'\].*finite"),
        ({}, 1, {}, "non-empty"),
        ({"x": np.zeros(10)}, 0, {}, "batch_size"),
        ({"x": np.zeros(10)}, 11, {}, "batch_size.*<= the dataset size 10"),
        ({"x": np.zeros(10)}, 2.0, {}, "batch_size"),
        ({"x": np.zeros(10)}, 3, {"process_count": 2}, "divisible by process_count"),
        ({"x": np.zeros(10)}, 4, {"process_count": 2, "process_index": 2}, "process_index"),
        ({"x": np.zeros(10)}, 4, {"process_count": 2, "drop_remainder": False}, "drop_remainder"),
        ({"x": np.zeros(10)}, 2, {"seed": -1}, "seed"),
        ({"x": np.zeros(10)}, 2, {"transform": 3}, "transform"),
    ],
)
def test_bad_arguments(arrays, batch_size, kwargs, match):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        BatchIterator(arrays, batch_size, **kwargs)


def test_set_state_rejects_other_configurations():
    it = BatchIterator(make_arrays(), 16, seed=1)
    state = it.get_state()
    with pytest.raises(ValueError, match="seed"):
        BatchIterator(make_arrays(), 16, seed=2).set_state(state)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(make_arrays(), 8, seed=1).set_state(state)
    with pytest.raises(ValueError, match="lacks"):
        it.set_state({"epoch": 0})
    with pytest.raises(ValueError, match="position"):
        it.set_state({**state, "position": 99})


@pytest.mark.parametrize("batch_size, process_count", [(10, 1), (10, 2), (25, 5), (103, 1), (200, 4)])
def test_epoch_batches_cover_each_example_once(batch_size, process_count):
    arrays = make_arrays()
    seen, steps = [], set()
    for p in range(process_count):
        batches = list(epoch_batches(arrays, batch_size, process_index=p, process_count=process_count))
        steps.add(len(batches))
        for batch, mask in batches:
            assert mask.dtype == bool and mask.shape == (batch_size // process_count,)
            assert batch["x"].shape == (batch_size // process_count, D)
            np.testing.assert_array_equal(batch["x"], arrays["x"][batch["idx"]])
            seen.extend(batch["idx"][mask].tolist())
    assert len(steps) == 1  # every process runs the same number of steps
    assert sorted(seen) == list(range(N))


def test_epoch_batches_in_order_and_validated():
    batches = list(epoch_batches(make_arrays(), 50))
    np.testing.assert_array_equal(np.concatenate([b["idx"] for b, _ in batches])[:N], np.arange(N))
    assert [int(m.sum()) for _, m in batches] == [50, 50, 3]
    with pytest.raises(ValueError, match="batch_size"):
        list(epoch_batches(make_arrays(), 0))
    with pytest.raises(ValueError, match="divisible"):
        list(epoch_batches(make_arrays(), 5, process_count=2))

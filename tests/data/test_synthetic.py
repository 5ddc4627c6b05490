"""The synthetic pool: chunked resumable writing, static binarization, one fresh block per effective epoch."""

import json

import numpy as np
import pytest

from jaxvae.data.synthetic import SyntheticPool, SyntheticPoolIterator, pool_size, write_pool
from jaxvae.data.transforms import dynamic_binarize
from tests import stats

SHAPE = (2, 3)


def index_sampler(indices):
    """Image i is the constant i / 255: the served batches reveal which pool images they hold."""
    return np.broadcast_to((indices % 256 / 255.0)[:, None, None], (len(indices),) + SHAPE).astype(np.float32)


def indices_of(x):
    x = np.asarray(x).reshape(len(x), -1)
    assert np.all(x == x[:, :1])
    return np.round(x[:, 0] * 255).astype(int)


class Crash(RuntimeError):
    pass


def test_write_and_read_back(tmp_path):
    pool = write_pool(tmp_path, index_sampler, num_samples=23, chunk_size=5, image_shape=SHAPE, meta={"seed": 3})
    assert pool.is_complete and pool.num_chunks == 5 and pool.chunk_range(4) == (20, 23)
    grey = pool.read(0, 23)
    assert grey.dtype == np.uint8 and grey.shape == (23, *SHAPE)
    np.testing.assert_array_equal(grey[:, 0, 0], np.arange(23))
    np.testing.assert_array_equal(pool.read(4, 13), grey[4:13])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["meta"] == {"seed": 3} and manifest["image_shape"] == list(SHAPE)
    assert SyntheticPool(tmp_path).meta == {"seed": 3}


def test_greys_are_stored_like_mnist_pixels(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((7, *SHAPE)).astype(np.float32)
    pool = write_pool(tmp_path, lambda idx: data[idx], num_samples=7, chunk_size=3, image_shape=SHAPE)
    np.testing.assert_array_equal(pool.read(0, 7), np.round(data.astype(np.float64) * 255).astype(np.uint8))


def test_a_killed_run_resumes_at_the_first_missing_chunk(tmp_path):
    calls = []

    def crashing(indices):
        if len(calls) == 2:
            raise Crash
        calls.append(indices[0])
        return index_sampler(indices)

    with pytest.raises(Crash):
        write_pool(tmp_path / "a", crashing, num_samples=23, chunk_size=5, image_shape=SHAPE)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "chunk_000000.npy",
        "chunk_000001.npy",
        "manifest.json",
    ]
    assert SyntheticPool(tmp_path / "a").missing_chunks() == [2, 3, 4]

    resumed = []
    write_pool(
        tmp_path / "a",
        lambda i: resumed.append(i[0]) or index_sampler(i),
        num_samples=23,
        chunk_size=5,
        image_shape=SHAPE,
    )
    assert resumed == [10, 15, 20]
    write_pool(tmp_path / "b", index_sampler, num_samples=23, chunk_size=5, image_shape=SHAPE)
    for c in range(5):
        name = f"chunk_{c:06d}.npy"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_max_chunks_and_progress(tmp_path):
    seen = []
    pool = write_pool(
        tmp_path,
        index_sampler,
        num_samples=23,
        chunk_size=5,
        image_shape=SHAPE,
        max_chunks=2,
        on_chunk=lambda c, n: seen.append((c, n)),
    )
    assert seen == [(0, 5), (1, 5)] and pool.missing_chunks() == [2, 3, 4]
    with pytest.raises(ValueError, match="chunk 2"):
        pool.read(0, 23)


@pytest.mark.parametrize(
    "change", [{"num_samples": 24}, {"chunk_size": 4}, {"image_shape": (3, 2)}, {"meta": {"seed": 4}}]
)
def test_an_existing_pool_with_other_settings_is_refused(tmp_path, change):
    kw = dict(num_samples=23, chunk_size=5, image_shape=SHAPE, meta={"seed": 3})
    write_pool(tmp_path, index_sampler, max_chunks=1, **kw)
    with pytest.raises(ValueError, match="different"):
        write_pool(tmp_path, index_sampler, **{**kw, **change})


@pytest.mark.parametrize(
    "sampler, match",
    [
        (lambda i: index_sampler(i)[:, :1], "shape"),
        (lambda i: index_sampler(i) + 1.0, r"\[0, 1\]"),
        (lambda i: index_sampler(i) - 0.5, r"\[0, 1\]"),
        (lambda i: np.full((len(i), *SHAPE), np.nan, np.float32), "non-finite"),
        (lambda i: np.zeros((len(i), *SHAPE), np.uint8), "floats"),
    ],
)
def test_bad_sampler_output(tmp_path, sampler, match):
    with pytest.raises(ValueError, match=match):
        write_pool(tmp_path, sampler, num_samples=4, chunk_size=2, image_shape=SHAPE)
    assert not list(tmp_path.glob("chunk_*"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_samples": 0},
        {"chunk_size": 0},
        {"image_shape": ()},
        {"meta": {"f": object()}},
        {"max_chunks": -1},
    ],
)
def test_bad_write_arguments(tmp_path, kwargs):
    kw = dict(num_samples=4, chunk_size=2, image_shape=SHAPE)
    with pytest.raises(ValueError):
        write_pool(tmp_path, index_sampler, **{**kw, **kwargs})


def test_no_manifest(tmp_path):
    with pytest.raises(ValueError, match="manifest"):
        SyntheticPool(tmp_path)


def test_static_binarization_is_fixed_per_image_and_unbiased(tmp_path):
    n, shape = 64, (16, 16)
    p = np.random.default_rng(1).random((n, *shape)).astype(np.float32)
    pool = write_pool(tmp_path, lambda idx: p[idx], num_samples=n, chunk_size=10, image_shape=shape)
    full = pool.read(0, n, binarize="static", binarize_seed=5)
    assert set(np.unique(full)) == {0, 1}
    np.testing.assert_array_equal(pool.read(13, 41, binarize="static", binarize_seed=5), full[13:41])
    assert not np.array_equal(pool.read(0, n, binarize="static", binarize_seed=6), full)
    # E[b] = x: the sum of (b - x) over all pixels has variance sum x (1 - x)
    q = pool.read(0, n) / 255.0
    stats.assert_close_clt(np.sum(full - q), 0.0, np.sqrt(np.sum(q * (1 - q))), what="sum(b - x)")


def _pool(tmp_path, num_samples=24, **kw):
    return write_pool(tmp_path, index_sampler, num_samples=num_samples, chunk_size=5, image_shape=SHAPE, **kw)


def _epochs(it, num_epochs):
    out = []
    for _ in range(num_epochs):
        out.append(np.concatenate([indices_of(next(it)["x"]) for _ in range(it.steps_per_epoch)]))
    return out


def test_each_effective_epoch_consumes_a_fresh_block(tmp_path):
    it = SyntheticPoolIterator(_pool(tmp_path), 3, block_size=6, seed=0, binarize="none")
    assert it.num_blocks == 4 and it.steps_per_epoch == 2
    epochs = _epochs(it, 6)
    for e, idx in enumerate(epochs):
        b = e % 4
        np.testing.assert_array_equal(np.sort(idx), np.arange(6 * b, 6 * b + 6))
    assert not np.array_equal(epochs[0], epochs[4])  # the reused block is reshuffled
    assert it.epoch == 5


def test_k_blocks_restriction_cycles_through_the_first_k_blocks(tmp_path):
    pool = write_pool(tmp_path, index_sampler, num_samples=24, chunk_size=5, image_shape=SHAPE, max_chunks=3)
    it = SyntheticPoolIterator(pool, 6, block_size=6, seed=0, num_blocks=2, binarize="none")  # 12 <= 15 written
    for e, idx in enumerate(_epochs(it, 5)):
        np.testing.assert_array_equal(np.sort(idx), np.arange(6 * (e % 2), 6 * (e % 2) + 6))
    with pytest.raises(ValueError, match="lacks chunks"):
        SyntheticPoolIterator(pool, 6, block_size=6, seed=0, num_blocks=3)
    with pytest.raises(ValueError, match="num_blocks"):
        SyntheticPoolIterator(pool, 6, block_size=6, seed=0, num_blocks=5)


def test_resume_is_bitwise_exact_across_block_boundaries(tmp_path):
    pool = _pool(tmp_path)
    kw = dict(block_size=6, seed=2, binarize="static", transform=dynamic_binarize())
    ref = SyntheticPoolIterator(pool, 4, **kw)
    stream = [next(ref)["x"] for _ in range(9)]
    for cut in (0, 1, 3, 5, 8):
        it = SyntheticPoolIterator(pool, 4, **kw)
        for _ in range(cut):
            next(it)
        state = json.loads(json.dumps(it.get_state()))
        resumed = SyntheticPoolIterator(pool, 4, **kw)
        resumed.set_state(state)
        for k in range(cut, 9):
            np.testing.assert_array_equal(next(resumed)["x"], stream[k])


def test_state_from_another_layout_is_refused(tmp_path):
    pool = _pool(tmp_path)
    state = SyntheticPoolIterator(pool, 3, block_size=6, seed=0).get_state()
    for other in (
        SyntheticPoolIterator(pool, 3, block_size=6, seed=0, num_blocks=2),
        SyntheticPoolIterator(pool, 3, block_size=6, seed=0, binarize="none"),
        SyntheticPoolIterator(pool, 3, block_size=8, seed=0),
        SyntheticPoolIterator(pool, 3, block_size=6, seed=1),
    ):
        with pytest.raises(ValueError):
            other.set_state(state)
    with pytest.raises(ValueError):
        SyntheticPoolIterator(pool, 3, block_size=6, seed=0).set_state({"epoch": 0})


def test_batches_are_floats_of_the_chosen_form(tmp_path):
    pool = _pool(tmp_path)
    grey = next(SyntheticPoolIterator(pool, 4, block_size=6, seed=0, binarize="none", flatten=True))["x"]
    assert grey.dtype == np.float32 and grey.shape == (4, 6) and grey.max() <= 1
    binary = next(SyntheticPoolIterator(pool, 4, block_size=6, seed=0, key="image"))["image"]
    assert binary.dtype == np.float32 and binary.shape == (4, *SHAPE) and set(np.unique(binary)) <= {0.0, 1.0}


def test_processes_split_each_global_batch(tmp_path):
    pool = _pool(tmp_path)
    its = [
        SyntheticPoolIterator(pool, 4, block_size=6, seed=0, binarize="none", process_index=p, process_count=2)
        for p in range(2)
    ]
    single = SyntheticPoolIterator(pool, 4, block_size=6, seed=0, binarize="none")
    for _ in range(5):
        parts = [indices_of(next(it)["x"]) for it in its]
        np.testing.assert_array_equal(np.concatenate(parts), indices_of(next(single)["x"]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"block_size": 25}, "block_size"),
        ({"block_size": 6, "binarize": "dynamic"}, "binarize"),
        ({"block_size": 6, "num_blocks": 0}, "num_blocks"),
        ({"block_size": 6, "transform": 3}, "transform"),
        ({"block_size": 2}, "batch_size"),
    ],
)
def test_iterator_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticPoolIterator(_pool(tmp_path), 3, seed=0, **kwargs)


def test_pool_size():
    assert pool_size(1000, 60_000) == 60_000_000
    with pytest.raises(ValueError):
        pool_size(0, 10)

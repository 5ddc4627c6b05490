"""Deterministic, resumable NumPy batch iterators (single- and multi-host).

Everything the iterator does is a pure function of ``(seed, epoch, batch index)``:

* the order of epoch ``e`` is ``default_rng([seed, 0, e]).permutation(N)`` (or ``arange(N)``),
* batch ``b`` of epoch ``e`` is ``order[b * B : (b + 1) * B]`` (global batch ``B``),
* process ``p`` of ``P`` takes rows ``[p * B/P, (p + 1) * B/P)`` of that global batch,
* the transform of that slice draws from ``default_rng([seed, 1, e, b, p])``.

So the state is just ``(epoch, position)``: :meth:`BatchIterator.get_state` returns a small
JSON-serialisable dict and :meth:`BatchIterator.set_state` resumes bitwise exactly. Every process
walks the same global order, so the processes' slices of a global batch are disjoint and their
union is the global batch.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from jaxvae.data.transforms import Transform

_STATE_VERSION = 1
_SHUFFLE_STREAM = 0
_TRANSFORM_STREAM = 1


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an int; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    if not isinstance(arrays, Mapping) or not arrays:
        raise ValueError("`arrays` must be a non-empty dict of name -> array with a leading example axis.")
    out = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.ndim < 1:
            raise ValueError(f"`arrays[{k!r}]` must have a leading example axis; got a scalar.")
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise ValueError(f"`arrays[{k!r}]` must be finite; found {bad} NaN/inf value(s).")
        out[k] = a
    lengths = {k: len(a) for k, a in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"`arrays` must all have the same leading length; got {lengths}.")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("`arrays` must hold at least one example; got length 0.")
    return out, n


def _check_processes(batch_size: int, process_index: Any, process_count: Any) -> tuple[int, int]:
    process_count = _check_int("process_count", process_count, minimum=1)
    process_index = _check_int("process_index", process_index, minimum=0)
    if process_index >= process_count:
        raise ValueError(f"`process_index` must be < process_count={process_count}; got {process_index}.")
    if batch_size % process_count:
        raise ValueError(
            f"`batch_size` (the global batch) must be divisible by process_count={process_count}; got {batch_size}."
        )
    return process_index, process_count


class BatchIterator:
    """Infinite iterator over epochs of dict batches, reshuffled each epoch, exactly resumable.

    Args:
      arrays: ``name -> array`` with a common leading length ``N`` (e.g. ``{"x": [N, 784], "y": [N]}``).
      batch_size: the GLOBAL batch size ``B`` (summed over processes), ``1 <= B <= N``.
      seed: non-negative int; fixes every epoch's order and every transform draw.
      shuffle: reshuffle each epoch (else the stored order every epoch).
      drop_remainder: drop the last ``N mod B`` examples of each epoch (every batch has ``B`` rows).
        With ``False`` the last batch of an epoch is smaller; only allowed with one process (use
        :func:`epoch_batches` for padded evaluation passes).
      transform: optional ``f(batch, rng) -> batch`` applied to each (local) batch, e.g.
        :func:`jaxvae.data.transforms.dynamic_binarize`.
      process_index: this process's index ``p`` (``jax.process_index()``).
      process_count: number of processes ``P`` (``jax.process_count()``); each yields ``B / P`` rows.

    Yields:
      ``dict[str, np.ndarray]`` with leading size ``B / P`` (smaller for a final partial batch).

    Raises:
      ValueError: for arrays of unequal length, non-finite float arrays, ``batch_size`` outside
        ``[1, N]`` or not divisible by ``process_count``, bad process indices, a negative seed.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        drop_remainder: bool = True,
        transform: Transform | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ):
        self._arrays, self._n = _check_arrays(arrays)
        self._batch_size = _check_int("batch_size", batch_size, minimum=1)
        if self._batch_size > self._n:
            raise ValueError(f"`batch_size` must be <= the dataset size {self._n}; got {batch_size}.")
        self._process_index, self._process_count = _check_processes(self._batch_size, process_index, process_count)
        self._seed = _check_int("seed", seed, minimum=0)
        if not drop_remainder and self._process_count > 1:
            raise ValueError(
                "`drop_remainder=False` needs process_count=1 (a partial batch cannot be split evenly); "
                "use epoch_batches() for evaluation."
            )
        if transform is not None and not callable(transform):
            raise ValueError(f"`transform` must be callable f(batch, rng) -> batch; got {transform!r}.")
        self._shuffle = bool(shuffle)
        self._drop_remainder = bool(drop_remainder)
        self._transform = transform
        self._epoch = 0
        self._position = 0
        self._order: np.ndarray | None = None
        self._order_epoch = -1

    # -- geometry ---------------------------------------------------------------------------
    @property
    def num_examples(self) -> int:
        return self._n

    @property
    def batch_size(self) -> int:
        """Global batch size."""
        return self._batch_size

    @property
    def local_batch_size(self) -> int:
        return self._batch_size // self._process_count

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self._n, self._batch_size)
        return full if (self._drop_remainder or rest == 0) else full + 1

    @property
    def epoch(self) -> int:
        return self._epoch

    # -- iteration --------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order_epoch != epoch:
            if self._shuffle:
                self._order = np.random.default_rng([self._seed, _SHUFFLE_STREAM, epoch]).permutation(self._n)
            else:
                self._order = np.arange(self._n)
            self._order_epoch = epoch
        return self._order

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._position >= self.steps_per_epoch:
            self._epoch += 1
            self._position = 0
        epoch, b = self._epoch, self._position
        order = self._epoch_order(epoch)
        idx = order[b * self._batch_size : (b + 1) * self._batch_size]
        if len(idx) == self._batch_size:  # full batch: take this process's slice
            local = self.local_batch_size
            idx = idx[self._process_index * local : (self._process_index + 1) * local]
        batch = {k: a[idx] for k, a in self._arrays.items()}
        if self._transform is not None:
            rng = np.random.default_rng([self._seed, _TRANSFORM_STREAM, epoch, b, self._process_index])
            batch = self._transform(batch, rng)
        self._position = b + 1
        return batch

    # -- checkpointing ----------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "seed": self._seed,
            "num_examples": self._n,
            "batch_size": self._batch_size,
            "shuffle": self._shuffle,
            "drop_remainder": self._drop_remainder,
            "process_index": self._process_index,
            "process_count": self._process_count,
        }

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position: ``{"version", "epoch", "position", "seed", ...}``.

        ``position`` is the number of batches of ``epoch`` already served.
        """
        return {"version": _STATE_VERSION, "epoch": self._epoch, "position": self._position, **self._config()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`get_state`; the next batch is bitwise the one an uninterrupted run gives.

        On several hosts the processes of one job are at the same global position, so the state that
        one process saved (a checkpoint holds process 0's) resumes each of them; only the process
        *count* must match.

        Raises:
          ValueError: if ``state`` is malformed or was saved by an iterator with a different seed,
            dataset size, batch size, shuffle/drop_remainder setting or process layout.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"`state` must be a dict from get_state(); got {type(state).__name__}.")
        missing = [k for k in ("version", "epoch", "position", *self._config()) if k not in state]
        if missing:
            raise ValueError(f"`state` lacks {missing}; expected a dict from BatchIterator.get_state().")
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"`state['version']` must be {_STATE_VERSION}; got {state['version']!r}.")
        for k, v in self._config().items():
            if k == "process_index":
                continue  # the position is global: any process's state resumes every process
            if state[k] != v:
                raise ValueError(f"`state[{k!r}]` is {state[k]!r} but this iterator has {k}={v!r}.")
        epoch = _check_int("state['epoch']", state["epoch"], minimum=0)
        position = _check_int("state['position']", state["position"], minimum=0)
        if position > self.steps_per_epoch:
            raise ValueError(f"`state['position']` must be <= steps_per_epoch={self.steps_per_epoch}; got {position}.")
        self._epoch, self._position = epoch, position


class StackedIterator:
    """Zips one iterator per member and yields their batches stacked on a new leading member axis.

    For several models trained in one program on data of their own
    (:func:`jaxvae.train.multi.make_multi_train_step` with ``batch_axes=0``): every entry of the
    members' batches gets the axis, ``[S, B, ...]`` (a scalar entry becomes ``[S]``). Resumable:
    ``get_state()`` holds each member iterator's state.

    Args:
      iterators: one iterator per member, each yielding dicts with the same keys and shapes and
        providing ``get_state`` / ``set_state``.
    """

    def __init__(self, iterators: Sequence[Any]):
        self.iterators = list(iterators)
        if not self.iterators:
            raise ValueError("`iterators` must hold at least one iterator (one per member).")
        for i, it in enumerate(self.iterators):
            if not (hasattr(it, "get_state") and hasattr(it, "set_state")):
                raise ValueError(f"`iterators[{i}]` must provide get_state() and set_state(); got {type(it).__name__}.")

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batches = [next(it) for it in self.iterators]
        keys = set(batches[0])
        for i, b in enumerate(batches[1:], 1):
            if set(b) != keys:
                raise ValueError(f"member {i}'s batch has keys {sorted(b)}; member 0's has {sorted(keys)}.")
        return {k: np.stack([np.asarray(b[k]) for b in batches]) for k in batches[0]}

    def get_state(self) -> dict[str, Any]:
        return {"members": [it.get_state() for it in self.iterators]}

    def set_state(self, state: Mapping[str, Any]) -> None:
        states = state["members"]
        if len(states) != len(self.iterators):
            raise ValueError(
                f"StackedIterator.set_state: the state holds {len(states)} members' iterators, this one "
                f"{len(self.iterators)}."
            )
        for it, st in zip(self.iterators, states):
            it.set_state(st)


def epoch_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """One ordered pass over an evaluation set in fixed-size batches, with a validity mask.

    Global batch ``b`` holds examples ``b*B .. b*B + B - 1``; the last one is padded by wrapping
    around to the start of the set (real examples, so models see valid inputs) and the padding is
    masked out. Summing ``mask * value`` over all batches and processes covers every example
    exactly once. With ``process_count = P`` process ``p`` gets rows ``[p*B/P, (p+1)*B/P)`` of
    every global batch (and of its mask), so all processes run the same number of steps.

    Args:
      arrays: ``name -> array`` with a common leading length ``N >= 1``.
      batch_size: global batch size ``B >= 1`` (may exceed ``N``: one padded batch), divisible by
        ``process_count``.
      process_index: this process's index.
      process_count: number of processes.

    Yields:
      ``(batch, mask)``: ``batch`` a dict of arrays with leading size ``B / P``; ``mask`` bool
      ``[B / P]``, True on real examples.
    """
    arrays, n = _check_arrays(arrays)
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    process_index, process_count = _check_processes(batch_size, process_index, process_count)
    local = batch_size // process_count
    lo, hi = process_index * local, (process_index + 1) * local
    num_batches = -(-n // batch_size)
    for b in range(num_batches):
        glob = np.arange(b * batch_size, (b + 1) * batch_size)
        mask = glob[lo:hi] < n
        idx = glob[lo:hi] % n
        yield {k: a[idx] for k, a in arrays.items()}, mask

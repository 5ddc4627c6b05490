"""Per-batch transforms for :class:`jaxvae.data.loader.BatchIterator`.

A transform is ``f(batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict``. The loader
derives ``rng`` from ``(seed, epoch, batch index, process index)``, so a transform that draws only
from ``rng`` is reproducible and resumes exactly after ``set_state``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Batch = dict[str, np.ndarray]
Transform = Callable[[Batch, np.random.Generator], Batch]


def dynamic_binarize(keys: Sequence[str] = ("x",)) -> Transform:
    """Dynamic binarization: resample ``b ~ Bernoulli(x)`` every time a batch is drawn.

    Each epoch sees a fresh binarization of the same grey-level images (the usual "dynamically
    binarized MNIST" protocol), unlike :func:`jaxvae.data.mnist.binarize_static`.

    Args:
      keys: batch entries to binarize; each must be a float array in [0, 1].

    Returns:
      ``f(batch, rng) -> batch`` returning a new dict (the input is not modified) whose ``keys`` are
      float32 0/1 arrays of the same shape.

    Raises:
      ValueError: (from ``f``) if a key is missing or its values are not floats in [0, 1].
    """
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    if not keys:
        raise ValueError("`keys` must name at least one batch entry.")

    def transform(batch: Batch, rng: np.random.Generator) -> Batch:
        out = dict(batch)
        for k in keys:
            if k not in batch:
                raise ValueError(f"`batch` has no entry {k!r} to binarize; entries: {sorted(batch)}.")
            x = np.asarray(batch[k])
            if x.dtype.kind != "f":
                raise ValueError(f"`batch[{k!r}]` must be float probabilities in [0, 1]; got dtype {x.dtype}.")
            if x.size and not (np.all(x >= 0) and np.all(x <= 1)):  # also rejects NaN
                raise ValueError(
                    f"`batch[{k!r}]` must lie in [0, 1] (no NaN); got range [{np.nanmin(x)}, {np.nanmax(x)}]."
                )
            out[k] = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
        return out

    return transform


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` left to right, each with its own child generator of ``rng``."""

    def transform(batch: Batch, rng: np.random.Generator) -> Batch:
        for t, r in zip(transforms, rng.spawn(len(transforms))):
            batch = t(batch, r)
        return batch

    return transform

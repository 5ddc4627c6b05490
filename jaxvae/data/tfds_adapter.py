"""TensorFlow Datasets -> NumPy arrays, without TensorFlow.

Uses ``tfds.data_source`` (random access over ArrayRecord files), which works without
TensorFlow; image features are decoded by Pillow (or OpenCV). Datasets prepared as TFRecord need
TensorFlow and ``tfds.load`` instead; convert them to arrays with your own code in that case.

On a machine with internet, prepare a dataset once with
``tfds.builder(name, data_dir=..., file_format="array_record").download_and_prepare()``; here
(offline) :func:`load_tfds_arrays` only reads what is already under ``data_dir``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - tfds is a declared dependency
        raise ImportError("load_tfds_arrays needs `tensorflow-datasets` (pip install tensorflow-datasets).") from e
    return tfds


def load_tfds_arrays(
    name: str,
    split: str,
    data_dir: str | os.PathLike,
    *,
    keys: Sequence[str] | None = None,
    download: bool = False,
    max_examples: int | None = None,
    chunk_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Read a prepared TFDS split (ArrayRecord) into a dict of stacked NumPy arrays.

    Args:
      name: TFDS name, optionally with config/version (``"mnist"``, ``"mnist:3.0.1"``).
      split: split name or slice (``"train"``, ``"test[:10%]"``).
      data_dir: directory holding ``<name>/<version>/``.
      keys: feature names to keep (default: every top-level feature). Nested feature dicts are
        not supported; pick their leaves with your own code.
      download: passed to ``tfds.data_source``; keep ``False`` offline.
      max_examples: read only the first ``max_examples`` records (in file order).
      chunk_size: records fetched per ``__getitems__`` call.

    Returns:
      ``{feature: array [N, ...]}`` in the file order (TFDS shuffles records when it writes them).

    Raises:
      ValueError: for a bad ``max_examples``/``chunk_size``, unknown ``keys`` or nested features.
      ImportError: when image decoding needs Pillow and it is missing (the message says so).
    """
    tfds = _import_tfds()
    if max_examples is not None and (
        isinstance(max_examples, bool) or int(max_examples) != max_examples or max_examples < 0
    ):
        raise ValueError(f"`max_examples` must be a non-negative int or None; got {max_examples!r}.")
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int; got {chunk_size!r}.")
    source = tfds.data_source(name, split=split, data_dir=os.fspath(data_dir), download=download)
    n = len(source) if max_examples is None else min(len(source), int(max_examples))
    columns: dict[str, list[Any]] | None = None
    for start in range(0, n, int(chunk_size)):
        idx = list(range(start, min(n, start + int(chunk_size))))
        try:
            records = source.__getitems__(idx)
        except ImportError as e:
            raise ImportError(
                f"decoding {name!r} needs Pillow (pip install pillow) or OpenCV for its image features: {e}"
            ) from e
        if columns is None:
            available = list(records[0]) if records else []
            wanted = list(available if keys is None else keys)
            unknown = [k for k in wanted if k not in available]
            if unknown:
                raise ValueError(f"`keys` {unknown} are not features of {name!r}; features: {available}.")
            columns = {k: [] for k in wanted}
        for rec in records:
            for k in columns:
                v = rec[k]
                if isinstance(v, dict):
                    raise ValueError(f"feature {k!r} of {name!r} is nested; pass `keys` naming flat features.")
                columns[k].append(np.asarray(v))
    if columns is None:  # empty split
        return {}
    return {k: np.stack(v) for k, v in columns.items()}

"""Image folders (CelebA-HQ as users keep it): listing, a seeded train/validation split, decoding, batches.

The pipeline of Rivera's code (``keras.utils.image_dataset_from_directory`` with
``validation_split=0.2, seed=1967``, ``RandomFlip("horizontal")``, ``Rescaling(1/127.5, -1)``),
reproduced with NumPy and Pillow:

1. :func:`list_images`: every file under ``directory`` whose lower-cased name ends with one of
   ``extensions`` (Keras' allowlist ``.bmp .gif .jpeg .jpg .png`` by default), walked recursively
   in Keras' order: directories sorted by path, files sorted by name within each.
2. :func:`split_files`: ``np.random.RandomState(seed).shuffle`` of that list, then the **last**
   ``int(validation_fraction * N)`` files are the validation set and the rest the training set:
   Keras' file-level split, so the same folder, seed and fraction give the same 24,000 / 6,000
   CelebA-HQ files as the official code.
3. :func:`read_images`: Pillow decoding (PNG, JPEG, BMP, GIF's first frame) to RGB or grey, resized
   to ``image_size`` (bilinear by default, as Keras; Pillow's filters antialias when they shrink,
   TensorFlow's ``resize`` does not, so 1024 -> 256 pixels differ slightly from the official code's),
   as ``uint8 [N, H, W, C]``; a thread pool decodes in parallel.
4. :meth:`ImageFolder.iterator`: a :class:`~jaxvae.data.loader.BatchIterator` over file *indices*
   whose transform decodes the batch, flips each image horizontally with probability 1/2 (drawn
   from the loader's per-batch generator) and scales ``[0, 255] -> value_range`` (``[-1, 1]`` by
   default: ``x / 127.5 - 1``). Shuffling, resumption (``get_state``/``set_state``) and per-process
   slices (``process_index``/``process_count``) are the loader's, so each host decodes only its own
   slice, and a resumed run sees bitwise the same batches, flips included. ``cache=True`` decodes the
   subset once into memory (24,000 x 256 x 256 x 3 bytes = 4.7 GB for CelebA-HQ) instead of every
   epoch.

Batches are ``{"x": float32 [B / P, H, W, C]}``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from jaxvae.data.loader import BatchIterator, epoch_batches
from jaxvae.data.transforms import Batch, Transform

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
SUBSETS = ("train", "validation", "all")
RESAMPLING = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
KERAS_SPLIT_SEED = 1967


def _check_directory(directory: str | os.PathLike) -> Path:
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ValueError(f"`directory` must be an existing directory of images; got {str(directory)!r}.")
    return path


def _check_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    ext = tuple(str(e).lower() for e in extensions)
    if not ext or not all(e.startswith(".") and len(e) > 1 for e in ext):
        raise ValueError(f"`extensions` must be a non-empty sequence like ('.png', '.jpg'); got {extensions!r}.")
    return ext


def list_images(directory: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Paths of the image files under ``directory`` (recursively), in Keras' deterministic order.

    Directories are visited in sorted path order and files sorted by name within each; a file
    counts when its lower-cased name ends with one of ``extensions``. Symbolic links to directories
    are not followed.

    Returns:
      ``list[str]`` of paths (``directory`` joined with the relative path).

    Raises:
      ValueError: if ``directory`` does not exist or ``extensions`` is malformed.
    """
    root = _check_directory(directory)
    ext = _check_extensions(extensions)
    out = []
    for dirpath, _, names in sorted(os.walk(root), key=lambda w: w[0]):
        out.extend(os.path.join(dirpath, n) for n in sorted(names) if n.lower().endswith(ext))
    return out


def split_files(
    files: Sequence[str], *, validation_fraction: float = 0.2, seed: int = KERAS_SPLIT_SEED
) -> tuple[list[str], list[str]]:
    """Keras' file-level train/validation split.

    The list is shuffled with ``np.random.RandomState(seed).shuffle``; the last
    ``int(validation_fraction * N)`` files form the validation set, the others the training set.

    Args:
      files: file paths in a deterministic order (:func:`list_images`).
      validation_fraction: in ``[0, 1)``; 0 puts every file in the training set.
      seed: non-negative int (Rivera: 1967).

    Returns:
      ``(train, validation)`` lists of paths, disjoint, together the shuffled ``files``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int; got {seed!r}.")
    if not (isinstance(validation_fraction, (int, float)) and 0 <= validation_fraction < 1):
        raise ValueError(f"`validation_fraction` must lie in [0, 1); got {validation_fraction!r}.")
    shuffled = list(files)
    np.random.RandomState(int(seed)).shuffle(shuffled)
    n_val = int(validation_fraction * len(shuffled))
    cut = len(shuffled) - n_val
    return shuffled[:cut], shuffled[cut:]


def _check_image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    try:
        h, w = (int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"`image_size` must be (height, width) or None; got {image_size!r}.") from None
    if h < 1 or w < 1:
        raise ValueError(f"`image_size` must be positive; got {image_size!r}.")
    return h, w


def _check_channels(channels: Any) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"`channels` must be 1 (grey) or 3 (RGB); got {channels!r}.")
    return int(channels)


def _check_resample(resample: str) -> int:
    from PIL import Image

    if resample not in RESAMPLING:
        raise ValueError(f"`resample` must be one of {RESAMPLING}; got {resample!r}.")
    return getattr(Image.Resampling, resample.upper())


def read_image(
    path: str | os.PathLike,
    *,
    image_size: Sequence[int] | None = None,
    channels: int = 3,
    resample: str = "bilinear",
) -> np.ndarray:
    """Decode one image file to ``uint8 [H, W, channels]``.

    Args:
      path: an image file Pillow can read (PNG, JPEG, BMP, GIF: the first frame).
      image_size: ``(height, width)`` to resize to; ``None`` keeps the file's size.
      channels: 3 (converted to RGB; alpha is dropped) or 1 (Pillow's ``"L"`` luma,
        ``0.299 R + 0.587 G + 0.114 B``).
      resample: Pillow filter name (``"bilinear"`` as Keras' default).

    Raises:
      ValueError: for bad arguments or a file Pillow cannot decode (the message names it).
    """
    from PIL import Image, UnidentifiedImageError

    size = _check_image_size(image_size)
    channels = _check_channels(channels)
    filt = _check_resample(resample)
    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), resample=filt)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot decode image file {str(path)!r}: {e}") from None
    return arr[..., None] if channels == 1 else arr


def read_images(
    paths: Sequence[str | os.PathLike],
    *,
    image_size: Sequence[int] | None = None,
    channels: int = 3,
    resample: str = "bilinear",
    num_workers: int | None = None,
) -> np.ndarray:
    """Decode several files (in parallel threads; Pillow releases the GIL while decoding).

    Returns:
      ``uint8 [N, H, W, channels]`` in the order of ``paths``.

    Raises:
      ValueError: for an empty ``paths``, files of different sizes with ``image_size=None``, or
        any error of :func:`read_image`.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("`paths` must name at least one image file.")
    workers = _check_workers(num_workers)

    def one(p):
        return read_image(p, image_size=image_size, channels=channels, resample=resample)

    if workers == 1 or len(paths) == 1:
        images = [one(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(paths))) as pool:
            images = list(pool.map(one, paths))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images have different sizes {sorted(shapes)}; pass `image_size` to resize them.")
    return np.stack(images)


def _check_workers(num_workers: int | None) -> int:
    if num_workers is None:
        return min(8, os.cpu_count() or 1)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"`num_workers` must be a positive int or None; got {num_workers!r}.")
    return num_workers


def _check_value_range(value_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"`value_range` must be (low, high); got {value_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"`value_range` must be finite with low < high; got {value_range!r}.")
    return lo, hi


def scale_images(x: np.ndarray, value_range: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    """``uint8`` pixels to float32 in ``value_range``: ``low + (high - low) * x / 255``.

    ``(-1, 1)`` gives Keras' ``Rescaling(1/127.5, offset=-1)``, i.e. ``x / 127.5 - 1``.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"`x` must be uint8 pixels; got dtype {x.dtype}.")
    lo, hi = _check_value_range(value_range)
    if (lo, hi) == (-1.0, 1.0):
        return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return np.float32(lo) + x.astype(np.float32) * np.float32((hi - lo) / 255.0)


def horizontal_flip(keys: Sequence[str] = ("x",), probability: float = 0.5) -> Transform:
    """Transform flipping each image ``[B, H, W, C]`` left-right with ``probability``, drawn from ``rng``.

    One draw per example (``rng.random(B) < probability``), shared by every key (so paired
    arrays stay aligned). A :class:`~jaxvae.data.loader.BatchIterator` hands the transform a
    generator derived from ``(seed, epoch, batch, process)``, so the flips are reproducible and
    resume exactly.
    """
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if not keys:
        raise ValueError("`keys` must name at least one batch entry.")
    if not (isinstance(probability, (int, float)) and 0 <= probability <= 1):
        raise ValueError(f"`probability` must lie in [0, 1]; got {probability!r}.")

    def transform(batch: Batch, rng: np.random.Generator) -> Batch:
        out = dict(batch)
        n = None
        for k in keys:
            if k not in batch:
                raise ValueError(f"`batch` has no entry {k!r} to flip; entries: {sorted(batch)}.")
            if np.ndim(batch[k]) != 4:
                raise ValueError(f"`batch[{k!r}]` must be images [B, H, W, C]; got shape {np.shape(batch[k])}.")
            n = len(batch[k]) if n is None else n
        flip = rng.random(n) < probability
        for k in keys:
            x = np.asarray(batch[k])
            out[k] = np.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
        return out

    return transform


class ImageFolder:
    """A folder of images with Keras' seeded train/validation split, decoded at a fixed size.

    Example (Rivera's CelebA-HQ settings)::

        folder = ImageFolder("~/data/celeba_hq", image_size=(256, 256))   # 80/20 split, seed 1967
        train = folder.iterator("train", batch_size=20, seed=0)            # flips, scales to [-1, 1]
        batch = next(train)                                                # {"x": float32 [20, 256, 256, 3]}
        for batch, mask in folder.eval_batches("validation", batch_size=100): ...

    Args:
      directory: root folder (searched recursively, :func:`list_images`).
      image_size: ``(height, width)``; ``None`` keeps the files' size (they must all agree).
      channels: 3 (RGB) or 1 (grey).
      validation_fraction: Keras' ``validation_split`` (default 0.2).
      split_seed: the split's seed (default 1967, the official code's).
      value_range: output range of the pixels (default ``(-1, 1)``).
      resample: Pillow filter for resizing (default ``"bilinear"``).
      extensions: file-name suffixes that count as images.
      num_workers: decoding threads (default ``min(8, cpu_count)``).

    Raises:
      ValueError: if the folder holds no image, or for any bad argument.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        image_size: Sequence[int] | None = (256, 256),
        channels: int = 3,
        validation_fraction: float = 0.2,
        split_seed: int = KERAS_SPLIT_SEED,
        value_range: Sequence[float] = (-1.0, 1.0),
        resample: str = "bilinear",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        num_workers: int | None = None,
    ):
        self.directory = str(_check_directory(directory))
        self.image_size = _check_image_size(image_size)
        self.channels = _check_channels(channels)
        self.value_range = _check_value_range(value_range)
        _check_resample(resample)
        self.resample = resample
        self.num_workers = _check_workers(num_workers)
        files = list_images(self.directory, extensions=extensions)
        if not files:
            raise ValueError(f"`directory` {self.directory!r} holds no file ending in {tuple(extensions)}.")
        self.files = tuple(files)
        train, val = split_files(files, validation_fraction=validation_fraction, seed=split_seed)
        self._subsets = {"train": tuple(train), "validation": tuple(val), "all": self.files}
        self._cache: dict[str, np.ndarray] = {}

    def subset_files(self, subset: str) -> tuple[str, ...]:
        """The paths of ``subset`` (``"train"``, ``"validation"`` or ``"all"``, the listing order)."""
        if subset not in SUBSETS:
            raise ValueError(f"`subset` must be one of {SUBSETS}; got {subset!r}.")
        files = self._subsets[subset]
        if not files:
            raise ValueError(f"`subset` {subset!r} is empty (validation_fraction * N < 1).")
        return files

    def __len__(self) -> int:
        return len(self.files)

    def read(self, subset: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Decode files of ``subset`` (all, or those at ``indices``) to ``uint8 [N, H, W, C]``."""
        files = self.subset_files(subset)
        if indices is not None:
            files = [files[int(i)] for i in np.asarray(indices).reshape(-1)]
        return read_images(
            files,
            image_size=self.image_size,
            channels=self.channels,
            resample=self.resample,
            num_workers=self.num_workers,
        )

    def load(self, subset: str) -> np.ndarray:
        """The whole ``subset`` as float32 ``[N, H, W, C]`` in ``value_range`` (no flips)."""
        stored = self._cache.get(subset)
        return scale_images(stored if stored is not None else self.read(subset), self.value_range)

    def _uint8(self, subset: str, cache: bool) -> np.ndarray | None:
        if cache and subset not in self._cache:
            self._cache[subset] = self.read(subset)
        return self._cache.get(subset) if cache else None

    def _decode_transform(self, subset: str, cache: bool, flip: bool) -> Transform:
        stored = self._uint8(subset, cache)
        flipper = horizontal_flip(("x",)) if flip else None

        def transform(batch: Batch, rng: np.random.Generator) -> Batch:
            idx = np.asarray(batch["index"])
            x = stored[idx] if stored is not None else self.read(subset, idx)
            out = {"x": x}
            if flipper is not None:
                out = flipper(out, rng)
            return {"x": scale_images(out["x"], self.value_range)}

        return transform

    def iterator(
        self,
        subset: str,
        batch_size: int,
        *,
        seed: int,
        flip: bool | None = None,
        shuffle: bool = True,
        drop_remainder: bool = True,
        cache: bool = False,
        process_index: int = 0,
        process_count: int = 1,
    ) -> BatchIterator:
        """An infinite, resumable :class:`~jaxvae.data.loader.BatchIterator` of ``{"x": float32 [B / P, H, W, C]}``.

        Args:
          subset: ``"train"``, ``"validation"`` or ``"all"``.
          batch_size: the global batch ``B`` (summed over processes).
          seed: the epoch order's and the flips' seed (not the split's).
          flip: random horizontal flips; default on for ``"train"``, off otherwise (as the official code).
          shuffle, drop_remainder, process_index, process_count: as :class:`~jaxvae.data.loader.BatchIterator`.
          cache: decode the subset once and keep it in memory (``uint8``).
        """
        files = self.subset_files(subset)
        flip = (subset == "train") if flip is None else bool(flip)
        return BatchIterator(
            {"index": np.arange(len(files))},
            batch_size,
            seed=seed,
            shuffle=shuffle,
            drop_remainder=drop_remainder,
            transform=self._decode_transform(subset, cache, flip),
            process_index=process_index,
            process_count=process_count,
        )

    def eval_batches(
        self,
        subset: str,
        batch_size: int,
        *,
        cache: bool = False,
        process_index: int = 0,
        process_count: int = 1,
    ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """One ordered pass over ``subset`` in fixed-size batches, with a validity mask (no flips).

        As :func:`~jaxvae.data.loader.epoch_batches`: the last batch wraps around and its padding is
        masked out, so summing ``mask * value`` covers every image exactly once.

        Yields:
          ``({"x": float32 [B / P, H, W, C]}, mask bool [B / P])``.
        """
        files = self.subset_files(subset)
        decode = self._decode_transform(subset, cache, flip=False)
        rng = np.random.default_rng(0)  # unused: no flips
        for batch, mask in epoch_batches(
            {"index": np.arange(len(files))},
            batch_size,
            process_index=process_index,
            process_count=process_count,
        ):
            yield decode(batch, rng), mask

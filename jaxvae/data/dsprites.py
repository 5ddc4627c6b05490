r"""dSprites, rendered here from its exact factor grid, and a loader for the official ``.npz``.

The public dSprites dataset (Matthey et al., 2017) holds every combination of six factors exactly once,
737,280 binary 64x64 images. The official file cannot be had offline, so jaxvae renders the same grid
procedurally. The images are **not** pixel-identical to the official ones (the original sprite bitmaps
are not published as geometry); every result made with them is named :data:`DSPRITES_RENDERED_NAME`,
``"dSprites (rendered here)"``. When a user has the official file, :func:`load_dsprites_npz` reads it
into the same :class:`DspritesArrays` layout.

Factor grid (the dataset card's values; the index of an image is the mixed-radix number of its factor
classes, position Y varying fastest)::

    factor        size  values                         class
    color            1  1.0 (white)                    0
    shape            3  1, 2, 3 (square, ellipse, heart) 0..2
    scale            6  linspace(0.5, 1, 6)            0..5
    orientation     40  linspace(0, 2 pi, 40)          0..39   (0 and 2 pi both present, as in the card)
    posX            32  linspace(0, 1, 32)             0..31
    posY            32  linspace(0, 1, 32)             0..31

    index = ((((color * 3 + shape) * 6 + scale) * 40 + orientation) * 32 + posX) * 32 + posY

Geometry of the renderer (pixel units; pixel ``(row r, column c)`` has its centre at
``(x, y) = (c + 0.5, r + 0.5)``; a pixel is white when its centre lies inside the sprite, no
anti-aliasing, like the binary original):

* **Position**: the sprite's centre is at ``x = 12 + 40 * posX`` and ``y = 12 + 40 * posY``, so
  ``posX = 0`` is the left edge, ``posY = 0`` the top edge and the 32 positions step by 40/31 = 1.29 px.
  The largest sprite (the square at scale 1, rotated 45 degrees) reaches 11.32 px from its centre, so
  every sprite stays inside the frame with the outermost row and column always black.
* **Scale** multiplies every length: the sizes below are those at scale 1.
* **Orientation** turns the sprite counter-clockwise on screen by ``orientation`` radians about its
  centre (its area centroid).
* **Square**: side 16 px (axis-aligned at orientation 0), area ``256 * scale**2``.
* **Ellipse**: semi-axes 11 px (horizontal at orientation 0) and 5.5 px, area ``60.5 * pi * scale**2``.
* **Heart**: the closed algebraic curve :math:`(u^2 + v^2 - 1)^3 - u^2 v^3 \le 0` (lobes up at
  orientation 0), shifted so that its area centroid (at :math:`v = 0.2935`) is the sprite's centre and
  scaled by 8 px per curve unit: 18.2 px wide, 17.9 px tall, area ``234.4 * scale**2``.

Rendering is vectorised NumPy over a batch of indices (no per-image Python loop); see
:func:`render_dsprites`. The batch iterator for training is the library's
:class:`~jaxvae.data.loader.BatchIterator` over the index set with :func:`dsprites_transform`
rendering each batch (deterministic and exactly resumable through ``get_state``/``set_state``):
:func:`dsprites_batches` builds it. The renderer makes about 10^5 images/s per CPU core in batches of
128-1024 (it renders only a 25x25 window around each sprite); where training is faster than that,
:func:`load_packed` renders the grid once into a packed-bit cache (377 MB, ``np.packbits``) under the
user cache directory and batches are unpacked from it (about 10^6 images/s per core).
"""

from __future__ import annotations

import math
import numbers
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from jaxvae.data.loader import BatchIterator
from jaxvae.data.mnist import default_cache_dir
from jaxvae.data.transforms import Batch, Transform

DSPRITES_RENDERED_NAME = "dSprites (rendered here)"
DSPRITES_OFFICIAL_FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (1, 3, 6, 40, 32, 32)
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 737,280
IMAGE_SIZE = 64
SHAPE_NAMES = ("square", "ellipse", "heart")

# Geometry (pixel units at scale 1; see the module docstring).
POSITION_MIN = 12.0
POSITION_SPAN = 40.0
SQUARE_HALF_SIDE = 8.0
ELLIPSE_SEMI_AXES = (11.0, 5.5)
HEART_UNIT = 8.0
# Area centroid of {(u^2 + v^2 - 1)^3 - u^2 v^3 <= 0} (its u-coordinate is 0 by symmetry); integrated
# numerically on a fine grid, checked by tests/data/test_dsprites.py.
HEART_CENTROID_V = 0.29347
# Farthest point of any sprite from its centre at scale 1 (the square's corner, 8 * sqrt(2) px).
MAX_RADIUS = SQUARE_HALF_SIDE * math.sqrt(2.0)
_WINDOW = 25  # covers every pixel centre within MAX_RADIUS of a centre in [12, 52] (module docstring)

_STRIDES = tuple(math.prod(FACTOR_SIZES[k + 1 :]) for k in range(len(FACTOR_SIZES)))


def factor_values() -> tuple[np.ndarray, ...]:
    """The possible values of each factor, in :data:`FACTOR_NAMES` order (float64 arrays).

    ``(color [1], shape [3], scale [6], orientation [40], posX [32], posY [32])``, equal to the official
    file's ``metadata["latents_possible_values"]`` as the dataset card states them.
    """
    return (
        np.array([1.0]),
        np.array([1.0, 2.0, 3.0]),
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2.0 * np.pi, 40),
        np.linspace(0.0, 1.0, 32),
        np.linspace(0.0, 1.0, 32),
    )


def _as_indices(name: str, indices: Any) -> np.ndarray:
    a = np.asarray(indices)
    if a.dtype == bool or a.dtype.kind not in "iu":
        raise ValueError(f"`{name}` must be an integer array of image indices; got dtype {a.dtype}.")
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D [B]; got shape {a.shape}.")
    if a.size and (a.min() < 0 or a.max() >= NUM_IMAGES):
        raise ValueError(f"`{name}` must lie in [0, {NUM_IMAGES}); got range [{a.min()}, {a.max()}].")
    return a.astype(np.int64)


def _as_classes(name: str, classes: Any) -> np.ndarray:
    c = np.asarray(classes)
    if c.dtype == bool or c.dtype.kind not in "iu":
        raise ValueError(f"`{name}` must be an integer array of factor classes; got dtype {c.dtype}.")
    if c.ndim != 2 or c.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"`{name}` must be [B, {len(FACTOR_SIZES)}] (factors {FACTOR_NAMES}); got {c.shape}.")
    sizes = np.asarray(FACTOR_SIZES)
    bad = (c < 0) | (c >= sizes)
    if bad.any():
        k = int(np.nonzero(bad.any(axis=0))[0][0])
        raise ValueError(
            f"`{name}[:, {k}]` ({FACTOR_NAMES[k]}) must lie in [0, {FACTOR_SIZES[k]}); "
            f"got range [{c[:, k].min()}, {c[:, k].max()}]."
        )
    return c.astype(np.int64)


def index_to_classes(indices: Any) -> np.ndarray:
    """Factor classes ``int64 [B, 6]`` of flat image indices ``[B]`` (mixed radix, posY fastest).

    Raises:
      ValueError: if ``indices`` is not a 1-D integer array with values in ``[0, 737280)``.
    """
    idx = _as_indices("indices", indices)
    return np.stack([(idx // s) % n for s, n in zip(_STRIDES, FACTOR_SIZES)], axis=1)


def classes_to_index(classes: Any) -> np.ndarray:
    """Flat image indices ``int64 [B]`` of factor classes ``[B, 6]`` (inverse of :func:`index_to_classes`).

    Raises:
      ValueError: if ``classes`` is not an integer ``[B, 6]`` array with each column within its factor's size.
    """
    c = _as_classes("classes", classes)
    return c @ np.asarray(_STRIDES, dtype=np.int64)


def classes_to_values(classes: Any) -> np.ndarray:
    """Factor values ``float64 [B, 6]`` of factor classes ``[B, 6]`` (the official ``latents_values``)."""
    c = _as_classes("classes", classes)
    return np.stack([v[c[:, k]] for k, v in enumerate(factor_values())], axis=1)


def _inside(shape_id: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of sprite-frame points ``(u, v)`` (pixels at scale 1, ``v`` up) in shape ``shape_id``."""
    if shape_id == 0:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= SQUARE_HALF_SIDE
    if shape_id == 1:  # ellipse
        a, b = ELLIPSE_SEMI_AXES
        return np.square(u / a) + np.square(v / b) <= 1.0
    uu = u / HEART_UNIT
    vv = v / HEART_UNIT + HEART_CENTROID_V  # centroid at the origin of the sprite frame
    r = np.square(uu) + np.square(vv) - 1.0
    return r * r * r - np.square(uu) * vv * vv * vv <= 0.0


def render_sprites(
    shape: Any, scale: Any, orientation: Any, pos_x: Any, pos_y: Any, *, dtype: Any = np.uint8
) -> np.ndarray:
    """Render sprites from factor *values* (continuous values allowed; the grid uses :func:`factor_values`).

    Each pixel centre ``p`` is mapped into the sprite's frame, ``u = R(-orientation) (p - c) / scale``
    (``y`` flipped so that positive angles turn counter-clockwise on screen), and tested against the
    shape's inequality (module docstring). One vectorised pass per shape present in the batch.

    Args:
      shape: ``[B]`` integer shape ids 0 (square), 1 (ellipse), 2 (heart) (the official class, not value).
      scale: ``[B]`` scale factors (> 0; the grid uses 0.5 .. 1).
      orientation: ``[B]`` angles in radians.
      pos_x: ``[B]`` horizontal positions in [0, 1] (0: left).
      pos_y: ``[B]`` vertical positions in [0, 1] (0: top).
      dtype: output dtype: ``np.uint8`` (0/1, the official file's), ``np.float32`` or ``bool``.

    Returns:
      ``[B, 64, 64]`` array of 0/1 in ``dtype``.

    Raises:
      ValueError: for arrays of unequal length or rank other than 1, non-finite values, a non-positive
        scale, positions outside [0, 1], shape ids outside {0, 1, 2}.
    """
    shape = np.asarray(shape)
    if shape.dtype == bool or shape.dtype.kind not in "iu":
        raise ValueError(f"`shape` must be integer shape ids 0..2; got dtype {shape.dtype}.")
    named = {"scale": scale, "orientation": orientation, "pos_x": pos_x, "pos_y": pos_y}
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in named.items()}
    for k, a in {"shape": shape, **arrays}.items():
        if a.ndim != 1 or len(a) != len(shape):
            raise ValueError(f"`{k}` must be 1-D with the batch length {len(np.atleast_1d(shape))}; got {a.shape}.")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"`{k}` must be finite.")
    if shape.size and (shape.min() < 0 or shape.max() > 2):
        raise ValueError(
            f"`shape` must hold ids in {{0, 1, 2}} ({SHAPE_NAMES}); got range [{shape.min()}, {shape.max()}]."
        )
    if np.any(arrays["scale"] <= 0):
        raise ValueError(f"`scale` must be > 0; got minimum {arrays['scale'].min()!r}.")
    for k in ("pos_x", "pos_y"):
        a = arrays[k]
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"`{k}` must lie in [0, 1] (the sprite stays in the frame); got [{a.min()}, {a.max()}].")
    if np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(bool)):
        raise ValueError(f"`dtype` must be np.uint8, np.float32 or bool; got {dtype!r}.")

    n = len(shape)
    cx = POSITION_MIN + POSITION_SPAN * arrays["pos_x"]
    cy = POSITION_MIN + POSITION_SPAN * arrays["pos_y"]
    # Only a WINDOW x WINDOW patch around the centre can be white (the sprite reaches at most
    # MAX_RADIUS * scale <= 11.32 px from it); render that patch and paste it into the frame.
    c0 = np.clip(np.floor(cx).astype(np.int64) - _WINDOW // 2, 0, IMAGE_SIZE - _WINDOW)
    r0 = np.clip(np.floor(cy).astype(np.int64) - _WINDOW // 2, 0, IMAGE_SIZE - _WINDOW)
    offs = np.arange(_WINDOW)
    s = arrays["scale"][:, None, None]
    dx = ((c0[:, None] + offs + 0.5) - cx[:, None])[:, None, :] / s  # [n, 1, W]: pixel column centre - cx
    dy = (cy[:, None] - (r0[:, None] + offs + 0.5))[:, :, None] / s  # [n, W, 1]: y up
    cos = np.cos(arrays["orientation"])[:, None, None]
    sin = np.sin(arrays["orientation"])[:, None, None]
    # R(-theta) (dx, dy): u = cos dx + sin dy, v = cos dy - sin dx  ([n, W, W] each).
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    patch = np.zeros((n, _WINDOW, _WINDOW), dtype=bool)
    for shape_id in np.unique(shape):
        sel = shape == shape_id
        patch[sel] = _inside(int(shape_id), u[sel], v[sel])
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=dtype)
    windows = sliding_window_view(out, (_WINDOW, _WINDOW), axis=(1, 2), writeable=True)  # a view of `out`
    windows[np.arange(n), r0, c0] = patch
    return out


def render_dsprites(indices: Any, *, dtype: Any = np.uint8) -> np.ndarray:
    """Render grid images by flat index: ``[B]`` indices to ``[B, 64, 64]`` 0/1 images.

    Deterministic: the same index always gives the same image (NumPy float64 arithmetic).

    Args:
      indices: ``[B]`` integers in ``[0, 737280)`` (mixed radix over :data:`FACTOR_SIZES`).
      dtype: ``np.uint8`` (default, like the official ``imgs``), ``np.float32`` or ``bool``.

    Raises:
      ValueError: if ``indices`` is not 1-D integer within range, or ``dtype`` is not one of those.
    """
    c = index_to_classes(indices)
    vals = classes_to_values(c)
    return render_sprites(c[:, 1], vals[:, 2], vals[:, 3], vals[:, 4], vals[:, 5], dtype=dtype)


_CACHE_VERSION = 1  # bump whenever the geometry above changes: it names the cache file
_PACKED_BYTES = IMAGE_SIZE * IMAGE_SIZE // 8  # 512 bytes per image


def unpack_images(packed_rows: Any, *, dtype: Any = np.uint8) -> np.ndarray:
    """Unpack rows of :func:`np.packbits`-packed images ``uint8 [B, 512]`` to ``[B, 64, 64]`` 0/1 images.

    Raises:
      ValueError: if ``packed_rows`` is not a uint8 ``[B, 512]`` array or ``dtype`` is not uint8/float32/bool.
    """
    p = np.asarray(packed_rows)
    if p.dtype != np.uint8 or p.ndim != 2 or p.shape[1] != _PACKED_BYTES:
        raise ValueError(f"`packed_rows` must be uint8 [B, {_PACKED_BYTES}]; got {p.dtype} {p.shape}.")
    if np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(bool)):
        raise ValueError(f"`dtype` must be np.uint8, np.float32 or bool; got {dtype!r}.")
    return np.unpackbits(p, axis=1).reshape(len(p), IMAGE_SIZE, IMAGE_SIZE).astype(dtype, copy=False)


def render_packed(*, chunk: int = 1024) -> np.ndarray:
    """Render the whole grid as packed bits: ``uint8 [737280, 512]`` (377 MB), row ``i`` = image ``i``.

    About 10-20 s on one CPU core (rendered in chunks of ``chunk`` images).
    """
    out = np.empty((NUM_IMAGES, _PACKED_BYTES), dtype=np.uint8)
    for start in range(0, NUM_IMAGES, chunk):
        idx = np.arange(start, min(start + chunk, NUM_IMAGES), dtype=np.int64)
        out[idx] = np.packbits(render_dsprites(idx).reshape(len(idx), -1), axis=1)
    return out


def load_packed(cache_dir: str | os.PathLike | None = None, *, mmap: bool = True) -> np.ndarray:
    """The whole rendered grid as packed bits ``uint8 [737280, 512]``, cached on disk.

    The first call renders it (:func:`render_packed`) and writes ``<cache_dir>/dsprites_rendered_v1.npy``
    (377 MB, written atomically: temporary file, then rename); later calls memory-map it (``mmap``) or
    read it. A cache file of the wrong shape, or whose spot-checked rows differ from a fresh rendering
    (a stale renderer version), is rebuilt. Unpack rows with :func:`unpack_images`.

    Args:
      cache_dir: default :func:`jaxvae.data.mnist.default_cache_dir` (``$JAXVAE_CACHE`` or ``~/.cache/jaxvae``).
      mmap: memory-map the cache read-only instead of reading it into memory.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / f"dsprites_rendered_v{_CACHE_VERSION}.npy"
    if path.is_file():
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError):
            arr = None
        if arr is not None and arr.shape == (NUM_IMAGES, _PACKED_BYTES) and arr.dtype == np.uint8:
            check = np.random.default_rng(0).choice(NUM_IMAGES, 64, replace=False)
            if np.array_equal(unpack_images(np.asarray(arr[check])), render_dsprites(check)):
                return arr
    arr = render_packed()
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return np.load(path, mmap_mode="r", allow_pickle=False) if mmap else arr


class DspritesArrays(NamedTuple):
    """dSprites images and factors in the official file's layout (rendered here or loaded).

    Attributes:
      imgs: uint8 ``[N, 64, 64]`` of 0/1.
      latents_values: float64 ``[N, 6]`` factor values (:data:`FACTOR_NAMES` order).
      latents_classes: int64 ``[N, 6]`` factor classes.
      metadata: dict with at least ``latents_names``, ``latents_sizes``, ``latents_possible_values``.
      name: how results must call the data: ``"dSprites (rendered here)"`` or ``"dSprites (official npz)"``.
    """

    imgs: np.ndarray
    latents_values: np.ndarray
    latents_classes: np.ndarray
    metadata: dict
    name: str


def _metadata() -> dict:
    return {
        "latents_names": FACTOR_NAMES,
        "latents_sizes": np.asarray(FACTOR_SIZES, dtype=np.int64),
        "latents_possible_values": dict(zip(FACTOR_NAMES, factor_values())),
        "description": DSPRITES_RENDERED_NAME + ": jaxvae.data.dsprites renderer, same factor grid and order.",
    }


def dsprites_arrays(indices: Any = None) -> DspritesArrays:
    """Rendered dSprites for an index set (default: the whole grid, 737,280 images, ~3 GB of uint8).

    Args:
      indices: ``[B]`` image indices, or ``None`` for all of them in order.

    Returns:
      :class:`DspritesArrays` with ``name == "dSprites (rendered here)"``.
    """
    idx = np.arange(NUM_IMAGES, dtype=np.int64) if indices is None else _as_indices("indices", indices)
    c = index_to_classes(idx)
    return DspritesArrays(render_dsprites(idx), classes_to_values(c), c, _metadata(), DSPRITES_RENDERED_NAME)


def eval_indices(num: int = 10_000, *, seed: int = 0) -> np.ndarray:
    """A fixed evaluation subset: ``num`` distinct indices, sorted, drawn with ``default_rng(seed)``.

    The same ``(num, seed)`` gives the same subset on every machine (NumPy's PCG64 stream).

    Raises:
      ValueError: if ``num`` is not an int in ``[1, 737280]`` or ``seed`` is negative.
    """
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or not 1 <= num <= NUM_IMAGES:
        raise ValueError(f"`num` must be an int in [1, {NUM_IMAGES}]; got {num!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int; got {seed!r}.")
    return np.sort(np.random.default_rng(seed).choice(NUM_IMAGES, size=int(num), replace=False)).astype(np.int64)


def dsprites_transform(
    *,
    packed: np.ndarray | None = None,
    image_key: str = "x",
    index_key: str = "index",
    with_factors: bool = True,
    dtype: Any = np.float32,
) -> Transform:
    """A :class:`~jaxvae.data.loader.BatchIterator` transform that adds the batch's images.

    ``f(batch, rng)`` reads ``batch[index_key]`` (``[B]`` image indices) and adds
    ``batch[image_key]``: ``[B, 64, 64, 1]`` 0/1 images (channel last, for conv nets) and, with
    ``with_factors``, ``"classes"`` (int64 ``[B, 6]``) and ``"values"`` (float64 ``[B, 6]``). The images
    are rendered, or unpacked from ``packed`` (:func:`load_packed`) when given. Both are deterministic,
    so ``rng`` is not used and resuming needs only the iterator's state.

    Raises:
      ValueError: if ``packed`` is not ``uint8 [737280, 512]`` or ``dtype`` not uint8/float32; (from ``f``)
        if the batch lacks ``index_key``.
    """
    if np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(np.float32)):
        raise ValueError(f"`dtype` must be np.uint8 or np.float32; got {dtype!r}.")
    if packed is not None and (packed.dtype != np.uint8 or packed.shape != (NUM_IMAGES, _PACKED_BYTES)):
        raise ValueError(
            f"`packed` must be uint8 [{NUM_IMAGES}, {_PACKED_BYTES}] (from load_packed); "
            f"got {packed.dtype} {packed.shape}."
        )

    def transform(batch: Batch, rng: np.random.Generator) -> Batch:
        del rng  # images are a deterministic function of the index
        if index_key not in batch:
            raise ValueError(f"`batch` has no entry {index_key!r} of image indices; entries: {sorted(batch)}.")
        idx = _as_indices(f"batch[{index_key!r}]", batch[index_key])
        out = dict(batch)
        imgs = render_dsprites(idx, dtype=dtype) if packed is None else unpack_images(packed[idx], dtype=dtype)
        out[image_key] = imgs[..., None]
        if with_factors:
            c = index_to_classes(idx)
            out["classes"] = c
            out["values"] = classes_to_values(c)
        return out

    return transform


def dsprites_batches(
    batch_size: int,
    *,
    seed: int,
    indices: Any = None,
    shuffle: bool = True,
    with_factors: bool = False,
    dtype: Any = np.float32,
    packed: np.ndarray | None = None,
    process_index: int = 0,
    process_count: int = 1,
) -> BatchIterator:
    """Infinite, exactly resumable training batches of rendered dSprites.

    A :class:`~jaxvae.data.loader.BatchIterator` over ``{"index": indices}`` (every epoch a fresh
    permutation from ``seed``) with :func:`dsprites_transform`: each batch is
    ``{"index": [b], "x": [b, 64, 64, 1]}`` (+ ``"classes"``, ``"values"`` with ``with_factors``), where
    ``b = batch_size / process_count``. ``get_state()`` / ``set_state()`` resume bitwise.

    Args:
      batch_size: global batch size.
      seed: non-negative int fixing every epoch's order.
      indices: the index set to iterate over (default: all 737,280 images).
      shuffle, process_index, process_count: as in :class:`~jaxvae.data.loader.BatchIterator`.
      with_factors: also return the factor classes and values of each image.
      dtype: image dtype, ``np.float32`` (default) or ``np.uint8``.
      packed: optional :func:`load_packed` array to unpack images from instead of rendering them (the
        same images; faster when training is faster than the renderer).
    """
    idx = np.arange(NUM_IMAGES, dtype=np.int64) if indices is None else _as_indices("indices", indices)
    return BatchIterator(
        {"index": idx},
        batch_size,
        seed=seed,
        shuffle=shuffle,
        drop_remainder=True,
        transform=dsprites_transform(packed=packed, with_factors=with_factors, dtype=dtype),
        process_index=process_index,
        process_count=process_count,
    )


_NPZ_KEYS = ("imgs", "latents_values", "latents_classes", "metadata")


def load_dsprites_npz(path: str | os.PathLike) -> DspritesArrays:
    """Read the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (or a file of its layout).

    The file's ``metadata`` is a pickled dict, so it is loaded with ``allow_pickle=True,
    encoding="latin1"``: only load files you trust. Shapes and dtypes are checked; the images are
    returned as uint8 0/1 and the factors as float64 / int64 (the official dtypes).

    Args:
      path: the ``.npz`` file.

    Returns:
      :class:`DspritesArrays` named ``"dSprites (official npz)"``.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if the file is not a readable ``.npz`` with keys ``imgs``, ``latents_values``,
        ``latents_classes``, ``metadata`` of shapes ``[N, 64, 64]``, ``[N, 6]``, ``[N, 6]``, a dict, or its
        classes leave the factor grid.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"`path` {str(path)!r} does not exist (the official file is {DSPRITES_OFFICIAL_FILENAME})."
        )
    if not zipfile.is_zipfile(path):  # also keeps np.load from unpickling a bare pickle file
        raise ValueError(f"`path` {str(path)!r} is not a readable .npz file (not a zip archive).")
    try:
        with np.load(path, allow_pickle=True, encoding="latin1") as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"`path` {str(path)!r} lacks key(s) {missing}; expected {_NPZ_KEYS}.")
            imgs, values, classes, meta = (z[k] for k in _NPZ_KEYS)
    except (OSError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"`path` {str(path)!r} is not a readable .npz file: {e}") from None
    n = len(imgs)
    if imgs.ndim != 3 or imgs.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"`imgs` in {path.name} must be [N, 64, 64]; got {imgs.shape}.")
    for k, a in (("latents_values", values), ("latents_classes", classes)):
        if a.shape != (n, len(FACTOR_SIZES)):
            raise ValueError(f"`{k}` in {path.name} must be [N, 6] with N = {n} images; got {a.shape}.")
    if imgs.size and not np.isin(imgs, (0, 1)).all():
        raise ValueError(f"`imgs` in {path.name} must hold 0/1 pixels.")
    meta = meta.item() if isinstance(meta, np.ndarray) and meta.dtype == object and meta.ndim == 0 else meta
    if not isinstance(meta, dict):
        raise ValueError(f"`metadata` in {path.name} must be a pickled dict; got {type(meta).__name__}.")
    classes = _as_classes("latents_classes", classes)
    return DspritesArrays(imgs.astype(np.uint8), values.astype(np.float64), classes, meta, "dSprites (official npz)")


def check_official_order(arrays: DspritesArrays) -> None:
    """Check that a full official file follows the grid order: row ``i`` has the classes of index ``i``.

    Raises:
      ValueError: if ``arrays`` does not hold all 737,280 images or a row's classes differ from the
        mixed-radix decoding of its index.
    """
    if len(arrays.latents_classes) != NUM_IMAGES:
        raise ValueError(f"`arrays` must hold all {NUM_IMAGES} images; got {len(arrays.latents_classes)}.")
    expected = index_to_classes(np.arange(NUM_IMAGES))
    bad = np.nonzero((arrays.latents_classes != expected).any(axis=1))[0]
    if bad.size:
        raise ValueError(f"`arrays.latents_classes` row {int(bad[0])} is not the grid's index order.")

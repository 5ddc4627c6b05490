r"""The MNIST feature network behind "MNIST-FID" and "MNIST-KID".

Inception-v3 features (FID, KID) mean little on digits, so image-quality numbers on MNIST use a
small classifier trained here on real MNIST, and its 128-d penultimate activations as features.
Numbers computed with it are **"MNIST-FID" / "MNIST-KID"**: comparable with each other (for one
feature network, cited by its weights' hash), never with Inception-FID figures of other datasets.

Network (:class:`MnistFeatureNet`, 28x28x1 in [0, 1]): Conv3x3(16) -> ReLU -> Conv3x3(32, stride 2)
-> ReLU -> Conv3x3(64, stride 2) -> ReLU -> flatten (7x7x64) -> Dense(128) -> ReLU (the features)
-> Dense(10) (the logits). Training (:class:`FeatureNetRecipe`): Adam with a cosine-decayed step
size, cross-entropy, on the
60,000 training images in an order drawn from the recipe's seed, with parameters initialised from
the same seed; its test accuracy and training time are stored with the weights.

Caching: :func:`load_mnist_feature_net` trains once and stores the weights under
``<cache_dir>/mnist_features-<recipe hash>.npz`` (``cache_dir`` defaults to
:func:`jaxvae.data.default_cache_dir`, i.e. ``$JAXVAE_CACHE`` or ``~/.cache/jaxvae``, where
MNIST itself is cached). The file name is a hash of the recipe (so a changed recipe never reuses
stale weights) and the file carries the sha256 of the weights (checked on load, so a corrupt file is
retrained, and reported as :attr:`MnistFeatures.sha256` so results can cite which feature network
they used). Training is seeded and runs on the CPU, so machines with the same jax/XLA versions and
CPU get the same weights; a different machine may differ in the last bits, which is why results
cite the hash. To share one feature network exactly, copy the ``.npz`` to the other machine's cache.

Inputs (:meth:`MnistFeatures.features`): ``[N, 28, 28]``, ``[N, 28, 28, 1]``, ``[N, 32, 32]`` or
``[N, 32, 32, 1]``; 32x32 images are MNIST padded by 2 pixels (:func:`jaxvae.data.pad_images`)
and are centre-cropped back to 28x28 (exact for padded digits). ``uint8`` pixels are divided by
255; float pixels are mapped from ``value_range`` (``(0, 1)`` or ``(-1, 1)``) to [0, 1] and clipped
there (generated images may leave the range).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvae.config import as_widths, check_positive, check_positive_int, set_field
from jaxvae.data.mnist import MnistArrays, default_cache_dir, load_mnist
from jaxvae.metrics.image_quality import KIDResult, frechet_distance_from_features, kernel_inception_distance

FEATURE_DIM = 128
ARCHITECTURE_VERSION = 1  # bump when MnistFeatureNet changes: the cache key changes with it


class MnistFeatureNet(nn.Module):
    """``[N, 28, 28, 1]`` in [0, 1] -> ``(features [N, 128], logits [N, 10])`` (module docstring)."""

    widths: Sequence[int] = (16, 32, 64)
    features: int = FEATURE_DIM

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = x
        for i, (w, s) in enumerate(zip(self.widths, (1, 2, 2))):
            h = nn.relu(nn.Conv(int(w), (3, 3), strides=s, padding="SAME", name=f"conv_{i}")(h))
        h = h.reshape((h.shape[0], -1))
        feats = nn.relu(nn.Dense(int(self.features), name="features")(h))
        return feats, nn.Dense(10, name="logits")(feats)


@dataclasses.dataclass(frozen=True)
class FeatureNetRecipe:
    """How the feature network is trained (the cache key). Defaults: about 2 epochs, ~99% test accuracy.

    Attributes:
      seed: parameter initialisation and data order.
      steps: Adam steps.
      batch_size: examples per step.
      learning_rate: Adam's initial step size, decayed to 0 over ``steps`` (cosine).
      widths: convolution widths of :class:`MnistFeatureNet`.
      features: feature dimension.
    """

    seed: int = 0
    steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 2e-3
    widths: tuple[int, ...] = (16, 32, 64)
    features: int = FEATURE_DIM

    def __post_init__(self):
        check_positive_int("seed", self.seed, allow_zero=True)
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        set_field(self, "widths", as_widths("widths", self.widths))
        if len(self.widths) != 3:
            raise ValueError(f"`widths` must hold 3 convolution widths; got {self.widths!r}.")
        check_positive_int("features", self.features)

    def key(self) -> str:
        """A short hash of the recipe and the architecture version: the cache file's name."""
        d = dataclasses.asdict(self) | {"architecture": ARCHITECTURE_VERSION}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _flatten(params: Any) -> dict[str, np.ndarray]:
    flat = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        flat["/".join(str(getattr(p, "key", p)) for p in path)] = np.asarray(leaf, np.float32)
    return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for name, arr in flat.items():
        node = out
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = jnp.asarray(arr)
    return out


def weights_sha256(params: Any) -> str:
    """sha256 of the float32 weights in sorted path order (names, shapes and bytes): the network's identity."""
    h = hashlib.sha256()
    for name, arr in sorted(_flatten(params).items()):
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr, np.float32).tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class MnistFeatures:
    """A trained feature network: call :meth:`features` (or :func:`mnist_fid` / :func:`mnist_kid`).

    Attributes:
      params: the Linen parameters of :class:`MnistFeatureNet`.
      recipe: how it was trained.
      sha256: :func:`weights_sha256` of ``params``: cite it with MNIST-FID numbers.
      test_accuracy: accuracy on the 10,000 MNIST test images.
      train_seconds: wall-clock training time where it was trained.
    """

    params: Any
    recipe: FeatureNetRecipe
    sha256: str
    test_accuracy: float
    train_seconds: float

    @property
    def net(self) -> MnistFeatureNet:
        return MnistFeatureNet(widths=self.recipe.widths, features=self.recipe.features)

    def features(self, images: Any, *, value_range: Sequence[float] = (0.0, 1.0), batch_size: int = 1000) -> np.ndarray:
        """``[N, 128]`` float32 penultimate activations of ``images`` (accepted forms: module docstring)."""
        return self._run(images, value_range, batch_size)[0]

    def logits(self, images: Any, *, value_range: Sequence[float] = (0.0, 1.0), batch_size: int = 1000) -> np.ndarray:
        """``[N, 10]`` class logits (e.g. to check that generated digits are recognisable)."""
        return self._run(images, value_range, batch_size)[1]

    def _run(self, images, value_range, batch_size):
        x = prepare_images(images, value_range=value_range)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int; got {batch_size!r}.")
        apply = _jitted_apply(self.recipe.widths, self.recipe.features)
        feats, logits = [], []
        for i in range(0, len(x), batch_size):
            chunk = x[i : i + batch_size]
            n = len(chunk)
            if n < batch_size and len(x) > batch_size:  # pad the last chunk: one compiled shape
                chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], chunk.dtype)])
            f, l = apply(self.params, chunk)
            feats.append(np.asarray(f)[:n])
            logits.append(np.asarray(l)[:n])
        return np.concatenate(feats), np.concatenate(logits)


@functools.lru_cache(maxsize=8)
def _jitted_apply(widths: tuple[int, ...], features: int):
    net = MnistFeatureNet(widths=widths, features=features)
    return jax.jit(lambda p, x: net.apply({"params": p}, x))


def prepare_images(images: Any, *, value_range: Sequence[float] = (0.0, 1.0)) -> np.ndarray:
    """MNIST-like images to the network's input: float32 ``[N, 28, 28, 1]`` in [0, 1] (module docstring).

    Raises:
      ValueError: for another shape, non-finite values, or a bad ``value_range``.
    """
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] not in ((28, 28), (32, 32)) or len(x) == 0:
        raise ValueError(
            f"`images` must be MNIST-like [N, 28, 28(, 1)] or 32x32-padded [N, 32, 32(, 1)] with N >= 1; "
            f"got shape {np.shape(images)}."
        )
    if x.shape[1] == 32:
        x = x[:, 2:30, 2:30]
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / np.float32(255.0))[..., None]
    if x.dtype.kind != "f":
        raise ValueError(f"`images` must be uint8 or floating; got dtype {x.dtype}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`images` must be finite; found NaN or inf.")
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"`value_range` must be (low, high); got {value_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"`value_range` must be finite with low < high; got {value_range!r}.")
    x = (x.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(x, 0.0, 1.0)[..., None]


def train_mnist_feature_net(
    recipe: FeatureNetRecipe = FeatureNetRecipe(), mnist: MnistArrays | None = None
) -> MnistFeatures:
    """Train :class:`MnistFeatureNet` on the CPU with ``recipe`` (no caching; see :func:`load_mnist_feature_net`)."""
    if not isinstance(recipe, FeatureNetRecipe):
        raise ValueError(f"`recipe` must be a FeatureNetRecipe; got {type(recipe).__name__}.")
    data = mnist if mnist is not None else load_mnist()
    x_train = prepare_images(data.x_train)
    y_train = np.asarray(data.y_train, np.int32)
    cpu = jax.local_devices(backend="cpu")[0]
    net = MnistFeatureNet(widths=recipe.widths, features=recipe.features)
    opt = optax.adam(optax.cosine_decay_schedule(recipe.learning_rate, recipe.steps))
    start = time.perf_counter()
    with jax.default_device(cpu):
        # An "rbg" key: its initialisers compile in about a second on CPU, threefry's in several.
        key = jax.random.key(recipe.seed, impl="rbg")
        params = jax.jit(net.init)(key, jnp.zeros((1, 28, 28, 1)))["params"]
        opt_state = opt.init(params)

        @jax.jit
        def step(params, opt_state, x, y):
            def loss(p):
                _, logits = net.apply({"params": p}, x)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

            grads = jax.grad(loss)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        rng = np.random.default_rng(recipe.seed)
        order = np.empty(0, np.int64)
        for _ in range(recipe.steps):
            if len(order) < recipe.batch_size:
                order = np.concatenate([order, rng.permutation(len(x_train))])
            idx, order = order[: recipe.batch_size], order[recipe.batch_size :]
            params, opt_state = step(params, opt_state, x_train[idx], y_train[idx])
        params = jax.device_get(params)
    seconds = time.perf_counter() - start
    model = MnistFeatures(params, recipe, weights_sha256(params), float("nan"), seconds)
    acc = float(np.mean(np.argmax(model.logits(data.x_test), -1) == np.asarray(data.y_test)))
    return dataclasses.replace(model, test_accuracy=acc)


def _cache_path(cache_dir: str | os.PathLike | None, recipe: FeatureNetRecipe) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"mnist_features-{recipe.key()}.npz"


def save_mnist_feature_net(model: MnistFeatures, path: str | os.PathLike) -> None:
    """Write the weights and their metadata to ``path`` (``.npz``) atomically."""
    path = Path(path)
    meta = {
        "recipe": dataclasses.asdict(model.recipe),
        "sha256": model.sha256,
        "test_accuracy": model.test_accuracy,
        "train_seconds": model.train_seconds,
        "architecture": ARCHITECTURE_VERSION,
    }
    arrays = {f"w:{k}": v for k, v in _flatten(model.params).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, meta=np.asarray(json.dumps(meta)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_mnist_feature_net(path: str | os.PathLike) -> MnistFeatures:
    """Read a file written by :func:`save_mnist_feature_net`, checking the weights against their sha256.

    Raises:
      ValueError: if the file is unreadable or its weights do not match the stored hash.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            flat = {k[2:]: z[k] for k in z.files if k.startswith("w:")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read the MNIST feature network from {str(path)!r}: {e}") from None
    params = _unflatten(flat)
    got = weights_sha256(params)
    if got != meta.get("sha256"):
        raise ValueError(f"{str(path)!r}: the weights' sha256 {got[:12]}... does not match the stored one.")
    recipe = FeatureNetRecipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["recipe"].items()})
    return MnistFeatures(params, recipe, got, float(meta["test_accuracy"]), float(meta["train_seconds"]))


def load_mnist_feature_net(
    cache_dir: str | os.PathLike | None = None,
    recipe: FeatureNetRecipe = FeatureNetRecipe(),
    *,
    train_if_missing: bool = True,
) -> MnistFeatures:
    """The cached feature network of ``recipe``, trained (about a minute on a CPU) and cached on first use.

    Args:
      cache_dir: directory of the cache (default :func:`jaxvae.data.default_cache_dir`).
      recipe: the training recipe (its hash names the file).
      train_if_missing: train when no valid file exists; ``False`` raises instead.

    Raises:
      FileNotFoundError: if no valid cached file exists and ``train_if_missing`` is False.
      jaxvae.data.MnistNotInstalledError: if training needs MNIST and it is not installed.
    """
    path = _cache_path(cache_dir, recipe)
    if path.is_file():
        try:
            model = read_mnist_feature_net(path)
            if model.recipe == recipe:
                return model
        except ValueError:
            pass  # corrupt or foreign file: retrain below
    if not train_if_missing:
        raise FileNotFoundError(f"no valid MNIST feature network at {str(path)!r} (train_if_missing=False).")
    model = train_mnist_feature_net(recipe)
    save_mnist_feature_net(model, path)
    return model


def mnist_fid(
    images1: Any,
    images2: Any,
    *,
    model: MnistFeatures | None = None,
    value_range: Sequence[float] = (0.0, 1.0),
) -> float:
    """ "MNIST-FID": the Fréchet distance between the MNIST feature network's features of two image sets.

    Not comparable with Inception-FID. Cite ``model.sha256`` with the number. ``model`` defaults to
    :func:`load_mnist_feature_net` (trained and cached on first use).
    """
    model = model if model is not None else load_mnist_feature_net()
    f1 = model.features(images1, value_range=value_range)
    f2 = model.features(images2, value_range=value_range)
    return frechet_distance_from_features(f1, f2)


def mnist_kid(
    images1: Any,
    images2: Any,
    *,
    model: MnistFeatures | None = None,
    value_range: Sequence[float] = (0.0, 1.0),
    **kid_kwargs: Any,
) -> KIDResult:
    """ "MNIST-KID": :func:`~jaxvae.metrics.image_quality.kernel_inception_distance` on MNIST features."""
    model = model if model is not None else load_mnist_feature_net()
    f1 = model.features(images1, value_range=value_range)
    f2 = model.features(images2, value_range=value_range)
    return kernel_inception_distance(f1, f2, **kid_kwargs)

"""The data streams of Gemp et al.'s untapped task and of classic M2 with 100 labels.

Tasks (``DataConfig.task``):

- ``'untapped'`` (Gemp et al. App. D): MNIST train + test (70k) binarized by rounding (or grey levels,
  ``pixels='grey'``); labeled pairs = every image of digits 0-4; unlabeled = ``num_unlabeled`` images drawn
  with replacement from all 70k (transductive, as the authors' code); unfeatured = the 10 "close corners"
  (0.95) tiled to the batch, with z drawn by the loss each step (``unfeatured_z='fresh'``) or 10 fixed
  ``(corner, z)`` pairs (``'fixed'``, the authors' ``DEMO_mnist5.py``: ``data['z2']`` drawn once,
  ``S2S_DGM.py`` ``SSDGM._get_slice`` wrapping the 10 rows around each batch). Evaluation images: every
  image of digits 5-9.
- ``'m2_100'`` (Kingma et al. 2014): 10 labeled images per class from the 60k train set, all 60k unlabeled;
  evaluation images: the 10k test set.

One batch dict carries the three streams: ``x_l, y_l`` (labeled), ``x_u`` (unlabeled), ``y_u`` (+ ``z_u``
when fixed; unfeatured). A Concrete temperature schedule is the model's (it follows the step).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from experiments.inverted_ssvae.configs import DataConfig
from jaxvae.data.loader import BatchIterator, StackedIterator
from jaxvae.data.mnist import MnistArrays, binarize_round, load_mnist, to_unit_float
from jaxvae.models import inverted_ssvae

__all__ = [
    "StreamIterator",
    "train_iterator",
    "build_data",
    "build_seed_data",
    "device_tables",
    "fixed_unfeatured_z",
    "gather_rows",
    "index_data",
    "seed_data_seed",
]


def _pixels(cfg: DataConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Images in [0, 1] -> the task's pixels: rounded for ``pixels='binary'``, unchanged for ``'grey'``."""
    return binarize_round if cfg.pixels == "binary" else (lambda x: x)


def _untapped_images(cfg: DataConfig, m: MnistArrays) -> np.ndarray:
    """The 70k train + test images of the untapped task, float32 ``[70000, 784]``."""
    return _pixels(cfg)(to_unit_float(np.concatenate([m.x_train, m.x_test])))


def _unlabeled_subset(x_all: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    return x_all[rng.integers(0, len(x_all), num)]


def build_data(cfg: DataConfig, mnist: MnistArrays | None = None) -> dict[str, Any]:
    """The task's arrays for data seed ``cfg.data_seed``.

    Returns:
      ``{"labeled": {"x_l" [N_l, 784], "y_l" [N_l]}, "unlabeled": {"x_u" [N_u, 784]}, "corners" [10, 10],
      "eval_x" [N_e, 784], "eval_y" [N_e]}`` (float32 images, int32 labels) and, for ``'untapped'``,
      ``"eval_test_mask" [N_e]`` (True for images of the MNIST test set).
    """
    m = load_mnist() if mnist is None else mnist
    rng = np.random.default_rng(cfg.data_seed)
    if cfg.task == "untapped":
        x_all = _untapped_images(cfg, m)
        y_all = np.concatenate([m.y_train, m.y_test]).astype(np.int32)
        lab = y_all < cfg.labeled_digits
        out = {
            "labeled": {"x_l": x_all[lab], "y_l": y_all[lab]},
            "unlabeled": {"x_u": _unlabeled_subset(x_all, cfg.num_unlabeled, rng)},
            "eval_x": x_all[~lab],
            "eval_y": y_all[~lab],
            "eval_test_mask": np.arange(len(x_all))[~lab] >= len(m.x_train),
        }
    else:
        pixels = _pixels(cfg)
        x_tr, y_tr = pixels(to_unit_float(m.x_train)), m.y_train.astype(np.int32)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(y_tr == c), cfg.labeled_per_class, replace=False) for c in range(10)]
        )
        out = {
            "labeled": {"x_l": x_tr[idx], "y_l": y_tr[idx]},
            "unlabeled": {"x_u": x_tr},
            "eval_x": pixels(to_unit_float(m.x_test)),
            "eval_y": m.y_test.astype(np.int32),
        }
    out["corners"] = inverted_ssvae.corner_labels(10, cfg.corner_high)
    return out


def seed_data_seed(cfg: DataConfig, seed: int) -> int:
    """The data seed model seed ``seed`` trains on: ``data_seed + seed`` with ``per_seed``, else ``data_seed``."""
    return cfg.data_seed + int(seed) if cfg.per_seed else cfg.data_seed


def build_seed_data(
    cfg: DataConfig, seeds: Sequence[int], mnist: MnistArrays | None = None
) -> tuple[list[dict[str, Any]], list[DataConfig]]:
    """One data dict (:func:`build_data`'s keys) and one data config per model seed.

    Without ``cfg.per_seed`` every entry is the same. With it, entry ``i`` is the data of data seed
    ``seed_data_seed(cfg, seeds[i])``; the labeled pairs, evaluation images and corners (which do not
    depend on the data seed) are shared arrays, so host memory grows by one unlabeled set per seed.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` must be non-empty and distinct; got {seeds}.")
    m = load_mnist() if mnist is None else mnist
    cfgs = [dataclasses.replace(cfg, data_seed=seed_data_seed(cfg, s), per_seed=False) for s in seeds]
    base = build_data(dataclasses.replace(cfg, per_seed=False), mnist=m)
    if not cfg.per_seed:
        return [base] * len(seeds), cfgs
    x_all = _untapped_images(cfg, m)
    datas = []
    for c in cfgs:
        rng = np.random.default_rng(c.data_seed)
        datas.append({**base, "unlabeled": {"x_u": _unlabeled_subset(x_all, cfg.num_unlabeled, rng)}})
    return datas, cfgs


def fixed_unfeatured_z(cfg: DataConfig, model_cfg: inverted_ssvae.Config, num: int = 10) -> np.ndarray:
    """The ``num`` z's of the fixed unfeatured set (``unfeatured_z='fixed'``), float32 ``[num, D]``.

    Drawn once from ``cfg.data_seed`` (a generator of its own, so the other data are unchanged): uniform on
    the model's reverse box (:func:`jaxvae.models.inverted_ssvae.reverse_box`) for ``z_space='box'``,
    ``N(0, I)`` for ``'real'``; kept strictly inside the box after the float32 cast, as the loss requires.
    """
    rng = np.random.default_rng([cfg.data_seed, 0x5A])
    shape = (num, model_cfg.latent_dim)
    if model_cfg.z_space == "real":
        return rng.standard_normal(shape).astype(np.float32)
    lo, hi = inverted_ssvae.reverse_box(model_cfg)
    z = rng.uniform(lo, hi, shape).astype(np.float32)
    return np.clip(z, np.nextafter(np.float32(lo), np.float32(hi)), np.nextafter(np.float32(hi), np.float32(lo)))


class StreamIterator:
    """Zips the labeled and unlabeled :class:`~jaxvae.data.loader.BatchIterator` s and the constant
    unfeatured batch; yields ``{'x_l', 'y_l', 'x_u'[, 'y_u'[, 'z_u']]}``; resumable.

    The unfeatured batch is the corners tiled to ``batch_unfeatured`` rows and, with ``unfeatured_z='fixed'``
    (which needs ``model_cfg``), the fixed z's tiled alike (row ``i`` pairs corner ``i mod C`` with z
    ``i mod C``).
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        cfg: DataConfig,
        *,
        with_unfeatured: bool,
        model_cfg: inverted_ssvae.Config | None = None,
    ):
        n_lab = len(next(iter(data["labeled"].values())))
        self.lab = BatchIterator(data["labeled"], min(cfg.batch_labeled, n_lab), seed=cfg.data_seed)
        self.unl = BatchIterator(data["unlabeled"], cfg.batch_unlabeled, seed=cfg.data_seed + 1)
        self.y_u = self.z_u = None
        if with_unfeatured:
            reps = math.ceil(cfg.batch_unfeatured / len(data["corners"]))
            self.y_u = np.tile(data["corners"], (reps, 1))[: cfg.batch_unfeatured]
            if cfg.unfeatured_z == "fixed":
                if model_cfg is None:
                    raise ValueError("data.unfeatured_z='fixed' needs `model_cfg` (for the z box and latent_dim).")
                z0 = fixed_unfeatured_z(cfg, model_cfg, len(data["corners"]))
                self.z_u = np.tile(z0, (reps, 1))[: cfg.batch_unfeatured]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        b = {**next(self.lab), **next(self.unl)}
        if self.y_u is not None:
            b["y_u"] = self.y_u
        if self.z_u is not None:
            b["z_u"] = self.z_u
        return b

    def get_state(self) -> dict[str, Any]:
        return {"labeled": self.lab.get_state(), "unlabeled": self.unl.get_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.lab.set_state(state["labeled"])
        self.unl.set_state(state["unlabeled"])


def index_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its training streams replaced by row indices (``labeled -> {'i_l'}``,
    ``unlabeled -> {'i_u'}``, int32). A :class:`StreamIterator` over it yields the rows its twin over
    ``data`` would gather (a ``BatchIterator`` draws the same permutation whatever the arrays), for
    :func:`gather_rows` to look up on the device (``run.device_data``)."""
    return {
        **data,
        "labeled": {"i_l": np.arange(len(data["labeled"]["y_l"]), dtype=np.int32)},
        "unlabeled": {"i_u": np.arange(len(data["unlabeled"]["x_u"]), dtype=np.int32)},
    }


def device_tables(datas: Sequence[Mapping[str, Any]], per_seed: bool) -> dict[str, jax.Array]:
    """The training rows on the device (the multi-step's ``tables``): ``x_l [N_l, D]``, ``y_l [N_l]``
    (shared by every seed) and ``x_u [N_u, D]``, or with ``per_seed`` ``[S, N_u, D]`` (seed i's own set)."""
    if not datas:
        raise ValueError("`datas` must hold one data dict per model seed; got none.")
    lab = datas[0]["labeled"]
    x_u = np.stack([d["unlabeled"]["x_u"] for d in datas]) if per_seed else datas[0]["unlabeled"]["x_u"]
    return {"x_l": jax.device_put(lab["x_l"]), "y_l": jax.device_put(lab["y_l"]), "x_u": jax.device_put(x_u)}


def gather_rows(batch: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    """The multi-step's ``gather``: an :func:`index_data` batch (``i_l``, ``i_u``, ``[B]`` or per seed
    ``[S, B]``) -> the batch of rows ``x_l, y_l, x_u`` looked up in :func:`device_tables` (traced)."""
    out = {k: v for k, v in batch.items() if k not in ("i_l", "i_u")}
    out["x_l"], out["y_l"] = tables["x_l"][batch["i_l"]], tables["y_l"][batch["i_l"]]
    x_u, i_u = tables["x_u"], batch["i_u"]
    out["x_u"] = jax.vmap(lambda t, i: t[i])(x_u, i_u) if x_u.ndim == 3 else x_u[i_u]
    return out


def train_iterator(
    datas: Sequence[Mapping[str, Any]],
    data_cfgs: Sequence[DataConfig],
    model_cfg: inverted_ssvae.Config,
    *,
    per_seed: bool,
    on_device: bool = False,
) -> tuple[Any, list[StreamIterator]]:
    """The training batches of every model seed (:func:`build_seed_data`'s ``datas`` and ``data_cfgs``).

    Returns ``(iterator, streams)``: one :class:`StreamIterator` per seed (``streams``, the unfeatured stream
    only when ``model_cfg.reverse != 'none'``; over :func:`index_data` with ``on_device``), and the iterator
    to train on: their batches stacked on a seed axis (``per_seed``) or the first one's, shared by every seed.
    """
    streams = [
        StreamIterator(
            index_data(d) if on_device else d,
            c,
            with_unfeatured=model_cfg.reverse != "none",
            model_cfg=model_cfg,
        )
        for d, c in zip(datas, data_cfgs)
    ]
    return (StackedIterator(streams) if per_seed else streams[0]), streams

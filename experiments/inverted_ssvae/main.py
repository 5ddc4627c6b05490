"""Gemp et al.'s "untapped" MNIST experiment (inverted SSVAE vs M2) and classic M2 with 100 labels.

    python -m experiments.inverted_ssvae.main --config experiments/inverted_ssvae/configs/untapped.py \
        --workdir runs/inverted_ssvae/untapped [--set run.num_steps=300 ...]

One invocation trains every model variant in ``run.variants`` (``'none'`` = M2 baseline, ``'z_observed'``
= untapped with eq. 17, ``'z_sampled'`` = untapped with eq. 5), each for all ``run.seeds`` at once: the
parameters carry a leading seed axis and one compiled step (``jax.vmap`` of the engine's train step)
updates every seed on the same batch (the seeds differ in initialisation and in all sampling noise), or
with ``data.per_seed`` each seed on a batch of its own data (:func:`build_seed_data`).
The three data streams (labeled pairs, unlabeled images, unfeatured labels) arrive in one batch dict.

Tasks (``data.task``):

- ``'untapped'``: MNIST (train + test, 70k) binarized by rounding; labeled pairs = every image of
  digits 0-4; unlabeled = ``data.num_unlabeled`` images drawn with replacement from all 70k (transductive,
  as the authors' code); unfeatured = the 10 "close corners" (0.95) tiled to the batch, ``z ~ U[-1.5, 1.5]^2``
  drawn fresh each step. Evaluation (per seed): ``z_bar`` = mean over the labeled data of the posterior
  location mapped into the box; the 10 one-hots are decoded at ``z_bar``; the MNIST classifier of
  ``classifier.py`` labels them; dims 5-9 are matched to digits 5-9 greedily by the classifier's
  probability (the highest-probability (dim, digit) pair first, i.e. argmax with ties broken by the
  highest probability); the reported number is the cross-entropy of q(y|x) at the matched dimension over
  every image of digits 5-9 (``ce_59``), plus accuracies. ``ce_59_authors`` is the same with the authors'
  evaluation code (``DEMO_mnist5.py`` + ``plotting_mnist.py``): their matching rule
  (:func:`match_dims_argmax_first`) and their KL with probabilities clipped to ``[1e-6, 1]``
  (:func:`clipped_ce`, at most about 13.8 nats per image). ``z_bar`` and the decoding use the model's
  own q box (``model.z_low``, ``model.z_high``; :func:`jaxvae.models.inverted_ssvae.z_posterior_mean`).

  Options closer to the authors' ``examples/DEMO_mnist5.py`` (defaults: the behaviour above):
  ``data.pixels='grey'`` keeps the grey levels ``x/255`` in [0, 1] as Bernoulli targets, as its
  ``load_data(binary=False)`` (``examples/datasets/load_mnist.py``: ``if binary: x = np.round(x)``);
  ``data.unfeatured_z='fixed'`` makes the unfeatured set 10 fixed ``(y, z)`` pairs, the 10 corners with
  one z each drawn once (:func:`fixed_unfeatured_z`, from ``data.data_seed``) uniformly on the model's
  reverse box (``model.reverse_z_low/high``), tiled to the batch like the corners: ``DEMO_mnist5.py``
  draws ``data['z2'] = np.random.uniform(-1.5, 1.5, size=(train_y.shape[0], 2))`` once for its
  ``train_y`` = the 10 corners (``load_mnist.load_data``: ``y_unsup = I``), and ``S2S_DGM.py``
  ``SSDGM._get_slice`` fills each 10,000 batch by wrapping around those 10 rows (``_shuffle_data``
  permutes y and z together, so the pairs stay fixed).
- ``'m2_100'``: 10 labeled images per class from the 60k train set (fixed by ``data.data_seed``), all
  60k train images unlabeled, classic M2 (``model.unlabeled='enumerate'``, ``model.z_space='real'``);
  evaluation: test error of argmax q(y|x) on the 10k test set.

Outputs in ``workdir``: one engine run directory per variant (checkpoints, metrics.jsonl, TensorBoard),
``results.json`` (every number, per seed and mean/std), and for 'untapped' ``decoded_onehots.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments._cli import machine_description
from experiments.inverted_ssvae import classifier as clf_lib
from jaxvae.data.loader import BatchIterator
from jaxvae.data.mnist import binarize_round, load_mnist, to_unit_float
from jaxvae.models import inverted_ssvae as model_lib
from jaxvae.train.loop import fit
from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.state import TrainState
from jaxvae.train.steps import create_train_state, make_train_step

_PIXELS = ("binary", "grey")
_UNFEATURED_Z = ("fresh", "fixed")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Data streams.

    Attributes:
      task: ``'untapped'`` or ``'m2_100'`` (see the module docstring).
      num_unlabeled: untapped: size of the unlabeled set drawn with replacement from the 70k images.
      labeled_digits: untapped: digits ``0 .. labeled_digits-1`` carry labels.
      labeled_per_class: m2_100: labeled images per class.
      corner_high: the unfeatured "close corner" value (0.95).
      batch_labeled, batch_unlabeled, batch_unfeatured: per-stream batch sizes (0 drops the unfeatured stream).
      data_seed: seed of the data construction and of the batch order (and of the fixed unfeatured z's).
      pixels: ``'binary'`` (images rounded to {0, 1}, Gemp et al.'s static binarisation; the default) or
        ``'grey'`` (``x/255`` in [0, 1] used directly as Bernoulli targets, the authors' ``DEMO_mnist5.py``).
        Applies to every image of the task (training streams and evaluation).
      unfeatured_z: ``'fresh'`` (no ``z_u`` in the batch: the loss draws z anew each step; the default) or
        ``'fixed'`` (each corner paired with one z drawn once, :func:`fixed_unfeatured_z`; the authors' code).
      per_seed: untapped only. False (the default): every model seed trained together shares the data of
        ``data_seed``. True: model seed ``s`` gets the data it would get alone with data seed
        ``data_seed + s`` (:func:`seed_data_seed`): its own unlabeled subset, its own batch order, its own
        fixed unfeatured z's, as the authors' script draws them afresh for each trial; the labeled and
        evaluation images are the same for every seed. The batches then carry a leading seed axis.
    """

    task: str = "untapped"
    num_unlabeled: int = 20_000
    labeled_digits: int = 5
    labeled_per_class: int = 10
    corner_high: float = 0.95
    batch_labeled: int = 1000
    batch_unlabeled: int = 1000
    batch_unfeatured: int = 1000
    data_seed: int = 0
    pixels: str = "binary"
    unfeatured_z: str = "fresh"
    per_seed: bool = False

    def __post_init__(self):
        for name, allowed in (("pixels", _PIXELS), ("unfeatured_z", _UNFEATURED_Z)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`data.{name}` must be one of {allowed}; got {getattr(self, name)!r}.")
        if not isinstance(self.per_seed, bool):
            raise ValueError(f"`data.per_seed` must be True or False; got {self.per_seed!r}.")
        if self.per_seed and self.task != "untapped":
            raise ValueError(f"`data.per_seed=True` is for data.task='untapped' only; got task={self.task!r}.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Training run.

    Attributes:
      num_steps: optimizer steps per variant.
      seeds: model seeds trained together (vmapped).
      variants: reverse modes to train, one run each (``'none'`` = M2 baseline).
      log_every, checkpoint_every, sync_every: engine loop settings (``jaxvae.train.loop.fit``).
      time_limit_s: per variant, stop training after this many seconds and evaluate (None: no limit).
      classifier_path: cache of the MNIST evaluation classifier (``.npz``); relative to the workdir.
      classifier_epochs, classifier_train_examples: its training (3 epochs on all 60k by default).
      tau_decay_rate, tau_floor: optional Concrete temperature schedule
        ``tau_t = max(floor, tau_0 rate^t)`` (``tau_0 = model.temperature``); rate 1 keeps tau fixed
        (the paper). The value is passed to the loss as ``batch['temperature']``.
      device_data: put the training rows on the device once and send only row indices each step,
        gathered inside the compiled step (:func:`make_multi_seed_step`'s ``tables``): the same batches,
        for accelerator runs of many seeds where stacking ``S x B x 784`` floats on the host each step
        would cost more than the step (2.2 s per step for 40 seeds at batch 10,000, measured on the 2-core
        CPU beside a training job).
    """

    num_steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    variants: tuple[str, ...] = ("none", "z_observed")
    log_every: int = 25
    checkpoint_every: int = 100
    sync_every: int = 1
    time_limit_s: float | None = None
    classifier_path: str = "mnist_classifier.npz"
    classifier_epochs: int = 3
    classifier_train_examples: int = 60_000
    tau_decay_rate: float = 1.0
    tau_floor: float = 0.5
    device_data: bool = False


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    model: model_lib.Config = model_lib.Config()
    optim: OptimizerConfig = OptimizerConfig(
        name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0
    )
    data: DataConfig = DataConfig()
    run: RunConfig = RunConfig()


# ------------------------------------------------------------------------------------------ data


def build_data(cfg: DataConfig, mnist=None) -> dict[str, Any]:
    """The task's arrays: ``labeled`` {x_l, y_l}, ``unlabeled`` {x_u}, ``corners`` [C, C], and eval sets."""
    m = load_mnist() if mnist is None else mnist
    rng = np.random.default_rng(cfg.data_seed)
    images = _pixel_map(cfg)
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
    elif cfg.task == "m2_100":
        x_tr = images(to_unit_float(m.x_train))
        y_tr = m.y_train.astype(np.int32)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(y_tr == c), cfg.labeled_per_class, replace=False) for c in range(10)]
        )
        out = {
            "labeled": {"x_l": x_tr[idx], "y_l": y_tr[idx]},
            "unlabeled": {"x_u": x_tr},
            "eval_x": images(to_unit_float(m.x_test)),
            "eval_y": m.y_test.astype(np.int32),
        }
    else:
        raise ValueError(f"`data.task` must be 'untapped' or 'm2_100'; got {cfg.task!r}.")
    out["corners"] = model_lib.corner_labels(10, cfg.corner_high)
    return out


def _pixel_map(cfg: DataConfig):
    """Images in [0, 1] -> the task's pixels: rounded for ``pixels='binary'``, unchanged otherwise."""
    return binarize_round if cfg.pixels == "binary" else (lambda x: x)


def _untapped_images(cfg: DataConfig, m) -> np.ndarray:
    """The 70k train + test images of the untapped task, float32 [70000, 784], rounded for ``pixels='binary'``."""
    return _pixel_map(cfg)(to_unit_float(np.concatenate([m.x_train, m.x_test])))


def _unlabeled_subset(x_all: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    return x_all[rng.integers(0, len(x_all), num)]


def seed_data_seed(cfg: DataConfig, seed: int) -> int:
    """The data seed model seed ``seed`` trains on: ``data_seed + seed`` with ``per_seed``, else ``data_seed``."""
    return cfg.data_seed + int(seed) if cfg.per_seed else cfg.data_seed


def build_seed_data(cfg: DataConfig, seeds: Sequence[int], mnist=None) -> list[dict[str, Any]]:
    """One data dict per model seed (:func:`build_data`'s keys), ``[len(seeds)]``.

    Without ``cfg.per_seed`` every entry is the same dict. With it, entry ``i`` is what
    ``build_data(replace(cfg, data_seed=seed_data_seed(cfg, seeds[i]), per_seed=False))`` gives, but the
    labeled pairs, evaluation images and corners (which do not depend on the data seed) are shared arrays,
    so the host memory grows by one unlabeled set (``num_unlabeled x 784`` float32) per seed.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"build_seed_data: `seeds` must be non-empty and distinct; got {seeds}.")
    m = load_mnist() if mnist is None else mnist
    base = build_data(dataclasses.replace(cfg, per_seed=False), mnist=m)
    if not cfg.per_seed:
        return [base] * len(seeds)
    x_all = _untapped_images(cfg, m)
    out = []
    for s in seeds:
        rng = np.random.default_rng(seed_data_seed(cfg, s))
        out.append({**base, "unlabeled": {"x_u": _unlabeled_subset(x_all, cfg.num_unlabeled, rng)}})
    return out


def fixed_unfeatured_z(cfg: DataConfig, model_cfg: model_lib.Config, num: int = 10) -> np.ndarray:
    """The ``num`` z's of the fixed unfeatured set (``data.unfeatured_z='fixed'``), float32 ``[num, D]``.

    Drawn once from ``data.data_seed`` (a generator of its own, so the other data are unchanged): uniform
    on the model's reverse box (:func:`jaxvae.models.inverted_ssvae.reverse_box`) for ``z_space='box'``,
    ``N(0, I)`` for ``'real'``. Every model seed trained together sees the same set (the authors'
    ``DEMO_mnist5.py`` draws it once per run with ``np.random.uniform(-1.5, 1.5)``).
    """
    rng = np.random.default_rng([cfg.data_seed, 0x5A])
    shape = (num, model_cfg.z_dim)
    if model_cfg.z_space == "real":
        return rng.standard_normal(shape).astype(np.float32)
    lo, hi = model_lib.reverse_box(model_cfg)
    z = rng.uniform(lo, hi, shape).astype(np.float32)
    # strictly inside the (closed) box after the float32 cast, as the loss requires
    return np.clip(z, np.nextafter(np.float32(lo), np.float32(hi)), np.nextafter(np.float32(hi), np.float32(lo)))


class StreamIterator:
    """Zips the labeled and unlabeled :class:`BatchIterator` s and the (constant) unfeatured batch.

    Yields ``{'x_l', 'y_l', 'x_u'[, 'y_u'[, 'z_u']]}``; resumable through ``get_state``/``set_state``.
    The unfeatured batch is the corners tiled to ``batch_unfeatured`` rows and, with
    ``unfeatured_z='fixed'`` (which needs ``model_cfg``), the fixed z's tiled alike (row ``i`` pairs corner
    ``i mod C`` with z ``i mod C``).
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        cfg: DataConfig,
        *,
        with_unfeatured: bool,
        tau_schedule=None,
        model_cfg: model_lib.Config | None = None,
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
                    raise ValueError("data.unfeatured_z='fixed' needs `model_cfg` (for the z box and z_dim).")
                z0 = fixed_unfeatured_z(cfg, model_cfg, len(data["corners"]))
                self.z_u = np.tile(z0, (reps, 1))[: cfg.batch_unfeatured]
        self.tau_schedule = tau_schedule
        self.t = 0

    def __iter__(self):
        return self

    def __next__(self):
        b = {**next(self.lab), **next(self.unl)}
        if self.y_u is not None:
            b["y_u"] = self.y_u
        if self.z_u is not None:
            b["z_u"] = self.z_u
        if self.tau_schedule is not None:
            b["temperature"] = np.float32(self.tau_schedule(self.t))
        self.t += 1
        return b

    def get_state(self):
        return {"labeled": self.lab.get_state(), "unlabeled": self.unl.get_state(), "t": self.t}

    def set_state(self, state):
        self.lab.set_state(state["labeled"])
        self.unl.set_state(state["unlabeled"])
        self.t = int(state["t"])


def index_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its training streams replaced by row indices: ``labeled`` -> ``{'i_l': arange(N_l)}``,
    ``unlabeled`` -> ``{'i_u': arange(N_u)}`` (int32). A :class:`StreamIterator` over it with the same
    config yields ``i_l``, ``i_u`` (the rows its twin over ``data`` gathers, as a :class:`BatchIterator`
    draws one permutation of row indices per epoch whatever the arrays) in place of ``x_l, y_l, x_u``;
    :func:`make_multi_seed_step`'s ``tables`` gathers them on the device (``run.device_data``)."""
    n_l = len(data["labeled"]["y_l"])
    n_u = len(data["unlabeled"]["x_u"])
    return {
        **data,
        "labeled": {"i_l": np.arange(n_l, dtype=np.int32)},
        "unlabeled": {"i_u": np.arange(n_u, dtype=np.int32)},
    }


def device_tables(datas: Sequence[Mapping[str, Any]], per_seed: bool) -> dict[str, jax.Array]:
    """The training rows on the device, for :func:`index_data` batches: ``x_l`` [N_l, D], ``y_l`` [N_l]
    (the same for every seed), ``x_u`` [N_u, D], or with ``per_seed`` [S, N_u, D] (seed i's own set)."""
    if not datas:
        raise ValueError("device_tables: `datas` must hold one data dict per model seed; got none.")
    lab = datas[0]["labeled"]
    x_u = np.stack([d["unlabeled"]["x_u"] for d in datas]) if per_seed else datas[0]["unlabeled"]["x_u"]
    return {"x_l": jax.device_put(lab["x_l"]), "y_l": jax.device_put(lab["y_l"]), "x_u": jax.device_put(x_u)}


def _gather(batch: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in batch.items() if k not in ("i_l", "i_u")}
    out["x_l"], out["y_l"] = tables["x_l"][batch["i_l"]], tables["y_l"][batch["i_l"]]
    x_u, i_u = tables["x_u"], batch["i_u"]
    out["x_u"] = jax.vmap(lambda t, i: t[i])(x_u, i_u) if x_u.ndim == 3 else x_u[i_u]
    return out


class SeedStackedIterator:
    """Zips one iterator per model seed; yields their batches stacked on a new leading seed axis.

    Every leaf of the batch gets the axis (``[S, B, ...]``; a scalar such as ``temperature`` becomes
    ``[S]``). Resumable: ``get_state()`` is the list of the seeds' states.
    """

    def __init__(self, iterators: Sequence[Any]):
        if not iterators:
            raise ValueError("SeedStackedIterator: need at least one iterator (one per model seed).")
        self.iterators = list(iterators)

    def __iter__(self):
        return self

    def __next__(self):
        batches = [next(it) for it in self.iterators]
        return {k: np.stack([np.asarray(b[k]) for b in batches]) for k in batches[0]}

    def get_state(self):
        return {"seeds": [it.get_state() for it in self.iterators]}

    def set_state(self, state):
        states = state["seeds"]
        if len(states) != len(self.iterators):
            raise ValueError(
                f"SeedStackedIterator.set_state: the state holds {len(states)} seeds' iterators, "
                f"this one {len(self.iterators)}."
            )
        for it, st in zip(self.iterators, states):
            it.set_state(st)


# ------------------------------------------------------------------------------------------ seeds


def init_multi_seed_state(model_cfg, optimizer, seeds) -> TrainState:
    """A TrainState whose params/opt_state/key/skipped carry a leading seed axis; ``step`` is shared."""
    states = []
    for s in seeds:
        params, model_state = model_lib.init(model_cfg, jax.random.key(int(s)))
        states.append(create_train_state(jax.random.key(10_000 + int(s)), params, model_state, optimizer))
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
    return stacked._replace(step=jnp.zeros((), jnp.int32))


def make_multi_seed_step(loss_fn, optimizer, *, batch_per_seed: bool = False, tables=None):
    """``step(state, batch)``: the engine's step vmapped over the seed axis, metrics averaged over seeds.

    ``batch_per_seed``: the batch's leaves carry the leading seed axis too (:class:`SeedStackedIterator`,
    ``data.per_seed``), seed ``i`` trains on ``batch[...][i]``; else every seed gets the same batch.
    ``tables``: the training rows on the device (:func:`device_tables`); the batch then carries row
    indices ``i_l``, ``i_u`` (:func:`index_data`) in place of ``x_l, y_l, x_u``, gathered inside the
    compiled step, so each step sends the host's indices instead of ``S x B x 784`` floats.
    """
    base = make_train_step(loss_fn, optimizer, jit=False).fn
    batch_axis = 0 if batch_per_seed else None

    def step(state: TrainState, batch):
        n = state.skipped.shape[0]
        per_seed = state._replace(step=jnp.broadcast_to(state.step, (n,)))
        new, m = jax.vmap(base, in_axes=(0, batch_axis))(per_seed, batch)
        metrics = {k: jnp.mean(v) for k, v in m.items()}
        metrics["skipped"] = jnp.sum(new.skipped)
        metrics["loss_max_over_seeds"] = jnp.max(m["loss"])
        return new._replace(step=new.step[0]), metrics

    if tables is not None:
        gathering = jax.jit(lambda state, batch, t: step(state, _gather(batch, t)), donate_argnums=0)
        return lambda state, batch: gathering(state, batch, tables)
    return jax.jit(step, donate_argnums=0)


def _seed_slice(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


# ------------------------------------------------------------------------------------------ evaluation


def _chunked(fn, x, size=5000):
    return np.concatenate([np.asarray(fn(x[i : i + size])) for i in range(0, len(x), size)])


def match_dims(probs: np.ndarray, dims=range(5, 10), digits=range(5, 10)) -> dict[int, int]:
    """Greedy one-to-one match of one-hot dims to digits: the highest classifier probability first."""
    dims, digits = list(dims), list(digits)
    pairs = sorted(((probs[d, g], d, g) for d in dims for g in digits), reverse=True)
    out: dict[int, int] = {}
    used = set()
    for _, d, g in pairs:
        if d not in out and g not in used:
            out[d] = g
            used.add(g)
    return out


def match_dims_argmax_first(probs: np.ndarray, dims=range(5, 10), digits=range(5, 10)) -> dict[int, int]:
    """One-to-one match with the rule of the authors' evaluation (``examples/DEMO_mnist5.py``,
    ``assign_permutation``), written from its description: every dim asks for its most probable digit;
    a digit asked for by exactly one dim goes to it; the dims whose digit was asked for by several dims
    are matched again, recursively, among the digits not yet given; when every remaining dim is in such
    a clash, the dim with the highest probability of the first clashing digit (in dim order) takes it.

    Differs from :func:`match_dims` (highest pair first) when a dim's uncontested first choice has a lower
    probability than another dim's second choice of the same digit.
    """
    rows, cols = list(dims), list(digits)
    out: dict[int, int] = {}
    while rows:
        if len(rows) == 1:
            out[rows[0]] = max(cols, key=lambda g: probs[rows[0], g])
            break
        want = {d: max(cols, key=lambda g: probs[d, g]) for d in rows}
        asked = [want[d] for d in rows]
        unique = {g for g in asked if asked.count(g) == 1}
        for d in rows:
            if want[d] in unique:
                out[d] = want[d]
        clash_rows = [d for d in rows if want[d] not in unique]
        free_cols = [g for g in cols if g not in unique]
        if len(clash_rows) == len(rows):  # nobody settled: the best claimant of the first clash wins
            g0 = asked[0]
            winner = max(clash_rows, key=lambda d: probs[d, g0])
            out[winner] = g0
            clash_rows = [d for d in clash_rows if d != winner]
            free_cols = [g for g in free_cols if g != g0]
        rows, cols = clash_rows, free_cols
    return out


def clipped_ce(log_q: np.ndarray, target: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-example ``KL(t || p)`` of the authors' evaluation (``plotting_mnist.KL``): ``t`` the one-hot
    target and ``p`` the softmax, both clipped to ``[eps, 1]`` (so each value is at most about ``-log eps``)."""
    t = np.clip(np.eye(log_q.shape[-1])[target], eps, 1.0)
    p = np.clip(np.exp(log_q), eps, 1.0)
    return np.sum(t * (np.log(t) - np.log(p)), axis=-1)


@functools.lru_cache(maxsize=16)
def _eval_fns(model_cfg: model_lib.Config) -> dict[str, Any]:
    """Jitted evaluation functions of one model config, taking ``params`` as an argument: compiled once
    per config and chunk shape, not once per seed (which cost seconds per seed and dominated the GPU job)."""
    return {
        "z_mean": jax.jit(lambda p, x, y: model_lib.z_posterior_mean(model_cfg, p, x, y)),
        "logits": jax.jit(lambda p, x: model_lib.classify(model_cfg, p, x)),
        "log_q": jax.jit(lambda p, x: jax.nn.log_softmax(model_lib.classify(model_cfg, p, x))),
    }


def evaluate_untapped(model_cfg, params, data, clf_params) -> dict[str, Any]:
    """The paper's protocol for one seed's ``params`` (see the module docstring)."""
    x_l, y_l = data["labeled"]["x_l"], data["labeled"]["y_l"]
    onehot = np.eye(10, dtype=np.float32)
    fns = _eval_fns(model_cfg)
    z_bar = np.mean(
        np.concatenate(
            [
                np.asarray(fns["z_mean"](params, x_l[i : i + 5000], onehot[y_l[i : i + 5000]]))
                for i in range(0, len(x_l), 5000)
            ]
        ),
        axis=0,
    )
    imgs = np.asarray(model_lib.decode_mean(model_cfg, params, onehot, np.tile(z_bar, (10, 1))))
    probs = np.asarray(jax.nn.softmax(clf_lib.logits_fn(clf_params, imgs)))
    dim_to_digit = {d: d for d in range(5)}
    dim_to_digit.update(match_dims(probs))
    digit_to_dim = {g: d for d, g in dim_to_digit.items()}
    log_q = _chunked(functools.partial(fns["log_q"], params), data["eval_x"])
    target = np.array([digit_to_dim[g] for g in data["eval_y"]])
    nll = -log_q[np.arange(len(target)), target]
    pred = np.argmax(log_q, -1)
    # The authors' evaluation: their matching rule and their clipped KL (same classifier, same images).
    dim_to_digit_a = {d: d for d in range(5)}
    dim_to_digit_a.update(match_dims_argmax_first(probs))
    digit_to_dim_a = {g: d for d, g in dim_to_digit_a.items()}
    target_a = np.array([digit_to_dim_a[g] for g in data["eval_y"]])
    lab_logq = _chunked(functools.partial(fns["logits"], params), x_l)
    return {
        "ce_59": float(np.mean(nll)),
        "ce_59_test_only": float(np.mean(nll[data["eval_test_mask"]])),
        "ce_59_authors": float(np.mean(clipped_ce(log_q, target_a))),
        "acc_59": float(np.mean(pred == target)),
        "frac_59_predicted_in_dims_5_9": float(np.mean(pred >= 5)),
        "acc_04_labeled": float(np.mean(np.argmax(lab_logq, -1) == y_l)),
        "z_bar": z_bar.tolist(),
        "decoded_argmax_digit": np.argmax(probs, -1).tolist(),
        "decoded_argmax_prob": np.max(probs, -1).round(3).tolist(),
        "num_distinct_decoded_digits": int(len(set(np.argmax(probs, -1).tolist()))),
        "dim_to_digit": {str(k): int(v) for k, v in sorted(dim_to_digit.items())},
        "dim_to_digit_authors": {str(k): int(v) for k, v in sorted(dim_to_digit_a.items())},
        "decoded": imgs,
    }


def evaluate_m2(model_cfg, params, data) -> dict[str, Any]:
    logits = _chunked(functools.partial(_eval_fns(model_cfg)["logits"], params), data["eval_x"])
    err = float(np.mean(np.argmax(logits, -1) != data["eval_y"]))
    return {"test_error": err}


def compare_ce(untapped: list[Mapping[str, Any]], m2: list[Mapping[str, Any]], key: str = "ce_59") -> dict:
    """Untapped minus M2 on ``key`` over seeds: unpaired and paired by seed.

    ``diff`` = mean(untapped) - mean(M2); ``se`` = sqrt(s_u^2 / n_u + s_m^2 / n_m) (unpaired, ``ddof=1``);
    ``z`` = diff / se. ``paired`` (over the seeds both lists hold; the two models of one seed share the
    data, its order and the unfeatured draws): mean and standard deviation (``ddof=1``) of the per-seed
    differences d_s, ``se`` = std / sqrt(n), ``z`` = mean / se, ``untapped_better`` = #{s: d_s < 0}, and
    two exact one-sided p-values for the paper's direction (:func:`paired_p_values`): ``p_sign_flip``
    (the seed-to-seed noise alone, i.e. which model of a seed is called "untapped" being arbitrary, gives a
    sum of differences at most the observed one) and ``p_sign_test`` (at least ``untapped_better`` of n
    seeds below by chance). Negative is the paper's direction (the untapped model's cross-entropy lower).
    """
    if not untapped or not m2:
        raise ValueError(
            f"compare_ce: `untapped` and `m2` must each hold at least one seed's result; "
            f"got {len(untapped)} and {len(m2)}"
        )
    a = np.asarray([p[key] for p in untapped], np.float64)
    b = np.asarray([p[key] for p in m2], np.float64)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(len(a), len(b)) > 1 else float("nan")
    out = {"diff": diff, "se": float(se), "z": diff / se if se > 0 else float("nan")}
    by_seed = {int(p["seed"]): p[key] for p in m2}
    d = np.asarray([p[key] - by_seed[int(p["seed"])] for p in untapped if int(p["seed"]) in by_seed], np.float64)
    if len(d):
        sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
        pse = sd / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        out["paired"] = {
            "mean": float(d.mean()),
            "std": sd,
            "se": pse,
            "z": float(d.mean()) / pse if pse > 0 else float("nan"),
            "n": int(len(d)),
            "untapped_better": int(np.sum(d < 0)),
            **paired_p_values(d),
        }
    return out


def paired_p_values(d: Sequence[float], max_exact: int = 20) -> dict:
    """Exact one-sided p-values that paired differences ``d`` [n] are centred below zero.

    ``p_sign_flip``: under the null hypothesis the sign of each d_s is as likely + as - (the seed-to-seed
    noise is symmetric and the two models exchangeable), so with T = sum_s d_s,
    ``p = #{eps in {-1, +1}^n : sum_s eps_s |d_s| <= T} / 2^n`` over all 2^n sign patterns (the observed one
    included, so ``p >= 2^-n``); exact for ``n <= max_exact``, else 2^20 patterns drawn with
    ``default_rng(0)`` (``p_sign_flip_exact`` says which). ``p_sign_test``: with k = #{d_s < 0},
    ``p = sum_{j >= k} C(n, j) / 2^n``. Distribution-free; they say how often the seed-to-seed noise alone
    gives a result as far in the paper's direction, not how large the effect is.
    """
    d = np.asarray(d, np.float64)
    if d.ndim != 1 or not len(d) or not np.all(np.isfinite(d)):
        raise ValueError(f"paired_p_values: `d` must be a non-empty finite 1-D array; got shape {d.shape}")
    if not 0 <= max_exact <= 24:
        raise ValueError(
            f"paired_p_values: `max_exact` must be in [0, 24] (2^max_exact patterns are enumerated); got {max_exact}"
        )
    n, t, a = len(d), float(d.sum()), np.abs(d)
    tol = 1e-12 * max(1.0, float(a.sum()))
    exact = n <= max_exact
    count, total = 0, 0
    if exact:
        bits = np.arange(n)
        for start in range(0, 2**n, 2**16):
            codes = np.arange(start, min(start + 2**16, 2**n))[:, None]
            signs = 1.0 - 2.0 * ((codes >> bits) & 1)
            count += int(np.sum(signs @ a <= t + tol))
            total += len(codes)
    else:
        rng = np.random.default_rng(0)
        for _ in range(16):
            signs = rng.choice(np.array([-1.0, 1.0]), size=(2**16, n))
            count += int(np.sum(signs @ a <= t + tol))
            total += 2**16
    k = int(np.sum(d < 0))
    p_sign = sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n
    return {"p_sign_flip": count / total, "p_sign_flip_exact": exact, "p_sign_test": p_sign}


def _mean_std(vals):
    a = np.asarray(vals, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def save_figure(path: str, decoded: Mapping[str, np.ndarray], labels: Mapping[str, list]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(decoded)
    fig, axes = plt.subplots(len(names), 10, figsize=(10, 1.25 * len(names) + 0.3), squeeze=False)
    for r, name in enumerate(names):
        for d in range(10):
            ax = axes[r, d]
            ax.imshow(decoded[name][d].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"y={d}: {labels[name][d]}", fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ run


def _to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


_VARIANT_NAMES = {"none": "M2", "z_observed": "untapped", "z_sampled": "untapped_z_sampled"}


def run(cfg: ExperimentConfig, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Train every variant for every seed, evaluate, write ``results.json``; returns the results."""
    os.makedirs(workdir, exist_ok=True)
    t_start = time.time()
    mnist = load_mnist()
    seeds = tuple(int(s) for s in cfg.run.seeds)
    datas = build_seed_data(cfg.data, seeds, mnist=mnist)
    data_cfgs = [dataclasses.replace(cfg.data, data_seed=seed_data_seed(cfg.data, s), per_seed=False) for s in seeds]
    results: dict[str, Any] = {
        "config": _to_dict(cfg),
        "variants": {},
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "jax": jax.__version__,
    }
    clf_params = None
    if cfg.data.task == "untapped":
        clf_path = os.path.join(workdir, cfg.run.classifier_path)
        n = cfg.run.classifier_train_examples
        clf_params, info = clf_lib.load_or_train(
            clf_path,
            to_unit_float(mnist.x_train[:n]),
            mnist.y_train[:n].astype(np.int32),
            to_unit_float(mnist.x_test),
            mnist.y_test.astype(np.int32),
            epochs=cfg.run.classifier_epochs,
        )
        results["classifier"] = info
    optimizer = make_optimizer(cfg.optim)
    tables = device_tables(datas, cfg.data.per_seed) if cfg.run.device_data else None
    decoded, labels = {}, {}
    for variant in cfg.run.variants:
        name = _VARIANT_NAMES[variant]
        mcfg = dataclasses.replace(cfg.model, reverse=variant)
        loss_fn = model_lib.make_loss_fn(mcfg)
        state = init_multi_seed_state(mcfg, optimizer, seeds)
        sched = None
        if cfg.run.tau_decay_rate < 1.0:
            from jaxvae.distributions.concrete import exponential_decay_temperature

            sched = exponential_decay_temperature(
                mcfg.temperature, cfg.run.tau_decay_rate, min(cfg.run.tau_floor, mcfg.temperature)
            )
        its = [
            StreamIterator(
                index_data(d) if cfg.run.device_data else d,
                dc,
                with_unfeatured=variant != "none",
                tau_schedule=sched,
                model_cfg=mcfg,
            )
            for d, dc in zip(datas, data_cfgs)
        ]
        if its[0].z_u is not None:
            fixed = [i.z_u[: len(d["corners"])].tolist() for i, d in zip(its, datas)]
            # one set shared by the seeds, or (data.per_seed) one per seed, in run.seeds order
            results.setdefault("fixed_unfeatured_z", {})[name] = fixed if cfg.data.per_seed else fixed[0]
        it = SeedStackedIterator(its) if cfg.data.per_seed else its[0]
        step = make_multi_seed_step(loss_fn, optimizer, batch_per_seed=cfg.data.per_seed, tables=tables)
        t0 = time.time()
        run_cfg = _to_dict(cfg)
        run_cfg["model"] = _to_dict(mcfg)
        state, history = fit(
            state=state,
            train_step=step,
            train_iter=it,
            num_steps=cfg.run.num_steps,
            workdir=os.path.join(workdir, name),
            config=run_cfg,
            log_every=cfg.run.log_every,
            checkpoint_every=cfg.run.checkpoint_every,
            progress=progress,
            sync_every=cfg.run.sync_every,
            time_limit_s=cfg.run.time_limit_s,
            # logged examples/s: every seed's unlabeled batch per step (a per-seed batch's
            # leading axis is the seed axis, which the loop's default would count)
            examples_per_step=len(seeds) * cfg.data.batch_unlabeled,
        )
        train_s = time.time() - t0
        per_seed = []
        for i, seed in enumerate(seeds):
            params, data = _seed_slice(state.params, i), datas[i]
            if cfg.data.task == "untapped":
                ev = evaluate_untapped(mcfg, params, data, clf_params)
                if i == 0:
                    decoded[name] = ev["decoded"]
                    labels[name] = [
                        f"{g} ({p:.2f})" for g, p in zip(ev["decoded_argmax_digit"], ev["decoded_argmax_prob"])
                    ]
                ev.pop("decoded")
            else:
                ev = evaluate_m2(mcfg, params, data)
            per_seed.append({"seed": int(seed), "data_seed": data_cfgs[i].data_seed, **ev})
        summary = {
            k: _mean_std([p[k] for p in per_seed])
            for k, v in per_seed[0].items()
            if k != "seed" and isinstance(v, float)
        }
        last = history["train"][-1] if history["train"] else {}
        results["variants"][name] = {
            "per_seed": per_seed,
            "summary": summary,
            "train_seconds": train_s,
            "final_train_metrics": last,
            "steps_done": history["end_step"],
            "time_limited": bool(history["time_limited"]),
            "skipped_steps_total": int(np.sum(np.asarray(state.skipped))),
        }
        print(f"[{name}] " + ", ".join(f"{k}={v['mean']:.4f}±{v['std']:.4f}" for k, v in summary.items()), flush=True)
    if decoded:
        save_figure(os.path.join(workdir, "decoded_onehots.png"), decoded, labels)
    if "M2" in results["variants"] and "untapped" in results["variants"] and cfg.data.task == "untapped":
        results["untapped_minus_m2_ce_59"] = compare_ce(
            results["variants"]["untapped"]["per_seed"], results["variants"]["M2"]["per_seed"]
        )
    results["total_seconds"] = time.time() - t_start
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def main(argv=None):
    from experiments import _cli

    cfg, workdir = _cli.parse(argv if argv is not None else sys.argv[1:])
    run(cfg, workdir)


if __name__ == "__main__":
    main()

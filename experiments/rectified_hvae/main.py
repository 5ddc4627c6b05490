"""Train and evaluate the structured rectified-Gaussian hierarchy (Salimans, 2016) on binarized MNIST.

Usage::

    python -m experiments.rectified_hvae.main --config experiments/rectified_hvae/configs/default.py \\
        --workdir runs/rectified_hvae [--set epochs=20 --set model.posterior=mean_field ...]

Trains with the engine (:func:`jaxvae.train.loop.fit`: checkpoints, resume, metrics.jsonl,
TensorBoard), then writes ``results.json`` in the work dir with the test ELBO (full test set), the
importance-weighted NLL on a fixed prefix of the test set, per-layer active units and sparsity, the
wall time of training and of each evaluation, and PNG figures (prior samples, per-layer variation)
under ``figures/``. ``model_kind='vae'`` trains the one-layer baseline of :mod:`jaxvae.models.vae`
through the same data, schedule and evaluation, so the numbers compare like for like.

Test data: a fixed stochastic binarization of the 10k MNIST test images
(``binarize_static(seed=data.test_binarization_seed)``); training data is binarized dynamically
(fresh Bernoulli draws every batch) or statically (``data.binarization``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments._cli import machine_description
from jaxvae.data.loader import BatchIterator
from jaxvae.data.mnist import binarize_static, load_mnist, to_unit_float
from jaxvae.data.transforms import dynamic_binarize
from jaxvae.metrics.active_units import active_units
from jaxvae.metrics.iw_nll import iw_log_likelihood, mean_and_stderr
from jaxvae.models import rectified_hvae as rh
from jaxvae.models import vae as vae_lib
from jaxvae.train.loop import TrainConfig, fit
from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step
from jaxvae.train.writers import make_grid, save_png

MODEL_KINDS = ("rectified_hvae", "vae")
BINARIZATIONS = ("dynamic", "static")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Data settings.

    Attributes:
      binarization: 'dynamic' (fresh Bernoulli draws each batch) or 'static' (one fixed draw).
      train_size: use the first ``train_size`` of the 60k training images.
      test_size: evaluate the ELBO on the first ``test_size`` of the 10k test images.
      static_seed: seed of the static training binarization.
      test_binarization_seed: seed of the fixed test binarization.
    """

    binarization: str = "dynamic"
    train_size: int = 60_000
    test_size: int = 10_000
    static_seed: int = 0
    test_binarization_seed: int = 0

    def __post_init__(self):
        if self.binarization not in BINARIZATIONS:
            raise ValueError(f"`data.binarization` must be one of {BINARIZATIONS}; got {self.binarization!r}.")
        if not 1 <= self.train_size <= 60_000:
            raise ValueError(f"`data.train_size` must be in [1, 60000]; got {self.train_size!r}.")
        if not 2 <= self.test_size <= 10_000:
            raise ValueError(f"`data.test_size` must be in [2, 10000]; got {self.test_size!r}.")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Final evaluation.

    Attributes:
      iw_samples: K of the importance-weighted NLL (0 skips it).
      iw_examples: evaluate the IW-NLL on the first ``iw_examples`` test examples.
      iw_sample_chunk: samples per compiled chunk.
      au_examples: test examples for active units / sparsity.
      au_samples: samples of q per example for the posterior means E_q[z_l | x].
      au_threshold: Burda et al. activity threshold on Cov_x(E_q[z_u | x]).
      figure_columns: columns of the layer-variation figure.
    """

    iw_samples: int = 5000
    iw_examples: int = 1000
    iw_sample_chunk: int = 500
    au_examples: int = 2000
    au_samples: int = 20
    au_threshold: float = 0.01
    figure_columns: int = 10


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment.

    Attributes:
      model_kind: 'rectified_hvae' (``model``) or 'vae' (the one-layer baseline, ``vae``).
      model: the hierarchy's config.
      vae: the baseline's config (used when ``model_kind='vae'``).
      optimizer: optimizer and schedule; a decaying schedule's ``decay_steps`` is set to the
        run's number of steps by :func:`resolve`.
      train: loop settings; ``train.num_steps`` is replaced by ``epochs * steps_per_epoch`` when
        ``epochs > 0``.
      data: data settings.
      eval: final-evaluation settings.
      epochs: training epochs (0: use ``train.num_steps``).
    """

    model_kind: str = "rectified_hvae"
    model: rh.Config = rh.Config()
    vae: vae_lib.Config = vae_lib.Config()
    optimizer: OptimizerConfig = OptimizerConfig(name="adamax", learning_rate=2e-3)
    train: TrainConfig = TrainConfig(batch_size=100, eval_every=0, log_every=200, checkpoint_every=3000)
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    epochs: int = 0

    def __post_init__(self):
        if self.model_kind not in MODEL_KINDS:
            raise ValueError(f"`model_kind` must be one of {MODEL_KINDS}; got {self.model_kind!r}.")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"`epochs` must be an int >= 0; got {self.epochs!r}.")


def resolve(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fill ``train.num_steps`` from ``epochs`` and a decaying schedule's ``decay_steps`` from it."""
    train = cfg.train
    if cfg.epochs > 0:
        steps = cfg.epochs * (cfg.data.train_size // train.batch_size)
        train = dataclasses.replace(train, num_steps=steps)
    opt = cfg.optimizer
    if opt.schedule != "constant":
        opt = dataclasses.replace(opt, decay_steps=train.num_steps)
    return dataclasses.replace(cfg, train=train, optimizer=opt)


def _as_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def load_data(cfg: DataConfig):
    """``(train_arrays, transform, x_test)``: float32 [N, 784] arrays; test is statically binarized."""
    mnist = load_mnist()
    x_train = to_unit_float(mnist.x_train)[: cfg.train_size]
    x_test = binarize_static(to_unit_float(mnist.x_test), seed=cfg.test_binarization_seed)[: cfg.test_size]
    if cfg.binarization == "dynamic":
        return {"x": x_train}, dynamic_binarize(("x",)), x_test.astype(np.float32)
    x_train = binarize_static(x_train, seed=cfg.static_seed)
    return {"x": x_train.astype(np.float32)}, None, x_test.astype(np.float32)


class _Model:
    """The few model functions the experiment needs, for either model kind."""

    def __init__(self, cfg: ExperimentConfig):
        self.kind = cfg.model_kind
        self.cfg = cfg.model if self.kind == "rectified_hvae" else cfg.vae
        self.lib = rh if self.kind == "rectified_hvae" else vae_lib

    def init(self, key):
        return self.lib.init(self.cfg, key)

    def loss_fn(self):
        return self.lib.make_loss_fn(self.cfg)

    def eval_fn(self):
        return self.lib.make_eval_fn(self.cfg)

    def log_weight_fn(self, params, model_state):
        return self.lib.make_log_weight_fn(self.cfg, params, model_state)

    def samples(self, params, model_state, key, n):
        if self.kind == "rectified_hvae":
            return rh.sample_images(self.cfg, params, model_state, key, n)
        return vae_lib.sample_images(self.cfg, params, key, n)


def layer_statistics(
    mcfg: rh.Config, params, model_state, x, key, *, num_samples: int, threshold: float, batch_size: int = 250
) -> list[dict]:
    """Per layer: active units (Burda et al. criterion) and sparsity.

    ``E_q[z_l | x]`` is estimated by averaging the conditional means ``E_q[z_l | z_{l+1}^(s), x]``
    over ``num_samples`` parent draws (Rao-Blackwellised; exact for the top layer). The variance over
    ``x`` of that estimate exceeds ``Cov_x(E_q[z_l | x])`` by its Monte-Carlo noise, the mean over
    ``x`` of ``var_s / S``; ``active_units`` counts units whose noise-corrected variance exceeds
    ``threshold`` (``active_units_uncorrected`` without the correction). Sparsity is the fraction of
    exact zeros among ``num_samples`` draws of ``z_l ~ q``.
    """
    means_fn = functools.partial(rh.posterior_conditional_means, mcfg, params, model_state, num_samples=num_samples)
    samples_fn = functools.partial(rh.posterior_samples, mcfg, params, model_state, num_samples=num_samples)
    L = len(mcfg.latent_sizes)
    means, noise = [[] for _ in range(L)], [[] for _ in range(L)]
    zeros, total = np.zeros(L), np.zeros(L)
    for i, start in enumerate(range(0, x.shape[0], batch_size)):
        xb = jnp.asarray(x[start : start + batch_size])
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        for l, c in enumerate(means_fn(k1, xb)):
            c = np.asarray(c, np.float64)  # [S, b, d]
            means[l].append(c.mean(axis=0))
            noise[l].append(c.var(axis=0, ddof=1) / num_samples if num_samples > 1 else np.zeros(c.shape[1:]))
        for l, z in enumerate(samples_fn(k2, xb)):
            z = np.asarray(z)
            zeros[l] += np.count_nonzero(z == 0.0)
            total[l] += z.size
    out = []
    for l, d in enumerate(mcfg.latent_sizes):
        m = np.concatenate(means[l]).astype(np.float32)
        raw_count, variances = active_units(m, threshold=threshold)
        corrected = np.asarray(variances, np.float64) - np.concatenate(noise[l]).mean(axis=0)
        out.append(
            {
                "layer": l + 1,
                "units": d,
                "active_units": int(np.sum(corrected > threshold)),
                "active_units_uncorrected": raw_count,
                "sparsity": float(zeros[l] / total[l]),
                "mean_activity_variance": float(np.mean(corrected)),
            }
        )
    return out


def write_figures(model: _Model, params, model_state, key, workdir: str, columns: int) -> list[str]:
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    k1, k2 = jax.random.split(key)
    paths = []
    samples = np.asarray(model.samples(params, model_state, k1, 64))
    p = os.path.join(workdir, "figures", "samples.png")
    save_png(p, make_grid(np.clip(samples, 0.0, 1.0), ncols=8))
    paths.append(p)
    if model.kind == "rectified_hvae":
        grid = np.asarray(rh.layer_variation_images(model.cfg, params, model_state, k2, columns))
        L = grid.shape[0]
        p = os.path.join(workdir, "figures", "layer_variation.png")
        save_png(p, make_grid(np.clip(grid.reshape((L * columns, 28, 28)), 0.0, 1.0), ncols=columns))
        paths.append(p)
    return paths


def run(cfg: ExperimentConfig, workdir: str) -> dict:
    """Train (resuming from ``workdir``), evaluate, write ``results.json``; return the results."""
    cfg = resolve(cfg)
    os.makedirs(workdir, exist_ok=True)
    model = _Model(cfg)
    train_arrays, transform, x_test = load_data(cfg.data)
    key = jax.random.key(cfg.train.seed)
    k_init, k_run, k_eval = jax.random.split(key, 3)
    params, model_state = model.init(k_init)
    optimizer = make_optimizer(cfg.optimizer)
    state = create_train_state(k_run, params, model_state, optimizer)
    train_iter = BatchIterator(train_arrays, cfg.train.batch_size, seed=cfg.train.seed, transform=transform)
    train_step = make_train_step(model.loss_fn(), optimizer)
    eval_step = make_eval_step(model.eval_fn())

    def image_fn(st, k):
        return {"samples": model.samples(st.params, st.model_state, k, 64)}

    t0 = time.time()
    state, history = fit(
        state=state,
        train_step=train_step,
        train_iter=train_iter,
        num_steps=cfg.train.num_steps,
        workdir=workdir,
        config=_as_dict(cfg),
        eval_step=eval_step,
        eval_data={"x": x_test},
        eval_every=cfg.train.eval_every,
        log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every,
        image_fn=image_fn,
        eval_batch_size=cfg.train.eval_batch_size,
        keep_checkpoints=cfg.train.keep_checkpoints,
        progress=cfg.train.progress,
        sync_every=cfg.train.sync_every,
        time_limit_s=cfg.train.time_limit_s,
    )
    train_s = time.time() - t0
    if history.get("preempted"):
        # SIGTERM: fit saved a checkpoint; exit like the other experiments (143), resumable.
        print("preempted: checkpoint saved; re-run the same command to resume.", flush=True)
        raise SystemExit(143)
    results: dict[str, Any] = {
        "model_kind": cfg.model_kind,
        "epochs": cfg.epochs,
        "num_steps": cfg.train.num_steps,
        "skipped_steps": int(jax.device_get(state.skipped)),
        "seed": cfg.train.seed,
        "binarization": cfg.data.binarization,
        "last_invocation_steps": history["end_step"] - history["start_step"],
        "steps_done": int(jax.device_get(state.step)),
        "time_limited": bool(history.get("time_limited")),
        "test_elbo_examples": int(x_test.shape[0]),
        "test": history["eval"][-1] if history["eval"] else None,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_description(),
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }
    if results["last_invocation_steps"] > 0:  # kept as they are by a later re-evaluation
        results["train_wall_s_this_invocation"] = train_s
        results["steps_this_invocation"] = results["last_invocation_steps"]
    if results["test"] is not None:
        print(f"test ELBO ({x_test.shape[0]} examples): {results['test'].get('elbo'):.3f}", flush=True)

    params, model_state = state.params, state.model_state
    if cfg.model_kind == "rectified_hvae":
        t = time.time()
        results["layers"] = layer_statistics(
            model.cfg,
            params,
            model_state,
            x_test[: cfg.eval.au_examples],
            jax.random.fold_in(k_eval, 1),
            num_samples=cfg.eval.au_samples,
            threshold=cfg.eval.au_threshold,
        )
        results["layers_wall_s"] = time.time() - t
        for r in results["layers"]:
            print(
                f"layer {r['layer']}: {r['active_units']}/{r['units']} active, sparsity {r['sparsity']:.3f}", flush=True
            )
    results["figures"] = write_figures(
        model, params, model_state, jax.random.fold_in(k_eval, 2), workdir, cfg.eval.figure_columns
    )
    if cfg.eval.iw_samples > 0:
        n = min(cfg.eval.iw_examples, x_test.shape[0])
        t = time.time()
        ll = iw_log_likelihood(
            model.log_weight_fn(params, model_state),
            x_test[:n],
            jax.random.fold_in(k_eval, 3),
            num_samples=cfg.eval.iw_samples,
            sample_chunk=min(cfg.eval.iw_sample_chunk, cfg.eval.iw_samples),
        )
        np.save(os.path.join(workdir, "iw_log_likelihood.npy"), np.asarray(ll))  # per example, for paired comparisons
        mean, se = mean_and_stderr(ll)
        results["iw_nll"] = {
            "k": cfg.eval.iw_samples,
            "examples": n,
            "nll": -mean,
            "stderr": se,
            "wall_s": time.time() - t,
        }
        # The ELBO on the same subset, for a like-for-like gap.
        ev = make_eval_fn_on_subset(model, params, model_state, x_test[:n], jax.random.fold_in(k_eval, 4))
        results["iw_nll"]["elbo_same_examples"] = ev
        print(f"IW-NLL (k={cfg.eval.iw_samples}, first {n} test examples): {-mean:.3f} +- {se:.3f}", flush=True)
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
        # A re-evaluation (e.g. with eval.iw_samples=0) keeps the entries it does not recompute.
        with open(path, encoding="utf-8") as f:
            merged = json.load(f)
        merged.update(results)
        results = merged
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=float)
    return results


def make_eval_fn_on_subset(model: _Model, params, model_state, x, key, batch_size: int = 500) -> float:
    """Mean single-sample ELBO over ``x`` (eval mode)."""
    fn = jax.jit(model.eval_fn())
    vals = []
    for i, start in enumerate(range(0, x.shape[0], batch_size)):
        vals.append(
            np.asarray(
                fn(params, model_state, {"x": jnp.asarray(x[start : start + batch_size])}, jax.random.fold_in(key, i))[
                    "elbo"
                ]
            )
        )
    return float(np.mean(np.concatenate(vals)))


def main(argv=None) -> dict:
    from experiments import _cli

    cfg, workdir = _cli.parse(argv if argv is not None else sys.argv[1:])
    return run(cfg, workdir)


if __name__ == "__main__":
    main()

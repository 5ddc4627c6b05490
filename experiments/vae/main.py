"""Train and evaluate the baseline VAE on MNIST.

    python -m experiments.vae.main --config experiments/vae/configs/default.py --workdir runs/vae \\
        [--set train.num_steps=100 ...]

Trains with :func:`jaxvae.train.loop.fit` (resumes when ``--workdir`` holds a checkpoint; SIGTERM
saves and exits with status 143, re-run the same command to continue), then evaluates on the test
set: the single-sample ELBO over every test example and, if ``eval.iw_samples > 0``, the
importance-weighted log-likelihood (Burda et al. 2016, Eq. 8) on ``eval.iw_examples`` examples.
Leaves in DIR: ``config.json``, ``metrics.jsonl``, TensorBoard events, ``images/*.png``,
``checkpoints/``, ``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np

from experiments._cli import machine_description
from experiments.vae.configs import ExperimentConfig
from jaxvae.data.loader import BatchIterator
from jaxvae.data.mnist import binarize_static, load_mnist, to_unit_float
from jaxvae.data.transforms import dynamic_binarize
from jaxvae.metrics.iw_nll import iw_log_likelihood, mean_and_stderr
from jaxvae.models import vae
from jaxvae.train.loop import check_finite_batch, fit
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped by the scheduler, resumable"


def config_dict(cfg: ExperimentConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def load_data(cfg: ExperimentConfig) -> tuple[dict, dict]:
    """Train arrays (grey levels for dynamic binarization, 0/1 for static) and the binarized test set.

    Returns:
      ``({"x": [N, *x_shape]}, {"x": [M, *x_shape]})`` float32.
    """
    m = load_mnist()
    x_train = to_unit_float(m.x_train)[: cfg.data.train_examples]
    x_test = binarize_static(to_unit_float(m.x_test), seed=cfg.data.static_seed)[: cfg.data.test_examples]
    if cfg.data.binarization == "static":
        # a seed distinct from the test set's, so train and test draws are independent
        x_train = binarize_static(x_train, seed=cfg.data.static_seed + 1)
    shape = tuple(cfg.model.x_shape)
    train = {"x": x_train.reshape((-1,) + shape)}
    test = {"x": x_test.reshape((-1,) + shape)}
    check_finite_batch(train, where="train data")
    check_finite_batch(test, where="test data")
    return train, test


def _image_fn(cfg: ExperimentConfig, x_fixed: np.ndarray):
    n = cfg.eval.num_images

    def image_fn(state, key):
        samples = vae.sample_images(cfg.model, state.params, key, n)
        recon = np.asarray(vae.reconstruct(cfg.model, state.params, x_fixed))
        orig = x_fixed.reshape(recon.shape)
        pairs = np.stack([orig, recon], axis=1).reshape((-1,) + recon.shape[1:])  # original, recon, ...
        return {"samples": samples, "reconstructions": pairs}

    return image_fn


def run(cfg: ExperimentConfig, workdir: str) -> dict[str, Any]:
    """Train (or resume) and evaluate; returns the results dict also written to ``results.json``."""
    t_start = time.time()
    os.makedirs(workdir, exist_ok=True)
    train_data, test_data = load_data(cfg)
    n_test = len(test_data["x"])

    k_init, k_run, k_iw = jax.random.split(jax.random.key(cfg.train.seed), 3)
    params, model_state = vae.init(cfg.model, k_init)
    optimizer = make_optimizer(cfg.optim)
    state = create_train_state(k_run, params, model_state, optimizer)
    transform = dynamic_binarize(("x",)) if cfg.data.binarization == "dynamic" else None
    train_iter = BatchIterator(train_data, cfg.train.batch_size, seed=cfg.train.seed, transform=transform)
    n_pairs = max(1, min(cfg.eval.num_images // 2, n_test))

    state, history = fit(
        state=state,
        train_step=make_train_step(vae.make_loss_fn(cfg.model), optimizer),
        train_iter=train_iter,
        num_steps=cfg.train.num_steps,
        workdir=workdir,
        config=config_dict(cfg),
        eval_step=make_eval_step(vae.make_eval_fn(cfg.model)),
        eval_data=test_data,
        eval_every=cfg.train.eval_every,
        log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every,
        image_fn=_image_fn(cfg, test_data["x"][:n_pairs]),
        eval_batch_size=min(cfg.train.eval_batch_size, n_test),
        keep_checkpoints=cfg.train.keep_checkpoints,
        progress=cfg.train.progress,
        sync_every=cfg.train.sync_every,
        time_limit_s=cfg.train.time_limit_s,
    )
    step = int(jax.device_get(state.step))
    if history["preempted"]:
        return {"preempted": True, "step": step}

    final = history["eval"][-1]
    results: dict[str, Any] = {
        "step": step,
        "skipped_steps": int(jax.device_get(state.skipped)),
        "seed": cfg.train.seed,
        "binarization": cfg.data.binarization,
        "test_examples": int(final["num_examples"]),
        "test_elbo": float(final["elbo"]),
        "test_log_px_z": float(final["log_px_z"]),
        "test_kl": float(final["kl"]),
        "steps_this_invocation": history["end_step"] - history["start_step"],
        "num_steps": cfg.train.num_steps,
        "time_limited": bool(history["time_limited"]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_description(),
        "jax_version": jax.__version__,
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    }
    print(f"test ELBO ({results['test_examples']} examples, step {step}): {results['test_elbo']:.3f} nats", flush=True)

    results_path = os.path.join(workdir, "results.json")
    iw_key = {"step": step, "iw_samples": cfg.eval.iw_samples, "iw_examples": cfg.eval.iw_examples}
    previous = None
    if os.path.exists(results_path):
        with open(results_path) as f:
            previous = json.load(f)
    if cfg.eval.iw_samples > 0:
        if previous is not None and all(previous.get(k) == v for k, v in iw_key.items()) and "test_iw_nll" in previous:
            # same checkpoint, same settings: the estimate is deterministic, do not recompute it
            for k in ("test_iw_nll", "test_iw_nll_stderr", "iw_examples_used", "iw_seconds"):
                results[k] = previous[k]
        else:
            x_iw = test_data["x"][: cfg.eval.iw_examples]
            t0 = time.time()
            log_fn = vae.make_log_weight_fn(cfg.model, state.params, state.model_state)
            ll = iw_log_likelihood(
                log_fn,
                x_iw,
                k_iw,
                num_samples=cfg.eval.iw_samples,
                sample_chunk=min(cfg.eval.iw_sample_chunk, cfg.eval.iw_samples),
                batch_size=min(cfg.eval.iw_batch_size, len(x_iw)),
            )
            nll, se = mean_and_stderr(-np.asarray(ll))
            results.update(
                test_iw_nll=nll, test_iw_nll_stderr=se, iw_examples_used=int(len(x_iw)), iw_seconds=time.time() - t0
            )
        results.update(iw_samples=cfg.eval.iw_samples, iw_examples=cfg.eval.iw_examples)
        print(
            f"test NLL (IW, K={cfg.eval.iw_samples}, {results['iw_examples_used']} examples): "
            f"{results['test_iw_nll']:.3f} +- {results['test_iw_nll_stderr']:.3f} nats",
            flush=True,
        )
    results["wall_seconds_this_invocation"] = time.time() - t_start
    tmp = results_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    os.replace(tmp, results_path)
    return results


def main(argv=None) -> dict[str, Any]:
    from experiments import _cli

    cfg, workdir = _cli.parse(argv if argv is not None else sys.argv[1:], description=__doc__.split("\n")[0])
    try:
        results = run(cfg, workdir)
    except ValueError as e:  # bad data, a different model in the workdir, ...: say it plainly
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if results.get("preempted"):
        print(
            f"preempted at step {results['step']}; checkpoint saved. Re-run the same command to resume.",
            file=sys.stderr,
        )
        raise SystemExit(PREEMPTED_EXIT_CODE)
    return results


if __name__ == "__main__":
    main()

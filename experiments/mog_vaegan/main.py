"""Train and evaluate Rivera's VAE(-GAN) for one or several seeds, one compiled step shared by the seeds.

    python -m experiments.mog_vaegan.main --config experiments/mog_vaegan/configs/vaegan.py \\
        --workdir runs/mog_vaegan/c_vaegan [--set train.num_steps=100 --set seeds=0,1,2 ...]

Each seed trains in ``<workdir>/seed_<s>`` with :func:`jaxvae.train.loop.fit` (checkpoints there;
re-running the same command resumes; SIGTERM saves and exits 143), sharing one compiled train step
(the seeds run one after the other: on the 2-core CPU a vmapped conv program measured ~10x slower per
member than one member alone). After training, on the test images: MAE and PSNR of the
reconstructions (decoder at the posterior mean), MNIST-FID of prior samples against the test images
(MNIST stand-in only), active units, mean posterior variance, and the aggregate posterior's KL to
N(0, I) (Monte Carlo, unbiased for the mixture of the encoded test images; and the moment-matched
lower bound). Writes ``seed_<s>/results.json`` per seed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import jax

from experiments._common import read_results, run_main, write_results
from experiments.mog_vaegan.configs import ExperimentConfig
from experiments.mog_vaegan.data import load_data
from experiments.mog_vaegan.evaluate import evaluate_fid, evaluate_posterior, image_fn
from jaxvae.models import mog_vaegan
from jaxvae.train.adversarial import create_adversarial_state, make_adversarial_step
from jaxvae.train.loop import fit
from jaxvae.train.steps import StepFunction, create_train_state, make_eval_step, make_train_step


def build_train_step(cfg: ExperimentConfig, **kw) -> StepFunction:
    """The config's train step: the two-player step (``cfg.mode``) with the adversary, else the plain one."""
    model = cfg.model
    tx = mog_vaegan.make_optimizers(model)
    if model.adversarial:
        return make_adversarial_step(mog_vaegan.make_adversarial_loss_fn(model), tx, mode=cfg.mode, **kw)
    return make_train_step(mog_vaegan.make_loss_fn(model), tx["vae"], **kw)


def create_state(model: mog_vaegan.Config, seed: int):
    """A fresh state: parameters from ``fold_in(key(seed), 0)``, run key ``fold_in(key(seed), 1)``."""
    base = jax.random.key(seed)
    params, ms = mog_vaegan.init(model, jax.random.fold_in(base, 0))
    tx = mog_vaegan.make_optimizers(model)
    if model.adversarial:
        return create_adversarial_state(jax.random.fold_in(base, 1), params, ms, tx)
    return create_train_state(jax.random.fold_in(base, 1), params, ms, tx["vae"])


def make_benchmark_step(model: mog_vaegan.Config, batch_size: int, *, seed: int = 0):
    """``(step, state, batch)``: the full train step of ``model`` (G + D when adversarial, simultaneous)
    at ``batch_size`` on a random batch in [-1, 1], for the throughput benchmark."""
    cfg = ExperimentConfig(model=model)
    return build_train_step(cfg), create_state(model, seed), mog_vaegan.random_batch(model, batch_size, seed=seed)


def run_seed(cfg: ExperimentConfig, workdir: str, seed: int, step: StepFunction, make_iter, test, eval_step):
    """Train (or resume) one seed in ``workdir`` and evaluate it; returns its results."""
    os.makedirs(workdir, exist_ok=True)
    train = dataclasses.replace(cfg.train, seed=seed)
    state = create_state(cfg.model, seed)
    n_pairs = max(1, min(cfg.num_images // 2, len(test["x"])))
    t0 = time.time()
    state, history = fit(
        state,
        step,
        make_iter(seed),
        train,
        workdir=workdir,
        config={"name": cfg.name, "model": cfg.model, "data": cfg.data, "train": train, "mode": cfg.mode},
        eval_step=eval_step,
        eval_data=test,
        image_fn=image_fn(cfg, test["x"][:n_pairs]),
    )
    train_seconds = time.time() - t0
    done = int(jax.device_get(state.step))
    if history["preempted"]:
        return {"preempted": True, "step": done, "signal": history.get("signal")}
    final = history["eval"][-1]
    path = os.path.join(workdir, "results.json")
    previous = read_results(path)
    if previous is not None and previous.get("step") == done and "mnist_fid" in previous:
        return previous  # same checkpoint: the evaluation is deterministic
    k_post, k_fid = jax.random.split(jax.random.fold_in(jax.random.key(seed), 2))
    t1 = time.time()
    results: dict[str, Any] = {
        "name": cfg.name,
        "seed": seed,
        "step": done,
        "num_steps": train.num_steps,
        "skipped_steps": int(jax.device_get(state.skipped)),
        "time_limited": bool(history["time_limited"]),
        "train_seconds_this_invocation": train_seconds,
        "test_examples": int(final["num_examples"]),
        "test_mae": float(final["mae"]),
        "test_psnr": float(final["psnr"]),
        "test_per_sample_kl": float(final["per_sample_kl"]),
        "data": "MNIST padded to 32x32 in [-1, 1] (stand-in for CelebA-HQ)"
        if cfg.data.source == "mnist32"
        else cfg.data.source,
    }
    if hasattr(state.opt_state, "skipped"):
        results["skipped_per_player"] = {k: int(v) for k, v in jax.device_get(state.opt_state.skipped).items()}
    n_post = min(cfg.eval.posterior_examples, len(test["x"]))
    results.update(evaluate_posterior(cfg, state, test["x"][:n_post], k_post))
    if cfg.data.source == "mnist32" and cfg.eval.fid_samples > 0:
        results.update(evaluate_fid(cfg, state, test["x"], k_fid))
    results["eval_seconds"] = time.time() - t1
    print(
        f"[{cfg.name} seed {seed}] step {done}: test MAE {results['test_mae']:.4f}, "
        f"PSNR {results['test_psnr']:.2f} dB, "
        f"MNIST-FID {results.get('mnist_fid', float('nan')):.2f}, active units {results['active_units']}, "
        f"mean posterior variance {results['mean_posterior_variance']:.4f}",
        flush=True,
    )
    return write_results(path, results, seeds=[seed])


def run(cfg: ExperimentConfig, workdir: str) -> dict[str, Any]:
    """Every seed of ``cfg.seeds`` in turn (one compiled step), then ``<workdir>/results.json`` listing them."""
    make_iter, test = load_data(cfg)
    step = build_train_step(cfg)
    eval_step = make_eval_step(mog_vaegan.make_eval_fn(cfg.model))
    per_seed = []
    for seed in cfg.seeds:
        r = run_seed(cfg, os.path.join(workdir, f"seed_{seed}"), seed, step, make_iter, test, eval_step)
        if r.get("preempted"):
            return r
        per_seed.append(r)
    return write_results(os.path.join(workdir, "results.json"), {"name": cfg.name, "runs": per_seed}, seeds=cfg.seeds)


def main(argv=None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(run, argv, experiment="mog_vaegan", expected=ExperimentConfig, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()

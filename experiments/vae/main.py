"""Train and evaluate the baseline VAE on binarized MNIST.

    python -m experiments.vae.main --config experiments/vae/configs/default.py --workdir runs/vae \\
        [--set train.num_steps=100 ...]

Trains with :func:`jaxvae.train.loop.fit` (resumes when ``--workdir`` holds a checkpoint; SIGTERM
saves and exits with status 143, re-run the same command to continue), then evaluates on the test
set: the single-sample ELBO over every test example and, if ``iw.samples > 0``, the
importance-weighted NLL (Burda et al. 2016, Eq. 8) on ``iw.examples`` examples. Leaves in the work
dir: ``config.json``, ``metrics.jsonl``, TensorBoard events, ``images/*.png``, ``checkpoints/``,
``results.json`` (with its provenance).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
import numpy as np

from experiments._common import config_to_dict, iw_nll, load_binarized_mnist, read_results, run_main, write_results
from experiments.vae.configs import ExperimentConfig
from jaxvae.data.loader import BatchIterator
from jaxvae.models import vae
from jaxvae.train.loop import fit
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step


def image_fn(cfg: ExperimentConfig, x_fixed: np.ndarray):
    """Samples of the prior and (test image, reconstruction) pairs, for the PNG grids."""

    def images(state, key):
        samples = vae.sample_images(cfg.model, state.params, key, cfg.num_images)
        recon = np.asarray(vae.reconstruct(cfg.model, state.params, x_fixed))
        pairs = np.stack([x_fixed.reshape(recon.shape), recon], axis=1).reshape((-1,) + recon.shape[1:])
        return {"samples": samples, "reconstructions": pairs}

    return images


def run(cfg: ExperimentConfig, workdir: str) -> dict[str, Any]:
    """Train (or resume) and evaluate; returns the results also written to ``results.json``."""
    train_data, test_data, transform = load_binarized_mnist(cfg.data, cfg.model.x_shape)
    k_init, k_run, k_iw = jax.random.split(jax.random.key(cfg.train.seed), 3)
    optimizer = make_optimizer(cfg.optim)
    state = create_train_state(k_run, *vae.init(cfg.model, k_init), optimizer)
    n_pairs = max(1, min(cfg.num_images // 2, len(test_data["x"])))
    state, history = fit(
        state,
        make_train_step(vae.make_loss_fn(cfg.model), optimizer),
        BatchIterator(train_data, cfg.train.batch_size, seed=cfg.train.seed, transform=transform),
        cfg.train,
        workdir=workdir,
        config={"model": cfg.model, "optim": cfg.optim, "data": cfg.data, "train": cfg.train},
        eval_step=make_eval_step(vae.make_eval_fn(cfg.model)),
        eval_data=test_data,
        image_fn=image_fn(cfg, test_data["x"][:n_pairs]),
    )
    step = int(jax.device_get(state.step))
    if history["preempted"]:
        return {"preempted": True, "step": step, "signal": history.get("signal")}
    final = history["eval"][-1]
    results: dict[str, Any] = {
        "step": step,
        "num_steps": cfg.train.num_steps,
        "skipped_steps": int(jax.device_get(state.skipped)),
        "time_limited": bool(history["time_limited"]),
        "steps_this_invocation": history["end_step"] - history["start_step"],
        "test_examples": int(final["num_examples"]),
        "test_elbo": float(final["elbo"]),
        "test_log_px_z": float(final["log_px_z"]),
        "test_kl": float(final["kl"]),
    }
    print(f"test ELBO ({results['test_examples']} examples, step {step}): {results['test_elbo']:.3f} nats", flush=True)
    path = os.path.join(workdir, "results.json")
    previous = read_results(path)
    if cfg.iw.samples > 0:
        same = previous is not None and previous.get("step") == step and previous.get("iw") == config_to_dict(cfg.iw)
        if same and "iw_nll" in previous:  # same checkpoint and settings: the estimate is deterministic
            results.update({k: previous[k] for k in ("iw_nll", "iw_nll_stderr", "iw_examples", "iw_seconds")})
        else:
            log_w = vae.make_log_weight_fn(cfg.model, state.params, state.model_state)
            est = iw_nll(cfg.iw, log_w, test_data["x"], k_iw)
            est.pop("per_example_log_likelihood")
            results.update(est)
        results["iw"] = cfg.iw
        print(
            f"test NLL (IW, K={cfg.iw.samples}, {results['iw_examples']} examples): "
            f"{results['iw_nll']:.3f} +- {results['iw_nll_stderr']:.3f} nats",
            flush=True,
        )
    return write_results(path, results, seeds=[cfg.train.seed])


def main(argv=None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(run, argv, experiment="vae", expected=ExperimentConfig, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()

"""Train the EDM diffusion model on the VAE's training subset, sample the synthetic pool, measure its MNIST-FID.

    python -m experiments.synthetic_generalization.diffusion_main \\
        --config experiments/synthetic_generalization/configs/diffusion.py --workdir runs/xiao-dm

Three resumable stages in one work dir: (1) :func:`jaxvae.train.loop.fit` trains
:mod:`jaxvae.models.edm` on the first ``data.train_examples`` grey MNIST training images padded to
32x32 (checkpoints, logs, sample grids); SIGTERM saves and exits 143, re-running resumes. (2) The
18-step Heun sampler writes ``pool.num_blocks x data.train_examples`` images to ``<workdir>/pool``
in chunks (:func:`jaxvae.data.synthetic.write_pool`; a killed run continues at the first missing
chunk). (3) MNIST-FID of the first ``pool.fid_examples`` pool images (greys) against as many grey
test images, and of the training subset against the same test images (the reference level of
real data). ``results.json`` holds the numbers and provenance.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import jax
import numpy as np

from experiments._common import run_main, write_results
from experiments.synthetic_generalization.configs import DiffusionExperimentConfig
from experiments.synthetic_generalization.data import grey_images
from jaxvae.data.loader import BatchIterator
from jaxvae.data.synthetic import write_pool
from jaxvae.metrics.mnist_features import load_mnist_feature_net, mnist_fid
from jaxvae.models import edm
from jaxvae.train.loop import fit
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step


def pool_meta(cfg: DiffusionExperimentConfig, step: int) -> dict[str, Any]:
    """What defines the pool's images (stored in its manifest; a resumed pool must match it)."""
    m = cfg.model
    return {
        "sampler": "edm_heun",
        "num_steps": m.num_steps,
        "sigma_min": m.sigma_min,
        "sigma_max": m.sigma_max,
        "rho": m.rho,
        "seed": cfg.pool.seed,
        "diffusion_step": step,
        "train_examples": cfg.data.train_examples,
    }


def run(cfg: DiffusionExperimentConfig, workdir: str) -> dict[str, Any]:
    x_train = grey_images(cfg.data, "train")
    x_test = grey_images(cfg.data, "test")
    k_init, k_run = jax.random.split(jax.random.key(cfg.train.seed))
    optimizer = make_optimizer(cfg.optim)
    state = create_train_state(k_run, *edm.init(cfg.model, k_init), optimizer)
    print(f"EDM U-Net: {edm.num_params(state.params):,} parameters", flush=True)

    def images(st, key):
        return {"samples": np.asarray(edm.sample_images(cfg.model, st.params, key, np.arange(36)))[..., 0]}

    t0 = time.time()
    state, history = fit(
        state,
        make_train_step(edm.make_loss_fn(cfg.model), optimizer),
        BatchIterator({"x": x_train}, cfg.train.batch_size, seed=cfg.train.seed),
        cfg.train,
        workdir=workdir,
        config={"model": cfg.model, "optim": cfg.optim, "data": cfg.data, "train": cfg.train},
        eval_step=make_eval_step(edm.make_eval_fn(cfg.model)),
        eval_data={"x": x_test[:500]},
        image_fn=images,
    )
    step = int(jax.device_get(state.step))
    if history["preempted"]:
        return {"preempted": True, "step": step, "signal": history.get("signal")}
    train_seconds = time.time() - t0

    params = jax.device_get(state.params)
    key = jax.random.key(cfg.pool.seed)
    num = cfg.pool.num_blocks * cfg.data.train_examples

    def sampler(indices):
        return np.asarray(edm.sample_images(cfg.model, params, key, indices))[..., 0]

    t0 = time.time()
    pool = write_pool(
        os.path.join(workdir, "pool"),
        sampler,
        num_samples=num,
        chunk_size=cfg.pool.chunk_size,
        image_shape=(32, 32),
        meta=pool_meta(cfg, step),
        on_chunk=lambda c, n: print(f"pool chunk {c + 1}/{n} ({time.time() - t0:.0f} s)", flush=True),
    )
    sample_seconds = time.time() - t0
    n_fid = min(cfg.pool.fid_examples, num, len(x_test))
    fake = pool.read(0, n_fid).astype(np.float32) / 255.0
    feat = load_mnist_feature_net()
    real = x_test[:n_fid, 2:30, 2:30, 0]  # the feature net is trained on 28x28 digits: crop the padding
    results = {
        "step": step,
        "diffusion_params": edm.num_params(params),
        "final_eval": history["eval"][-1] if history["eval"] else None,
        "train_seconds_this_invocation": train_seconds,
        "pool_images": num,
        "pool_seconds_this_invocation": sample_seconds,
        "fid_examples": n_fid,
        "mnist_fid_pool_vs_test": mnist_fid(fake[:, 2:30, 2:30], real, model=feat),
        "mnist_fid_train_vs_test": mnist_fid(x_train[:n_fid, 2:30, 2:30, 0], real, model=feat),
        "feature_net_sha256": feat.sha256,
    }
    print({k: v for k, v in results.items() if k != "final_eval"}, flush=True)
    return write_results(os.path.join(workdir, "results.json"), results, seeds=[cfg.train.seed, cfg.pool.seed])


def main(argv=None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(
        run,
        argv,
        experiment="synthetic_generalization_diffusion",
        expected=DiffusionExperimentConfig,
        description=__doc__.split("\n")[0],
    )


if __name__ == "__main__":
    main()

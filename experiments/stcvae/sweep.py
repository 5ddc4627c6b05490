"""Train and evaluate the (β, s, seed) grid of β-STCVAE models on dSprites (rendered here).

    python -m experiments.stcvae.sweep --config experiments/stcvae/configs/cpu.py --workdir runs/stcvae-sweep \\
        [--set sweep.group_sizes=1,2 ...]

One compiled program per group size ``s`` (a shape): its members are every (β, seed) pair, trained together
by :func:`jaxvae.train.multi.make_multi_train_step` under ``jax.vmap`` (β is a per-member batch entry,
``batch_axes={"beta": 0}``; every member sees the same batches, drawn by ``train.seed``; member
``(β, seed)`` is initialised from ``seed``, so a seed starts from the same weights for every β and s). The
training set lives on the device as one uint8 table and the step gathers its rows by index. Then every
member is evaluated (:mod:`experiments.stcvae.evaluate`). Leaves in the work dir: ``s<k>/`` (the
:func:`~jaxvae.train.loop.fit` run of each program, resumable), ``sweep_s<k>.json`` per group size,
``traversals_s<k>.npz`` and ``sweep.json`` (all cells, with provenance).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments._common import read_results, run_main, write_results
from experiments.stcvae.configs import ExperimentConfig
from experiments.stcvae.data import SweepData, load
from experiments.stcvae.evaluate import make_evaluator
from jaxvae.data.dsprites import DSPRITES_RENDERED_NAME
from jaxvae.data.loader import BatchIterator
from jaxvae.metrics.traversals import latent_traversal
from jaxvae.models import stcvae
from jaxvae.train.loop import fit
from jaxvae.train.multi import make_multi_train_step, member_state, stack_states
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state

TRAVERSAL_RANGE = 2.5  # offsets in units of the posterior standard deviation of the reference image


def _gather(batch, tables):
    return {"x": tables["x"][batch["idx"]].astype(jnp.float32), "beta": batch["beta"]}


def model_config(cfg: ExperimentConfig, data: SweepData, group_size: int) -> stcvae.Config:
    """The model of group size ``s``; its MWS ``dataset_size`` is the training split's size."""
    return dataclasses.replace(cfg.model, group_size=int(group_size), dataset_size=len(data.train))


def run_group(cfg: ExperimentConfig, data: SweepData, group_size: int, workdir: str) -> dict[str, Any]:
    """Train the (β, seed) members of one group size in one program and evaluate each."""
    model_cfg = model_config(cfg, data, group_size)
    members = [(b, s) for b in cfg.sweep.betas for s in cfg.sweep.seeds]
    betas = np.asarray([b for b, _ in members], np.float32)
    tx = make_optimizer(cfg.optim)
    states = [
        create_train_state(jax.random.fold_in(jax.random.key(seed), 1), *stcvae.init(model_cfg, seed), tx)
        for _, seed in members
    ]
    step = make_multi_train_step(
        stcvae.make_loss_fn(model_cfg),
        tx,
        batch_axes={"idx": None, "x": None, "beta": 0},
        tables={"x": jnp.asarray(data.images)},
        gather=_gather,
    )
    batches = BatchIterator(
        {"idx": data.train}, cfg.train.batch_size, seed=cfg.train.seed, transform=lambda b, rng: {**b, "beta": betas}
    )
    one_group = dataclasses.replace(cfg.sweep, group_sizes=(int(group_size),))  # other groups do not change this run
    t0 = time.time()
    state, history = fit(
        stack_states(states),
        step,
        batches,
        cfg.train,
        workdir=workdir,
        config={"model": model_cfg, "optim": cfg.optim, "data": cfg.data, "sweep": one_group, "train": cfg.train},
    )
    train_s = time.time() - t0
    if history["preempted"]:
        return {"preempted": True, "step": int(jax.device_get(state.step)), "signal": history.get("signal")}
    evaluate = make_evaluator(cfg, model_cfg, data)
    decode = jax.jit(lambda p, z: stcvae.make_decode_fn(model_cfg, p)(z))
    ref = int(data.train[len(data.train) // 2])
    cells, traversals = [], []
    t1 = time.time()
    for i, (beta, seed) in enumerate(members):
        params = member_state(state, i).params
        out, loc = evaluate(params, beta, seed)
        cells.append({"beta": beta, "group_size": int(group_size), "seed": seed, **out})
        if cfg.eval.traversal_steps:
            post = stcvae.make_posterior_fn(model_cfg, params)(data.images[ref : ref + 1].astype(np.float32))
            offsets = jnp.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, cfg.eval.traversal_steps)
            z = latent_traversal(post[0][0], np.arange(model_cfg.latent_dim), offsets, scale=jnp.std(loc, axis=0))
            traversals.append(np.asarray(decode(params, z))[..., 0])
        print(
            f"s={group_size} beta={beta:g} seed={seed}: test ELBO {out['test']['elbo']:.2f}, MIG {out['mig']:.3f}, "
            f"group MIG {out['group_mig']:.3f}, SAP {out['sap']:.3f}, FactorVAE {out['factor_vae']:.3f}",
            flush=True,
        )
    if traversals:
        np.savez_compressed(
            os.path.join(os.path.dirname(workdir), f"traversals_s{group_size}.npz"),
            traversals=(np.stack(traversals) * 255).astype(np.uint8),
            reference=data.images[ref, ..., 0],
            betas=betas,
            seeds=np.asarray([s for _, s in members]),
        )
    return {
        "group_size": int(group_size),
        "num_members": len(members),
        "steps": int(jax.device_get(state.step)),
        "skipped_steps": [int(k) for k in np.asarray(jax.device_get(state.skipped))],
        "train_seconds": train_s,
        "eval_seconds": time.time() - t1,
        "cells": cells,
    }


def run(cfg: ExperimentConfig, workdir: str) -> dict[str, Any]:
    """Every group size of ``cfg.sweep`` (skipping those whose results are already in ``workdir``)."""
    data = load(cfg.data)
    groups = []
    for s in cfg.sweep.group_sizes:
        path = os.path.join(workdir, f"sweep_s{s}.json")
        previous = read_results(path)
        if previous is not None and previous.get("steps") == cfg.train.num_steps:
            groups.append(previous)
            continue
        res = run_group(cfg, data, s, os.path.join(workdir, f"s{s}"))
        if res.get("preempted"):
            return res
        groups.append(write_results(path, res, seeds=cfg.sweep.seeds))
    results = {
        "dataset": DSPRITES_RENDERED_NAME,
        "sub_grid_factor_sizes": list(data.factor_sizes),
        "train_images": len(data.train),
        "test_images": len(data.test),
        "image_shape": list(cfg.data.image_shape),
        "config": cfg,
        "examples_per_model": cfg.train.num_steps * cfg.train.batch_size,
        "groups": [{k: v for k, v in g.items() if k != "cells"} for g in groups],
        "cells": [c for g in groups for c in g["cells"]],
    }
    return write_results(os.path.join(workdir, "sweep.json"), results, seeds=cfg.sweep.seeds)


def main(argv=None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(run, argv, experiment="stcvae", expected=ExperimentConfig, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()

"""Experiment (b): one width point ``(m_z, n_c)`` of the residual conv VAE, Normal or DMaaPx, its G_g and test ELBO.

    python -m experiments.synthetic_generalization.width_main \\
        --config experiments/synthetic_generalization/configs/width_sweep.py --workdir runs/xiao-width-normal-mz1-nc8 \\
        --set model.m_z=1 --set model.n_c=8 --set method=normal   # dmaapx: --set pool_dir=... first

The seeds train one after the other (a conv net's seeds vmapped into one program were slower on the
project's CPU than in sequence), each in ``<workdir>/seed_<s>`` with its own checkpoints, so the job
resumes per seed and a later run with more ``seeds`` reuses the finished ones. Data as in
:mod:`experiments.synthetic_generalization.main` (:func:`data.member_iterators`); after training,
``G_g = E_train ELBO - E_test ELBO`` (``elbo_samples`` draws, all train / test images; BatchNorm
with its running averages) goes to ``seed_<s>/gaps.json``. ``results.json``: per seed G_g, the
ELBOs and the parameter counts ``|Theta_z|``, ``|Theta_not_z|`` (:func:`jaxvae.models.xiao.parameter_split`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import jax

from experiments._common import read_results, run_main, write_results
from experiments.synthetic_generalization import evaluate
from experiments.synthetic_generalization.configs import WidthSweepConfig
from experiments.synthetic_generalization.data import AddChannel, binary_images, member_iterators
from jaxvae.data.synthetic import SyntheticPool
from jaxvae.models import xiao
from jaxvae.train.loop import fit
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state, make_train_step


def run(cfg: WidthSweepConfig, workdir: str) -> dict[str, Any]:
    x_train = binary_images(cfg.data, "train")
    x_test = binary_images(cfg.data, "test")
    optimizer = make_optimizer(cfg.optim)
    step_fn = make_train_step(xiao.make_loss_fn(cfg.model), optimizer)
    steps = cfg.epochs * (cfg.data.train_examples // cfg.train.batch_size)
    train = dataclasses.replace(cfg.train, num_steps=steps, eval_every=0)
    members = []
    for s in cfg.seeds:
        seed_dir = os.path.join(workdir, f"seed_{s}")
        os.makedirs(seed_dir, exist_ok=True)
        k_init, k_run = jax.random.split(jax.random.key(1000 + s))
        params, model_state = xiao.init(cfg.model, k_init)
        theta_z, theta_rest = xiao.parameter_split(params)
        run_cfg = {"model": cfg.model, "optim": cfg.optim, "data": cfg.data, "method": cfg.method, "seed": s}
        if cfg.method == "dmaapx":
            run_cfg["pool"] = SyntheticPool(cfg.pool_dir).meta
            run_cfg["pool_blocks"] = cfg.pool_blocks
        one = dataclasses.replace(cfg, seeds=(s,))
        iterator = AddChannel(member_iterators(one, x_train)[0], ndim=4)
        state = create_train_state(k_run, params, model_state, optimizer)
        state, history = fit(state, step_fn, iterator, train, workdir=seed_dir, config=run_cfg)
        if history["preempted"]:
            return {"preempted": True, "step": int(jax.device_get(state.step)), "signal": history.get("signal")}
        path = os.path.join(seed_dir, "gaps.json")
        g = read_results(path)
        if g is None or g.get("step") != steps:
            key = jax.random.fold_in(jax.random.key(7), 10_000 + s)
            g = evaluate.conv_generalization(
                key, cfg.model, state.params, state.model_state, x_train, x_test, cfg.elbo_samples
            )
            g = write_results(path, {**g, "step": steps}, seeds=[s])
        print(f"seed {s}: G_g {g['gap']:.2f}+-{g['gap_se']:.2f}  test ELBO {g['test_elbo']:.2f}", flush=True)
        members.append(
            {
                "seed": s,
                "generalization": {
                    k: g[k] for k in ("gap", "gap_se", "train_elbo", "train_se", "test_elbo", "test_se")
                },
            }
        )
    results = {
        "method": cfg.method,
        "m_z": cfg.model.m_z,
        "n_c": cfg.model.n_c,
        "params": theta_z + theta_rest,
        "params_theta_z": theta_z,
        "params_theta_not_z": theta_rest,
        "step": steps,
        "effective_epochs": cfg.epochs,
        "train_examples": cfg.data.train_examples,
        "test_examples": cfg.data.test_examples,
        "elbo_samples": cfg.elbo_samples,
        "members": members,
    }
    return write_results(os.path.join(workdir, "results.json"), results, seeds=list(cfg.seeds))


def main(argv=None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(
        run, argv, experiment="synthetic_generalization", expected=WidthSweepConfig, description=__doc__.split("\n")[0]
    )


if __name__ == "__main__":
    main()

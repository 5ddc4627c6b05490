"""One row of Xiao et al.'s Table 7 (BinaryMNIST): train the FC VAE by one method, several seeds, and measure the gaps.

    python -m experiments.synthetic_generalization.main \\
        --config experiments/synthetic_generalization/configs/table7.py --workdir runs/xiao-normal \\
        --set method=normal            # or dmaapx (with --set pool_dir=runs/xiao-dm/pool), aug_naive, aug_tuned

The seeds are the members of one compiled program (:func:`jaxvae.train.multi.make_multi_train_step`),
each with its own data order (:class:`jaxvae.data.loader.StackedIterator`). Methods (paper Sec. 4):

- ``normal``: repeats of D_train (the first ``data.train_examples`` BinaryMNIST training images, 32x32);
- ``dmaapx``: Algorithm 2: effective epoch ``e`` uses pool block ``e mod k`` of the diffusion model's
  samples (:class:`jaxvae.data.synthetic.SyntheticPoolIterator`, statically binarized like D_train);
- ``aug_naive`` / ``aug_tuned``: D_train through :data:`jaxvae.data.augment.AUG_NAIVE` /
  ``AUG_TUNED`` with probability ``aug_probability`` per op, inside the compiled step.

Training runs in segments of ``eval.curve_every`` effective epochs (``fit`` resumes from the work
dir's checkpoint at each); after each, every member's G_g and test ELBO (``eval.curve_samples``
draws) go to ``curve.json``. At the end: G_g (``eval.elbo_samples`` draws, all train/test images),
G_a (per-datapoint optimisation, its convergence trajectory), G_r (SKL attack, Table 2), per seed,
in ``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import jax
import numpy as np

from experiments._common import read_results, run_main, write_results
from experiments.synthetic_generalization import evaluate
from experiments.synthetic_generalization.configs import GapsExperimentConfig
from experiments.synthetic_generalization.data import AddChannel, binary_images, make_loss_fn, member_iterators
from jaxvae.data.loader import StackedIterator, epoch_batches
from jaxvae.data.synthetic import SyntheticPool
from jaxvae.models import vae
from jaxvae.train.loop import fit
from jaxvae.train.multi import make_multi_train_step, member_state, stack_states
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state


def run(cfg: GapsExperimentConfig, workdir: str) -> dict[str, Any]:
    x_train = binary_images(cfg.data, "train")
    x_test = binary_images(cfg.data, "test")
    optimizer = make_optimizer(cfg.optim)
    states = []
    for s in cfg.seeds:
        k_init, k_run = jax.random.split(jax.random.key(1000 + s))
        states.append(create_train_state(k_run, *vae.init(cfg.model, k_init), optimizer))
    state = stack_states(states)
    step_fn = make_multi_train_step(make_loss_fn(cfg), optimizer, batch_axes=0)
    iterator = AddChannel(StackedIterator(member_iterators(cfg, x_train)))
    steps_per_epoch = cfg.data.train_examples // cfg.train.batch_size
    run_cfg = {"model": cfg.model, "optim": cfg.optim, "data": cfg.data, "method": cfg.method, "seeds": cfg.seeds}
    if cfg.method == "dmaapx":
        run_cfg["pool"] = SyntheticPool(cfg.pool_dir).meta
        run_cfg["pool_blocks"] = cfg.pool_blocks
    if cfg.method.startswith("aug"):
        run_cfg["aug_probability"] = cfg.aug_probability
    curve_data = {
        "x": np.concatenate([x_train, x_test]),
        "is_train": np.concatenate([np.ones(len(x_train)), np.zeros(len(x_test))]).astype(np.float32),
    }
    curve_step = jax.jit(evaluate.curve_eval_fn(cfg))
    key = jax.random.key(7)
    curve_path = os.path.join(workdir, "curve.json")
    curve = json.load(open(curve_path)) if os.path.exists(curve_path) else []
    done = {c["epoch"] for c in curve}
    epochs = list(range(cfg.eval.curve_every, cfg.epochs, cfg.eval.curve_every)) + [cfg.epochs]
    for e in epochs:
        train = dataclasses.replace(cfg.train, num_steps=e * steps_per_epoch, eval_every=0)
        state, history = fit(state, step_fn, iterator, train, workdir=workdir, config=run_cfg)
        if history["preempted"]:
            return {"preempted": True, "step": int(jax.device_get(state.step)), "signal": history.get("signal")}
        if e in done:
            continue
        sums = None
        for i, (batch, mask) in enumerate(epoch_batches(curve_data, 500)):
            out = jax.device_get(curve_step(state.params, state.model_state, batch, jax.random.fold_in(key, i)))
            part = {k: float(np.sum(np.asarray(v)[mask], dtype=np.float64)) for k, v in out.items()}
            sums = part if sums is None else {k: sums[k] + part[k] for k in sums}
        point = {"epoch": e, "step": int(jax.device_get(state.step)), "members": []}
        for i, s in enumerate(cfg.seeds):
            tr = sums[f"train_elbo_{i}"] / len(x_train)
            te = sums[f"test_elbo_{i}"] / len(x_test)
            point["members"].append({"seed": s, "train_elbo": tr, "test_elbo": te, "gap": tr - te})
        curve.append(point)
        with open(curve_path + ".tmp", "w") as fh:
            json.dump(curve, fh, indent=1)
        os.replace(curve_path + ".tmp", curve_path)
        gg = [m["gap"] for m in point["members"]]
        te = [m["test_elbo"] for m in point["members"]]
        print(f"[epoch {e}] G_g {np.mean(gg):.2f} test ELBO {np.mean(te):.2f} (mean of {len(gg)} seeds)", flush=True)

    path = os.path.join(workdir, "results.json")
    previous = read_results(path)
    step = int(jax.device_get(state.step))
    if previous is not None and previous.get("step") == step:
        return previous
    ev = cfg.eval
    key = jax.random.key(7)
    members = []
    for i, s in enumerate(cfg.seeds):
        params = member_state(state, i).params
        k = jax.random.fold_in(key, 10_000 + s)
        g = evaluate.generalization(jax.random.fold_in(k, 0), cfg.model, params, x_train, x_test, ev.elbo_samples)
        a = evaluate.amortization(jax.random.fold_in(k, 1), cfg.model, params, x_test[: ev.amortization_examples], ev)
        r = evaluate.robustness(jax.random.fold_in(k, 2), cfg.model, params, x_test[: ev.robust_examples], ev)
        members.append({"seed": s, "generalization": g, "amortization": a, "robustness": r})
        print(
            f"seed {s}: G_g {g['gap']:.2f}+-{g['gap_se']:.2f}  test ELBO {g['test_elbo']:.2f}  "
            f"G_a {a['gap']:.2f}+-{a['gap_se']:.2f}  G_r {r['gap']:.3f}",
            flush=True,
        )
    results = {
        "method": cfg.method,
        "step": step,
        "effective_epochs": cfg.epochs,
        "train_examples": cfg.data.train_examples,
        "test_examples": cfg.data.test_examples,
        "members": members,
        "curve": curve,
    }
    return write_results(path, results, seeds=list(cfg.seeds))


def main(argv=None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(
        run,
        argv,
        experiment="synthetic_generalization",
        expected=GapsExperimentConfig,
        description=__doc__.split("\n")[0],
    )


if __name__ == "__main__":
    main()

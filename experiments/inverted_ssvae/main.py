"""Gemp et al.'s untapped MNIST experiment (the inverted SSVAE against its M2 baseline), and classic M2.

    python -m experiments.inverted_ssvae.main --config experiments/inverted_ssvae/configs/untapped.py \\
        --workdir runs/inverted_ssvae/untapped [--set run.num_steps=300 ...]

Trains every variant of ``run.variants`` (``'none'``: M2; ``'z_observed'``: untapped, eq. 17) for all
``run.seeds`` in one compiled program (:mod:`jaxvae.train.multi`; seed ``s`` initialises from
``jax.random.key(s)`` and draws its noise from ``jax.random.key(10_000 + s)``), on the streams of
:mod:`.data`, then scores each seed with the protocol of :mod:`.evaluate`. Leaves in the workdir one engine
run directory per variant (checkpoints, ``metrics.jsonl``, TensorBoard; the same command resumes),
``results.json`` (per-seed rows, mean +- std, the paired untapped - M2 comparison, provenance) and, for
the untapped task, ``decoded_onehots.png``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import jax
import numpy as np

from experiments._common import run_main, write_results
from experiments.inverted_ssvae import classifier
from experiments.inverted_ssvae.analysis.figure import save_decoded_onehots
from experiments.inverted_ssvae.configs import ExperimentConfig
from experiments.inverted_ssvae.data import build_seed_data, device_tables, gather_rows, train_iterator
from experiments.inverted_ssvae.evaluate import compare, evaluate_m2, evaluate_untapped, summarize
from jaxvae.data.mnist import load_mnist
from jaxvae.models import inverted_ssvae
from jaxvae.train.loop import TrainConfig, fit
from jaxvae.train.multi import make_multi_train_step, member_state, stack_states
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state

VARIANT_NAMES = {"none": "M2", "z_observed": "untapped", "z_sampled": "untapped_z_sampled"}


def train_variant(cfg: ExperimentConfig, model_cfg, datas, data_cfgs, workdir: str, *, progress: bool = True):
    """Train ``model_cfg`` for every seed of ``cfg.run.seeds`` in one program; returns ``(state, history, streams)``."""
    optimizer, r = make_optimizer(cfg.optim), cfg.run
    states = [
        create_train_state(jax.random.key(10_000 + s), *inverted_ssvae.init(model_cfg, jax.random.key(s)), optimizer)
        for s in map(int, r.seeds)
    ]
    it, streams = train_iterator(datas, data_cfgs, model_cfg, per_seed=cfg.data.per_seed, on_device=r.device_data)
    step = make_multi_train_step(
        inverted_ssvae.make_loss_fn(model_cfg),
        optimizer,
        batch_axes=0 if cfg.data.per_seed else None,
        tables=device_tables(datas, cfg.data.per_seed) if r.device_data else None,
        gather=gather_rows if r.device_data else None,
    )
    train = TrainConfig(
        num_steps=r.num_steps,
        eval_every=0,
        log_every=r.log_every,
        checkpoint_every=r.checkpoint_every,
        sync_every=r.sync_every,
        time_limit_s=r.time_limit_s,
        progress=progress,
    )
    # what defines the trajectory (a resume refuses a change of it); the run's bookkeeping is in `train`
    config = {"model": model_cfg, "optim": cfg.optim, "data": cfg.data, "train": train, "seeds": list(r.seeds)}
    state, history = fit(stack_states(states), step, it, train, workdir=workdir, config=config)
    return state, history, streams


def run(cfg: ExperimentConfig, workdir: str, *, progress: bool = True, command=None) -> dict[str, Any]:
    """Train every variant for every seed, evaluate, write ``workdir/results.json``; returns what it wrote."""
    t_start = time.time()
    os.makedirs(workdir, exist_ok=True)
    mnist = load_mnist()
    seeds = [int(s) for s in cfg.run.seeds]
    datas, data_cfgs = build_seed_data(cfg.data, seeds, mnist=mnist)
    untapped = cfg.data.task == "untapped"
    results: dict[str, Any] = {"config": cfg, "variants": {}}
    if untapped:
        clf_path, r = os.path.join(workdir, cfg.run.classifier_path), cfg.run
        clf_params, results["classifier"] = classifier.load_or_train_on_mnist(
            clf_path, mnist, train_examples=r.classifier_train_examples, epochs=r.classifier_epochs
        )
    decoded, labels = {}, {}
    for variant in cfg.run.variants:
        name, model_cfg = VARIANT_NAMES[variant], dataclasses.replace(cfg.model, reverse=variant)
        t0 = time.time()
        state, history, streams = train_variant(
            cfg, model_cfg, datas, data_cfgs, os.path.join(workdir, name), progress=progress
        )
        train_s = time.time() - t0
        if history["preempted"]:  # checkpoint saved; the same command resumes this variant
            return {"preempted": True, "variant": name, "step": history["end_step"], "signal": history.get("signal")}
        if streams[0].z_u is not None:  # one fixed set shared by the seeds, or (data.per_seed) one per seed
            fixed = [st.z_u[: len(d["corners"])].tolist() for st, d in zip(streams, datas)]
            results.setdefault("fixed_unfeatured_z", {})[name] = fixed if cfg.data.per_seed else fixed[0]
        rows = []
        for i, (seed, data) in enumerate(zip(seeds, datas)):
            params = member_state(state, i).params
            ev = (
                evaluate_untapped(model_cfg, params, data, clf_params)
                if untapped
                else evaluate_m2(model_cfg, params, data)
            )
            images = ev.pop("decoded", None)
            if i == 0 and images is not None:
                decoded[name] = images
                labels[name] = [f"{g} ({p:.2f})" for g, p in zip(ev["decoded_argmax_digit"], ev["decoded_argmax_prob"])]
            rows.append({"seed": seed, "data_seed": data_cfgs[i].data_seed, **ev})
        results["variants"][name] = {
            "per_seed": rows,
            "summary": summarize(rows),
            "train_seconds": train_s,
            "final_train_metrics": history["train"][-1] if history["train"] else {},
            "steps_done": history["end_step"],
            "time_limited": bool(history["time_limited"]),
            "skipped_steps_total": int(np.sum(np.asarray(state.skipped))),
        }
        means = {k: v["mean"] for k, v in results["variants"][name]["summary"].items()}
        print(f"[{name}] mean over seeds: " + ", ".join(f"{k}={v:.4f}" for k, v in means.items() if v is not None))
    if decoded:
        save_decoded_onehots(os.path.join(workdir, "decoded_onehots.png"), decoded, labels)
    if untapped and {"M2", "untapped"} <= set(results["variants"]):
        un, m2 = results["variants"]["untapped"]["per_seed"], results["variants"]["M2"]["per_seed"]
        for key in ("ce_59", "ce_59_authors"):
            try:
                results[f"untapped_minus_m2_{key}"] = compare(un, m2, key)
            except ValueError as e:  # a diverged seed: say so in the results rather than lose them
                results[f"untapped_minus_m2_{key}"] = {"error": str(e)}
    results["total_seconds"] = time.time() - t_start
    return write_results(os.path.join(workdir, "results.json"), results, seeds=seeds, command=command)


def main(argv=None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = ["python", "-m", "experiments.inverted_ssvae.main", *argv]
    return run_main(
        lambda cfg, workdir: run(cfg, workdir, command=command),
        argv,
        experiment="inverted_ssvae",
        expected=ExperimentConfig,
        description=__doc__.split("\n")[0],
    )


if __name__ == "__main__":
    main()

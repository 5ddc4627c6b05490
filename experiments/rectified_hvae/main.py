"""Train and evaluate the structured rectified-Gaussian hierarchy (Salimans, 2016) on binarized MNIST.

    python -m experiments.rectified_hvae.main --config experiments/rectified_hvae/configs/default.py \\
        --workdir runs/rectified_hvae [--set epochs=20 --set model.posterior=mean_field ...]

Trains with the engine (:func:`jaxvae.train.loop.fit`: checkpoints, resume, metrics.jsonl,
TensorBoard), then writes ``results.json`` in the work dir: the test ELBO (every test example), the
importance-weighted NLL on a fixed prefix of the test set with the ELBO of the same examples,
per-layer active units and sparsity, and the figures under ``figures/`` (:mod:`.evaluate`).
``model_kind='vae'`` trains the one-layer baseline of :mod:`jaxvae.models.vae` through the same data,
schedule and evaluation, so the numbers compare like for like. ``iw_log_likelihood.npy`` keeps the
per-example IW estimates for paired comparisons (``summarize.py``).
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

from experiments._common import iw_nll, load_binarized_mnist, read_results, run_main, write_results
from experiments.rectified_hvae.configs import ExperimentConfig, resolve
from experiments.rectified_hvae.evaluate import Model, elbo_on, layer_statistics, write_figures
from jaxvae.data.loader import BatchIterator
from jaxvae.train.loop import fit
from jaxvae.train.optim import make_optimizer
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step


def run(cfg: ExperimentConfig, workdir: str) -> dict:
    """Train (resuming from ``workdir``), evaluate, write ``results.json``; return the results."""
    cfg = resolve(cfg)
    model = Model(cfg)
    train, test, transform = load_binarized_mnist(cfg.data)
    x_test = test["x"]
    k_init, k_run, k_eval = jax.random.split(jax.random.key(cfg.train.seed), 3)
    optimizer = make_optimizer(cfg.optim)
    state = create_train_state(k_run, *model.init(k_init), optimizer)
    state, history = fit(
        state,
        make_train_step(model.loss_fn(), optimizer),
        BatchIterator(train, cfg.train.batch_size, seed=cfg.train.seed, transform=transform),
        cfg.train,
        workdir=workdir,
        # what defines the trajectory; the evaluation settings may change between invocations
        config={k: getattr(cfg, k) for k in ("model_kind", "model", "vae", "optim", "data", "train", "epochs")},
        eval_step=make_eval_step(model.eval_fn()),
        eval_data=test,
        image_fn=lambda st, k: {"samples": model.samples(st.params, st.model_state, k, 64)},
    )
    if history["preempted"]:
        return {"preempted": True, "step": history["end_step"], "signal": history.get("signal")}
    path = os.path.join(workdir, "results.json")
    previous = read_results(path) or {}
    results = {
        "model_kind": cfg.model_kind,
        "epochs": cfg.epochs,
        "num_steps": cfg.train.num_steps,
        "steps_done": int(jax.device_get(state.step)),
        "skipped_steps": int(jax.device_get(state.skipped)),
        "time_limited": bool(history["time_limited"]),
        "test": history["eval"][-1],
        "test_elbo_examples": int(x_test.shape[0]),
    }
    steps_now = history["end_step"] - history["start_step"]
    # the training record of the invocation that trained (a re-evaluation takes no step and keeps it)
    results["steps_this_invocation"] = steps_now or previous.get("steps_this_invocation", 0)
    results["last_invocation_steps"] = steps_now
    print(f"test ELBO ({x_test.shape[0]} examples): {results['test']['elbo']:.3f}", flush=True)
    params, model_state = state.params, state.model_state
    if cfg.model_kind == "rectified_hvae":
        lc = cfg.layers
        results["layers"] = layer_statistics(
            model.cfg, params, model_state, x_test[: lc.examples], jax.random.fold_in(k_eval, 1),
            num_samples=lc.samples, threshold=lc.threshold,
        )  # fmt: skip
        for r in results["layers"]:
            print(f"layer {r['layer']}: {r['active_units']}/{r['units']} active, sparsity {r['sparsity']:.3f}")
    results["figures"] = write_figures(
        model, params, model_state, jax.random.fold_in(k_eval, 2), workdir, cfg.layers.figure_columns
    )
    if cfg.iw.samples > 0:
        est = iw_nll(cfg.iw, model.log_weight_fn(params, model_state), x_test, jax.random.fold_in(k_eval, 3))
        np.save(os.path.join(workdir, "iw_log_likelihood.npy"), est.pop("per_example_log_likelihood"))
        n = est["iw_examples"]
        est["elbo_same_examples"] = elbo_on(model, params, model_state, x_test[:n], jax.random.fold_in(k_eval, 4))
        results.update(est)
        print(
            f"IW-NLL (k={cfg.iw.samples}, first {n} test examples): {est['iw_nll']:.3f} +- {est['iw_nll_stderr']:.3f}"
        )
    # a re-evaluation that skips a part (e.g. iw.samples=0) keeps the previous run's values of it
    merged = {k: v for k, v in previous.items() if k != "provenance"}
    merged.update(results)
    return write_results(path, merged, seeds=[cfg.train.seed])


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    return run_main(
        run, argv, experiment="rectified_hvae", expected=ExperimentConfig, description=__doc__.split("\n")[0]
    )


if __name__ == "__main__":
    main()

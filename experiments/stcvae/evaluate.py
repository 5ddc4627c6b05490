"""Evaluation of one trained β-STCVAE on the sweep's sub-grid: ELBO and its parts, MIG, group MIG, SAP, FactorVAE.

* ELBO parts (train and test split): batch means over the split in batches of ``eval.batch_size`` of the
  standard ELBO, ``log p(x|z)``, KL and its decomposition MI / TC / TC_B / Σ TC_g / DWKL (MWS estimates
  with that batch as ``M``; one sample of z per image, fixed key).
* MIG and group MIG (:func:`jaxvae.metrics.disentanglement.mutual_information_gap`): from the Normal
  posteriors of every image of the sub-grid (its exact factor grid), group size 1 and ``s``.
* SAP: posterior means, train split to fit, test split to score the discrete factor (shape).
* FactorVAE score: votes drawn over the sub-grid's factors; codes are the posterior means of its images.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.stcvae.configs import ExperimentConfig
from experiments.stcvae.data import SweepData, rows_of
from jaxvae.metrics.disentanglement import factor_vae_score, mutual_information_gap, sap_score
from jaxvae.models import stcvae

PARTS = ("elbo", "log_px_z", "kl", "mi", "tc", "tc_between", "tc_within", "dwkl")


def _as_float(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32)


def make_evaluator(cfg: ExperimentConfig, model_cfg: stcvae.Config, data: SweepData):
    """``evaluate(params, beta, seed) -> dict`` for one member (the jitted functions are built once)."""
    eval_fn = stcvae.make_eval_fn(model_cfg)

    @jax.jit
    def parts(params, x, beta, key):
        out = eval_fn(params, {}, {"x": x, "beta": beta}, key)
        return {k: jnp.mean(out[k]) for k in PARTS}

    @jax.jit
    def posterior(params, x):
        return stcvae.make_posterior_fn(model_cfg, params)(x)

    bs = cfg.eval.batch_size

    def split_parts(params, rows, beta, key) -> dict[str, float]:
        n = (len(rows) // bs) * bs or len(rows)
        acc = []
        for i, a in enumerate(range(0, n, bs)):
            x = _as_float(data.images[rows[a : a + bs]])
            acc.append(parts(params, x, jnp.float32(beta), jax.random.fold_in(key, i)))
        return {k: float(np.mean([float(m[k]) for m in acc])) for k in PARTS}

    def codes(params):
        locs, scales = [], []
        for a in range(0, len(data.images), 2048):
            loc, scale = posterior(params, _as_float(data.images[a : a + 2048]))
            locs.append(np.asarray(loc))
            scales.append(np.asarray(scale))
        return np.concatenate(locs), np.concatenate(scales)

    def evaluate(params, beta: float, seed: int) -> dict[str, Any]:
        key = jax.random.key(10_000 + seed)
        out: dict[str, Any] = {
            "train": split_parts(params, data.train, beta, jax.random.fold_in(key, 0)),
            "test": split_parts(params, data.test, beta, jax.random.fold_in(key, 1)),
        }
        loc, scale = codes(params)
        mig = mutual_information_gap(
            jax.random.fold_in(key, 2), loc, scale, data.classes, num_samples=cfg.eval.mig_samples
        )
        out["mig"] = mig.mig
        out["mig_per_factor"] = [float(g) for g in mig.gaps]
        s = model_cfg.group_size
        if s == 1:
            out["group_mig"], out["group_mig_per_factor"] = out["mig"], out["mig_per_factor"]
        else:
            gmig = mutual_information_gap(
                jax.random.fold_in(key, 2), loc, scale, data.classes, group_size=s, num_samples=cfg.eval.mig_samples
            )
            out["group_mig"], out["group_mig_per_factor"] = gmig.mig, [float(g) for g in gmig.gaps]
        discrete = [k == 1 for k in range(data.classes.shape[1])]  # shape is categorical
        sap = sap_score(loc[data.train], data.classes[data.train], loc[data.test], data.classes[data.test],
                        discrete=discrete)  # fmt: skip
        out["sap"] = sap.sap
        fv = factor_vae_score(
            lambda c: loc[rows_of(cfg.data, c)],
            data.factor_sizes,
            seed=seed,
            num_train=cfg.eval.factor_vae_train,
            num_eval=cfg.eval.factor_vae_eval,
            num_variance_estimate=cfg.eval.factor_vae_variance,
        )
        out["factor_vae"] = fv.eval_accuracy
        out["active_dims"] = int(np.sum(np.var(loc, axis=0) > 1e-2))
        return out, loc

    return evaluate

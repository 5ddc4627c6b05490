"""The evaluation protocol of the rectified-Gaussian hierarchy experiment, for either model kind.

:class:`Model` gives the few functions the job needs for the hierarchy or the one-layer baseline;
:func:`layer_statistics` the per-layer active units and sparsity; :func:`write_figures` the prior
samples and the per-layer variation figure; :func:`elbo_on` the single-sample ELBO of a subset (to put
beside the IW-NLL of the same examples).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.rectified_hvae.configs import ExperimentConfig
from jaxvae.metrics.active_units import active_units
from jaxvae.models import rectified_hvae as rh
from jaxvae.models import vae as vae_lib
from jaxvae.train.writers import make_grid, save_png


class Model:
    """The model functions the experiment needs, for ``model_kind`` 'rectified_hvae' or 'vae'."""

    def __init__(self, cfg: ExperimentConfig):
        self.kind = cfg.model_kind
        self.cfg = cfg.model if self.kind == "rectified_hvae" else cfg.vae
        self.lib = rh if self.kind == "rectified_hvae" else vae_lib

    def init(self, key):
        return self.lib.init(self.cfg, key)

    def loss_fn(self):
        return self.lib.make_loss_fn(self.cfg)

    def eval_fn(self):
        return self.lib.make_eval_fn(self.cfg)

    def log_weight_fn(self, params, model_state):
        return self.lib.make_log_weight_fn(self.cfg, params, model_state)

    def samples(self, params, model_state, key, n):
        if self.kind == "rectified_hvae":
            return rh.sample_images(self.cfg, params, model_state, key, n)
        return vae_lib.sample_images(self.cfg, params, key, n)


def layer_statistics(
    mcfg: rh.Config, params, model_state, x, key, *, num_samples: int, threshold: float, batch_size: int = 250
) -> list[dict]:
    """Per layer: active units (Burda et al. criterion) and sparsity.

    ``E_q[z_l | x]`` is estimated by averaging the conditional means ``E_q[z_l | z_{l+1}^(s), x]``
    over ``num_samples`` parent draws (Rao-Blackwellised; exact for the top layer). The variance over
    ``x`` of that estimate exceeds ``Cov_x(E_q[z_l | x])`` by its Monte-Carlo noise, the mean over
    ``x`` of ``var_s / S``; ``active_units`` counts units whose noise-corrected variance exceeds
    ``threshold`` (``active_units_uncorrected`` without the correction). Sparsity is the fraction of
    exact zeros among ``num_samples`` draws of ``z_l ~ q``.
    """
    means_fn = functools.partial(rh.posterior_conditional_means, mcfg, params, model_state, num_samples=num_samples)
    samples_fn = functools.partial(rh.posterior_samples, mcfg, params, model_state, num_samples=num_samples)
    L = len(mcfg.latent_sizes)
    means, noise = [[] for _ in range(L)], [[] for _ in range(L)]
    zeros, total = np.zeros(L), np.zeros(L)
    for i, start in enumerate(range(0, x.shape[0], batch_size)):
        xb = jnp.asarray(x[start : start + batch_size])
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        for l, c in enumerate(means_fn(k1, xb)):
            c = np.asarray(c, np.float64)  # [S, b, d]
            means[l].append(c.mean(axis=0))
            noise[l].append(c.var(axis=0, ddof=1) / num_samples if num_samples > 1 else np.zeros(c.shape[1:]))
        for l, z in enumerate(samples_fn(k2, xb)):
            z = np.asarray(z)
            zeros[l] += np.count_nonzero(z == 0.0)
            total[l] += z.size
    out = []
    for l, d in enumerate(mcfg.latent_sizes):
        m = np.concatenate(means[l]).astype(np.float32)
        raw_count, variances = active_units(m, threshold=threshold)
        corrected = np.asarray(variances, np.float64) - np.concatenate(noise[l]).mean(axis=0)
        out.append(
            {
                "layer": l + 1,
                "units": d,
                "active_units": int(np.sum(corrected > threshold)),
                "active_units_uncorrected": raw_count,
                "sparsity": float(zeros[l] / total[l]),
                "mean_activity_variance": float(np.mean(corrected)),
            }
        )
    return out


def write_figures(model: Model, params, model_state, key, workdir: str, columns: int) -> list[str]:
    """``figures/samples.png`` (64 prior samples) and, for the hierarchy, ``figures/layer_variation.png``
    (row ``r`` from the top redraws only layer ``L - r``'s noise). Returns the paths written."""
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    k1, k2 = jax.random.split(key)
    samples = np.asarray(model.samples(params, model_state, k1, 64))
    paths = [os.path.join(workdir, "figures", "samples.png")]
    save_png(paths[0], make_grid(np.clip(samples, 0.0, 1.0), ncols=8))
    if model.kind == "rectified_hvae":
        grid = np.asarray(rh.layer_variation_images(model.cfg, params, model_state, k2, columns))
        paths.append(os.path.join(workdir, "figures", "layer_variation.png"))
        save_png(paths[1], make_grid(np.clip(grid.reshape((-1,) + grid.shape[2:]), 0.0, 1.0), ncols=columns))
    return paths


def elbo_on(model: Model, params, model_state, x, key, batch_size: int = 500) -> float:
    """Mean single-sample ELBO over ``x`` (eval mode), batch ``i`` drawn with ``fold_in(key, i)``."""
    fn = jax.jit(model.eval_fn())
    vals = [
        np.asarray(
            fn(params, model_state, {"x": jnp.asarray(x[s : s + batch_size])}, jax.random.fold_in(key, i))["elbo"]
        )
        for i, s in enumerate(range(0, x.shape[0], batch_size))
    ]
    return float(np.mean(np.concatenate(vals)))

"""Evaluation of a trained VAE(-GAN): image grids, posterior diagnostics (active units, mean posterior
variance, aggregate-posterior KL to N(0, I)) and MNIST-FID of prior samples."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from experiments.mog_vaegan.configs import ExperimentConfig
from jaxvae.metrics.active_units import active_units
from jaxvae.metrics.posterior import aggregate_posterior_kl, mean_posterior_variance
from jaxvae.metrics.traversals import to_unit_range
from jaxvae.models import mog_vaegan


def image_fn(cfg: ExperimentConfig, x_fixed: np.ndarray):
    """Prior samples and (test image, reconstruction) pairs in [0, 1] for the PNG grids."""

    def images(state, key):
        m = cfg.model
        samples = mog_vaegan.sample_images(m, state.params, state.model_state, key, cfg.num_images)
        recon = np.clip(np.asarray(mog_vaegan.reconstruct(m, state.params, state.model_state, x_fixed)), -1, 1)
        pairs = np.stack([x_fixed, recon], axis=1).reshape((-1,) + recon.shape[1:])
        return {"samples": to_unit_range(samples), "reconstructions": to_unit_range(pairs)}

    return images


def evaluate_posterior(cfg: ExperimentConfig, state, x: np.ndarray, key) -> dict[str, Any]:
    """Active units, mean posterior variance and the aggregate-posterior KL over the test images ``x``."""
    m = cfg.model
    locs, lvs = [], []
    for i in range(0, len(x), 500):
        loc, lv = mog_vaegan.encode(m, state.params, state.model_state, x[i : i + 500])
        locs.append(np.asarray(loc))
        lvs.append(np.asarray(lv))
    loc, lv = np.concatenate(locs), np.concatenate(lvs)
    au, var_of_means = active_units(loc)
    mpv = np.asarray(mean_posterior_variance(lv))
    mc = aggregate_posterior_kl(loc, lv, method="mc", key=key, num_samples=cfg.eval.aggregate_kl_samples)
    lower = aggregate_posterior_kl(loc, lv, method="moment_matched")
    return {
        "active_units": au,
        "latent_dim": m.latent_dim,
        "mean_posterior_variance": float(mpv.mean()),
        "mean_posterior_variance_per_unit": mpv.tolist(),
        "variance_of_posterior_means_per_unit": np.asarray(var_of_means).tolist(),
        "aggregate_kl_mc": mc.estimate,
        "aggregate_kl_mc_stderr": mc.stderr,
        "aggregate_kl_moment_matched_lower_bound": lower.estimate,
        "posterior_examples": int(len(x)),
    }


def evaluate_fid(cfg: ExperimentConfig, state, test_x: np.ndarray, key) -> dict[str, Any]:
    """MNIST-FID of ``eval.fid_samples`` prior samples against the test images (MNIST stand-in only)."""
    from jaxvae.metrics.image_quality import frechet_distance_from_features
    from jaxvae.metrics.mnist_features import load_mnist_feature_net

    net = load_mnist_feature_net()
    n, m = cfg.eval.fid_samples, cfg.model
    samples = np.concatenate(
        [
            np.asarray(mog_vaegan.sample_images(m, state.params, state.model_state, jax.random.fold_in(key, i), 500))
            for i in range(-(-n // 500))
        ]
    )[:n]
    f_s = net.features(samples, value_range=(-1.0, 1.0))
    f_t = net.features(test_x, value_range=(-1.0, 1.0))
    return {
        "mnist_fid": frechet_distance_from_features(f_s, f_t),
        "fid_samples": int(n),
        "fid_reference_images": int(len(test_x)),
        "mnist_feature_net_sha256": net.sha256,
    }

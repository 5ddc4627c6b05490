"""Evaluation of a trained VAE(-GAN): image grids (prior samples, reconstructions, latent traversals and
interpolations, as ``show_warps.py``), posterior diagnostics (active units, mean posterior variance,
aggregate-posterior KL to N(0, I)) and MNIST-FID of prior samples."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from experiments.mog_vaegan.configs import ExperimentConfig
from jaxvae.metrics.active_units import active_units
from jaxvae.metrics.posterior import aggregate_posterior_kl, mean_posterior_variance
from jaxvae.metrics.traversals import interpolate, latent_traversal, to_unit_range
from jaxvae.models import mog_vaegan

TRAVERSAL_RANGE = 3.0  # offsets eps in [-3, 3], in units of the prior's standard deviation
MAX_FIGURE_ROWS = 16


def traversal_latents(loc: np.ndarray) -> np.ndarray:
    r"""``[K, K, D]`` codes :math:`z + e_k \epsilon`: ``z`` the posterior mean of the first image, one row per
    unit ``k`` (the ``K = min(D, 16)`` units whose posterior means vary most over ``loc`` ``[N, D]``, most
    varying first), ``K`` offsets :math:`\epsilon` evenly in [-3, 3] along the row.

    Square, so that the writer's default tiling (``ceil(sqrt(K * K))`` columns) puts one unit per row.
    """
    loc = np.asarray(loc)
    if loc.ndim != 2 or loc.shape[0] < 1:
        raise ValueError(f"`loc` must be posterior means [N, D] with N >= 1; got shape {loc.shape}.")
    k = min(loc.shape[1], MAX_FIGURE_ROWS)
    units = np.argsort(-loc.var(axis=0), kind="stable")[:k]
    offsets = np.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, k)
    return np.asarray(latent_traversal(loc[0], units, offsets))


def interpolation_latents(loc: np.ndarray) -> np.ndarray:
    r"""``[P, T, D]`` codes :math:`(1 - \alpha) z_{2p} + \alpha z_{2p+1}` between the posterior means of
    consecutive images ``loc`` ``[N, D]`` (``N >= 2``): ``P = min(N // 2, 8)`` pairs, ``T = max(P, 2)``
    evenly spaced :math:`\alpha` with both endpoints (square for ``P >= 2``: one pair per row)."""
    loc = np.asarray(loc)
    if loc.ndim != 2 or loc.shape[0] < 2:
        raise ValueError(f"`loc` must be posterior means [N, D] with N >= 2; got shape {loc.shape}.")
    p = min(loc.shape[0] // 2, MAX_FIGURE_ROWS // 2)
    t = max(p, 2)
    return np.stack([np.asarray(interpolate(loc[2 * i], loc[2 * i + 1], t)) for i in range(p)])


def image_fn(cfg: ExperimentConfig, x_fixed: np.ndarray):
    """Images in [0, 1] for the PNG grids of each evaluation: prior samples, (test image, reconstruction)
    pairs, latent traversals (:func:`traversal_latents` of the test images ``x_fixed``, one unit per row)
    and interpolations (:func:`interpolation_latents`, one pair of test images per row)."""

    def images(state, key):
        m = cfg.model
        samples = mog_vaegan.sample_images(m, state.params, state.model_state, key, cfg.num_images)
        loc = np.asarray(mog_vaegan.encode(m, state.params, state.model_state, x_fixed)[0])
        recon = np.clip(np.asarray(mog_vaegan.decode(m, state.params, state.model_state, loc)), -1, 1)
        pairs = np.stack([x_fixed, recon], axis=1).reshape((-1,) + recon.shape[1:])
        out = {"samples": to_unit_range(samples), "reconstructions": to_unit_range(pairs)}
        figures = {"traversals": traversal_latents(loc)}
        if len(loc) >= 2:
            figures["interpolations"] = interpolation_latents(loc)
        for name, z in figures.items():
            dec = mog_vaegan.decode(m, state.params, state.model_state, z.reshape(-1, z.shape[-1]))
            out[name] = to_unit_range(np.asarray(dec))
        return out

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

"""The gaps of one trained VAE (the FC VAE; the residual conv VAE's G_g), through :mod:`jaxvae.metrics.gaps`.

``gap_fns`` turns :mod:`jaxvae.models.vae` parameters into the ``encode`` / ``log_likelihood`` /
``decode`` callables the gap functions take: ``encode(x) = (mu(x), sigma(x))`` of q(z|x),
``log_likelihood(x, z) = sum_pixels log Bernoulli(x; sigmoid(decode(z)))``, ``decode(z)`` the
Bernoulli means (the reconstructions of the robustness gap). The residual conv VAE brings its own
(:func:`jaxvae.models.xiao.gap_fns`, BatchNorm with its running averages so examples are independent).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.synthetic_generalization.configs import GapsExperimentConfig
from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.metrics import gaps
from jaxvae.models import vae, xiao


def gap_fns(cfg: vae.Config, params: Any):
    model, vs = vae.VAE(cfg), {"params": params}

    def encode(x):
        loc, log_var = model.apply(vs, x, method=vae.VAE.encode_params)
        return loc, jnp.exp(0.5 * log_var)

    def log_likelihood(x, z):
        lp = bernoulli_log_prob(x, model.apply(vs, z, method=vae.VAE.decode))
        return jnp.sum(lp.reshape(lp.shape[0], -1), axis=1)

    def decode(z):
        return jax.nn.sigmoid(model.apply(vs, z, method=vae.VAE.decode))

    return encode, log_likelihood, decode


def generalization(key, cfg: vae.Config, params, x_train, x_test, num_samples: int) -> dict[str, float]:
    encode, ll, _ = gap_fns(cfg, params)
    return gaps.generalization_gap(key, encode, ll, x_train, x_test, num_samples=num_samples)._asdict()


def conv_generalization(
    key, cfg: xiao.Config, params, model_state, x_train, x_test, num_samples: int
) -> dict[str, float]:
    """G_g (eq. 3) and the train / test ELBOs of a residual conv VAE, with their standard errors."""
    encode, ll, _ = xiao.gap_fns(cfg, params, model_state)
    return gaps.generalization_gap(key, encode, ll, x_train, x_test, num_samples=num_samples, batch_size=250)._asdict()


def amortization(key, cfg: vae.Config, params, x, ev) -> dict[str, Any]:
    encode, ll, _ = gap_fns(cfg, params)
    r = gaps.amortization_gap(
        key,
        encode,
        ll,
        x,
        num_steps=ev.amortization_steps,
        learning_rate=ev.amortization_lr,
        num_samples=ev.amortization_samples,
        record_every=ev.record_every,
    )
    se = float(np.std(r.gap, ddof=1) / np.sqrt(len(r.gap)))
    return {
        "gap": float(np.mean(r.gap)),
        "gap_se": se,
        "elbo_amortized": float(np.mean(r.elbo_amortized)),
        "elbo_optimized": float(np.mean(r.elbo_optimized)),
        "trajectory_steps": r.steps.tolist(),
        "trajectory_mean_elbo": r.trajectory.mean(axis=1).tolist(),
        "examples": len(r.gap),
    }


def robustness(key, cfg: vae.Config, params, x, ev) -> dict[str, Any]:
    encode, _, decode = gap_fns(cfg, params)
    r = gaps.robustness_gap(
        key,
        encode,
        decode,
        x,
        num_seeds=ev.robust_seeds,
        radius=ev.attack_delta,
        num_steps=ev.attack_steps,
        step_size=ev.attack_eta,
    )
    per_image = r.per_pair.mean(axis=1)
    return {
        "gap": r.gap,
        "gap_se": float(np.std(per_image, ddof=1) / np.sqrt(len(per_image))),
        "ms_ssim_inputs": float(r.ms_ssim_inputs.mean()),
        "ms_ssim_recons": float(r.ms_ssim_recons.mean()),
        "skl": float(np.mean(r.skl)),
        "examples": int(r.per_pair.shape[0]),
        "seeds": int(r.per_pair.shape[1]),
    }


def curve_eval_fn(cfg: GapsExperimentConfig):
    """Per-member single-draw ELBOs of train and test images in one pass (for the training curves).

    ``eval_fn(stacked_params, stacked_model_state, {"x", "is_train"}, key)``: D_train and D_test are
    concatenated with an ``is_train`` flag; ``train_elbo_<i> = ELBO * is_train`` summed over the
    examples and divided by ``|D_train|`` is member ``i``'s mean train ELBO (likewise test).
    """
    one = vae.make_eval_fn(cfg.model)

    def eval_fn(params, model_state, batch, key):
        keys = jax.random.split(key, len(cfg.seeds))
        elbo = jax.vmap(lambda p, s, k: one(p, s, {"x": batch["x"]}, k)["elbo"])(params, model_state, keys)
        t = batch["is_train"]
        out = {}
        for i in range(len(cfg.seeds)):
            out[f"train_elbo_{i}"] = elbo[i] * t
            out[f"test_elbo_{i}"] = elbo[i] * (1.0 - t)
        return out

    return eval_fn

r"""An EDM diffusion model (Karras et al., 2022) on small images: the data source of Xiao et al.'s DMaaPx.

The maths live in :mod:`jaxvae.objectives.diffusion` (preconditioning, log-normal noise levels,
loss weighting, the deterministic Heun sampler); this file binds them to a
:class:`jaxvae.nets.UNet` in the model template's shape (``Config``, ``objective_terms``,
``make_loss_fn``, ``make_eval_fn``, ``init``, samples).

Data scaling: images ``x`` in ``[0, 1]`` (MNIST's grey levels, padded to 32x32) are mapped to
``y = 2 x - 1`` in ``[-1, 1]``, where EDM's ``sigma_data = 0.5`` applies; samples are mapped back
with ``x = clip((y + 1) / 2, 0, 1)``.

Objective (per example, ``[B]``; EDM eq. 2 with Table 1's choices)::

    ln sigma ~ N(P_mean, P_std^2),  n ~ N(0, I)
    loss(y) = lambda(sigma) || D(y + sigma n; sigma) - y ||^2        summed over pixels
    D(x; sigma) = c_skip x + c_out F_theta(c_in x; c_noise)          F_theta: the U-Net

``make_eval_fn`` reports the same loss at a fixed grid of noise levels (one per quantile of the
log-normal, so the evaluation has no noise-level sampling variance) next to the sampled one.

Sampling: :func:`sample_images` runs EDM's Algorithm 1 with ``S_churn = 0`` (deterministic,
second order, 18 steps, ``sigma`` from 80 to 0.002, ``rho = 7``); image ``i`` starts from its own
noise ``fold_in(key, i)`` (the paper's "unique seed per image"), so an image does not depend on the
batch it is drawn in. No EMA of the weights and no augmentation pipeline (the paper also trains
EDM without augmentation); both are differences from EDM's published recipe.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri
from jax.typing import ArrayLike

from jaxvae.config import as_shape, as_widths, check_positive, check_positive_int, set_field
from jaxvae.models.common import as_key, check_images, get_entry, loss_output, per_example
from jaxvae.nets.unet import UNet
from jaxvae.objectives import diffusion
from jaxvae.typing import PRNGKey, PyTree


@dataclasses.dataclass(frozen=True)
class Config:
    """EDM model configuration (hashable; a static jit argument).

    Attributes:
      x_shape: one image ``(H, W, C)``; H and W divisible by ``2 ** (len(channel_mult) - 1)``.
      channels, channel_mult, num_res_blocks, attn_resolutions, num_groups: the U-Net
        (:class:`jaxvae.nets.UNet`).
      sigma_data: data standard deviation of the preconditioning (0.5 for ``[-1, 1]`` images).
      p_mean, p_std: the log-normal training distribution of ``sigma``.
      num_steps, sigma_min, sigma_max, rho: the sampler's schedule.
      eval_sigmas: number of fixed noise levels of the evaluation loss.
    """

    x_shape: tuple[int, ...] = (32, 32, 1)
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (8,)
    num_groups: int = 8
    sigma_data: float = diffusion.SIGMA_DATA
    p_mean: float = diffusion.P_MEAN
    p_std: float = diffusion.P_STD
    num_steps: int = diffusion.NUM_STEPS
    sigma_min: float = diffusion.SIGMA_MIN
    sigma_max: float = diffusion.SIGMA_MAX
    rho: float = diffusion.RHO
    eval_sigmas: int = 8

    def __post_init__(self):
        set_field(self, "x_shape", as_shape("x_shape", self.x_shape))
        set_field(self, "channel_mult", as_widths("channel_mult", self.channel_mult))
        set_field(self, "attn_resolutions", as_widths("attn_resolutions", self.attn_resolutions, allow_empty=True))
        if len(self.x_shape) != 3:
            raise ValueError(f"`x_shape` must be (H, W, C), e.g. (32, 32, 1); got {self.x_shape!r}.")
        f = 2 ** (len(self.channel_mult) - 1)
        if self.x_shape[0] % f or self.x_shape[1] % f:
            raise ValueError(f"`x_shape` H and W must be divisible by {f} (channel_mult); got {self.x_shape!r}.")
        for name in ("channels", "num_groups", "num_steps", "eval_sigmas"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("num_res_blocks", self.num_res_blocks, allow_zero=True)
        for name in ("sigma_data", "p_std", "sigma_min", "sigma_max", "rho"):
            check_positive(name, getattr(self, name))
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"`sigma_min` must be < sigma_max={self.sigma_max}; got {self.sigma_min}.")


def _net(config: Config) -> UNet:
    return UNet(
        channels=config.channels,
        channel_mult=config.channel_mult,
        num_res_blocks=config.num_res_blocks,
        attn_resolutions=config.attn_resolutions,
        num_groups=config.num_groups,
    )


def raw_net(config: Config, params: PyTree) -> diffusion.RawNet:
    """``F(x_in [B, H, W, C], c_noise [B])``: the U-Net bound to ``params``."""
    net = _net(config)
    return lambda x_in, c_noise: net.apply({"params": params}, x_in, c_noise)


def make_denoiser(config: Config, params: PyTree) -> diffusion.Denoiser:
    """``D(y [B, H, W, C], sigma [B])`` in the ``[-1, 1]`` scale (:func:`jaxvae.objectives.diffusion.edm_denoiser`)."""
    return diffusion.edm_denoiser(raw_net(config, params), config.sigma_data)


def to_model_scale(x: jax.Array) -> jax.Array:
    """``[0, 1] -> [-1, 1]``: ``y = 2 x - 1``."""
    return 2.0 * x - 1.0


def to_image_scale(y: jax.Array) -> jax.Array:
    """``[-1, 1] -> [0, 1]``: ``x = clip((y + 1) / 2, 0, 1)``."""
    return jnp.clip(0.5 * (y + 1.0), 0.0, 1.0)


class Terms(NamedTuple):
    """Per-example terms (each ``[B]``): ``edm_loss``, the weighted denoising error at a sampled ``sigma``."""

    edm_loss: jax.Array


def _get_x(batch: dict, config: Config) -> jax.Array:
    return check_images(get_entry(batch, "x", f"[B, *{config.x_shape}] in [0, 1]"), config.x_shape)


def objective_terms(
    config: Config, params: PyTree, model_state: PyTree, batch: dict, key: PRNGKey, *, train: bool = True
) -> tuple[Terms, PyTree]:
    r"""EDM's loss :math:`\lambda(\sigma)\|D(y + \sigma n;\sigma) - y\|^2`, ``ln sigma ~ N(P_mean, P_std^2)``.

    ``batch["x"]`` ``[B, H, W, C]`` in ``[0, 1]``; the model has no batch statistics (``train`` changes nothing).
    """
    del train
    y = to_model_scale(_get_x(batch, config))
    loss = diffusion.edm_loss(
        key, raw_net(config, params), y, sigma_data=config.sigma_data, p_mean=config.p_mean, p_std=config.p_std
    )
    return Terms(loss), model_state


def eval_sigmas(config: Config) -> jax.Array:
    """``[K]`` fixed noise levels: the log-normal's quantiles at ``(k + 1/2) / K``, ``K = config.eval_sigmas``."""
    u = (jnp.arange(config.eval_sigmas, dtype=jnp.float32) + 0.5) / config.eval_sigmas
    return jnp.exp(config.p_mean + config.p_std * ndtri(u))


def make_loss_fn(config: Config) -> Callable:
    """The engine's ``loss_fn``: ``loss = mean_B`` of EDM's weighted denoising error; metric ``edm_loss``."""

    def loss_fn(params, model_state, batch, key):
        t, model_state = objective_terms(config, params, model_state, batch, key)
        return loss_output(-t.edm_loss, t, model_state)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """``eval_fn -> {"edm_loss": [B], "edm_loss_grid": [B]}``: sampled ``sigma``, and the mean over :func:`eval_sigmas`.

    The grid loss uses the same noise ``n`` at every level (one fixed quadrature of the training
    objective over ``sigma``): it compares checkpoints without noise-level sampling noise.
    """

    def eval_fn(params, model_state, batch, key) -> dict:
        t, _ = objective_terms(config, params, model_state, batch, key, train=False)
        y = to_model_scale(_get_x(batch, config))
        net = raw_net(config, params)
        k = jax.random.fold_in(key, 1)

        def at(sigma):
            s = jnp.full((y.shape[0],), sigma, y.dtype)
            return diffusion.denoising_loss(k, net, y, s, sigma_data=config.sigma_data)

        grid = jnp.mean(jax.lax.map(at, eval_sigmas(config)), axis=0)
        return {**per_example(t), "edm_loss_grid": grid}

    return eval_fn


@functools.partial(jax.jit, static_argnums=(0,))
def _init(config: Config, key: PRNGKey) -> dict:
    x = jnp.zeros((1,) + config.x_shape, jnp.float32)
    return _net(config).init(key, x, jnp.zeros((1,), jnp.float32))


def init(config: Config, key) -> tuple[PyTree, PyTree]:
    """``(params, model_state)`` from a key or int seed; ``model_state`` is ``{}``."""
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a jaxvae.models.edm.Config; got {type(config).__name__}.")
    vs = dict(_init(config, as_key(key)))
    return vs.pop("params"), vs


@functools.partial(jax.jit, static_argnums=(0,))
def _sample(config: Config, params: PyTree, key: PRNGKey, indices: jax.Array) -> jax.Array:
    y = diffusion.edm_sample(
        key,
        make_denoiser(config, params),
        (indices.shape[0],) + config.x_shape,
        indices=indices,
        num_steps=config.num_steps,
        sigma_min=config.sigma_min,
        sigma_max=config.sigma_max,
        rho=config.rho,
    )
    return to_image_scale(y)


def sample_images(config: Config, params: PyTree, key, indices: ArrayLike) -> jax.Array:
    """Samples ``[n, H, W, C]`` in ``[0, 1]`` of the deterministic 18-step Heun sampler.

    Image ``i`` (an entry of ``indices``, int ``[n]``) starts from the noise of ``fold_in(key, i)``
    alone: the same ``(key, i)`` gives the same image in any batch (up to floating-point
    reassociation across batch shapes).
    """
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size < 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"`indices` must be a non-empty 1-D int array of image indices; got {idx.dtype} {idx.shape}.")
    return _sample(config, params, as_key(key), jnp.asarray(idx, jnp.int32))


def num_params(params: PyTree) -> int:
    """Number of scalar parameters."""
    return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(params)))

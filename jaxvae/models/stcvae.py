r"""β-TCVAE and β-STCVAE: factorised VAEs with a disentangling granularity (Chen, Xiang & Wang, 2025).

Model (Normal posterior and prior, Bernoulli likelihood)::

    p(z) = N(0, I)                                latent_dim D (the code's default 16)
    q(z | x) = N(mu(x), diag sigma^2(x))          encoder + GaussianHead
    p(x | z) = prod_i Bernoulli(x_i; sigmoid(decode(z)_i))

With one reparameterised sample :math:`z^{(i)} \sim q(z|x_i)` per example and the minibatch estimates of
the aggregate posterior's log-densities (:mod:`jaxvae.objectives.total_correlation`, MWS by default as
in the official code), the KL term splits per example into

.. math::

    \log q(z|x) - \log p(z) = \mathrm{MI} + \underbrace{\mathrm{TC}_B + \textstyle\sum_g \mathrm{TC}_g}_{\mathrm{TC}}
      + \mathrm{DWKL},

the latent dimensions being cut into contiguous groups of ``group_size = s`` dimensions (the granularity,
the code's ``split_num``). The training objective is β-STCVAE (code-derived, official
``Metric_xTCVAE.py`` ``VAE.elbo`` with ``newTC=True``; ``variant`` is its ``contraintInfo``):

.. math::

    \mathcal{L}_2(x_i) = \log p(x_i|z) - \mathrm{MI} - \beta\,\mathrm{TC}_B
      + \tfrac{\beta}{2}\,\overline{\textstyle\sum_g \mathrm{TC}_g} - \mathrm{DWKL}

(variant 2, the default; 1 drops the :math:`\beta/2` term, 3 is β-TCVAE, 4 the code's β-VAE-like form;
:func:`jaxvae.objectives.total_correlation.beta_stcvae_objective`). ``group_size = 1`` is β-TCVAE
bitwise (losses and gradients, ``tests/models/test_stcvae.py``). The **reported ELBO** is the standard
single-sample one, :math:`\log p(x|z) + \log p(z) - \log q(z|x)`, not the objective.

Networks (``arch``):

* ``"code"``: the official code's conv-MLP (``MLPEncoder``/``MLPDecoder``) for 64x64 images: encoder
  Conv 16-32-64 (k4, s2) with LeakyReLU, a dense layer of ``hidden`` units and ``layers`` more, the
  Normal head; decoder ``z -> hidden x (layers + 1) -> 8x8x64`` then transposed convs 64-32-16-C.
  Built from :class:`jaxvae.nets.ConvEncoder` / :class:`~jaxvae.nets.ConvDecoder` and
  :class:`~jaxvae.nets.MLP`. Differences from the code: no BatchNorm; the dense layer right after the
  convolutions uses LeakyReLU (the code: ReLU) and the 4096-unit layer before the transposed
  convolutions LeakyReLU (the code: tanh); one image channel (dSprites) by default.
* ``"conv"``: a small conv net for CPU-scale runs (``conv_channels``, one dense layer of ``hidden``).

``beta`` may also come per batch (``batch["beta"]``, a scalar), so that one compiled program can train
members with different β (:mod:`jaxvae.train.multi` with ``batch_axes={"beta": 0, ...}``); the group
size is a shape and stays static.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvae.config import as_shape, as_widths, check_nonnegative, check_one_of, check_positive_int, set_field
from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.distributions.normal import Normal
from jaxvae.models.common import as_key, check_images, get_entry, per_example, variables
from jaxvae.nets.conv import ConvDecoder, ConvEncoder
from jaxvae.nets.heads import SCALE_PARAMS, GaussianHead
from jaxvae.nets.mlp import MLP
from jaxvae.objectives.total_correlation import (
    ESTIMATORS,
    MWS_NORMALIZERS,
    STCVAE_VARIANTS,
    beta_stcvae_objective,
    group_slices,
    total_correlation_terms,
)
from jaxvae.train.state import LossOutput
from jaxvae.typing import PRNGKey, PyTree

ARCHS = ("code", "conv", "mlp")


@dataclasses.dataclass(frozen=True)
class Config:
    """β-STCVAE configuration (hashable; a static jit argument). Defaults: the official code's.

    Attributes:
      arch: ``"code"`` (the code's conv-MLP, 64x64) or ``"conv"`` (small conv net for the CPU).
      latent_dim: D (the code: 16).
      group_size: the granularity ``s`` (the code: 2); 1 is β-TCVAE. ``1 <= s <= D``.
      variant: the code's ``contraintInfo`` 1-4 (default 2).
      beta: weight of the (between-group) TC (the code: 10); ``batch["beta"]`` overrides it.
      dataset_size: ``N`` of the MWS/MSS normaliser (dSprites: 737,280).
      estimator: ``"mws"`` (the code's effective estimator) or ``"mss"``.
      mws_normalizer: ``None`` (``log(N M)``, as published) or ``"log_m"``.
      x_shape: ``(H, W, C)`` of one image.
      hidden: ``"code"``: width of the dense layers (the code's ``nur_num``, 1000); ``"conv"``: the dense layer.
      layers: ``"code"`` only: dense layers after the first (the code's ``layer``, 2).
      conv_channels: channels of the stride-2 convolutions.
      scale_param: posterior scale parameterisation (:mod:`jaxvae.nets.heads`).
      min_scale: posterior scale floor under ``"softplus"``.
    """

    arch: str = "code"
    latent_dim: int = 16
    group_size: int = 2
    variant: int = 2
    beta: float = 10.0
    dataset_size: int = 737_280
    estimator: str = "mws"
    mws_normalizer: str | None = None
    x_shape: tuple[int, ...] = (64, 64, 1)
    hidden: int = 1000
    layers: int = 2
    conv_channels: tuple[int, ...] = (16, 32, 64)
    scale_param: str = "softplus"
    min_scale: float = 1e-4

    def __post_init__(self):
        set_field(self, "x_shape", as_shape("x_shape", self.x_shape))
        set_field(self, "conv_channels", as_widths("conv_channels", self.conv_channels))
        check_one_of("arch", self.arch, ARCHS)
        check_one_of("variant", self.variant, STCVAE_VARIANTS)
        check_one_of("estimator", self.estimator, ESTIMATORS)
        if self.mws_normalizer is not None:
            check_one_of("mws_normalizer", self.mws_normalizer, MWS_NORMALIZERS)
        check_one_of("scale_param", self.scale_param, SCALE_PARAMS)
        check_positive_int("latent_dim", self.latent_dim)
        check_positive_int("hidden", self.hidden)
        check_positive_int("layers", self.layers, allow_zero=True)
        check_positive_int("dataset_size", self.dataset_size)
        check_nonnegative("beta", self.beta)
        check_nonnegative("min_scale", self.min_scale)
        group_slices(self.latent_dim, self.group_size)  # validates 1 <= s <= D
        f = 2 ** len(self.conv_channels)
        if len(self.x_shape) != 3 or self.x_shape[0] % f or self.x_shape[1] % f:
            raise ValueError(
                f"`x_shape` must be (H, W, C) with H, W divisible by {f} ({len(self.conv_channels)} stride-2 "
                f"convolutions), e.g. (64, 64, 1); got {self.x_shape!r}."
            )


class STCVAE(nn.Module):
    """Linen module: ``encode_params(x) -> (loc, log_var)``, ``decode(z) -> logits [..., *x_shape]``."""

    config: Config

    def setup(self):
        c = self.config
        if c.arch == "code":
            self.encoder = nn.Sequential(
                [
                    ConvEncoder(c.x_shape, c.conv_channels, c.hidden, activation="leaky_relu"),
                    MLP((c.hidden,) * c.layers, "relu", activate_final=True),
                ]
            )
            self.dec_mlp = MLP((c.hidden,) * c.layers, "relu", activate_final=True)
            self.dec_conv = ConvDecoder(c.x_shape, c.conv_channels, c.hidden, activation="leaky_relu")
        elif c.arch == "conv":
            self.encoder = ConvEncoder(c.x_shape, c.conv_channels, c.hidden, activation="relu")
            self.dec_conv = ConvDecoder(c.x_shape, c.conv_channels, c.hidden, activation="relu")
        else:
            self.encoder = MLP((c.hidden,) * (c.layers + 1), "relu", activate_final=True)
            self.dec_conv = MLP((c.hidden,) * (c.layers + 1) + (math.prod(c.x_shape),), "relu")
        self.head = GaussianHead(c.latent_dim, scale_param=c.scale_param, min_scale=c.min_scale)

    def encode_params(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [..., H, W, C] -> (loc [..., D], log_var [..., D])``."""
        if self.config.arch == "mlp":
            x = x.reshape(x.shape[:-3] + (-1,))
        return self.head(self.encoder(x))

    def decode(self, z: jax.Array) -> jax.Array:
        """``z [..., D] -> logits [..., H, W, C]``."""
        h = self.dec_mlp(z) if self.config.arch == "code" else z
        out = self.dec_conv(h)
        return out.reshape(z.shape[:-1] + self.config.x_shape)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode_params(x)[0])


class Terms(NamedTuple):
    r"""Per-example ``[B]`` terms at one sample :math:`z \sim q(z|x)`.

    Attributes:
      log_px_z: :math:`\log p(x|z)`, summed over pixels.
      mi, tc, tc_between, tc_within, dwkl: the decomposition (``tc_within`` is :math:`\sum_g \mathrm{TC}_g`;
        MWS/MSS estimates, so ``tc`` etc. carry the estimator's offset, module docstring of
        :mod:`jaxvae.objectives.total_correlation`).
      kl: :math:`\log q(z|x) - \log p(z)` (= mi + tc + dwkl).
      elbo: the standard single-sample ELBO :math:`\log p(x|z) - \mathrm{kl}`.
      objective: the β-STCVAE objective (what training maximises).
    """

    log_px_z: jax.Array
    mi: jax.Array
    tc: jax.Array
    tc_between: jax.Array
    tc_within: jax.Array
    dwkl: jax.Array
    kl: jax.Array
    elbo: jax.Array
    objective: jax.Array


def _get_x(batch: dict, config: Config) -> jax.Array:
    return check_images(get_entry(batch, "x", f"[B, *{config.x_shape}] in [0, 1]"), config.x_shape)


def _beta(batch: dict, config: Config) -> jax.Array:
    if isinstance(batch, dict) and "beta" in batch:
        beta = jnp.asarray(batch["beta"], jnp.float32)
        if beta.ndim != 0:
            raise ValueError(f"`batch['beta']` must be a scalar (one β per model); got shape {beta.shape}.")
        return beta
    return jnp.asarray(config.beta, jnp.float32)


def objective_terms(config: Config, params: PyTree, model_state: PyTree, batch: dict, key: PRNGKey) -> Terms:
    r"""The terms of the batch ``batch["x"]`` ``[B, H, W, C]`` (floats in [0, 1]), one sample of z each.

    .. math:: z = \mu(x) + \sigma(x)\,\epsilon, \qquad
              \mathcal{L} = \mathrm{beta\_stcvae\_objective}(\log p(x|z), \mathrm{terms}(z), \beta)
    """
    x = _get_x(batch, config)
    model, vs = STCVAE(config), variables(params, model_state)
    loc, log_var = model.apply(vs, x, method=STCVAE.encode_params)
    scale = jnp.exp(0.5 * log_var)
    z = Normal(loc, scale).sample(key)
    logits = model.apply(vs, z, method=STCVAE.decode)
    log_px_z = jnp.sum(bernoulli_log_prob(x, logits), axis=(1, 2, 3))
    t = total_correlation_terms(
        z,
        loc,
        scale,
        dataset_size=config.dataset_size,
        group_size=config.group_size,
        estimator=config.estimator,
        mws_normalizer=config.mws_normalizer,
    )
    objective = beta_stcvae_objective(log_px_z, t, _beta(batch, config), variant=config.variant)
    kl = t.log_qz_x - t.log_pz
    return Terms(log_px_z, t.mi, t.tc, t.tc_between, t.tc_within, t.dwkl, kl, log_px_z - kl, objective)


def make_loss_fn(config: Config) -> Callable:
    """The engine's ``loss_fn(params, model_state, batch, key, *, step=0) -> LossOutput``.

    ``loss = -mean_B(objective)``; metrics: batch means of every :class:`Terms` field (``elbo`` the standard one).
    """

    def loss_fn(params, model_state, batch, key, *, step=0) -> LossOutput:
        del step
        t = objective_terms(config, params, model_state, batch, key)
        metrics = {k: jnp.mean(v) for k, v in per_example(t).items()}
        return LossOutput(loss=-jnp.mean(t.objective), metrics=metrics, model_state=model_state)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """``eval_fn(params, model_state, batch, key) -> {'elbo', 'mi', 'tc_between', 'tc_within', ...}``, each ``[B]``.

    The TC parts are minibatch estimates over the evaluation batch (its size is the ``M`` of MWS).
    """

    def eval_fn(params, model_state, batch, key) -> dict:
        return per_example(objective_terms(config, params, model_state, batch, key))

    return eval_fn


def make_posterior_fn(config: Config, params: PyTree, model_state: PyTree | None = None) -> Callable:
    """``f(x [B, H, W, C]) -> (loc [B, D], scale [B, D])`` of ``q(z|x)`` (for MIG, SAP, FactorVAE)."""
    model, vs = STCVAE(config), variables(params, model_state)

    def posterior(x: ArrayLike):
        loc, log_var = model.apply(vs, check_images(x, config.x_shape, value_range=None), method=STCVAE.encode_params)
        return loc, jnp.exp(0.5 * log_var)

    return posterior


def make_decode_fn(config: Config, params: PyTree, model_state: PyTree | None = None) -> Callable:
    """``f(z [..., D]) -> sigmoid(decode(z)) [..., H, W, C]`` (decoder means, for traversals)."""
    model, vs = STCVAE(config), variables(params, model_state)
    return lambda z: jax.nn.sigmoid(model.apply(vs, jnp.asarray(z), method=STCVAE.decode))


@functools.partial(jax.jit, static_argnums=(0,))
def _init(config: Config, key: PRNGKey) -> dict:
    return STCVAE(config).init(key, jnp.zeros((1,) + config.x_shape, jnp.float32))


def init(config: Config, key) -> tuple[PyTree, PyTree]:
    """Initialise ``(params, model_state)`` from a key or an int seed; ``model_state`` is ``{}``."""
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a jaxvae.models.stcvae.Config; got {type(config).__name__}.")
    vs = dict(_init(config, as_key(key)))
    params = vs.pop("params")
    return params, vs

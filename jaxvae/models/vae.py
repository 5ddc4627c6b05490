r"""The baseline Gaussian VAE (Kingma & Welling, 2014) with a Bernoulli decoder.

Model::

    p(z) = N(0, I)                                   latent_dim D (default 50)
    p(x | z) = prod_i Bernoulli(x_i; sigmoid(decode(z)_i))
    q(z | x) = N(mu(x), diag sigma^2(x))             encoder + GaussianHead

Objective (per example, ``[B]``)::

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))   one reparameterised z = mu + sigma * eps
    loss    = -mean_B (E_q[log p(x|z)] - beta * KL)  beta = 1 gives the plain ELBO

``kl="analytic"`` uses :math:`KL = \tfrac12 \sum_d (\sigma_d^2 + \mu_d^2 - 1 - \log\sigma_d^2)`;
``kl="mc"`` uses the single-sample estimate :math:`\log q(z|x) - \log p(z)` at the same z.

Importance weights for the marginal likelihood (Burda et al., 2016, Eq. 8)::

    log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),   z_k ~ q(z | x),  k = 1..K

:func:`make_log_weight_fn` runs the encoder once per example and the decoder once on all
``K x B`` latent samples (one matmul of ``K*B`` rows per layer); ``jaxvae.metrics.iw_nll`` streams
it over chunks of K.

Architectures: ``arch="mlp"``: encoder ``x -> hidden... -> (mu, sigma)``, decoder
``z -> reversed(hidden) -> logits`` (defaults 784-500-500-50, tanh as in Burda et al.);
``arch="conv"``: :class:`jaxvae.nets.ConvEncoder`/:class:`~jaxvae.nets.ConvDecoder` with a dense
layer of ``hidden[0]`` units, for ``x_shape=(28, 28, 1)``.

Variance parameterisation (``scale_param``): ``"softplus"`` (default),
``sigma = softplus(s) + min_scale``, which keeps samples and KL gradients polynomial in the raw
output; ``"log_var"`` is the paper's ``log sigma^2 = s`` (see :mod:`jaxvae.nets.heads`).

Differences from the papers: the variance parameterisation default (above); the decoder always
outputs logits and the likelihood uses ``log_sigmoid`` forms (no clipping of probabilities).
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
from jaxvae.distributions.normal import Normal, kl_normal_std, normal_log_prob, normal_log_prob_logvar
from jaxvae.models.common import as_key, check_images, get_entry, loss_output, per_example, variables
from jaxvae.nets.conv import ConvDecoder, ConvEncoder
from jaxvae.nets.heads import SCALE_PARAMS, GaussianHead
from jaxvae.nets.mlp import ACTIVATIONS, MLP
from jaxvae.objectives.elbo import ElboTerms, elbo
from jaxvae.train.state import LossOutput
from jaxvae.typing import PRNGKey, PyTree

ARCHS = ("mlp", "conv")
KLS = ("analytic", "mc")
LIKELIHOODS = ("bernoulli",)


@dataclasses.dataclass(frozen=True)
class Config:
    """Baseline VAE configuration (hashable; usable as a static jit argument).

    Attributes:
      arch: ``"mlp"`` or ``"conv"``.
      latent_dim: D, number of stochastic units (Burda et al.: 50).
      hidden: deterministic layer widths of the encoder (the decoder uses them reversed);
        for ``"conv"`` only ``hidden[0]`` is used (the dense layer after the convolutions).
      activation: name in :data:`jaxvae.nets.mlp.ACTIVATIONS` (Burda et al.: ``"tanh"``).
      likelihood: ``"bernoulli"`` (decoder outputs logits).
      kl: ``"analytic"`` (closed form) or ``"mc"`` (single-sample ``log q - log p``).
      beta: weight of the KL term in the training loss (the reported ``elbo`` always uses 1).
      kl_warmup_steps: a KL warm-up: the weight grows linearly from 0 to ``beta`` over this many steps
        (``beta * min(1, step / kl_warmup_steps)``, the engine passing the step); 0: ``beta`` throughout.
      x_shape: trailing shape of one example: ``(784,)`` for the MLP, ``(28, 28, 1)`` for conv.
      scale_param: ``"softplus"`` (default, stable) or ``"log_var"`` for the posterior scale.
      min_scale: posterior scale floor under ``"softplus"``.
      conv_channels: channels of the stride-2 convolutions (``"conv"`` only).
    """

    arch: str = "mlp"
    latent_dim: int = 50
    hidden: tuple[int, ...] = (500, 500)
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    kl: str = "analytic"
    beta: float = 1.0
    kl_warmup_steps: int = 0
    x_shape: tuple[int, ...] = (784,)
    scale_param: str = "softplus"
    min_scale: float = 1e-4
    conv_channels: tuple[int, ...] = (32, 64)

    def __post_init__(self):
        set_field(self, "hidden", as_widths("hidden", self.hidden))
        set_field(self, "x_shape", as_shape("x_shape", self.x_shape))
        set_field(self, "conv_channels", as_widths("conv_channels", self.conv_channels))
        check_one_of("arch", self.arch, ARCHS)
        check_one_of("kl", self.kl, KLS)
        check_one_of("likelihood", self.likelihood, LIKELIHOODS)
        check_one_of("activation", self.activation, tuple(ACTIVATIONS))
        check_one_of("scale_param", self.scale_param, SCALE_PARAMS)
        check_positive_int("latent_dim", self.latent_dim)
        check_nonnegative("beta", self.beta)
        check_positive_int("kl_warmup_steps", self.kl_warmup_steps, allow_zero=True)
        check_nonnegative("min_scale", self.min_scale)
        if self.arch == "conv":
            f = 2 ** len(self.conv_channels)
            if len(self.x_shape) != 3 or self.x_shape[0] % f or self.x_shape[1] % f:
                raise ValueError(
                    f"`x_shape` must be (H, W, C) with H, W divisible by {f} for arch='conv' "
                    f"(e.g. (28, 28, 1)); got {self.x_shape!r}."
                )

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one example as an image: ``(H, W)`` or ``(H, W, C)`` (square for flat inputs)."""
        if len(self.x_shape) == 1:
            side = math.isqrt(self.x_shape[0])
            if side * side != self.x_shape[0]:
                raise ValueError(f"`x_shape` {self.x_shape} is flat and not square; cannot form images.")
            return (side, side)
        return self.x_shape


class VAE(nn.Module):
    """Linen module: ``encode(x) -> Normal``, ``decode(z) -> logits``.

    ``x`` has shape ``[..., *config.x_shape]``; ``z`` has shape ``[..., D]`` with any number of
    leading axes (e.g. ``[K, B, D]``); logits have shape ``[..., *config.x_shape]``.
    ``__call__(x)`` decodes the posterior mean (used by ``init``).
    """

    config: Config

    def setup(self):
        c = self.config
        if c.arch == "mlp":
            self.encoder = MLP(c.hidden, c.activation, activate_final=True)
            self.decoder = MLP(tuple(reversed(c.hidden)) + (math.prod(c.x_shape),), c.activation)
        else:
            self.encoder = ConvEncoder(c.x_shape, c.conv_channels, c.hidden[0], activation=c.activation)
            self.decoder = ConvDecoder(c.x_shape, c.conv_channels, c.hidden[0], activation=c.activation)
        self.head = GaussianHead(c.latent_dim, scale_param=c.scale_param, min_scale=c.min_scale)

    def encode_params(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [..., *x_shape] -> (loc [..., D], log_var [..., D])``."""
        c = self.config
        if c.arch == "mlp":
            lead = x.shape[: x.ndim - len(c.x_shape)]
            x = x.reshape(lead + (math.prod(c.x_shape),))
        return self.head(self.encoder(x))

    def encode(self, x: jax.Array) -> Normal:
        """The posterior ``q(z|x) = N(loc, exp(log_var))`` as a :class:`Normal` record."""
        loc, log_var = self.encode_params(x)
        return Normal(loc, jnp.exp(0.5 * log_var))

    def decode(self, z: jax.Array) -> jax.Array:
        """``z [..., D] -> logits [..., *x_shape]``."""
        out = self.decoder(z)
        return out.reshape(z.shape[:-1] + self.config.x_shape)

    def __call__(self, x: jax.Array) -> jax.Array:
        loc, _ = self.encode_params(x)
        return self.decode(loc)


# ----------------------------------------------------------------------------- the objective


class Terms(NamedTuple):
    """Per-example ELBO terms (each ``[B]``).

    Attributes:
      log_px_z: ``log p(x | z)`` at one reparameterised ``z ~ q(z|x)``, summed over the pixels.
      kl: ``KL(q(z|x) || p(z))``: closed form (``kl="analytic"``) or ``log q(z|x) - log p(z)`` at the
        same ``z`` (``kl="mc"``).
      elbo: ``log_px_z - kl``.
    """

    log_px_z: jax.Array
    kl: jax.Array
    elbo: jax.Array


def _sample_latents(key: PRNGKey, loc: jax.Array, log_var: jax.Array, num_samples: int) -> jax.Array:
    """``z = loc + sigma * eps``, ``eps ~ N(0, I)``: ``[num_samples, B, D]``."""
    return Normal(loc, jnp.exp(0.5 * log_var)).sample(key, (num_samples,))


def _log_weights_parts(model: VAE, vs: dict, x: jax.Array, key: PRNGKey, num_samples: int):
    """``(loc, log_var, z [K, B, D], log p(x|z) [K, B])`` for ``K = num_samples`` draws of q(z|x)."""
    loc, log_var = model.apply(vs, x, method=VAE.encode_params)
    z = _sample_latents(key, loc, log_var, num_samples)
    logits = model.apply(vs, z, method=VAE.decode)
    lp = bernoulli_log_prob(x[None], logits)
    return loc, log_var, z, jnp.sum(lp, axis=tuple(range(2, lp.ndim)))


def _log_q_minus_log_p(z: jax.Array, loc: jax.Array, log_var: jax.Array) -> jax.Array:
    """``log q(z|x) - log p(z)`` summed over D, ``[K, B]``."""
    log_q = jnp.sum(normal_log_prob_logvar(z, loc[None], log_var[None]), axis=-1)
    return log_q - jnp.sum(normal_log_prob(z, 0.0, 1.0), axis=-1)


def objective_terms(
    config: Config, params: PyTree, model_state: PyTree, batch: dict, key: PRNGKey, *, train: bool = True
) -> tuple[Terms, PyTree]:
    r"""The ELBO's terms for ``batch["x"]`` ``[B, *x_shape]`` (floats in [0, 1]), one sample of z each.

    .. math:: \mathrm{ELBO}(x) = \log p(x \mid z) - KL(q(z \mid x) \,\|\, p(z)),
              \quad z = \mu(x) + \sigma(x)\,\epsilon

    Returns:
      ``(Terms, model_state)``; this model has no batch statistics, so ``train`` changes nothing and
      ``model_state`` comes back unchanged.
    """
    del train
    x = _get_x(batch, config)
    model = VAE(config)
    loc, log_var, z, log_px_z = _log_weights_parts(model, variables(params, model_state), x, key, 1)
    if config.kl == "analytic":
        kl = jnp.sum(kl_normal_std(loc, log_var), axis=-1)
    else:
        kl = _log_q_minus_log_p(z, loc, log_var)[0]
    log_px_z = log_px_z[0]
    return Terms(log_px_z, kl, elbo(ElboTerms(log_px_z, kl))), model_state


def _get_x(batch: dict, config: Config) -> jax.Array:
    return check_images(get_entry(batch, "x", f"[B, *{config.x_shape}] in [0, 1]"), config.x_shape)


def kl_weight(config: Config, step: ArrayLike = 0) -> jax.Array:
    """The KL weight at ``step``: ``beta``, or ``beta * min(1, step / kl_warmup_steps)`` under a warm-up."""
    if config.kl_warmup_steps == 0:
        return jnp.asarray(config.beta, jnp.float32)
    return config.beta * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / config.kl_warmup_steps)


def make_loss_fn(config: Config) -> Callable:
    """The engine's ``loss_fn(params, model_state, batch, key, *, step=0) -> LossOutput``.

    ``loss = -mean_B(log_px_z - kl_weight(step) * kl)`` (:func:`kl_weight`; the engine passes the step);
    metrics (batch means): ``elbo`` (weight 1), ``log_px_z``, ``kl``.
    """

    def loss_fn(params, model_state, batch, key, *, step=0) -> LossOutput:
        t, model_state = objective_terms(config, params, model_state, batch, key)
        return loss_output(elbo(ElboTerms(t.log_px_z, t.kl), beta=kl_weight(config, step)), t, model_state)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """The engine's ``eval_fn(params, model_state, batch, key) -> {'log_px_z', 'kl', 'elbo'}`` (each ``[B]``)."""

    def eval_fn(params, model_state, batch, key) -> dict:
        return per_example(objective_terms(config, params, model_state, batch, key, train=False)[0])

    return eval_fn


# ----------------------------------------------------------------------------- evaluation helpers


def _check_num_samples(num_samples, name: str = "num_samples") -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`{name}` must be a positive Python int (a static shape); got {num_samples!r}.")
    return num_samples


def make_log_weight_fn(config: Config, params: PyTree, model_state: PyTree | None = None) -> Callable:
    """``f(key, x [B, *x_shape], num_samples) -> log_w [num_samples, B]`` for importance sampling.

    ``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)``, ``z_k ~ q(z|x)``. The encoder runs once
    on ``x``; the decoder runs once on all ``num_samples x B`` latents. At ``num_samples=1`` with
    the same key it reproduces ``make_eval_fn(replace(config, kl="mc"))``'s ``elbo`` (same draw).
    ``num_samples`` must be a Python int (it is a shape).
    """
    model, vs = VAE(config), variables(params, model_state)

    def log_weight_fn(key: PRNGKey, x: ArrayLike, num_samples: int) -> jax.Array:
        x = check_images(x, config.x_shape)
        loc, log_var, z, log_px_z = _log_weights_parts(model, vs, x, key, _check_num_samples(num_samples))
        return log_px_z - _log_q_minus_log_p(z, loc, log_var)

    return log_weight_fn


def make_posterior_mean_fn(config: Config, params: PyTree, model_state: PyTree | None = None) -> Callable:
    """``f(x [B, *x_shape]) -> E_q[z] [B, D]`` (for active units and probes)."""
    model, vs = VAE(config), variables(params, model_state)

    def posterior_mean(x: ArrayLike) -> jax.Array:
        return model.apply(vs, check_images(x, config.x_shape), method=VAE.encode_params)[0]

    return posterior_mean


@functools.partial(jax.jit, static_argnums=(0,))
def _init(config: Config, key: PRNGKey) -> dict:
    return VAE(config).init(key, jnp.zeros((1,) + config.x_shape, jnp.float32))


def init(config: Config, key) -> tuple[PyTree, PyTree]:
    """Initialise ``(params, model_state)`` from a key or an int seed; ``model_state`` is ``{}``.

    Jitted (one compile per config): eager Linen init compiles every initializer op separately.
    """
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a jaxvae.models.vae.Config; got {type(config).__name__}.")
    vs = dict(_init(config, as_key(key)))
    params = vs.pop("params")
    return params, vs


def _as_images(config: Config, probs: jax.Array) -> jax.Array:
    return probs.reshape(probs.shape[:1] + config.image_shape)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample_images(config, params, key, n):
    z = jax.random.normal(key, (n, config.latent_dim))
    return jax.nn.sigmoid(VAE(config).apply({"params": params}, z, method=VAE.decode))


def sample_images(config: Config, params: PyTree, key, n: int) -> jax.Array:
    """Decoder means ``sigmoid(decode(z))``, ``z ~ p(z)``: ``[n, *image_shape]`` in [0, 1]."""
    return _as_images(config, _sample_images(config, params, as_key(key), _check_num_samples(n, "n")))


@functools.partial(jax.jit, static_argnums=(0,))
def _reconstruct(config, params, x):
    model = VAE(config)
    loc, _ = model.apply({"params": params}, x, method=VAE.encode_params)
    return jax.nn.sigmoid(model.apply({"params": params}, loc, method=VAE.decode))


def reconstruct(config: Config, params: PyTree, x: ArrayLike) -> jax.Array:
    """Decoder means at the posterior mean, ``sigmoid(decode(E_q[z]))``: ``[B, *image_shape]`` in [0, 1]."""
    return _as_images(config, _reconstruct(config, params, check_images(x, config.x_shape)))

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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.distributions.normal import Normal, kl_normal_std
from jaxvae.nets.conv import ConvDecoder, ConvEncoder
from jaxvae.nets.heads import SCALE_PARAMS, GaussianHead
from jaxvae.nets.mlp import ACTIVATIONS, MLP
from jaxvae.objectives.elbo import ElboTerms, elbo
from jaxvae.train.state import LossOutput
from jaxvae.typing import PRNGKey, PyTree

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
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
    x_shape: tuple[int, ...] = (784,)
    scale_param: str = "softplus"
    min_scale: float = 1e-4
    conv_channels: tuple[int, ...] = (32, 64)

    def __post_init__(self):
        # Normalise sequences to tuples so the config stays hashable.
        for name in ("hidden", "x_shape", "conv_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.arch not in ARCHS:
            raise ValueError(f"`arch` must be one of {ARCHS}; got {self.arch!r}.")
        if self.kl not in KLS:
            raise ValueError(f"`kl` must be one of {KLS}; got {self.kl!r}.")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"`likelihood` must be one of {LIKELIHOODS}; got {self.likelihood!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {sorted(ACTIVATIONS)}; got {self.activation!r}.")
        if self.scale_param not in SCALE_PARAMS:
            raise ValueError(f"`scale_param` must be one of {SCALE_PARAMS}; got {self.scale_param!r}.")
        if int(self.latent_dim) <= 0:
            raise ValueError(f"`latent_dim` must be a positive int; got {self.latent_dim!r}.")
        if not self.hidden or min(self.hidden) <= 0:
            raise ValueError(f"`hidden` must be a non-empty tuple of positive widths; got {self.hidden!r}.")
        if not self.x_shape or min(self.x_shape) <= 0:
            raise ValueError(f"`x_shape` must be a non-empty tuple of positive sizes; got {self.x_shape!r}.")
        if not (float(self.beta) >= 0.0 and math.isfinite(float(self.beta))):
            raise ValueError(f"`beta` must be finite and >= 0; got {self.beta!r}.")
        if not float(self.min_scale) >= 0.0:
            raise ValueError(f"`min_scale` must be >= 0; got {self.min_scale!r}.")
        if self.arch == "conv":
            f = 2 ** len(self.conv_channels)
            if len(self.x_shape) != 3 or self.x_shape[0] % f or self.x_shape[1] % f:
                raise ValueError(
                    f"`x_shape` must be (H, W, C) with H, W divisible by {f} for arch='conv' "
                    f"(e.g. (28, 28, 1)); got {self.x_shape!r}."
                )

    @property
    def event_ndims(self) -> int:
        return len(self.x_shape)

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
            lead = x.shape[: x.ndim - c.event_ndims]
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


# ----------------------------------------------------------------------------- validation


def check_x(x: ArrayLike, config: Config, name: str = "x") -> jax.Array:
    """Validate a batch ``x [B, *config.x_shape]`` of floats (values in [0, 1] when concrete).

    Shape and dtype are checked always (they are static under ``jit``); values only when concrete.

    Raises:
      ValueError: naming ``name`` and the expected shape / dtype / range.
    """
    shape = tuple(np.shape(x))
    want = (-1,) + config.x_shape
    n = config.event_ndims
    if len(shape) != n + 1 or shape[1:] != config.x_shape:
        raise ValueError(f"`{name}` must have shape [B, *x_shape] = {want} (B = batch); got shape {shape}.")
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"`{name}` must be a floating array (e.g. float32 in [0, 1]); got dtype {dtype}. "
            f"Convert with `jaxvae.data.mnist.to_unit_float` or `x.astype(jnp.float32)`."
        )
    _checks.check_probability(name, x)
    return jnp.asarray(x)


def _check_num_samples(num_samples) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive Python int (a static shape); got {num_samples!r}.")
    return int(num_samples)


# ----------------------------------------------------------------------------- maths


def _variables(params: PyTree, model_state: PyTree | None) -> dict:
    return {"params": params, **(model_state or {})}


def _reparam(key: PRNGKey, loc: jax.Array, log_var: jax.Array, num_samples: int):
    """``z = loc + sigma * eps`` with ``eps ~ N(0, I)`` of shape ``[K, B, D]``; returns ``(z, eps)``."""
    eps = jax.random.normal(key, (num_samples,) + loc.shape, dtype=loc.dtype)
    z = loc[None] + jnp.exp(0.5 * log_var)[None] * eps
    return z, eps


def _log_qz_x(eps: jax.Array, log_var: jax.Array) -> jax.Array:
    """``log q(z|x)`` summed over D at ``z = loc + sigma * eps``: ``sum_d -eps^2/2 - log_var/2 - log(2 pi)/2``."""
    return jnp.sum(-0.5 * jnp.square(eps) - 0.5 * log_var[None] - _HALF_LOG_2PI, axis=-1)


def _log_pz(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I)`` summed over the last axis."""
    return jnp.sum(-0.5 * jnp.square(z) - _HALF_LOG_2PI, axis=-1)


def _log_px_z(config: Config, logits: jax.Array, x: jax.Array) -> jax.Array:
    """``log p(x|z)`` summed over the event axes; ``logits [K, B, *x_shape]``, ``x [B, *x_shape]``."""
    lp = bernoulli_log_prob(x[None], logits)
    return jnp.sum(lp, axis=tuple(range(2, lp.ndim)))


def elbo_terms(config: Config, params: PyTree, model_state: PyTree, x: jax.Array, key: PRNGKey) -> dict:
    """Per-example ELBO terms with one reparameterised sample.

    Returns:
      dict of ``[B]`` arrays: ``log_px_z``, ``kl`` (analytic or MC per ``config.kl``) and
      ``elbo = log_px_z - kl``.
    """
    model = VAE(config)
    variables = _variables(params, model_state)
    loc, log_var = model.apply(variables, x, method=VAE.encode_params)
    z, eps = _reparam(key, loc, log_var, 1)
    logits = model.apply(variables, z, method=VAE.decode)
    log_px_z = _log_px_z(config, logits, x)[0]
    if config.kl == "analytic":
        kl = jnp.sum(kl_normal_std(loc, log_var), axis=-1)
    else:
        kl = (_log_qz_x(eps, log_var) - _log_pz(z))[0]
    return {"elbo": elbo(ElboTerms(log_px_z, kl)), "log_px_z": log_px_z, "kl": kl}


# ----------------------------------------------------------------------------- public API


@functools.partial(jax.jit, static_argnums=(0,))
def _init(config: Config, key: PRNGKey) -> dict:
    return VAE(config).init(key, jnp.zeros((1,) + config.x_shape, jnp.float32))


def init(config: Config, key: PRNGKey) -> tuple[PyTree, PyTree]:
    """Initialise ``(params, model_state)``; ``model_state`` is ``{}`` (no batch statistics).

    Jitted (one compile per config): eager Linen init compiles every initializer op separately.
    """
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a jaxvae.models.vae.Config; got {type(config).__name__}.")
    variables = dict(_init(config, key))
    params = variables.pop("params")
    return params, variables


def _get_x(batch: dict, config: Config) -> jax.Array:
    if not isinstance(batch, dict) or "x" not in batch:
        keys = list(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"`batch` must be a dict with key 'x' of shape [B, *{config.x_shape}]; got {keys}.")
    return check_x(batch["x"], config, name="x")


def make_loss_fn(config: Config) -> Callable:
    """The engine's ``loss_fn(params, model_state, batch, key) -> LossOutput``.

    ``loss = -mean_B(log_px_z - beta * kl)``; metrics (batch means): ``elbo`` (beta = 1),
    ``log_px_z``, ``kl``. ``batch["x"]``: ``[B, *config.x_shape]`` floats in [0, 1].
    """

    def loss_fn(params, model_state, batch, key) -> LossOutput:
        x = _get_x(batch, config)
        t = elbo_terms(config, params, model_state, x, key)
        loss = -jnp.mean(elbo(ElboTerms(t["log_px_z"], t["kl"]), beta=config.beta))
        metrics = {k: jnp.mean(v) for k, v in t.items()}
        return LossOutput(loss=loss, metrics=metrics, model_state=model_state)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """The engine's ``eval_fn(params, model_state, batch, key) -> {'elbo', 'log_px_z', 'kl'}`` (each ``[B]``)."""

    def eval_fn(params, model_state, batch, key) -> dict:
        return elbo_terms(config, params, model_state, _get_x(batch, config), key)

    return eval_fn


def make_log_weight_fn(config: Config, params: PyTree, model_state: PyTree | None = None) -> Callable:
    """``f(key, x [B, *x_shape], num_samples) -> log_w [num_samples, B]`` for importance sampling.

    ``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)``, ``z_k ~ q(z|x)``. The encoder runs once
    on ``x``; the decoder runs once on all ``num_samples x B`` latents. At ``num_samples=1`` with
    the same key it reproduces ``make_eval_fn(replace(config, kl="mc"))``'s ``elbo`` exactly (same
    draw). ``num_samples`` must be a Python int (it is a shape).
    """
    model = VAE(config)
    variables = _variables(params, model_state)

    def log_weight_fn(key: PRNGKey, x: ArrayLike, num_samples: int) -> jax.Array:
        x = check_x(x, config, name="x")
        k = _check_num_samples(num_samples)
        loc, log_var = model.apply(variables, x, method=VAE.encode_params)
        z, eps = _reparam(key, loc, log_var, k)
        logits = model.apply(variables, z, method=VAE.decode)
        return _log_px_z(config, logits, x) + _log_pz(z) - _log_qz_x(eps, log_var)

    return log_weight_fn


def make_posterior_mean_fn(config: Config, params: PyTree, model_state: PyTree | None = None) -> Callable:
    """``f(x [B, *x_shape]) -> E_q[z] [B, D]`` (for active units and probes)."""
    model = VAE(config)
    variables = _variables(params, model_state)

    def posterior_mean(x: ArrayLike) -> jax.Array:
        x = check_x(x, config, name="x")
        return model.apply(variables, x, method=VAE.encode_params)[0]

    return posterior_mean


def _as_images(config: Config, probs: jax.Array) -> jax.Array:
    return probs.reshape(probs.shape[:1] + config.image_shape)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample_images(config, params, key, n):
    z = jax.random.normal(key, (n, config.latent_dim))
    return jax.nn.sigmoid(VAE(config).apply({"params": params}, z, method=VAE.decode))


def sample_images(config: Config, params: PyTree, key: PRNGKey, n: int) -> jax.Array:
    """Decoder means ``sigmoid(decode(z))``, ``z ~ p(z)``: ``[n, *image_shape]`` in [0, 1]."""
    return _as_images(config, _sample_images(config, params, key, _check_num_samples(n)))


@functools.partial(jax.jit, static_argnums=(0,))
def _reconstruct(config, params, x):
    model = VAE(config)
    loc, _ = model.apply({"params": params}, x, method=VAE.encode_params)
    return jax.nn.sigmoid(model.apply({"params": params}, loc, method=VAE.decode))


def reconstruct(config: Config, params: PyTree, x: ArrayLike) -> jax.Array:
    """Decoder means at the posterior mean, ``sigmoid(decode(E_q[z]))``: ``[B, *image_shape]`` in [0, 1]."""
    return _as_images(config, _reconstruct(config, params, check_x(x, config, name="x")))

r"""Rivera's VAE-GAN: a ResNetV2 VAE with the population ("mixture of Gaussians") KL, the
variance-collapse regularizer and a PatchGAN discriminator.

M. Rivera, "How to train your VAE", arXiv:2309.13160 (ICIP 2024); the equations below are those
of the official code (``marianorivera/How2TrainUrVAE``, class ``VAE_GAN.train_step``), data in [-1, 1].

Model::

    q(z | x) = N(mu(x), diag sigma^2(x))          ResNetV2Encoder (jaxvae.nets.resnet), D = latent_dim
    z        = mu + sigma * eps,  eps ~ N(0, I)   one reparameterised draw per example
    x_hat    = decode(z)                          ResNetV2Decoder, linear output
    D(x)     = PatchGAN logits [B, H', W', 1]     (jaxvae.nets.patchgan)

Generator (VAE) loss, per example ``i`` of a batch of ``B`` (:class:`Terms`; the engine averages)::

    rec_i     = rec_weight * mean_pixels |x_i - x_hat_i|               5000 * MAE
    kl        = "per_sample":          sum_d KL(N(mu_id, sigma_id^2) || N(0, 1))     (the "How NOT to" baseline)
                "population":          -1/2 sum_d [1 + log s_d^2 - m_d^2 - s_d^2],
                                       m_d = mean_i mu_id, s_d^2 = var_i mu_id        (the code: means only)
                "population_moment":   the same with s_d^2 = var_i mu_id + mean_i sigma_id^2
                                       (the exact moment match of the batch mixture; a lower bound on its KL)
    var_i     = var_reg_weight * sum_d (sigma_id^2 - log sigma_id^2 - 1)            0.1 in the code
    adv_i     = adv_weight * BCE(1, D(x_hat_i))  (patch-averaged)                   100 in the code
    L_G       = mean_i (rec_i + kl_i + var_i + adv_i)

The population KL is one number per batch (it is not per example); :class:`Terms` carries it
broadcast to ``[B]``, so its batch mean is the batch's value. Discriminator loss::

    L_D = mean_i adv_weight * [BCE(1, D(x_i)) + BCE(0, D(x_hat_i))]

with the non-saturating BCE on logits of :mod:`jaxvae.objectives.adversarial` (``gan_loss`` selects
the hinge or least-squares variants). ``D`` runs twice per step, on the real batch and on the
reconstructions (its batch statistics updated by each call in turn, as the code's two Keras calls).
Both players step from the same forward pass (simultaneous updates, Adam(1e-4, b1=0.5) each,
:func:`make_optimizers`) with :func:`jaxvae.train.adversarial.make_adversarial_step` on
:func:`make_adversarial_loss_fn`; without the adversary the engine's plain step on :func:`make_loss_fn`::

    tx = mog_vaegan.make_optimizers(cfg)
    state = create_adversarial_state(key, *mog_vaegan.init(cfg, 0), tx)
    step = make_adversarial_step(mog_vaegan.make_adversarial_loss_fn(cfg), tx)

Parameters are ``{"vae": ..., "disc": ...}`` (``"disc"`` absent without the adversary), the batch
statistics ``{"vae": {"batch_stats": ...}, "disc": {"batch_stats": ...}}``.

Defaults are the paper's configuration (256x256x3, latent 512, six stages of width 128, PatchGAN
``(128, 128, 128, 64, 64, 1)``); ``experiments/mog_vaegan/configs`` holds the CPU-scale one (MNIST
padded to 32x32 in [-1, 1], the stand-in for CelebA-HQ) and ``celeba_hq_256.py``.

Differences from the code: none in the equations; the Keras ``Sampler``'s log-variance head is
:class:`~jaxvae.nets.heads.GaussianHead` with ``scale_param="log_var"`` (the same linear layer).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxvae.config import as_shape, as_widths, check_nonnegative, check_one_of, check_positive, check_positive_int
from jaxvae.distributions.mixture_kl import population_kl
from jaxvae.metrics.image_quality import psnr
from jaxvae.models.common import as_key, check_images, get_entry, per_example
from jaxvae.nets.patchgan import PatchGAN
from jaxvae.nets.resnet import ResNetV2Decoder, ResNetV2Encoder
from jaxvae.objectives import adversarial as gan
from jaxvae.objectives.regularizers import per_sample_kl, variance_regularizer
from jaxvae.train.state import AdversarialLossOutput, LossOutput
from jaxvae.typing import PRNGKey, PyTree

KLS = ("per_sample", "population", "population_moment")
VALUE_RANGE = (-1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Config:
    """Rivera's VAE-GAN (hashable; a static jit argument). Defaults: the paper's code at 256x256x3.

    Attributes:
      x_shape: ``(H, W, C)`` of one image, values in [-1, 1]; H, W divisible by ``2 ** (len(enc_widths) - 1)``.
      latent_dim: ``D`` (code: 512).
      enc_widths: encoder stem width then one width per stride-2 stage (code: ``(128,) * 7``).
      dec_widths: decoder stem width then one per upsampling stage (code: ``(128,) * 6 + (3,)``);
        as many stages as the encoder.
      enc_blocks, dec_blocks: identity blocks per stage (code: 2 and 1).
      bottleneck_channels: channels of the smallest grid (code: ``latent_dim // 8``); ``None`` for that.
      kl: ``"per_sample"``, ``"population"`` (the code) or ``"population_moment"`` (module docstring).
      var_reg_weight: weight of the variance regularizer (code: 0.1; the baseline uses 0).
      rec_weight: weight of the MAE (code: 5000).
      adversarial: train the PatchGAN and add its generator term.
      adv_weight: weight of both players' GAN losses (code: 100).
      gan_loss: ``"nonsaturating"`` (code), ``"hinge"`` or ``"least_squares"``.
      disc_features, disc_strides, disc_dropout: the PatchGAN (code: ``(128, 128, 128, 64, 64, 1)``,
        ``(2, 2, 2, 1, 1, 1)``, 0.25).
      learning_rate, b1: Adam for both players (code: 1e-4, 0.5; b2 = 0.999).
    """

    x_shape: tuple[int, ...] = (256, 256, 3)
    latent_dim: int = 512
    enc_widths: tuple[int, ...] = (128,) * 7
    dec_widths: tuple[int, ...] = (128,) * 6 + (3,)
    enc_blocks: int = 2
    dec_blocks: int = 1
    bottleneck_channels: int | None = None
    kl: str = "population"
    var_reg_weight: float = 0.1
    rec_weight: float = 5000.0
    adversarial: bool = True
    adv_weight: float = 100.0
    gan_loss: str = "nonsaturating"
    disc_features: tuple[int, ...] = (128, 128, 128, 64, 64, 1)
    disc_strides: tuple[int, ...] = (2, 2, 2, 1, 1, 1)
    disc_dropout: float = 0.25
    learning_rate: float = 1e-4
    b1: float = 0.5

    def __post_init__(self):
        for name in ("x_shape",):
            object.__setattr__(self, name, as_shape(name, getattr(self, name)))
        for name in ("enc_widths", "dec_widths", "disc_features", "disc_strides"):
            object.__setattr__(self, name, as_widths(name, getattr(self, name)))
        if len(self.x_shape) != 3:
            raise ValueError(f"`x_shape` must be (H, W, C); got {self.x_shape!r}.")
        if len(self.dec_widths) != len(self.enc_widths):
            raise ValueError(
                f"`dec_widths` must have as many entries as `enc_widths` ({len(self.enc_widths)}: the same number "
                f"of stages); got {self.dec_widths!r}."
            )
        f = 2 ** (len(self.enc_widths) - 1)
        if self.x_shape[0] % f or self.x_shape[1] % f:
            raise ValueError(f"`x_shape` H and W must be divisible by {f} (2 ** stages); got {self.x_shape!r}.")
        if len(self.disc_strides) != len(self.disc_features):
            raise ValueError(
                f"`disc_strides` must have one entry per entry of `disc_features`; got {self.disc_strides!r}."
            )
        check_positive_int("latent_dim", self.latent_dim)
        check_positive_int("enc_blocks", self.enc_blocks, allow_zero=True)
        check_positive_int("dec_blocks", self.dec_blocks, allow_zero=True)
        if self.bottleneck_channels is not None:
            check_positive_int("bottleneck_channels", self.bottleneck_channels)
        check_one_of("kl", self.kl, KLS)
        check_one_of("gan_loss", self.gan_loss, gan.KINDS)
        check_nonnegative("var_reg_weight", self.var_reg_weight)
        check_nonnegative("rec_weight", self.rec_weight)
        check_nonnegative("adv_weight", self.adv_weight)
        if not 0.0 <= self.disc_dropout < 1.0:
            raise ValueError(f"`disc_dropout` must lie in [0, 1); got {self.disc_dropout!r}.")
        check_positive("learning_rate", self.learning_rate)
        if not 0.0 <= self.b1 < 1.0:
            raise ValueError(f"`b1` must lie in [0, 1); got {self.b1!r}.")


class VAE(nn.Module):
    """``encode(x, train) -> (loc, log_var)`` ``[..., D]``; ``decode(z, train) -> x_hat`` ``[..., *x_shape]``."""

    config: Config

    def setup(self):
        c = self.config
        self.encoder = ResNetV2Encoder(
            image_shape=c.x_shape,
            latent_dim=c.latent_dim,
            widths=c.enc_widths,
            blocks_per_stage=c.enc_blocks,
            bottleneck_channels=c.bottleneck_channels,
            scale_param="log_var",
        )
        self.decoder = ResNetV2Decoder(
            image_shape=c.x_shape,
            widths=c.dec_widths,
            blocks_per_stage=c.dec_blocks,
            bottleneck_channels=c.bottleneck_channels,
        )

    def encode(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        return self.encoder(x, train=train)

    def decode(self, z: jax.Array, *, train: bool) -> jax.Array:
        return self.decoder(z, train=train)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.decode(self.encode(x, train=train)[0], train=train)


def discriminator(config: Config) -> PatchGAN:
    """The PatchGAN of ``config``."""
    return PatchGAN(features=config.disc_features, strides=config.disc_strides, dropout_rate=config.disc_dropout)


# ----------------------------------------------------------------------------- the objective


class Terms(NamedTuple):
    """Per-example terms (each ``[B]``; see the module docstring).

    Attributes:
      rec: ``rec_weight * MAE`` of the example.
      kl: the configured KL; for the population forms the batch's value broadcast to ``[B]``.
      var_reg: the variance regularizer.
      adv: ``adv_weight`` times the generator's GAN loss (0 without the adversary).
      gen: ``rec + kl + var_reg + adv``, the generator's loss.
      disc: ``adv_weight`` times the discriminator's loss (0 without the adversary).
      mae: mean absolute error in [-1, 1] units (unweighted).
    """

    rec: jax.Array
    kl: jax.Array
    var_reg: jax.Array
    adv: jax.Array
    gen: jax.Array
    disc: jax.Array
    mae: jax.Array


def kl_term(config: Config, loc: jax.Array, log_var: jax.Array) -> jax.Array:
    """The configured KL for a ``[B, D]`` batch, as ``[B]`` (the population forms broadcast)."""
    if config.kl == "per_sample":
        return per_sample_kl(loc, log_var)
    value = population_kl(loc, log_var, include_variance=config.kl == "population_moment")
    return jnp.broadcast_to(value, loc.shape[:1])


def _get_x(batch: Any, config: Config) -> jax.Array:
    x = get_entry(batch, "x", f"[B, *{config.x_shape}] in [-1, 1]")
    return check_images(x, config.x_shape, value_range=VALUE_RANGE)


def objective_terms(
    config: Config, params: PyTree, model_state: PyTree, batch: Any, key: PRNGKey, *, train: bool = True
) -> tuple[Terms, PyTree]:
    """The generator's and discriminator's terms on ``batch["x"]`` ``[B, *x_shape]`` (in [-1, 1]).

    With ``train`` the batch statistics are used and the returned ``model_state`` holds their
    updates, and the discriminator's dropout is active; otherwise the running averages are used and
    ``model_state`` comes back unchanged.

    Returns:
      ``(Terms, model_state)``.
    """
    x = _get_x(batch, config)
    if x.shape[0] < 2 and config.kl != "per_sample":
        raise ValueError(f"`x` needs a batch of B >= 2 for kl={config.kl!r} (a batch variance); got shape {x.shape}.")
    k_eps, k_real, k_fake = jax.random.split(key, 3)
    model = VAE(config)
    mut = ["batch_stats"] if train else []
    vs = {"params": params["vae"], **model_state.get("vae", {})}
    (loc, log_var), enc_upd = model.apply(vs, x, train=train, method=VAE.encode, mutable=mut)
    z = loc + jnp.exp(0.5 * log_var) * jax.random.normal(k_eps, loc.shape, loc.dtype)
    x_hat, dec_upd = model.apply({**vs, **enc_upd}, z, train=train, method=VAE.decode, mutable=mut)
    new_ms = dict(model_state)
    if train:  # the decoder's call returns the whole collection, the encoder's updates included
        new_ms["vae"] = dict(dec_upd)
    mae = gan.per_example_mean(jnp.abs(x - x_hat))
    rec = config.rec_weight * mae
    kl = kl_term(config, loc, log_var)
    var_reg = variance_regularizer(log_var, config.var_reg_weight)
    zero = jnp.zeros_like(rec)
    adv, disc = zero, zero
    if config.adversarial:
        d = discriminator(config)
        dvs = {"params": params["disc"], **model_state.get("disc", {})}
        real, d_upd = d.apply(dvs, x, train=train, rngs={"dropout": k_real}, mutable=mut)
        fake, d_upd = d.apply({**dvs, **d_upd}, x_hat, train=train, rngs={"dropout": k_fake}, mutable=mut)
        if train:
            new_ms["disc"] = dict(d_upd)
        adv = config.adv_weight * gan.generator_loss(fake, config.gan_loss)
        disc = config.adv_weight * gan.discriminator_loss(real, fake, config.gan_loss)
    gen = rec + kl + var_reg + adv
    return Terms(rec, kl, var_reg, adv, gen, disc, mae), new_ms


def _metrics(t: Terms) -> dict[str, jax.Array]:
    return {k: jnp.mean(v) for k, v in per_example(t).items()}


def make_loss_fn(config: Config) -> Callable:
    """The engine's ``loss_fn(params, model_state, batch, key) -> LossOutput`` without the adversary:
    ``loss = mean_B(gen)``; metrics: the batch means of :class:`Terms`."""
    if config.adversarial:
        raise ValueError("`config.adversarial` is True: use make_adversarial_loss_fn (or make_train_step).")

    def loss_fn(params, model_state, batch, key) -> LossOutput:
        t, ms = objective_terms(config, params, model_state, batch, key)
        return LossOutput(jnp.mean(t.gen), _metrics(t), ms)

    return loss_fn


def make_adversarial_loss_fn(config: Config) -> Callable:
    """``loss_fn(params, model_state, batch, key) -> AdversarialLossOutput(mean gen, mean disc, metrics, ms)``
    for :func:`jaxvae.train.adversarial.make_adversarial_step`."""
    if not config.adversarial:
        raise ValueError("`config.adversarial` is False: use make_loss_fn.")

    def loss_fn(params, model_state, batch, key) -> AdversarialLossOutput:
        t, ms = objective_terms(config, params, model_state, batch, key)
        return AdversarialLossOutput(jnp.mean(t.gen), jnp.mean(t.disc), _metrics(t), ms)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """``eval_fn(params, model_state, batch, key) -> dict of [B]``: the :class:`Terms` (running batch
    statistics, no dropout) plus ``psnr`` (dB, range [-1, 1]) and ``per_sample_kl`` of each example."""

    def eval_fn(params, model_state, batch, key) -> dict:
        t, _ = objective_terms(config, params, model_state, batch, key, train=False)
        out = per_example(t)
        loc, log_var = encode(config, params, model_state, batch["x"])
        out["per_sample_kl"] = per_sample_kl(loc, log_var)
        x_hat = jnp.clip(decode(config, params, model_state, loc), *VALUE_RANGE)
        out["psnr"] = psnr(batch["x"], x_hat, value_range=VALUE_RANGE)
        return out

    return eval_fn


# ----------------------------------------------------------------------------- engine glue


def make_optimizers(config: Config) -> dict[str, optax.GradientTransformation]:
    """``{"vae": Adam, "disc": Adam}`` (``"disc"`` only with the adversary), Adam(learning_rate, b1)."""
    tx = {"vae": optax.adam(config.learning_rate, b1=config.b1)}
    if config.adversarial:
        tx["disc"] = optax.adam(config.learning_rate, b1=config.b1)
    return tx


def random_batch(config: Config, batch_size: int, *, seed: int = 0) -> dict:
    """``{"x": [batch_size, *x_shape]}`` uniform in [-1, 1] (smoke tests and throughput benchmarks)."""
    check_positive_int("batch_size", batch_size)
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(-1.0, 1.0, (batch_size,) + config.x_shape).astype(np.float32)}


@functools.partial(jax.jit, static_argnums=(0,))
def _init(config: Config, key: PRNGKey):
    k_vae, k_disc = jax.random.split(key)
    x = jnp.zeros((2,) + config.x_shape, jnp.float32)
    vs = dict(VAE(config).init(k_vae, x, train=False))
    params, ms = {"vae": vs.pop("params")}, {"vae": vs}
    if config.adversarial:
        dvs = dict(discriminator(config).init(k_disc, x, train=False))
        params["disc"], ms["disc"] = dvs.pop("params"), dvs
    return params, ms


def init(config: Config, key) -> tuple[PyTree, PyTree]:
    """``(params, model_state)`` from a key or an int seed: ``{"vae", "disc"}`` parameters and batch statistics."""
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a jaxvae.models.mog_vaegan.Config; got {type(config).__name__}.")
    return _init(config, as_key(key))


# ----------------------------------------------------------------------------- evaluation helpers


@functools.partial(jax.jit, static_argnums=(0,))
def _encode(config, params, model_state, x):
    vs = {"params": params["vae"], **model_state.get("vae", {})}
    return VAE(config).apply(vs, x, train=False, method=VAE.encode)


def encode(config: Config, params: PyTree, model_state: PyTree, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Posterior ``(loc, log_var)`` ``[B, D]`` of images ``x`` ``[B, *x_shape]`` in [-1, 1] (running statistics)."""
    return _encode(config, params, model_state, check_images(x, config.x_shape, value_range=VALUE_RANGE))


@functools.partial(jax.jit, static_argnums=(0,))
def _decode(config, params, model_state, z):
    vs = {"params": params["vae"], **model_state.get("vae", {})}
    return VAE(config).apply(vs, z, train=False, method=VAE.decode)


def decode(config: Config, params: PyTree, model_state: PyTree, z: ArrayLike) -> jax.Array:
    """Decoder output ``[B, *x_shape]`` (unclipped, ~[-1, 1]) of latents ``z`` ``[B, D]``."""
    z = jnp.asarray(z)
    if z.ndim != 2 or z.shape[1] != config.latent_dim:
        raise ValueError(f"`z` must be [B, {config.latent_dim}]; got shape {z.shape}.")
    return _decode(config, params, model_state, z)


def reconstruct(config: Config, params: PyTree, model_state: PyTree, x: ArrayLike) -> jax.Array:
    """``decode(E_q[z | x])``: ``[B, *x_shape]``."""
    return decode(config, params, model_state, encode(config, params, model_state, x)[0])


def sample_images(config: Config, params: PyTree, model_state: PyTree, key, n: int) -> jax.Array:
    """``decode(z)``, ``z ~ N(0, I)``: ``[n, *x_shape]``, clipped to [-1, 1]."""
    check_positive_int("n", n)
    z = jax.random.normal(as_key(key), (n, config.latent_dim))
    return jnp.clip(decode(config, params, model_state, z), *VALUE_RANGE)

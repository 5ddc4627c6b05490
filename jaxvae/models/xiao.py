r"""Xiao, Zenn & Bamler's residual convolutional VAE with the width knobs ``m_z`` and ``n_c`` (App. B.1, Tables 4-6).

Model (32x32 inputs; the latent is a spatial ``8 x 8 x d_z`` map, ``d_z = 64 m_z``)::

    p(z) = N(0, I)                                       z: [8, 8, d_z]
    q(z | x) = N(mu(x), diag sigma^2(x))                 encoder (Table 4)
    p(x | z) = prod_pixels Bernoulli(sigmoid(g(z)))      likelihood="bernoulli" (binary images)
             | prod_pixels,channels DMoL_K(x; g(z))     likelihood="logistic_mixture" (8-bit images)

Encoder (Table 4): Conv ``C -> n_c`` (k4, s2, p1, no bias), BN, ReLU; Conv ``n_c -> n_c`` (k4, s2, p1,
no bias), BN; Residual; Residual; Conv ``n_c -> 2 d_z`` (k1, bias): the mean and the log-variance.
Residual block (Table 6): ``x + BN(Conv3x3(ReLU(BN(Conv3x3(ReLU(x))))))``, convolutions without bias.
Decoder (Table 5, made to mirror the encoder): Conv ``d_z -> n_c`` (k1), BN, Residual, Residual,
ConvT ``n_c -> n_c`` (k4, s2), BN, ReLU, **ConvT ``n_c -> n_c`` (k4, s2), BN, ReLU** (the second
upsampling, missing in Table 5, which lists one x2 against the encoder's two /2), Conv ``n_c -> out``
(k1), where ``out = C`` (Bernoulli logits) or ``3 K C`` (per channel: K mixture logits, means,
log-scales; Table 5's 3 output channels cannot parameterise a MoL).

Width knobs (Sec. 4, Method B): ``Theta_z`` = the encoder's last layer and the decoder's first layer,
``|Theta_z|`` grows as ``d_z = 64 m_z``; every other parameter grows with ``n_c``.

Objective (per example, ``[B]``)::

    ELBO(x) = log p(x | z) - KL(q(z|x) || N(0, I)),   z = mu + sigma eps,  KL in closed form

BatchNorm uses batch statistics in training (``train=True``, updating ``model_state``) and the running
averages at evaluation, so evaluated examples are independent (as the gaps need).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvae.config import as_shape, check_one_of, check_positive_int, set_field
from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.distributions.logistic_mixture import discretized_logistic_mixture_log_prob
from jaxvae.distributions.normal import kl_normal_std
from jaxvae.models.common import as_key, check_images, get_entry, loss_output, per_example, variables
from jaxvae.objectives.elbo import ElboTerms, elbo
from jaxvae.typing import PRNGKey, PyTree

LIKELIHOODS = ("bernoulli", "logistic_mixture")


@dataclasses.dataclass(frozen=True)
class Config:
    """Residual conv VAE configuration (hashable).

    Attributes:
      x_shape: ``(H, W, C)`` with H, W divisible by 4 (32x32 in the paper; the latent is H/4 x W/4).
      m_z: latent width multiplier, ``d_z = 64 m_z`` latent channels (paper: 1..64, baseline 1).
      n_c: internal channel count (paper: 1..512, baseline 256).
      likelihood: ``"bernoulli"`` (x in {0, 1}) or ``"logistic_mixture"`` (x on the 8-bit grid in [0, 1]).
      num_mixtures: K of the mixture of logistics (not stated in the paper).
      bn_momentum: momentum of BatchNorm's running averages.
      zero_init_posterior: start the encoder's last layer (kernel and bias) at zero, so ``q(z|x) = N(0, I)``
        and the KL is 0 at initialisation. With the default (LeCun-normal) initialisation the
        log-variances of the ``64 m_z x 8 x 8`` latents start with a spread of several units, the KL
        starts at 1e5-1e7 nats and Adam at 1e-3 needs thousands of steps to bring it down.
    """

    x_shape: tuple[int, ...] = (32, 32, 1)
    m_z: int = 1
    n_c: int = 256
    likelihood: str = "bernoulli"
    num_mixtures: int = 5
    bn_momentum: float = 0.9
    zero_init_posterior: bool = False

    def __post_init__(self):
        set_field(self, "x_shape", as_shape("x_shape", self.x_shape))
        if len(self.x_shape) != 3 or self.x_shape[0] % 4 or self.x_shape[1] % 4:
            raise ValueError(f"`x_shape` must be (H, W, C) with H, W divisible by 4; got {self.x_shape!r}.")
        check_positive_int("m_z", self.m_z)
        check_positive_int("n_c", self.n_c)
        check_positive_int("num_mixtures", self.num_mixtures)
        check_one_of("likelihood", self.likelihood, LIKELIHOODS)
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(f"`bn_momentum` must lie in [0, 1); got {self.bn_momentum!r}.")

    @property
    def latent_channels(self) -> int:
        """``d_z = 64 m_z``."""
        return 64 * self.m_z

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.x_shape[0] // 4, self.x_shape[1] // 4, self.latent_channels)


class Residual(nn.Module):
    """Table 6: ``x + BN(Conv3x3(ReLU(BN(Conv3x3(ReLU(x))))))`` (no conv bias)."""

    channels: int
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=self.momentum)
        h = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False)(nn.relu(x))
        h = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False)(nn.relu(bn()(h)))
        return x + bn()(h)


class ResidualVAE(nn.Module):
    """``encode(x, train) -> (loc, log_var)`` ``[..., H/4, W/4, d_z]``; ``decode(z, train)``: likelihood params."""

    config: Config

    def setup(self):
        c, n = self.config, self.config.n_c
        bn = functools.partial(nn.BatchNorm, momentum=c.bn_momentum)
        self.e_conv0 = nn.Conv(n, (4, 4), strides=2, padding=1, use_bias=False)
        self.e_bn0, self.e_bn1 = bn(), bn()
        self.e_conv1 = nn.Conv(n, (4, 4), strides=2, padding=1, use_bias=False)
        self.e_res = [Residual(n, c.bn_momentum), Residual(n, c.bn_momentum)]
        zero = {"kernel_init": nn.initializers.zeros, "bias_init": nn.initializers.zeros}
        self.e_out = nn.Conv(2 * c.latent_channels, (1, 1), **(zero if c.zero_init_posterior else {}))  # Theta_z
        self.d_in = nn.Conv(n, (1, 1))  # Theta_z (decoder side)
        self.d_bn0, self.d_bn1, self.d_bn2 = bn(), bn(), bn()
        self.d_res = [Residual(n, c.bn_momentum), Residual(n, c.bn_momentum)]
        self.d_up0 = nn.ConvTranspose(n, (4, 4), strides=(2, 2), padding="SAME")
        self.d_up1 = nn.ConvTranspose(n, (4, 4), strides=(2, 2), padding="SAME")
        ch = c.x_shape[-1]
        self.d_out = nn.Conv(ch if c.likelihood == "bernoulli" else 3 * c.num_mixtures * ch, (1, 1))

    def encode(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        h = nn.relu(self.e_bn0(self.e_conv0(x), use_running_average=not train))
        h = self.e_bn1(self.e_conv1(h), use_running_average=not train)
        for r in self.e_res:
            h = r(h, train)
        loc, log_var = jnp.split(self.e_out(h), 2, axis=-1)
        return loc, log_var

    def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
        h = self.d_bn0(self.d_in(z), use_running_average=not train)
        for r in self.d_res:
            h = r(h, train)
        h = nn.relu(self.d_bn1(self.d_up0(h), use_running_average=not train))
        h = nn.relu(self.d_bn2(self.d_up1(h), use_running_average=not train))
        return self.d_out(h)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        loc, _ = self.encode(x, train)
        return self.decode(loc, train)


def log_likelihood(config: Config, x: jax.Array, out: jax.Array) -> jax.Array:
    """``log p(x | z)`` summed over the pixels ``[B]`` from the decoder output ``out``.

    Bernoulli: ``out`` are logits ``[B, H, W, C]``. Mixture of logistics: ``out`` ``[B, H, W, 3 K C]``
    splits into (logits, means, log-scales) ``[B, H, W, C, K]``; ``x`` in [0, 1] maps to ``2 x - 1``
    on the 256-value grid (:mod:`jaxvae.distributions.logistic_mixture`).
    """
    if config.likelihood == "bernoulli":
        lp = bernoulli_log_prob(x, out)
    else:
        k, ch = config.num_mixtures, config.x_shape[-1]
        p = out.reshape(out.shape[:-1] + (ch, 3, k))
        lp = discretized_logistic_mixture_log_prob(2.0 * x - 1.0, p[..., 0, :], p[..., 1, :], p[..., 2, :])
    return jnp.sum(lp.reshape(lp.shape[0], -1), axis=1)


class Terms(NamedTuple):
    """Per-example ELBO terms (each ``[B]``): ``log_px_z`` (one reparameterised z), ``kl`` (closed form), ``elbo``."""

    log_px_z: jax.Array
    kl: jax.Array
    elbo: jax.Array


def objective_terms(
    config: Config, params: PyTree, model_state: PyTree, batch: dict, key: PRNGKey, *, train: bool = True
) -> tuple[Terms, PyTree]:
    r"""``ELBO(x) = log p(x|z) - KL(q(z|x) || N(0, I))``, ``z = mu + sigma eps`` (one draw per example).

    With ``train`` BatchNorm uses the batch's statistics and the returned ``model_state`` holds the
    updated running averages; without, the running averages (``model_state`` returned unchanged).
    """
    x = check_images(get_entry(batch, "x", f"[B, *{config.x_shape}] in [0, 1]"), config.x_shape)
    model, vs = ResidualVAE(config), variables(params, model_state)

    def forward(m):
        loc, log_var = m.encode(x, train)
        z = loc + jnp.exp(0.5 * log_var) * jax.random.normal(key, loc.shape, loc.dtype)
        return loc, log_var, m.decode(z, train)

    if train:
        (loc, log_var, out), new_state = nn.apply(forward, model, mutable=["batch_stats"])(vs)
    else:
        (loc, log_var, out), new_state = nn.apply(forward, model)(vs), model_state
    log_px_z = log_likelihood(config, x, out)
    kl = jnp.sum(kl_normal_std(loc, log_var).reshape(x.shape[0], -1), axis=1)
    return Terms(log_px_z, kl, elbo(ElboTerms(log_px_z, kl))), new_state


def make_loss_fn(config: Config) -> Callable:
    """The engine's ``loss_fn``: ``loss = -mean_B ELBO``; metrics ``elbo``, ``log_px_z``, ``kl``."""

    def loss_fn(params, model_state, batch, key):
        t, model_state = objective_terms(config, params, model_state, batch, key, train=True)
        return loss_output(t.elbo, t, model_state)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """``eval_fn -> {'log_px_z', 'kl', 'elbo'}`` (each ``[B]``), BatchNorm in inference mode."""

    def eval_fn(params, model_state, batch, key) -> dict:
        return per_example(objective_terms(config, params, model_state, batch, key, train=False)[0])

    return eval_fn


def gap_fns(config: Config, params: PyTree, model_state: PyTree):
    """``(encode, log_likelihood, decode)`` for :mod:`jaxvae.metrics.gaps` (flattened latents, inference-mode BN).

    ``encode(x) -> (loc, scale)`` ``[B, H/4 * W/4 * d_z]``; ``log_likelihood(x, z) -> [B]``;
    ``decode(z)`` the likelihood's mean in [0, 1] (Bernoulli) or the mixture's mean pixel (MoL).
    """
    model, vs = ResidualVAE(config), variables(params, model_state)
    shape = config.latent_shape

    def encode(x):
        loc, log_var = model.apply(vs, x, method=ResidualVAE.encode)
        return loc.reshape(loc.shape[0], -1), jnp.exp(0.5 * log_var).reshape(loc.shape[0], -1)

    def out(z):
        return model.apply(vs, z.reshape((z.shape[0],) + shape), method=ResidualVAE.decode)

    def ll(x, z):
        return log_likelihood(config, x, out(z))

    def decode(z):
        o = out(z)
        if config.likelihood == "bernoulli":
            return jax.nn.sigmoid(o)
        k, ch = config.num_mixtures, config.x_shape[-1]
        p = o.reshape(o.shape[:-1] + (ch, 3, k))
        mean = jnp.sum(jax.nn.softmax(p[..., 0, :], axis=-1) * jnp.clip(p[..., 1, :], -1, 1), axis=-1)
        return 0.5 * (mean + 1.0)

    return encode, ll, decode


@functools.partial(jax.jit, static_argnums=(0,))
def _init(config: Config, key: PRNGKey) -> dict:
    return ResidualVAE(config).init(key, jnp.zeros((1,) + config.x_shape, jnp.float32))


def init(config: Config, key) -> tuple[PyTree, PyTree]:
    """``(params, model_state)``; ``model_state`` holds BatchNorm's ``batch_stats``."""
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a jaxvae.models.xiao.Config; got {type(config).__name__}.")
    vs = dict(_init(config, as_key(key)))
    params = vs.pop("params")
    return params, vs


def parameter_split(params: PyTree) -> tuple[int, int]:
    """``(|Theta_z|, |Theta_not_z|)``: the encoder's last and decoder's first layer, and the rest."""
    sizes = {k: sum(int(jnp.size(a)) for a in jax.tree.leaves(v)) for k, v in params.items()}
    theta_z = sizes.get("e_out", 0) + sizes.get("d_in", 0)
    return theta_z, sum(sizes.values()) - theta_z


def reconstruct(config: Config, params: PyTree, model_state: PyTree, x: ArrayLike) -> jax.Array:
    """Reconstructions at the posterior mean (inference-mode BN), ``[B, *x_shape]`` in [0, 1]."""
    encode, _, decode = gap_fns(config, params, model_state)
    return decode(encode(check_images(x, config.x_shape))[0])

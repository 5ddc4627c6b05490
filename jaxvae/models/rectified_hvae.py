r"""Structured VAE with a deep hierarchy of rectified-Gaussian layers (after Salimans, 2016).

Reference: T. Salimans, "A Structured Variational Auto-encoder for Learning Deep Hierarchies of
Sparse Features", arXiv:1602.08734 (2016). The full text was not reachable for this project (only
its abstract and two secondary descriptions are known); what follows says which parts come from the
paper and which are this design.

From the paper (its abstract, [A]):
  * a deep hierarchy of layers of latent variables whose units are **rectified Gaussians**
    :math:`z = \max(0, y),\ y \sim N(\mu, \sigma^2)` (spike-and-slab sparsity, reparameterisable);
  * a **structured** variational approximation that keeps the prior's dependencies, i.e. is
    ordered top-down like the generative model (confirmed by Rolfe, arXiv:1609.02200, [S]);
  * the whole hierarchy trained jointly, no layer-wise stacking.
From the project's seed summary (unverified, [U]): 4 stochastic layers of 300-200-100-50 units
(bottom to top), binarized MNIST, batch normalization, Adamax.
This design ([D], derived here, not claimed to be the paper's):
  * generative model :math:`p(z_L)\prod_{l<L} p(z_l \mid z_{l+1})\,p(x \mid z_1)` with
    :math:`p(z_L) = \prod_j RG(\mu_{L,j}, \sigma_{L,j})` (learned per-unit parameters),
    :math:`p(z_l \mid z_{l+1}) = \prod_j RG(\mu_{l,j}(z_{l+1}), \sigma_{l,j}(z_{l+1}))` computed by a
    deterministic network (Dense -> BatchNorm -> activation -> two Dense heads) and
    :math:`p(x \mid z_1) = \mathrm{Bernoulli}(\mathrm{sigmoid}(f(z_1)))`;
  * a deterministic bottom-up pass :math:`h_l = a(\mathrm{BN}(W_l h_{l-1}))`, :math:`h_0 = x`,
    giving a Gaussian "message" :math:`N(m_l(x), s_l(x)^2)` per layer;
  * structured posterior (``posterior='structured'``), computed top-down **with the generative
    conditionals at the sampled parents**: the prior's pre-rectification Gaussian
    :math:`N(\mu_l(z_{l+1}), \sigma_l^2)` and the message are combined by precision weighting,
    :math:`\tilde\sigma^{-2} = \sigma_l^{-2} + s_l^{-2}`,
    :math:`\tilde\mu = \tilde\sigma^2(\mu_l\sigma_l^{-2} + m_l s_l^{-2})`, then rectified:
    :math:`q(z_l \mid z_{l+1}, x) = RG(\tilde\mu, \tilde\sigma)` (the top layer combines with the
    learned top prior). This is the Ladder-VAE combination applied before the ReLU;
  * mean-field ablation (``posterior='mean_field'``): :math:`q(z_l \mid x) = RG(m_l, s_l)`,
    ignoring :math:`z_{l+1}`; Gaussian-unit ablation (``units='gaussian'``): the same hierarchy
    with Normal units (no rectification);
  * ELBO :math:`= E_q[\log p(x|z_1)] - \sum_l E_q[KL(q(z_l|z_{l+1},x)\,\|\,p(z_l|z_{l+1}))]`, the
    per-unit KL at the sampled parent: closed form (``kl='analytic'``,
    :func:`~jaxvae.distributions.rectified_normal.kl_rectified_rectified`), an independent
    Monte-Carlo estimate (``kl='mc'``, :func:`kl_rectified_mc` with ``kl_samples`` draws), or
    the single-sample :math:`\log q(z_l) - \log p(z_l)` at the propagated sample
    (``kl='sample'``, with a zero-valued boundary term that makes its pathwise gradient unbiased,
    since the log-density ratio jumps at 0);
  * densities on the **mixed base measure** :math:`\delta_0 + \mathrm{Lebesgue}(0,\infty)`: an exact
    zero scores :math:`\log\Phi(-\mu/\sigma)` under both q and p, so
    :math:`\log p(x, z) - \log q(z|x)` is a proper importance weight (the IW-NLL uses it).

Scales are ``softplus(raw) + min_scale`` (:class:`~jaxvae.nets.GaussianHead`, which hands over
:math:`\log\sigma^2`); precision weighting is done in log space
(:math:`w = \mathrm{sigmoid}(\log s^2 - \log\sigma^2)`, :math:`\tilde\mu = w\mu + (1-w)m`,
:math:`\log\tilde\sigma^2 = -\mathrm{logaddexp}(-\log\sigma^2, -\log s^2)`), so it is finite for any
finite network output. Samples are drawn as :math:`z = \max(0, \mu + \sigma\epsilon)`
(the reparameterisation of ``RectifiedNormal``) from explicit standard-normal noise, which lets
the figures hold the noise of all layers but one fixed.

Public API: :class:`Config`, :class:`RectifiedHVAE`, :class:`Terms`, :func:`init`,
:func:`objective_terms`, :func:`make_loss_fn`, :func:`make_eval_fn`, :func:`make_log_weight_fn`,
:func:`posterior_samples`, :func:`posterior_conditional_means`, :func:`sample_images`,
:func:`layer_variation_images`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.config import (
    as_shape,
    as_widths,
    check_in_range,
    check_nonnegative,
    check_one_of,
    check_positive,
    check_positive_int,
    set_field,
)
from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.distributions.normal import Normal, kl_normal_normal
from jaxvae.distributions.rectified_normal import RectifiedNormal, kl_rectified_mc, kl_rectified_rectified
from jaxvae.models.common import as_key, check_images, get_entry, loss_output, variables
from jaxvae.nets.heads import GaussianHead
from jaxvae.nets.mlp import ACTIVATIONS, MLP
from jaxvae.typing import PRNGKey, PyTree

UNITS = ("rectified", "gaussian")
POSTERIORS = ("structured", "mean_field")
KLS = ("analytic", "mc", "sample")


@dataclasses.dataclass(frozen=True)
class Config:
    """Model configuration (hashable: usable as a static jit argument).

    Attributes:
      latent_sizes: units per stochastic layer, bottom (z_1) to top (z_L).
      up_hidden: width of the bottom-up deterministic layer under each stochastic layer
        (same length as ``latent_sizes``).
      down_hidden: width of the hidden layer of each top-down conditional p(z_l | z_{l+1}),
        l = 1..L-1 (length ``L - 1``).
      decoder_hidden: hidden width of p(x | z_1).
      units: 'rectified' (rectified-Gaussian units) or 'gaussian' (ablation).
      posterior: 'structured' (top-down, precision-weighted with the prior) or 'mean_field'.
      kl: 'analytic', 'mc' (independent ``kl_samples`` draws) or 'sample' (at the propagated sample).
      kl_samples: draws for ``kl='mc'``.
      beta: weight of the KL terms in the training loss (the reported ``elbo`` always uses 1).
      activation: a name in :data:`jaxvae.nets.mlp.ACTIVATIONS`.
      batch_norm: batch normalization in every deterministic hidden layer.
      bn_momentum: running-average momentum of the batch statistics.
      min_scale: floor added to every softplus scale.
      x_shape: shape of one example, ``(784,)`` for MNIST (any shape; it is flattened).
    """

    latent_sizes: tuple[int, ...] = (300, 200, 100, 50)
    up_hidden: tuple[int, ...] = (500, 300, 200, 100)
    down_hidden: tuple[int, ...] = (300, 200, 100)
    decoder_hidden: int = 500
    units: str = "rectified"
    posterior: str = "structured"
    kl: str = "analytic"
    kl_samples: int = 1
    beta: float = 1.0
    activation: str = "elu"
    batch_norm: bool = True
    bn_momentum: float = 0.9
    min_scale: float = 1e-3
    x_shape: tuple[int, ...] = (784,)

    def __post_init__(self):
        set_field(self, "latent_sizes", as_widths("latent_sizes", self.latent_sizes))
        set_field(self, "up_hidden", as_widths("up_hidden", self.up_hidden))
        set_field(self, "down_hidden", as_widths("down_hidden", self.down_hidden, allow_empty=True))
        set_field(self, "x_shape", as_shape("x_shape", self.x_shape))
        L = len(self.latent_sizes)
        if len(self.up_hidden) != L:
            raise ValueError(f"`up_hidden` must have one width per stochastic layer ({L}); got {self.up_hidden!r}.")
        if len(self.down_hidden) != L - 1:
            raise ValueError(f"`down_hidden` must have L - 1 = {L - 1} widths; got {self.down_hidden!r}.")
        check_one_of("units", self.units, UNITS)
        check_one_of("posterior", self.posterior, POSTERIORS)
        check_one_of("kl", self.kl, KLS)
        check_one_of("activation", self.activation, tuple(ACTIVATIONS))
        for name in ("decoder_hidden", "kl_samples"):
            check_positive_int(name, getattr(self, name))
        check_nonnegative("beta", self.beta)
        check_in_range("bn_momentum", self.bn_momentum, 0.0, 1.0, high_closed=False)
        check_positive("min_scale", self.min_scale)

    @property
    def num_layers(self) -> int:
        return len(self.latent_sizes)

    @property
    def x_dim(self) -> int:
        """Values per example (the flattened ``x_shape``)."""
        return math.prod(self.x_shape)


# ----------------------------------------------------------------------------- unit distributions


def _unit_dist(config: Config, loc: jax.Array, log_var: jax.Array):
    scale = jnp.exp(0.5 * log_var)
    return RectifiedNormal(loc, scale) if config.units == "rectified" else Normal(loc, scale)


def _unit_sample(config: Config, loc: jax.Array, log_var: jax.Array, eps: jax.Array) -> jax.Array:
    """Reparameterised draw from the noise ``eps``: ``max(0, loc + scale eps)`` or ``loc + scale eps``."""
    y = loc + jnp.exp(0.5 * log_var) * eps
    return jax.nn.relu(y) if config.units == "rectified" else y


def _unit_kl(config: Config, key: PRNGKey, q, p) -> jax.Array:
    """Elementwise KL(q || p) estimate by ``config.kl`` ('analytic' or 'mc')."""
    if config.units == "rectified":
        if config.kl == "analytic":
            return kl_rectified_rectified(q, p)
        return kl_rectified_mc(key, q, p, config.kl_samples)
    if config.kl == "analytic":
        return kl_normal_normal(q, p)
    z = q.sample(key, (config.kl_samples,))
    return jnp.mean(q.log_prob(z) - p.log_prob(z), axis=0)


def _boundary_term(config: Config, q, p) -> jax.Array:
    r"""Zero-valued surrogate that makes the pathwise gradient of ``log q(z) - log p(z)`` unbiased.

    For rectified units ``h = log q - log p`` jumps at ``z = 0`` (spike log-mass vs slab
    log-density), which differentiation through ``relu`` misses; the missing term is
    :math:`(h(0^+) - h(0))\,\nabla_\theta\Phi(a_q)` per unit (the same correction as
    ``kl_rectified_mc(boundary_correction=True)``). Returns ``[N]`` (summed over units); 0 for
    Gaussian units.
    """
    if config.units != "rectified":
        return 0.0
    jump = (Normal(q.loc, q.scale).log_prob(0.0) - q.log_prob_zero()) - (
        Normal(p.loc, p.scale).log_prob(0.0) - p.log_prob_zero()
    )
    p_slab = -jnp.expm1(q.log_prob_zero())  # Phi(a_q) = 1 - Phi(-a_q)
    return jnp.sum(jax.lax.stop_gradient(jump) * (p_slab - jax.lax.stop_gradient(p_slab)), axis=-1)


def _precision_weight(loc_p, log_var_p, loc_m, log_var_m):
    r"""Combine N(loc_p, e^{log_var_p}) and N(loc_m, e^{log_var_m}) by precision weighting, in log space."""
    w = jax.nn.sigmoid(log_var_m - log_var_p)  # = sigma~^2 / sigma_p^2, weight of the prior mean
    return w * loc_p + (1.0 - w) * loc_m, -jnp.logaddexp(-log_var_p, -log_var_m)


# ----------------------------------------------------------------------------- Linen modules


class Forward(NamedTuple):
    """One pass through the hierarchy (per example: leading axis N = B or K*B).

    Attributes:
      logits: Bernoulli logits of p(x | z_1), [N, x_dim].
      z: per-layer samples of q, bottom to top, [N, d_l] each.
      q_params: per-layer (loc, log_var) of q(z_l | z_{l+1}, x) (pre-rectification Gaussian).
      p_params: per-layer (loc, log_var) of p(z_l | z_{l+1}) (top: the learned prior).
      log_qz: per-layer log q(z_l | .) summed over units, [N] each (mixed base measure).
      log_pz: per-layer log p(z_l | z_{l+1}) summed over units, [N] each.
      kl: per-layer KL estimate by ``config.kl`` summed over units, [N] each.
    """

    logits: jax.Array
    z: tuple
    q_params: tuple
    p_params: tuple
    log_qz: tuple
    log_pz: tuple
    kl: tuple


class RectifiedHVAE(nn.Module):
    """The hierarchy: a bottom-up deterministic pass, then a top-down stochastic pass (see module doc)."""

    config: Config

    def setup(self):
        c = self.config
        L = c.num_layers

        def hidden(width, name):  # Dense -> (BatchNorm) -> activation
            return MLP((width,), c.activation, activate_final=True, batch_norm=c.batch_norm,
                       bn_momentum=c.bn_momentum, name=name)  # fmt: skip

        def head(width, name):  # (loc, log_var), sigma = softplus(raw) + min_scale, starting near 1
            return GaussianHead(width, scale_param="softplus", min_scale=c.min_scale, init_scale=1.0, name=name)

        self.up = [hidden(c.up_hidden[l], f"up_{l + 1}") for l in range(L)]
        self.up_heads = [head(c.latent_sizes[l], f"up_head_{l + 1}") for l in range(L)]
        self.down = [hidden(c.down_hidden[l], f"down_{l + 1}") for l in range(L - 1)]
        self.down_heads = [head(c.latent_sizes[l], f"down_head_{l + 1}") for l in range(L - 1)]
        d_top = c.latent_sizes[-1]
        self.top_loc = self.param("top_loc", nn.initializers.zeros, (d_top,))
        self.top_raw_scale = self.param("top_raw_scale", nn.initializers.constant(math.log(math.expm1(1.0))), (d_top,))
        self.dec_hidden = hidden(c.decoder_hidden, "dec_hidden")
        self.dec_out = nn.Dense(c.x_dim, name="dec_out")

    # -- pieces ------------------------------------------------------------------------------
    def bottom_up(self, x: jax.Array, train: bool) -> list[tuple[jax.Array, jax.Array]]:
        """Messages ``(m_l, log s_l^2)``, bottom to top, each [B, d_l]."""
        h = x
        msgs = []
        for l in range(self.config.num_layers):
            h = self.up[l](h, train=train)
            msgs.append(self.up_heads[l](h))
        return msgs

    def prior_top(self, n: int) -> tuple[jax.Array, jax.Array]:
        """``(loc, log_var)`` of the learned top prior p(z_L), broadcast to [n, d_L]."""
        d = self.config.latent_sizes[-1]
        log_var = 2.0 * jnp.log(jax.nn.softplus(self.top_raw_scale) + self.config.min_scale)
        return jnp.broadcast_to(self.top_loc, (n, d)), jnp.broadcast_to(log_var, (n, d))

    def prior_conditional(self, l: int, z_parent: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """``(loc, log_var)`` of p(z_l | z_{l+1}) for 1-based layer ``l < L``."""
        return self.down_heads[l - 1](self.down[l - 1](z_parent, train=train))

    def decode(self, z1: jax.Array, train: bool) -> jax.Array:
        """Bernoulli logits of p(x | z_1), [N, x_dim]."""
        return self.dec_out(self.dec_hidden(z1, train=train))

    # -- passes ------------------------------------------------------------------------------
    def __call__(self, x: jax.Array, key: PRNGKey, *, train: bool, num_samples: int | None = None) -> Forward:
        """Sample z ~ q(z | x) top-down and score it.

        Args:
          x: [B, x_dim] (or [B, *x_shape]) data in [0, 1].
          key: PRNG key (noise of every layer and of the MC KL).
          train: batch statistics from the batch (and updated) if True, running averages if False.
          num_samples: if given, K samples per example; the output's leading axis is K*B
            (sample-major: row ``k * B + b``). ``None`` means one sample, leading axis B.
        """
        c = self.config
        L = c.num_layers
        x = jnp.reshape(x, (x.shape[0], -1))
        msgs = self.bottom_up(x, train)
        if num_samples is not None:
            k = num_samples

            def tile(a):
                return jnp.reshape(jnp.broadcast_to(a[None], (k,) + a.shape), (k * a.shape[0],) + a.shape[1:])

            msgs = [(tile(m), tile(v)) for m, v in msgs]
        n = msgs[0][0].shape[0]
        keys = jax.random.split(key, 2 * L)
        z = [None] * L
        q_params = [None] * L
        p_params = [None] * L
        for l in range(L, 0, -1):  # 1-based, top-down
            i = l - 1
            p_loc, p_log_var = self.prior_top(n) if l == L else self.prior_conditional(l, z[i + 1], train)
            m, log_var_m = msgs[i]
            if c.posterior == "structured":
                q_loc, q_log_var = _precision_weight(p_loc, p_log_var, m, log_var_m)
            else:
                q_loc, q_log_var = m, log_var_m
            eps = jax.random.normal(keys[i], q_loc.shape, q_loc.dtype)
            z[i] = _unit_sample(c, q_loc, q_log_var, eps)
            q_params[i] = (q_loc, q_log_var)
            p_params[i] = (p_loc, p_log_var)
        logits = self.decode(z[0], train)
        log_qz, log_pz, kl = [], [], []
        for i in range(L):
            q = _unit_dist(c, *q_params[i])
            p = _unit_dist(c, *p_params[i])
            lq = jnp.sum(q.log_prob(z[i]), axis=-1)
            lp = jnp.sum(p.log_prob(z[i]), axis=-1)
            log_qz.append(lq)
            log_pz.append(lp)
            if c.kl == "sample":
                kl.append(lq - lp + _boundary_term(c, q, p))
            else:
                kl.append(jnp.sum(_unit_kl(c, keys[L + i], q, p), axis=-1))
        return Forward(logits, tuple(z), tuple(q_params), tuple(p_params), tuple(log_qz), tuple(log_pz), tuple(kl))

    def generate(self, eps: Sequence[jax.Array]) -> tuple[jax.Array, tuple]:
        """Ancestral sample of the prior from explicit noise (eval mode).

        Args:
          eps: per-layer standard-normal noise, bottom to top, [N, d_l] each.

        Returns:
          ``(logits [N, x_dim], z)`` with ``z`` the per-layer samples, bottom to top.
        """
        c = self.config
        L = c.num_layers
        n = eps[0].shape[0]
        z = [None] * L
        for l in range(L, 0, -1):
            i = l - 1
            loc, log_var = self.prior_top(n) if l == L else self.prior_conditional(l, z[i + 1], False)
            z[i] = _unit_sample(c, loc, log_var, eps[i])
        return self.decode(z[0], False), tuple(z)


# ----------------------------------------------------------------------------- the objective


class Terms(NamedTuple):
    """Per-example ELBO terms, one sample of the hierarchy each.

    Attributes:
      log_px_z: ``log p(x | z_1)`` ``[B]``.
      kl: ``sum_l KL_l`` ``[B]`` (each layer's KL at the sampled parent, estimated by ``config.kl``).
      elbo: ``log_px_z - kl`` ``[B]``.
      kl_layers: ``[B, L]``, the per-layer KLs, bottom (column 0) to top.
    """

    log_px_z: jax.Array
    kl: jax.Array
    elbo: jax.Array
    kl_layers: jax.Array


def _check_config(config) -> None:
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a rectified_hvae.Config; got {type(config).__name__}.")


def _flat_x(x, config: Config) -> jax.Array:
    """``[B, *x_shape]`` or ``[B, x_dim]`` in [0, 1] -> float32 ``[B, x_dim]``."""
    x = jnp.asarray(x)
    if x.ndim < 2 or math.prod(x.shape[1:]) != config.x_dim:
        raise ValueError(f"`x` must have shape [B, *{config.x_shape}] or [B, {config.x_dim}]; got {x.shape}.")
    return check_images(jnp.reshape(x, (x.shape[0], config.x_dim)), (config.x_dim,))


def objective_terms(
    config: Config, params: PyTree, model_state: PyTree, batch: dict, key: PRNGKey, *, train: bool = True
) -> tuple[Terms, PyTree]:
    r"""The ELBO's terms for ``batch["x"]`` ``[B, *x_shape]`` in [0, 1], one sample of the hierarchy each.

    .. math:: \mathrm{ELBO}(x) = \log p(x \mid z_1)
              - \sum_l KL\big(q(z_l \mid z_{l+1}, x) \,\|\, p(z_l \mid z_{l+1})\big)

    With ``train`` the batch statistics come from the batch and the returned ``model_state`` holds their
    updated running averages; without, the running averages are used and ``model_state`` is unchanged.
    """
    _check_config(config)
    x = _flat_x(get_entry(batch, "x", f"[B, *{config.x_shape}] in [0, 1]"), config)
    vs = variables(params, model_state)
    model = RectifiedHVAE(config)
    if train and model_state:
        fwd, new_state = model.apply(vs, x, key, train=True, mutable=list(model_state))
        model_state = dict(new_state)
    else:
        fwd = model.apply(vs, x, key, train=train)
    log_px_z = jnp.sum(bernoulli_log_prob(x, fwd.logits), axis=-1)
    kl_layers = jnp.stack(fwd.kl, axis=-1)
    kl = jnp.sum(kl_layers, axis=-1)
    return Terms(log_px_z, kl, log_px_z - kl, kl_layers), model_state


def _as_outputs(t: Terms) -> dict[str, jax.Array]:
    """``[B]`` outputs of the terms: the per-layer KLs as ``kl_1`` .. ``kl_L``."""
    out = {"elbo": t.elbo, "log_px_z": t.log_px_z, "kl": t.kl}
    out.update({f"kl_{i + 1}": t.kl_layers[:, i] for i in range(t.kl_layers.shape[-1])})
    return out


def make_loss_fn(config: Config) -> Callable:
    """The engine's ``loss_fn(params, model_state, batch, key) -> LossOutput``.

    Loss = batch mean of ``-(log p(x|z_1) - beta * sum_l KL_l)`` (batch statistics in training mode).
    Metrics: 'elbo' (at beta = 1), 'log_px_z', 'kl', 'kl_1'..'kl_L' (batch means).
    """
    _check_config(config)

    def loss_fn(params, model_state, batch, key):
        t, model_state = objective_terms(config, params, model_state, batch, key, train=True)
        out = loss_output(t.log_px_z - config.beta * t.kl, t._replace(kl_layers=None), model_state)
        out.metrics.update({k: jnp.mean(v) for k, v in _as_outputs(t).items()})
        return out

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """``eval_fn(params, model_state, batch, key) -> dict[str, Array[B]]`` (running BN averages).

    Keys: 'elbo', 'log_px_z', 'kl', 'kl_1'..'kl_L' (per example, one sample of z).
    """
    _check_config(config)

    def eval_fn(params, model_state, batch, key):
        return _as_outputs(objective_terms(config, params, model_state, batch, key, train=False)[0])

    return eval_fn


# ----------------------------------------------------------------------------- evaluation helpers


@functools.partial(jax.jit, static_argnums=0)
def _init(config: Config, key: PRNGKey) -> dict:
    k_init, k_noise = jax.random.split(key)
    x = jnp.zeros((2, config.x_dim), jnp.float32)
    return dict(RectifiedHVAE(config).init(k_init, x, k_noise, train=False))


def init(config: Config, key) -> tuple[PyTree, PyTree]:
    """Initialise ``(params, model_state)`` from a key or an int seed; ``model_state`` is
    ``{'batch_stats': ...}`` (or ``{}`` without batch normalization)."""
    _check_config(config)
    vs = dict(_init(config, as_key(key)))
    params = vs.pop("params")
    return params, vs


def make_log_weight_fn(config: Config, params: PyTree, model_state: PyTree) -> Callable:
    r"""``f(key, x[B, ...], num_samples) -> log_w[num_samples, B]`` for ``iw_log_likelihood``.

    :math:`\log w = \log p(x \mid z_1) + \sum_l [\log p(z_l \mid z_{l+1}) - \log q(z_l \mid z_{l+1}, x)]`
    with :math:`z \sim q(z \mid x)`, both densities on the mixed base measure (an exact zero scores
    :math:`\log\Phi(-\mu/\sigma)` under q and p), running BN averages. ``mean(log_w)`` estimates the
    ELBO, ``logsumexp(log_w) - log K`` the IWAE bound.
    """
    _check_config(config)
    model = RectifiedHVAE(config)
    vs = variables(params, model_state)

    def log_weight_fn(key, x, num_samples):
        x = _flat_x(x, config)
        b = x.shape[0]
        fwd = model.apply(vs, x, key, train=False, num_samples=num_samples)
        x_rep = jnp.reshape(jnp.broadcast_to(x[None], (num_samples,) + x.shape), (num_samples * b, -1))
        log_px_z = jnp.sum(bernoulli_log_prob(x_rep, fwd.logits), axis=-1)
        log_w = log_px_z + sum(lp - lq for lp, lq in zip(fwd.log_pz, fwd.log_qz))
        return jnp.reshape(log_w, (num_samples, b))

    return log_weight_fn


def _check_count(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`{name}` must be a positive int; got {n!r}.")
    return n


@functools.partial(jax.jit, static_argnums=(0, 5))
def _posterior_samples(config, params, model_state, key, x, num_samples):
    b = x.shape[0]
    fwd = RectifiedHVAE(config).apply(variables(params, model_state), x, key, train=False, num_samples=num_samples)
    return tuple(jnp.reshape(z, (num_samples, b, -1)) for z in fwd.z)


def posterior_samples(
    config: Config, params: PyTree, model_state: PyTree, key, x, num_samples: int = 1
) -> tuple[jax.Array, ...]:
    """Per-layer samples of q(z | x) (eval mode), bottom to top, each [num_samples, B, d_l] (jitted).

    Used for the per-layer posterior means (active units) and sparsity (fraction of exact zeros).
    """
    _check_config(config)
    x = _flat_x(x, config)
    return _posterior_samples(config, params, model_state, as_key(key), x, _check_count("num_samples", num_samples))


@functools.partial(jax.jit, static_argnums=(0, 5))
def _posterior_means(config, params, model_state, key, x, num_samples):
    b = x.shape[0]
    fwd = RectifiedHVAE(config).apply(variables(params, model_state), x, key, train=False, num_samples=num_samples)
    return tuple(jnp.reshape(_unit_dist(config, *qp).mean(), (num_samples, b, -1)) for qp in fwd.q_params)


def posterior_conditional_means(
    config: Config, params: PyTree, model_state: PyTree, key, x, num_samples: int = 1
) -> tuple[jax.Array, ...]:
    r"""Per layer, :math:`E_q[z_l \mid z_{l+1}^{(s)}, x]` at ``num_samples`` parent draws (jitted).

    Returns a tuple, bottom to top, of [num_samples, B, d_l]. Their mean over samples is a
    Rao-Blackwellised estimate of :math:`E_q[z_l \mid x]` (the top layer's is exact: every sample
    gives the same value); their spread over samples measures the estimate's Monte-Carlo noise.
    """
    _check_config(config)
    x = _flat_x(x, config)
    return _posterior_means(config, params, model_state, as_key(key), x, _check_count("num_samples", num_samples))


def _images(config: Config, logits: jax.Array) -> jax.Array:
    side = math.isqrt(config.x_dim)
    shape = (side, side) if side * side == config.x_dim else config.x_shape
    return jnp.reshape(jax.nn.sigmoid(logits), logits.shape[:-1] + shape)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _sample_images(config, params, model_state, key, n):
    keys = jax.random.split(key, config.num_layers)
    eps = [jax.random.normal(k, (n, d)) for k, d in zip(keys, config.latent_sizes)]
    logits, _ = RectifiedHVAE(config).apply(variables(params, model_state), eps, method=RectifiedHVAE.generate)
    return _images(config, logits)


def sample_images(config: Config, params: PyTree, model_state: PyTree, key, n: int) -> jax.Array:
    """``n`` ancestral samples of the prior: Bernoulli means, ``[n, 28, 28]`` for MNIST, in [0, 1] (jitted)."""
    _check_config(config)
    return _sample_images(config, params, model_state, as_key(key), _check_count("n", n))


def layer_variation_images(config: Config, params: PyTree, model_state: PyTree, key, num_columns: int = 8) -> jax.Array:
    """What each layer encodes: row l (top row = top layer) redraws only layer l's noise.

    The noise of every other layer is held fixed (one base draw shared by all rows); column ``j``
    uses the ``j``-th fresh noise for the varied layer. Returns Bernoulli means
    [L, num_columns, 28, 28]; layers below the varied one are recomputed from their fixed noise.
    """
    _check_config(config)
    return _layer_variation(config, params, model_state, as_key(key), _check_count("num_columns", num_columns))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _layer_variation(config, params, model_state, key, num_columns):
    L = config.num_layers
    k_base, k_var = jax.random.split(key)
    base = [jax.random.normal(k, (1, d)) for k, d in zip(jax.random.split(k_base, L), config.latent_sizes)]
    model = RectifiedHVAE(config)
    rows = []
    for i in reversed(range(L)):
        eps = [jnp.broadcast_to(e, (num_columns, e.shape[1])) for e in base]
        eps[i] = jax.random.normal(jax.random.fold_in(k_var, i), (num_columns, config.latent_sizes[i]))
        logits, _ = model.apply(variables(params, model_state), eps, method=RectifiedHVAE.generate)
        rows.append(_images(config, logits))
    return jnp.stack(rows)

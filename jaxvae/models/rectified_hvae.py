r"""Structured VAE with a deep hierarchy of rectified-Gaussian layers (after Salimans, 2016).

Reference: T. Salimans, "A Structured Variational Auto-encoder for Learning Deep Hierarchies of
Sparse Features", arXiv:1602.08734 (2016). The full text was not reachable for this project
(``papers.md`` §4); what follows says which parts come from the paper and which are this design.

From the paper (its abstract, [A]):
  * a deep hierarchy of layers of latent variables whose units are **rectified Gaussians**
    :math:`z = \max(0, y),\ y \sim N(\mu, \sigma^2)` (spike-and-slab sparsity, reparameterisable);
  * a **structured** variational approximation that keeps the prior's dependencies, i.e. is
    ordered top-down like the generative model (confirmed by Rolfe, arXiv:1609.02200, [S]);
  * the whole hierarchy trained jointly, no layer-wise stacking.
From the project's seed summary (unverified, [U]): 4 stochastic layers of 300-200-100-50 units
(bottom to top), binarized MNIST, batch normalization, Adamax.
This design ([D], ``papers.md`` §4.2-4.3, not claimed to be the paper's):
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

Scales are ``softplus(raw) + min_scale``; precision weighting is done in log space
(:math:`w = \mathrm{sigmoid}(\log s^2 - \log\sigma^2)`, :math:`\tilde\mu = w\mu + (1-w)m`), so it is
finite for any finite network output. Samples are drawn as :math:`z = \max(0, \mu + \sigma\epsilon)`
(the reparameterisation of ``RectifiedNormal``) from explicit standard-normal noise, which lets
the figures hold the noise of all layers but one fixed.

Public API: :class:`Config`, :class:`RectifiedHVAE`, :func:`init`, :func:`make_loss_fn`,
:func:`make_eval_fn`, :func:`make_log_weight_fn`, :func:`posterior_samples`,
:func:`posterior_conditional_means`,
:func:`sample_images`, :func:`layer_variation_images`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.distributions.normal import Normal, kl_normal_normal
from jaxvae.train.state import LossOutput
from jaxvae.typing import PRNGKey, PyTree

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "elu": jax.nn.elu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
}
_UNITS = ("rectified", "gaussian")
_POSTERIORS = ("structured", "mean_field")
_KLS = ("analytic", "mc", "sample")
_SOFTPLUS_INV_1 = 0.5413248546129181  # softplus^{-1}(1): scale heads start near 1


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
      activation: one of 'elu', 'relu', 'tanh', 'softplus', 'gelu'.
      batch_norm: batch normalization in every deterministic hidden layer.
      bn_momentum: running-average momentum of the batch statistics.
      min_scale: floor added to every softplus scale.
      x_dim: flattened data size (784 for MNIST).
    """

    latent_sizes: tuple[int, ...] = (300, 200, 100, 50)
    up_hidden: tuple[int, ...] = (500, 300, 200, 100)
    down_hidden: tuple[int, ...] = (300, 200, 100)
    decoder_hidden: int = 500
    units: str = "rectified"
    posterior: str = "structured"
    kl: str = "analytic"
    kl_samples: int = 1
    activation: str = "elu"
    batch_norm: bool = True
    bn_momentum: float = 0.9
    min_scale: float = 1e-3
    x_dim: int = 784

    def __post_init__(self):
        def positive_ints(name, v):
            if not isinstance(v, tuple) or not v or not all(isinstance(i, int) and i > 0 for i in v):
                raise ValueError(f"`{name}` must be a non-empty tuple of positive ints; got {v!r}.")

        positive_ints("latent_sizes", self.latent_sizes)
        positive_ints("up_hidden", self.up_hidden)
        if len(self.up_hidden) != len(self.latent_sizes):
            raise ValueError(
                f"`up_hidden` must have one width per stochastic layer ({len(self.latent_sizes)}); "
                f"got {self.up_hidden!r}."
            )
        if len(self.latent_sizes) > 1:
            positive_ints("down_hidden", self.down_hidden)
        if len(self.down_hidden) != len(self.latent_sizes) - 1:
            raise ValueError(
                f"`down_hidden` must have L - 1 = {len(self.latent_sizes) - 1} widths; got {self.down_hidden!r}."
            )
        for name, choices in (
            ("units", _UNITS),
            ("posterior", _POSTERIORS),
            ("kl", _KLS),
            ("activation", tuple(_ACTIVATIONS)),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"`{name}` must be one of {choices}; got {getattr(self, name)!r}.")
        for name in ("decoder_hidden", "kl_samples", "x_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(f"`bn_momentum` must lie in [0, 1); got {self.bn_momentum!r}.")
        if not self.min_scale > 0.0:
            raise ValueError(f"`min_scale` must be > 0; got {self.min_scale!r}.")

    @property
    def num_layers(self) -> int:
        return len(self.latent_sizes)


# ----------------------------------------------------------------------------- unit distributions


def _rectified():
    # Imported lazily so that the Gaussian-unit ablation does not need the module.
    from jaxvae.distributions import rectified_normal

    return rectified_normal


def _unit_dist(config: Config, loc: jax.Array, scale: jax.Array):
    if config.units == "rectified":
        return _rectified().RectifiedNormal(loc, scale)
    return Normal(loc, scale)


def _unit_sample(config: Config, loc: jax.Array, scale: jax.Array, eps: jax.Array) -> jax.Array:
    """Reparameterised draw from the noise ``eps``: ``max(0, loc + scale eps)`` or ``loc + scale eps``."""
    y = loc + scale * eps
    return jax.nn.relu(y) if config.units == "rectified" else y


def _unit_kl(config: Config, key: PRNGKey, q, p) -> jax.Array:
    """Elementwise KL(q || p) estimate by ``config.kl`` ('analytic' or 'mc')."""
    if config.units == "rectified":
        rn = _rectified()
        if config.kl == "analytic":
            return rn.kl_rectified_rectified(q, p)
        return rn.kl_rectified_mc(key, q, p, config.kl_samples)
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


def _precision_weight(loc_p, scale_p, loc_m, scale_m):
    r"""Combine N(loc_p, scale_p^2) and N(loc_m, scale_m^2) by precision weighting (log-space weights)."""
    log_vp = 2.0 * jnp.log(scale_p)
    log_vm = 2.0 * jnp.log(scale_m)
    w = jax.nn.sigmoid(log_vm - log_vp)  # = sigma~^2 / sigma_p^2, weight of the prior mean
    loc = w * loc_p + (1.0 - w) * loc_m
    log_var = -jnp.logaddexp(-log_vp, -log_vm)
    return loc, jnp.exp(0.5 * log_var)


# ----------------------------------------------------------------------------- Linen modules


class _Hidden(nn.Module):
    """Dense -> (BatchNorm) -> activation."""

    features: int
    activation: str
    batch_norm: bool
    bn_momentum: float

    @nn.compact
    def __call__(self, h: jax.Array, train: bool) -> jax.Array:
        h = nn.Dense(self.features, use_bias=not self.batch_norm)(h)
        if self.batch_norm:
            h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h)
        return _ACTIVATIONS[self.activation](h)


class _GaussHead(nn.Module):
    """Two Dense heads: loc and ``softplus(raw) + min_scale``."""

    features: int
    min_scale: float

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        loc = nn.Dense(self.features, name="loc")(h)
        raw = nn.Dense(self.features, name="scale", bias_init=nn.initializers.constant(_SOFTPLUS_INV_1))(h)
        return loc, jax.nn.softplus(raw) + self.min_scale


class Forward(NamedTuple):
    """One pass through the hierarchy (per example: leading axis N = B or K*B).

    Attributes:
      logits: Bernoulli logits of p(x | z_1), [N, x_dim].
      z: per-layer samples of q, bottom to top, [N, d_l] each.
      q_params: per-layer (loc, scale) of q(z_l | z_{l+1}, x) (pre-rectification Gaussian).
      p_params: per-layer (loc, scale) of p(z_l | z_{l+1}) (top: the learned prior).
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
        hid = dict(activation=c.activation, batch_norm=c.batch_norm, bn_momentum=c.bn_momentum)
        self.up = [_Hidden(c.up_hidden[l], **hid, name=f"up_{l + 1}") for l in range(L)]
        self.up_heads = [_GaussHead(c.latent_sizes[l], c.min_scale, name=f"up_head_{l + 1}") for l in range(L)]
        self.down = [_Hidden(c.down_hidden[l], **hid, name=f"down_{l + 1}") for l in range(L - 1)]
        self.down_heads = [_GaussHead(c.latent_sizes[l], c.min_scale, name=f"down_head_{l + 1}") for l in range(L - 1)]
        d_top = c.latent_sizes[-1]
        self.top_loc = self.param("top_loc", nn.initializers.zeros, (d_top,))
        self.top_raw_scale = self.param("top_raw_scale", nn.initializers.constant(_SOFTPLUS_INV_1), (d_top,))
        self.dec_hidden = _Hidden(c.decoder_hidden, **hid, name="dec_hidden")
        self.dec_out = nn.Dense(c.x_dim, name="dec_out")

    # -- pieces ------------------------------------------------------------------------------
    def bottom_up(self, x: jax.Array, train: bool) -> list[tuple[jax.Array, jax.Array]]:
        """Messages ``(m_l, s_l)``, bottom to top, each [B, d_l]."""
        h = x
        msgs = []
        for l in range(self.config.num_layers):
            h = self.up[l](h, train)
            msgs.append(self.up_heads[l](h))
        return msgs

    def prior_top(self, n: int) -> tuple[jax.Array, jax.Array]:
        d = self.config.latent_sizes[-1]
        scale = jax.nn.softplus(self.top_raw_scale) + self.config.min_scale
        return jnp.broadcast_to(self.top_loc, (n, d)), jnp.broadcast_to(scale, (n, d))

    def prior_conditional(self, l: int, z_parent: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """``(loc, scale)`` of p(z_l | z_{l+1}) for 1-based layer ``l < L``."""
        return self.down_heads[l - 1](self.down[l - 1](z_parent, train))

    def decode(self, z1: jax.Array, train: bool) -> jax.Array:
        """Bernoulli logits of p(x | z_1), [N, x_dim]."""
        return self.dec_out(self.dec_hidden(z1, train))

    # -- passes ------------------------------------------------------------------------------
    def __call__(self, x: jax.Array, key: PRNGKey, *, train: bool, num_samples: int | None = None) -> Forward:
        """Sample z ~ q(z | x) top-down and score it.

        Args:
          x: [B, x_dim] (or [B, 28, 28]) data in [0, 1].
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

            msgs = [(tile(m), tile(s)) for m, s in msgs]
        n = msgs[0][0].shape[0]
        keys = jax.random.split(key, 2 * L)
        z = [None] * L
        q_params = [None] * L
        p_params = [None] * L
        for l in range(L, 0, -1):  # 1-based, top-down
            i = l - 1
            if l == L:
                p_loc, p_scale = self.prior_top(n)
            else:
                p_loc, p_scale = self.prior_conditional(l, z[i + 1], train)
            m, s = msgs[i]
            if c.posterior == "structured":
                q_loc, q_scale = _precision_weight(p_loc, p_scale, m, s)
            else:
                q_loc, q_scale = m, s
            eps = jax.random.normal(keys[i], q_loc.shape, q_loc.dtype)
            z[i] = _unit_sample(c, q_loc, q_scale, eps)
            q_params[i] = (q_loc, q_scale)
            p_params[i] = (p_loc, p_scale)
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
            loc, scale = self.prior_top(n) if l == L else self.prior_conditional(l, z[i + 1], False)
            z[i] = _unit_sample(c, loc, scale, eps[i])
        return self.decode(z[0], False), tuple(z)


# ----------------------------------------------------------------------------- functional API


def _check_config(config) -> None:
    if not isinstance(config, Config):
        raise ValueError(f"`config` must be a rectified_hvae.Config; got {type(config).__name__}.")


def _check_x(x, x_dim: int) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 2 or int(jnp.size(x[0])) != x_dim:
        raise ValueError(
            f"`x` must have shape [B, {x_dim}] (or [B, ...] with {x_dim} values per example); got {x.shape}."
        )
    return x


def _variables(params: PyTree, model_state: PyTree) -> dict:
    return {"params": params, **dict(model_state)}


@functools.partial(jax.jit, static_argnums=0)
def _init(config: Config, key: PRNGKey) -> dict:
    k_init, k_noise = jax.random.split(key)
    x = jnp.zeros((2, config.x_dim), jnp.float32)
    return dict(RectifiedHVAE(config).init(k_init, x, k_noise, train=False))


def init(config: Config, key: PRNGKey) -> tuple[PyTree, PyTree]:
    """Initialise ``(params, model_state)``; ``model_state`` is ``{'batch_stats': ...}`` or ``{}``."""
    _check_config(config)
    variables = dict(_init(config, key))
    params = variables.pop("params")
    return params, variables


def _elbo_terms(config: Config, fwd: Forward, x: jax.Array):
    log_px_z = jnp.sum(bernoulli_log_prob(x, fwd.logits), axis=-1)
    kl_total = sum(fwd.kl)
    return log_px_z, kl_total, log_px_z - kl_total


def make_loss_fn(config: Config, *, beta: float = 1.0) -> Callable:
    """The engine's ``loss_fn(params, model_state, batch, key) -> LossOutput``.

    Loss = batch mean of ``-(log p(x|z_1) - beta * sum_l KL_l)`` (one sample of z per example,
    batch statistics in training mode). ``batch['x']`` is [B, x_dim] (or [B, 28, 28]) in {0, 1}.
    Metrics: 'elbo' (at beta = 1), 'log_px_z', 'kl', 'kl_1'..'kl_L' (batch means).
    """
    _check_config(config)
    model = RectifiedHVAE(config)

    def loss_fn(params, model_state, batch, key):
        x = _check_x(batch["x"], config.x_dim)
        x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
        mutable = list(model_state.keys())
        fwd, new_state = model.apply(_variables(params, model_state), x, key, train=True, mutable=mutable)
        log_px_z, kl_total, elbo = _elbo_terms(config, fwd, x)
        loss = -jnp.mean(log_px_z - beta * kl_total)
        metrics = {"elbo": jnp.mean(elbo), "log_px_z": jnp.mean(log_px_z), "kl": jnp.mean(kl_total)}
        for i, k in enumerate(fwd.kl):
            metrics[f"kl_{i + 1}"] = jnp.mean(k)
        return LossOutput(loss, metrics, dict(new_state) if mutable else model_state)

    return loss_fn


def make_eval_fn(config: Config) -> Callable:
    """``eval_fn(params, model_state, batch, key) -> dict[str, Array[B]]`` (running BN averages).

    Keys: 'elbo', 'log_px_z', 'kl', 'kl_1'..'kl_L' (per example, one sample of z).
    """
    _check_config(config)
    model = RectifiedHVAE(config)

    def eval_fn(params, model_state, batch, key):
        x = _check_x(batch["x"], config.x_dim)
        x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
        fwd = model.apply(_variables(params, model_state), x, key, train=False)
        log_px_z, kl_total, elbo = _elbo_terms(config, fwd, x)
        out = {"elbo": elbo, "log_px_z": log_px_z, "kl": kl_total}
        for i, k in enumerate(fwd.kl):
            out[f"kl_{i + 1}"] = k
        return out

    return eval_fn


def make_log_weight_fn(config: Config, params: PyTree, model_state: PyTree) -> Callable:
    r"""``f(key, x[B, ...], num_samples) -> log_w[num_samples, B]`` for ``iw_log_likelihood``.

    :math:`\log w = \log p(x \mid z_1) + \sum_l [\log p(z_l \mid z_{l+1}) - \log q(z_l \mid z_{l+1}, x)]`
    with :math:`z \sim q(z \mid x)`, both densities on the mixed base measure (an exact zero scores
    :math:`\log\Phi(-\mu/\sigma)` under q and p), running BN averages. ``mean(log_w)`` estimates the
    ELBO, ``logsumexp(log_w) - log K`` the IWAE bound.
    """
    _check_config(config)
    model = RectifiedHVAE(config)
    variables = _variables(params, model_state)

    def log_weight_fn(key, x, num_samples):
        x = _check_x(x, config.x_dim)
        b = x.shape[0]
        x = jnp.reshape(x, (b, -1)).astype(jnp.float32)
        fwd = model.apply(variables, x, key, train=False, num_samples=num_samples)
        x_rep = jnp.reshape(jnp.broadcast_to(x[None], (num_samples,) + x.shape), (num_samples * b, -1))
        log_px_z = jnp.sum(bernoulli_log_prob(x_rep, fwd.logits), axis=-1)
        log_w = log_px_z + sum(lp - lq for lp, lq in zip(fwd.log_pz, fwd.log_qz))
        return jnp.reshape(log_w, (num_samples, b))

    return log_weight_fn


@functools.partial(jax.jit, static_argnums=(0, 5))
def _posterior_samples(config, params, model_state, key, x, num_samples):
    b = x.shape[0]
    fwd = RectifiedHVAE(config).apply(_variables(params, model_state), x, key, train=False, num_samples=num_samples)
    return tuple(jnp.reshape(z, (num_samples, b, -1)) for z in fwd.z)


def posterior_samples(
    config: Config, params: PyTree, model_state: PyTree, key: PRNGKey, x, num_samples: int = 1
) -> tuple[jax.Array, ...]:
    """Per-layer samples of q(z | x) (eval mode), bottom to top, each [num_samples, B, d_l] (jitted).

    Used for the per-layer posterior means (active units) and sparsity (fraction of exact zeros).
    """
    _check_config(config)
    x = _check_x(x, config.x_dim)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
    return _posterior_samples(config, params, model_state, key, x, num_samples)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _posterior_means(config, params, model_state, key, x, num_samples):
    b = x.shape[0]
    fwd = RectifiedHVAE(config).apply(_variables(params, model_state), x, key, train=False, num_samples=num_samples)
    means = []
    for q_loc, q_scale in fwd.q_params:
        m = _unit_dist(config, q_loc, q_scale).mean()
        means.append(jnp.reshape(m, (num_samples, b, -1)))
    return tuple(means)


def posterior_conditional_means(
    config: Config, params: PyTree, model_state: PyTree, key: PRNGKey, x, num_samples: int = 1
) -> tuple[jax.Array, ...]:
    r"""Per layer, :math:`E_q[z_l \mid z_{l+1}^{(s)}, x]` at ``num_samples`` parent draws (jitted).

    Returns a tuple, bottom to top, of [num_samples, B, d_l]. Their mean over samples is a
    Rao-Blackwellised estimate of :math:`E_q[z_l \mid x]` (the top layer's is exact: every sample
    gives the same value); their spread over samples measures the estimate's Monte-Carlo noise.
    """
    _check_config(config)
    x = _check_x(x, config.x_dim)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
    return _posterior_means(config, params, model_state, key, x, num_samples)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _sample_images(config, params, model_state, key, n):
    keys = jax.random.split(key, config.num_layers)
    eps = [jax.random.normal(k, (n, d)) for k, d in zip(keys, config.latent_sizes)]
    logits, _ = RectifiedHVAE(config).apply(_variables(params, model_state), eps, method=RectifiedHVAE.generate)
    return jnp.reshape(jax.nn.sigmoid(logits), (n, 28, 28))


def sample_images(config: Config, params: PyTree, model_state: PyTree, key: PRNGKey, n: int) -> jax.Array:
    """``n`` ancestral samples of the prior: Bernoulli means, [n, 28, 28] in [0, 1] (jitted)."""
    _check_config(config)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int; got {n!r}.")
    return _sample_images(config, params, model_state, key, n)


def layer_variation_images(
    config: Config, params: PyTree, model_state: PyTree, key: PRNGKey, num_columns: int = 8
) -> jax.Array:
    """What each layer encodes: row l (top row = top layer) redraws only layer l's noise.

    The noise of every other layer is held fixed (one base draw shared by all rows); column ``j``
    uses the ``j``-th fresh noise for the varied layer. Returns Bernoulli means
    [L, num_columns, 28, 28]; layers below the varied one are recomputed from their fixed noise.
    """
    _check_config(config)
    if not isinstance(num_columns, int) or num_columns < 1:
        raise ValueError(f"`num_columns` must be a positive int; got {num_columns!r}.")
    return _layer_variation(config, params, model_state, key, num_columns)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _layer_variation(config, params, model_state, key, num_columns):
    L = config.num_layers
    k_base, k_var = jax.random.split(key)
    base = [jax.random.normal(k, (1, d)) for k, d in zip(jax.random.split(k_base, L), config.latent_sizes)]
    rows = []
    for i in reversed(range(L)):
        eps = [jnp.broadcast_to(e, (num_columns, e.shape[1])) for e in base]
        eps[i] = jax.random.normal(jax.random.fold_in(k_var, i), (num_columns, config.latent_sizes[i]))
        logits, _ = RectifiedHVAE(config).apply(_variables(params, model_state), eps, method=RectifiedHVAE.generate)
        rows.append(jnp.reshape(jax.nn.sigmoid(logits), (num_columns, 28, 28)))
    return jnp.stack(rows)

r"""Latent regularisers of Rivera's VAE and the baselines they replace.

M. Rivera, "How to train your VAE", arXiv:2309.13160, and its code's ``VAE_GAN.train_step``.

The encoder gives :math:`\mu_i, \log\sigma_i^2 \in R^D` for each example ``i`` of a batch of ``B``.

* :func:`variance_regularizer` (per example, prior-free): the variance-collapse penalty
  :math:`w \sum_d (\sigma_{id}^2 - \log\sigma_{id}^2 - 1)` (Rivera: ``w = 0.1``), minimised at
  :math:`\sigma^2 = 1`. It equals :math:`2w \cdot KL(N(0, \sigma^2) \| N(0, 1))`: the per-sample KL
  without its mean term, so it keeps each posterior from collapsing to a point without pulling
  its mean to 0.
* :func:`per_sample_kl`: the standard VAE's :math:`\sum_d KL(N(\mu_{id}, \sigma_{id}^2) \| N(0, 1))`,
  the baseline ("How NOT to train your VAE"); it is :func:`jaxvae.distributions.kl_normal_std`
  summed over the latent axis.
* The population KL (batch-level, a scalar per batch): the batch aggregate posterior
  :math:`q(z) = \frac1B\sum_i N(\mu_i, \mathrm{diag}\,\sigma_i^2)` against :math:`N(0, I)`:

  - :func:`population_kl` (``jaxvae.distributions.mixture_kl.population_kl``, re-exported): the
    closed-form KL of one moment-matched Gaussian, means only (the official code,
    ``include_variance=False``) or exactly moment matched (``include_variance=True``, a lower
    bound on the mixture's KL);
  - :func:`population_kl_mc`: the unbiased Monte Carlo KL of the mixture :func:`aggregate_posterior`
    itself (component-stratified by default, fully differentiable), with its standard error.

Rivera's generator loss uses ``population_kl(loc, log_var) + mean_i variance_regularizer(log_var)``
in place of ``mean_i per_sample_kl(loc, log_var)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks, mixture_kl
from jaxvae.distributions.mixture import MixtureNormal
from jaxvae.distributions.mixture_kl import MCEstimate, population_kl
from jaxvae.distributions.normal import Normal, kl_normal_std
from jaxvae.typing import PRNGKey

__all__ = [
    "aggregate_posterior",
    "per_sample_kl",
    "population_kl",
    "population_kl_mc",
    "variance_regularizer",
]


def _check_pair(loc: ArrayLike | None, log_var: ArrayLike, min_rank: int, what: str) -> None:
    _checks.check_rank_at_least("log_var", log_var, min_rank, what)
    _checks.check_finite("log_var", log_var)
    if loc is not None:
        if np.shape(loc) != np.shape(log_var):
            raise ValueError(f"`loc` must have the shape of `log_var` {np.shape(log_var)}; got {np.shape(loc)}.")
        _checks.check_finite("loc", loc)


def variance_regularizer(log_var: ArrayLike, weight: float = 0.1) -> jax.Array:
    r"""Rivera's variance-collapse penalty :math:`w \sum_d (\sigma_d^2 - \log\sigma_d^2 - 1)`, per example.

    With ``v = log_var``, :math:`e^v - 1 - v` is computed as ``expm1(v) - v`` for ``|v| >= 0.1`` and
    by its Taylor series :math:`v^2/2 + v^3/6 + v^4/24 + v^5/120` below (truncation error
    :math:`< 3\cdot 10^{-7}` relative), so its relative error stays below :math:`10^{-5}` in float32
    down to the minimum ``v = 0``, where the direct form cancels to zero.

    Args:
      log_var: ``[..., D]`` posterior log-variances (the latent axis last).
      weight: ``w >= 0`` (Rivera: 0.1).

    Returns:
      ``[...]`` (``[B]`` for a ``[B, D]`` batch), ``>= 0``.

    Raises:
      ValueError: for a scalar or non-finite ``log_var`` or a negative / non-finite ``weight``.
    """
    _check_pair(None, log_var, 1, "[..., D]")
    if not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"`weight` must be finite and >= 0; got {weight!r}.")
    v = jnp.asarray(log_var)
    series = jnp.square(v) * (0.5 + v * (1.0 / 6.0 + v * (1.0 / 24.0 + v * (1.0 / 120.0))))
    excess = jnp.where(jnp.abs(v) < 0.1, series, jnp.expm1(v) - v)
    return weight * jnp.sum(excess, axis=-1)


def per_sample_kl(loc: ArrayLike, log_var: ArrayLike) -> jax.Array:
    r"""The standard VAE KL :math:`\sum_d KL(N(\mu_d, e^{v_d}) \| N(0, 1))`, per example.

    Args:
      loc, log_var: ``[..., D]`` posterior means and log-variances.

    Returns:
      ``[...]`` (``[B]`` for a ``[B, D]`` batch).
    """
    _check_pair(loc, log_var, 1, "[..., D]")
    return jnp.sum(kl_normal_std(loc, log_var), axis=-1)


def aggregate_posterior(loc: ArrayLike, log_var: ArrayLike) -> MixtureNormal:
    r"""The batch aggregate posterior :math:`\frac1B \sum_i N(\mu_i, \mathrm{diag}\, e^{v_i})`.

    Args:
      loc, log_var: ``[..., B, D]``; the ``B`` examples become the mixture's equally weighted components.

    Returns:
      :class:`~jaxvae.distributions.MixtureNormal` with ``C = B`` components, batch shape ``[...]``.
    """
    _check_pair(loc, log_var, 2, "[..., B, D]")
    loc = jnp.asarray(loc)
    scale = jnp.exp(0.5 * jnp.asarray(log_var))
    return MixtureNormal(jnp.zeros(loc.shape[:-1], loc.dtype), loc, scale)


def population_kl_mc(
    key: PRNGKey, loc: ArrayLike, log_var: ArrayLike, num_samples: int, *, stratified: bool = True
) -> MCEstimate:
    r"""Monte Carlo :math:`KL(q \| N(0, I))` of the batch aggregate posterior ``q`` (:func:`aggregate_posterior`).

    Unbiased for the KL of the B-component mixture. ``stratified=True`` uses
    :func:`jaxvae.distributions.mixture_kl.kl_mc_stratified` (``num_samples`` draws per component,
    differentiable in every parameter, lower variance; cost ``num_samples * B * B * D``);
    ``False`` uses :func:`~jaxvae.distributions.mixture_kl.kl_mc` (``num_samples`` ancestral draws
    in all; cost ``num_samples * B * D``).

    Args:
      key: PRNG key.
      loc, log_var: ``[..., B, D]``.
      num_samples: ``>= 2``.

    Returns:
      :class:`~jaxvae.distributions.mixture_kl.MCEstimate` (``estimate`` and ``stderr`` ``[...]``).
    """
    q = aggregate_posterior(loc, log_var)
    d = q.event_size
    prior = Normal(jnp.zeros((d,), q.loc.dtype), jnp.ones((d,), q.loc.dtype))
    fn = mixture_kl.kl_mc_stratified if stratified else mixture_kl.kl_mc
    return fn(key, q, prior, num_samples)

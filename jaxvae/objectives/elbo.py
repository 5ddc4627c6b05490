r"""The evidence lower bound, per example.

.. math::

    \mathcal{L}_\beta(x) = \mathbb{E}_{q(z|x)}[\log p(x|z)] - \beta\,\mathrm{KL}(q(z|x)\,\|\,p(z))
    \le \log p(x) \quad (\beta = 1).

Estimated with one reparameterised draw ``z ~ q(z|x)``; the KL term is either closed form
(``kl_fn``, e.g. :func:`jaxvae.distributions.normal.kl_normal_normal`) or the single-sample
Monte-Carlo estimate ``log q(z|x) - log p(z)`` at the same ``z`` (which makes the bound exact, for
every ``z``, when ``q`` is the true posterior).

Distribution objects follow the jaxvae protocol: ``sample(key, sample_shape)`` and an
elementwise ``log_prob`` with no event dimensions, so event axes are summed here explicitly
(``z_event_ndims``). Everything returns per-example ``[B]`` values; only train steps average.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.typing import PRNGKey

LogLikelihoodFn = Callable[[jax.Array], jax.Array]
KlFn = Callable[[Any, Any], jax.Array]


class ElboTerms(NamedTuple):
    """Per-example ELBO terms.

    Attributes:
      log_px_z: ``[B]`` reconstruction term :math:`\\log p(x|z)` at the sampled ``z`` (event-summed).
      kl_z: ``[B]`` KL term, closed form or single-sample estimate (event-summed).
    """

    log_px_z: jax.Array
    kl_z: jax.Array


def sum_event(x: ArrayLike, ndims: int) -> jax.Array:
    """Sum the trailing ``ndims`` (event) axes: ``[*batch, *event] -> [*batch]``.

    Raises:
      ValueError: if ``ndims`` is negative or exceeds ``x.ndim``.
    """
    if isinstance(ndims, bool) or not isinstance(ndims, int) or ndims < 0:
        raise ValueError(f"`ndims` must be a non-negative int; got {ndims!r}.")
    x = jnp.asarray(x)
    if ndims > x.ndim:
        raise ValueError(f"`ndims`={ndims} exceeds the rank of `x` (shape {x.shape}).")
    if ndims == 0:
        return x
    return jnp.sum(x, axis=tuple(range(x.ndim - ndims, x.ndim)))


def _check_beta(beta: Any) -> None:
    if not _checks.is_concrete(beta):
        return  # traced (e.g. an annealing schedule inside jit): nothing to inspect
    b = np.asarray(beta)
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise ValueError(f"`beta` must be finite and >= 0; got {beta!r}.")


def elbo(terms: ElboTerms, beta: ArrayLike = 1.0) -> jax.Array:
    r"""Per-example :math:`\log p(x|z) - \beta\,\mathrm{KL}`, ``[B]``.

    Args:
      terms: :class:`ElboTerms` with equal shapes ``[B]``.
      beta: KL weight (scalar, >= 0; may be traced, e.g. an annealing schedule).

    Raises:
      ValueError: if the two terms' shapes differ or ``beta`` is negative / not finite.
    """
    log_px_z, kl_z = jnp.asarray(terms.log_px_z), jnp.asarray(terms.kl_z)
    if log_px_z.shape != kl_z.shape:
        raise ValueError(
            f"`terms.log_px_z` {log_px_z.shape} and `terms.kl_z` {kl_z.shape} must have the same [B] shape."
        )
    if jnp.ndim(beta) != 0:
        raise ValueError(f"`beta` must be a scalar; got shape {jnp.shape(beta)}.")
    _check_beta(beta)
    return log_px_z - beta * kl_z


def kl_mc_terms(log_qz_x: ArrayLike, log_pz: ArrayLike, *, event_ndims: int = 0) -> jax.Array:
    r"""Single-sample Monte-Carlo KL: :math:`\log q(z|x) - \log p(z)` at ``z ~ q``, event-summed.

    Unbiased for :math:`\mathrm{KL}(q\|p)`; individual values may be negative.

    Args:
      log_qz_x: ``[*B, *event]`` elementwise :math:`\log q(z|x)`.
      log_pz: same shape, elementwise :math:`\log p(z)` at the same ``z``.
      event_ndims: trailing axes to sum (1 for ``[B, D]`` latents with elementwise log-probs).

    Returns:
      ``[*B]``.
    """
    log_qz_x, log_pz = jnp.asarray(log_qz_x), jnp.asarray(log_pz)
    if log_qz_x.shape != log_pz.shape:
        raise ValueError(f"`log_qz_x` {log_qz_x.shape} and `log_pz` {log_pz.shape} must have the same shape.")
    return sum_event(log_qz_x - log_pz, event_ndims)


def _log_px_z(log_likelihood: LogLikelihoodFn, z: jax.Array, batch_shape: tuple[int, ...]) -> jax.Array:
    out = jnp.asarray(log_likelihood(z))
    if out.shape != batch_shape:
        raise ValueError(
            f"`log_likelihood(z)` must return the event-summed log p(x|z) of shape {batch_shape}; got {out.shape}."
        )
    return out


def analytic_kl_terms(
    key: PRNGKey,
    q_z: Any,
    p_z: Any,
    log_likelihood: LogLikelihoodFn,
    *,
    kl_fn: KlFn,
    z_event_ndims: int = 1,
) -> ElboTerms:
    r"""ELBO terms with a closed-form KL: ``z = q_z.sample(key)``, ``kl_z = sum_event(kl_fn(q_z, p_z))``.

    Args:
      key: PRNG key for the reparameterised draw.
      q_z: posterior distribution object, batch shape ``[B, *event]``.
      p_z: prior distribution object broadcastable with ``q_z``.
      log_likelihood: ``z [B, *event] -> [B]``, the event-summed :math:`\log p(x|z)`.
      kl_fn: elementwise closed-form KL, e.g. ``kl_normal_normal``.
      z_event_ndims: latent event axes to sum.

    Returns:
      :class:`ElboTerms` of ``[B]`` arrays.
    """
    z = q_z.sample(key)
    kl_z = sum_event(kl_fn(q_z, p_z), z_event_ndims)
    return ElboTerms(_log_px_z(log_likelihood, z, kl_z.shape), kl_z)


def mc_kl_terms(
    key: PRNGKey,
    q_z: Any,
    p_z: Any,
    log_likelihood: LogLikelihoodFn,
    *,
    z_event_ndims: int = 1,
) -> ElboTerms:
    r"""ELBO terms with the single-sample KL :math:`\log q(z|x) - \log p(z)` at ``z = q_z.sample(key)``.

    With the same ``key`` the draw is the one :func:`analytic_kl_terms` uses, and the one
    :func:`jaxvae.objectives.iwae.importance_log_weights` uses with ``num_samples=1``; so
    ``elbo(mc_kl_terms(...)) == iwae_bound(importance_log_weights(..., 1))``.

    Returns:
      :class:`ElboTerms` of ``[B]`` arrays.
    """
    z = q_z.sample(key)
    kl_z = kl_mc_terms(q_z.log_prob(z), p_z.log_prob(z), event_ndims=z_event_ndims)
    return ElboTerms(_log_px_z(log_likelihood, z, kl_z.shape), kl_z)

r"""Posterior diagnostics over a data set: variance collapse and the aggregate posterior's KL to the prior.

Inputs are the encoder's diagonal Gaussians over ``N`` examples, ``loc, log_var [N, D]``.

* :func:`mean_posterior_variance` ``[D]``: :math:`\frac1N \sum_n \sigma_{nd}^2`, the
  variance-collapse diagnostic (Rivera): values near 0 mean the posteriors have shrunk to points
  (the decoder sees a deterministic code), values near 1 with inactive units
  (:func:`jaxvae.metrics.active_units`) mean posterior collapse onto the prior.
* :func:`aggregate_posterior_kl`: :math:`KL(q(z) \| N(0, I))` for the aggregate posterior
  :math:`q(z) = \frac1N \sum_n N(\mu_n, \mathrm{diag}\,\sigma_n^2)`, with the estimators of
  :mod:`jaxvae.distributions.mixture_kl`:

  - ``"mc"`` (default): :func:`~jaxvae.distributions.mixture_kl.kl_mc`, ancestral draws in chunks
    (memory ``chunk * N * D``); **unbiased** for the N-component mixture, with its standard error.
  - ``"moment_matched"``: :func:`~jaxvae.distributions.mixture_kl.population_kl` with
    ``include_variance=True``, the KL of the exactly moment-matched Gaussian: a **lower bound**.
  - ``"means_only"``: ``population_kl`` with ``include_variance=False``, Rivera's training term on
    the whole set (neither a bound nor an estimate of the mixture's KL; ``+inf`` when a unit's
    means are all equal, whatever the variances).
  - ``"upper_bound"``: :func:`~jaxvae.distributions.mixture_kl.kl_upper_bound`, the mean
    per-example KL (joint convexity): an **upper bound**; for a standard VAE, the ELBO's KL term.

  The mixture of the ``N`` encoded examples is itself an estimate of the population's aggregate
  posterior; with few examples in many dimensions its KL is dominated by ``log N`` (each
  component is far from the others), so compare models at the same ``N``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks, mixture_kl
from jaxvae.distributions.mixture import MixtureNormal
from jaxvae.distributions.mixture_kl import population_kl
from jaxvae.distributions.normal import Normal
from jaxvae.typing import PRNGKey

METHODS = ("mc", "moment_matched", "means_only", "upper_bound")


def _check(loc: ArrayLike | None, log_var: ArrayLike) -> None:
    if np.ndim(log_var) != 2 or np.shape(log_var)[0] < 1:
        raise ValueError(f"`log_var` must be [N, D] with N >= 1; got shape {np.shape(log_var)}.")
    _checks.check_finite("log_var", log_var)
    if loc is not None:
        if np.shape(loc) != np.shape(log_var):
            raise ValueError(f"`loc` must have the shape of `log_var` {np.shape(log_var)}; got {np.shape(loc)}.")
        _checks.check_finite("loc", loc)


def mean_posterior_variance(log_var: ArrayLike) -> jax.Array:
    r"""``[D]``: :math:`\frac1N \sum_n e^{v_{nd}}`, the mean posterior variance of each latent unit.

    Args:
      log_var: ``[N, D]`` posterior log-variances over a data set.
    """
    _check(None, log_var)
    return jnp.mean(jnp.exp(jnp.asarray(log_var)), axis=0)


class AggregateKL(NamedTuple):
    """An aggregate-posterior KL.

    Attributes:
      estimate: the value (a Python float).
      stderr: its Monte Carlo standard error (``0.0`` for the closed forms).
      method: which estimator (one of :data:`METHODS`).
    """

    estimate: float
    stderr: float
    method: str


def _mixture(loc: jax.Array, log_var: jax.Array) -> tuple[MixtureNormal, Normal]:
    q = MixtureNormal(jnp.zeros(loc.shape[:1], loc.dtype), loc, jnp.exp(0.5 * log_var))
    d = loc.shape[1]
    return q, Normal(jnp.zeros((d,), loc.dtype), jnp.ones((d,), loc.dtype))


_kl_mc = jax.jit(mixture_kl.kl_mc, static_argnames="num_samples")


def aggregate_posterior_kl(
    loc: ArrayLike,
    log_var: ArrayLike,
    *,
    method: str = "mc",
    key: PRNGKey | None = None,
    num_samples: int = 4096,
    max_elements: int = 1 << 24,
) -> AggregateKL:
    r"""KL of the data set's aggregate posterior to :math:`N(0, I)` (estimators in the module docstring).

    Args:
      loc, log_var: ``[N, D]`` posterior means and log-variances (``N >= 2`` for the population forms).
      method: one of :data:`METHODS`.
      key: PRNG key, required for ``"mc"``.
      num_samples: Monte Carlo draws for ``"mc"`` (>= 2), rounded up to a whole number of chunks.
      max_elements: memory budget of one ``"mc"`` chunk, in ``S * N * D`` array elements
        (draws per chunk ``S = max(2, max_elements // (N * D))``).

    Returns:
      :class:`AggregateKL`.

    Raises:
      ValueError: for a bad ``method``, missing ``key`` with ``"mc"``, or malformed inputs.
    """
    _check(loc, log_var)
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    loc_j, lv_j = jnp.asarray(loc), jnp.asarray(log_var)
    n, d = loc_j.shape
    if method in ("moment_matched", "means_only"):
        if n < 2:
            raise ValueError(f"`loc` needs N >= 2 examples for the population KL; got shape {loc_j.shape}.")
        value = population_kl(loc_j, lv_j, include_variance=method == "moment_matched")
        return AggregateKL(float(value), 0.0, method)
    q, prior = _mixture(loc_j, lv_j)
    if method == "upper_bound":
        return AggregateKL(float(mixture_kl.kl_upper_bound(q, prior)), 0.0, method)
    if key is None:
        raise ValueError('`key` must be a PRNG key for method="mc".')
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"`num_samples` must be an int >= 2; got {num_samples!r}.")
    chunk = max(2, min(num_samples, int(max_elements) // (n * d)))
    values = [
        np.asarray(_kl_mc(jax.random.fold_in(key, i), q, prior, num_samples=chunk).values)
        for i in range(-(-num_samples // chunk))
    ]
    v = np.concatenate(values).astype(np.float64)
    return AggregateKL(float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))), method)

r"""Total correlation of a factorised-posterior VAE: minibatch estimators, the decomposition, β-(S)TCVAE.

The KL term of the ELBO, averaged over the data, splits into three parts (Chen et al., 2018):

.. math::

    \mathbb{E}_{p(x)}\mathrm{KL}(q(z|x)\,\|\,p(z))
      = \underbrace{I_q(x; z)}_{\text{index-code MI}}
      + \underbrace{\mathrm{KL}(q(z)\,\|\,\textstyle\prod_j q(z_j))}_{\text{total correlation TC}}
      + \underbrace{\textstyle\sum_j \mathrm{KL}(q(z_j)\,\|\,p(z_j))}_{\text{dimension-wise KL}},

with the aggregate posterior :math:`q(z) = \frac1N \sum_n q(z|x_n)` over a data set of size ``N``.
Chen, Xiang & Wang (2025, "disentangling granularity", the code's β-STCVAE) partition the ``D`` latent
dimensions into contiguous groups :math:`G_1, \dots, G_K` of size ``s`` (the last group smaller when
``s`` does not divide ``D``) and split the total correlation further:

.. math::

    \mathrm{TC} = \underbrace{\log q(z) - \textstyle\sum_g \log q(z_g)}_{\mathrm{TC}_B\ \text{(between)}}
      + \textstyle\sum_g \underbrace{\big(\log q(z_g) - \sum_{k \in g} \log q(z_k)\big)}_{\mathrm{TC}_g}.

Every term is evaluated per example at the sample :math:`z^{(i)} \sim q(z|x_i)`, so the functions here
return ``[B]`` values whose batch means estimate the expectations above.

**Estimators of the marginals** from a batch of ``B`` examples (the ``[B, B, D]`` matrix
:math:`L_{ijd} = \log q(z^{(i)}_d \mid x_j)`, from :func:`jaxvae.distributions.normal.normal_log_prob`):

* ``"mws"``, minibatch weighted sampling (Chen et al. 2018, eq. (S5)):
  :math:`\log \hat q(z^{(i)}_S) = \operatorname{logsumexp}_j \sum_{d \in S} L_{ijd} - \log(N M)` with
  ``M = B`` (``mws_normalizer="log_nm"``, as published and as both papers' code). With the whole data set
  as the batch (``M = N``) this equals the exact :math:`\log q(z_S) - \log N` for every subset ``S`` of
  dimensions, so TC is offset by :math:`(D - 1)\log N`, TC_B by :math:`(K-1)\log N` and
  :math:`\sum_g \mathrm{TC}_g` by :math:`(D - K)\log N`; constant offsets, so gradients are unaffected.
  ``mws_normalizer="log_m"`` subtracts :math:`\log M` instead and is exact at ``M = N``.
* ``"mss"``, minibatch stratified sampling (Chen et al. 2018, App. C.2):
  :math:`\hat q(z^{(i)}_S) = \sum_j W_{ij} \prod_{d \in S} q(z^{(i)}_d | x_j)` with, for ``M = B - 1``,
  :math:`W_{ii} = 1/N` (the example's own posterior), :math:`W_{i,(i+1) \bmod B} = (N - M)/(N M)` (one
  other example) and :math:`W_{ij} = 1/M` for the remaining ``B - 2``: each row sums to one, and for a
  batch drawn uniformly without replacement :math:`\mathbb{E}[\hat q(z)] = q(z)` exactly (unbiased in
  density; its log is biased low by Jensen's inequality). Which other example carries the
  :math:`(N-M)/(NM)` weight does not matter for a uniformly drawn batch; we take the next one. (The
  original β-TCVAE code's strided fill of ``W`` puts ``1/N`` on column 0 instead of the diagonal; that
  layout is not reproduced.)

**Objectives** (maximised; per example ``[B]``):

* β-TCVAE (Chen et al. 2018): :math:`\log p(x|z) - \mathrm{MI} - \beta\,\mathrm{TC} - \mathrm{DWKL}`.
* β-STCVAE (Chen, Xiang & Wang 2025, official code ``VAE.elbo`` with ``newTC=True``), ``variant`` =
  the code's ``contraintInfo``:

  1. :math:`\log p(x|z) - \mathrm{MI} - \beta\,\mathrm{TC}_B - \mathrm{DWKL}` (only between-group TC
     is penalised);
  2. (default) variant 1 :math:`+\ \tfrac{\beta}{2}\,\overline{\sum_g \mathrm{TC}_g}`, where the bar is the
     mean over the batch: the code adds the same batch-mean scalar to every example's objective. After the
     train step's batch mean the value and the gradient equal those of the per-example
     :math:`\tfrac{\beta}{2}\sum_g \mathrm{TC}_g(x_i)`; only the per-example values differ. Within-group
     TC is rewarded, between-group TC penalised;
  3. β-TCVAE (β on the whole TC), for every ``s``;
  4. :math:`\log p(x|z) - \beta\,[(\log q(z|x) - \log p(z)) - \mathrm{DWKL}]
     = \log p(x|z) - \beta\,(\mathrm{MI} + \mathrm{TC})` (the code's "β-VAE" switch: β on MI + TC, the
     dimension-wise KL not penalised).

With ``s = 1`` every group is one dimension: the group marginals are the per-dimension marginals (the
same array), :math:`\mathrm{TC}_B = \mathrm{TC}` and :math:`\sum_g \mathrm{TC}_g = 0` identically (a
constant zero with no gradient path), so every β-STCVAE variant 1-3 is β-TCVAE **bitwise**, losses and
gradients.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.config import check_one_of, check_positive_int
from jaxvae.distributions import _checks
from jaxvae.distributions.normal import normal_log_prob

ESTIMATORS = ("mws", "mss")
MWS_NORMALIZERS = ("log_nm", "log_m")
STCVAE_VARIANTS = (1, 2, 3, 4)


def group_slices(latent_dim: int, group_size: int) -> tuple[tuple[int, int], ...]:
    """Contiguous groups ``[start, stop)`` of ``group_size`` dimensions (the last one smaller if needed).

    ``group_slices(7, 3) == ((0, 3), (3, 6), (6, 7))``.

    Raises:
      ValueError: if ``latent_dim`` or ``group_size`` is not a positive int, or ``group_size > latent_dim``.
    """
    d = check_positive_int("latent_dim", latent_dim)
    s = check_positive_int("group_size", group_size)
    if s > d:
        raise ValueError(f"`group_size` must be <= the latent dimension {d}; got {s}.")
    return tuple((a, min(a + s, d)) for a in range(0, d, s))


def mss_log_weights(batch_size: int, dataset_size: int) -> np.ndarray:
    r"""Log of the ``[B, B]`` minibatch-stratified-sampling weights (Chen et al. 2018, App. C.2).

    With ``M = B - 1``: ``W[i, i] = 1/N``, ``W[i, (i + 1) % B] = (N - M) / (N M)``, all other entries
    ``1/M``; every row sums to one. Row ``i`` weighs the posteriors of the batch when estimating
    :math:`q(z^{(i)})`.

    Returns:
      float64 NumPy ``[B, B]`` array of :math:`\log W`.

    Raises:
      ValueError: unless ``2 <= batch_size <= dataset_size`` (ints).
    """
    b = check_positive_int("batch_size", batch_size)
    n = check_positive_int("dataset_size", dataset_size)
    if b < 2:
        raise ValueError(f"`batch_size` must be >= 2 for minibatch stratified sampling; got {b}.")
    if n < b:
        raise ValueError(f"`dataset_size` must be >= the batch size {b}; got {n}.")
    m = b - 1
    w = np.full((b, b), 1.0 / m)
    rows = np.arange(b)
    w[rows, (rows + 1) % b] = (n - m) / (n * m)
    w[rows, rows] = 1.0 / n
    return np.log(w)


class MarginalLogDensities(NamedTuple):
    r"""Minibatch estimates of the aggregate posterior's log-densities at each example's sample.

    Attributes:
      log_qz: ``[B]`` :math:`\log \hat q(z^{(i)})`.
      log_qz_dims: ``[B, D]`` :math:`\log \hat q(z^{(i)}_d)` per dimension.
      log_qz_groups: ``[B, K]`` :math:`\log \hat q(z^{(i)}_g)` per group (the same array as
        ``log_qz_dims`` when ``group_size == 1``).
    """

    log_qz: jax.Array
    log_qz_dims: jax.Array
    log_qz_groups: jax.Array


def _check_inputs(z: jax.Array, loc: jax.Array, scale: jax.Array) -> None:
    if z.ndim != 2:
        raise ValueError(f"`z` must be [B, D] (one sample per example); got shape {z.shape}.")
    for name, a in (("loc", loc), ("scale", scale)):
        if a.shape != z.shape:
            raise ValueError(f"`{name}` must have the shape of `z` {z.shape} ([B, D]); got {a.shape}.")
    for name, a in (("z", z), ("loc", loc), ("scale", scale)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise ValueError(f"`{name}` must be a floating array; got dtype {a.dtype}.")
    _checks.check_finite("z", z)
    _checks.check_finite("loc", loc)
    _checks.check_positive("scale", scale)


def marginal_log_densities(
    z: ArrayLike,
    loc: ArrayLike,
    scale: ArrayLike,
    *,
    dataset_size: int,
    group_size: int = 1,
    estimator: str = "mws",
    mws_normalizer: str | None = None,
) -> MarginalLogDensities:
    r"""Estimate :math:`\log q(z)`, :math:`\log q(z_d)` and :math:`\log q(z_g)` at a batch's samples.

    Args:
      z: ``[B, D]`` one sample :math:`z^{(i)} \sim q(z|x_i)` per example.
      loc: ``[B, D]`` posterior means of the batch.
      scale: ``[B, D]`` posterior standard deviations (> 0; ``exp(log_scale)`` for a log-scale encoder).
      dataset_size: ``N``, the size of the data set the aggregate posterior averages over (>= ``B``).
      group_size: ``s``, the granularity: contiguous groups of ``s`` dimensions (:func:`group_slices`).
      estimator: ``"mws"`` (minibatch weighted sampling) or ``"mss"`` (minibatch stratified sampling).
      mws_normalizer: for ``"mws"``: ``"log_nm"`` (default, subtract :math:`\log(N M)` as published) or
        ``"log_m"`` (subtract :math:`\log M`; exact when the batch is the whole data set). Must be left
        unset for ``"mss"``, whose weights are fixed.

    Returns:
      :class:`MarginalLogDensities` (``[B]``, ``[B, D]``, ``[B, K]``).

    Raises:
      ValueError: for shapes other than three equal ``[B, D]``, non-float or (eagerly) non-finite inputs,
        a non-positive ``scale``, ``dataset_size < B``, a ``group_size`` outside ``[1, D]``, an unknown
        ``estimator`` or ``mws_normalizer``, ``mws_normalizer`` given with ``"mss"``, or ``B < 2`` with
        ``"mss"``.
    """
    z, loc, scale = jnp.asarray(z), jnp.asarray(loc), jnp.asarray(scale)
    _check_inputs(z, loc, scale)
    b, d = z.shape
    n = check_positive_int("dataset_size", dataset_size)
    if n < b:
        raise ValueError(f"`dataset_size` must be >= the batch size {b} (N is the data set's size); got {n}.")
    slices = group_slices(d, group_size)
    check_one_of("estimator", estimator, ESTIMATORS)
    if estimator == "mss" and mws_normalizer is not None:
        raise ValueError(f"`mws_normalizer` applies to estimator='mws' only; got {mws_normalizer!r} with 'mss'.")
    normalizer = check_one_of("mws_normalizer", "log_nm" if mws_normalizer is None else mws_normalizer, MWS_NORMALIZERS)

    # L[i, j, d] = log q(z_d^(i) | x_j): the sample of example i under the posterior of example j.
    log_q = normal_log_prob(z[:, None, :], loc[None, :, :], scale[None, :, :])  # [B, B, D]
    joint = jnp.sum(log_q, axis=-1)  # [B, B]
    grouped = None if group_size == 1 else jnp.stack([jnp.sum(log_q[..., a:c], axis=-1) for a, c in slices], -1)

    if estimator == "mws":
        log_norm = math.log(n * b) if normalizer == "log_nm" else math.log(b)
        log_qz = jax.nn.logsumexp(joint, axis=1) - log_norm
        log_qz_dims = jax.nn.logsumexp(log_q, axis=1) - log_norm
        log_qz_groups = log_qz_dims if grouped is None else jax.nn.logsumexp(grouped, axis=1) - log_norm
    else:
        log_w = jnp.asarray(mss_log_weights(b, n), dtype=joint.dtype)  # [B, B]
        log_qz = jax.nn.logsumexp(joint + log_w, axis=1)
        log_qz_dims = jax.nn.logsumexp(log_q + log_w[:, :, None], axis=1)
        log_qz_groups = log_qz_dims if grouped is None else jax.nn.logsumexp(grouped + log_w[:, :, None], axis=1)
    return MarginalLogDensities(log_qz, log_qz_dims, log_qz_groups)


class TotalCorrelationTerms(NamedTuple):
    r"""Per-example ``[B]`` terms of the KL decomposition at :math:`z^{(i)} \sim q(z|x_i)`.

    Attributes:
      log_qz_x: :math:`\log q(z|x)` (exact, event-summed).
      log_qz: :math:`\log \hat q(z)`.
      sum_log_qz_dims: :math:`\sum_j \log \hat q(z_j)`.
      sum_log_qz_groups: :math:`\sum_g \log \hat q(z_g)`.
      log_pz: :math:`\log p(z)` (exact, event-summed).
      mi: index-code mutual information, :math:`\log q(z|x) - \log q(z)`.
      tc: total correlation, :math:`\log q(z) - \sum_j \log q(z_j)`.
      tc_between: between-group TC, :math:`\mathrm{TC}_B = \log q(z) - \sum_g \log q(z_g)`.
      tc_within: :math:`\sum_g \mathrm{TC}_g = \sum_g \log q(z_g) - \sum_j \log q(z_j)` (zero when ``s = 1``).
      dwkl: dimension-wise KL, :math:`\sum_j \log q(z_j) - \log p(z)`.

    ``tc == tc_between + tc_within`` and ``mi + tc + dwkl == log_qz_x - log_pz`` (up to rounding).
    """

    log_qz_x: jax.Array
    log_qz: jax.Array
    sum_log_qz_dims: jax.Array
    sum_log_qz_groups: jax.Array
    log_pz: jax.Array
    mi: jax.Array
    tc: jax.Array
    tc_between: jax.Array
    tc_within: jax.Array
    dwkl: jax.Array


def total_correlation_terms(
    z: ArrayLike,
    loc: ArrayLike,
    scale: ArrayLike,
    *,
    dataset_size: int,
    group_size: int = 1,
    estimator: str = "mws",
    mws_normalizer: str | None = None,
    prior_loc: ArrayLike = 0.0,
    prior_scale: ArrayLike = 1.0,
) -> TotalCorrelationTerms:
    r"""The decomposition MI / TC / TC_B / :math:`\sum_g` TC_g / DWKL for a batch with Normal posteriors.

    Args:
      z, loc, scale, dataset_size, group_size, estimator, mws_normalizer: as in
        :func:`marginal_log_densities` (``z``, ``loc``, ``scale`` are ``[B, D]``).
      prior_loc, prior_scale: the factorised Normal prior :math:`p(z)`, broadcastable to ``[B, D]``
        (default standard Normal).

    Returns:
      :class:`TotalCorrelationTerms` of ``[B]`` arrays.

    Raises:
      ValueError: as :func:`marginal_log_densities`; also for a prior that does not broadcast to ``[B, D]``.
    """
    z, loc, scale = jnp.asarray(z), jnp.asarray(loc), jnp.asarray(scale)
    marg = marginal_log_densities(
        z,
        loc,
        scale,
        dataset_size=dataset_size,
        group_size=group_size,
        estimator=estimator,
        mws_normalizer=mws_normalizer,
    )
    shape = _checks.broadcast_shapes(z=z, prior_loc=prior_loc, prior_scale=prior_scale)
    if shape != z.shape:
        raise ValueError(f"`prior_loc` / `prior_scale` must broadcast to `z`'s shape {z.shape}; got {shape}.")
    _checks.check_positive("prior_scale", prior_scale)
    log_qz_x = jnp.sum(normal_log_prob(z, loc, scale), axis=-1)
    log_pz = jnp.sum(normal_log_prob(z, prior_loc, prior_scale), axis=-1)
    sum_dims = jnp.sum(marg.log_qz_dims, axis=-1)
    if group_size == 1:
        sum_groups = sum_dims  # singleton groups: the same marginals, so TC_B is TC and TC_g is 0 exactly
        tc_within = jnp.zeros_like(sum_dims)
    else:
        sum_groups = jnp.sum(marg.log_qz_groups, axis=-1)
        tc_within = sum_groups - sum_dims
    return TotalCorrelationTerms(
        log_qz_x=log_qz_x,
        log_qz=marg.log_qz,
        sum_log_qz_dims=sum_dims,
        sum_log_qz_groups=sum_groups,
        log_pz=log_pz,
        mi=log_qz_x - marg.log_qz,
        tc=marg.log_qz - sum_dims,
        tc_between=marg.log_qz - sum_groups,
        tc_within=tc_within,
        dwkl=sum_dims - log_pz,
    )


def _check_objective_args(log_px_z: Any, terms: TotalCorrelationTerms, beta: Any) -> jax.Array:
    if not isinstance(terms, TotalCorrelationTerms):
        raise ValueError(f"`terms` must be TotalCorrelationTerms (from total_correlation_terms); got {type(terms)}.")
    log_px_z = jnp.asarray(log_px_z)
    if log_px_z.shape != jnp.shape(terms.mi):
        raise ValueError(
            f"`log_px_z` must be the per-example [B] log-likelihood of shape {jnp.shape(terms.mi)}; "
            f"got {log_px_z.shape}."
        )
    if jnp.ndim(beta) != 0:
        raise ValueError(f"`beta` must be a scalar; got shape {jnp.shape(beta)}.")
    if _checks.is_concrete(beta):
        b = np.asarray(beta)
        if not (np.isfinite(b) and b >= 0):
            raise ValueError(f"`beta` must be finite and >= 0; got {beta!r}.")
    return log_px_z


def beta_tcvae_objective(log_px_z: ArrayLike, terms: TotalCorrelationTerms, beta: ArrayLike) -> jax.Array:
    r"""β-TCVAE (Chen et al. 2018), per example: :math:`\log p(x|z) - \mathrm{MI} - \beta\,\mathrm{TC} - \mathrm{DWKL}`.

    Args:
      log_px_z: ``[B]`` event-summed :math:`\log p(x|z)` at the same samples.
      terms: :class:`TotalCorrelationTerms` of the batch.
      beta: TC weight (scalar >= 0; may be traced).

    Returns:
      ``[B]`` objective to maximise (the train step minimises minus its batch mean).

    Raises:
      ValueError: if ``log_px_z`` is not ``[B]``, ``terms`` is not :class:`TotalCorrelationTerms`, or
        ``beta`` is not a finite scalar >= 0.
    """
    log_px_z = _check_objective_args(log_px_z, terms, beta)
    return log_px_z - terms.mi - beta * terms.tc - terms.dwkl


def beta_stcvae_objective(
    log_px_z: ArrayLike, terms: TotalCorrelationTerms, beta: ArrayLike, *, variant: int = 2
) -> jax.Array:
    r"""β-STCVAE (Chen, Xiang & Wang 2025; the official code's ``contraintInfo``), per example ``[B]``.

    ``variant`` (module docstring): 1: :math:`\log p(x|z) - \mathrm{MI} - \beta\,\mathrm{TC}_B - \mathrm{DWKL}`;
    2 (default): variant 1 :math:`+ \tfrac{\beta}{2}\,\mathrm{mean}_{\text{batch}}[\sum_g \mathrm{TC}_g]`
    (the batch mean added to every example, as in the code); 3: β-TCVAE; 4:
    :math:`\log p(x|z) - \beta\,[(\log q(z|x) - \log p(z)) - \mathrm{DWKL}]`.
    With ``terms`` computed at ``group_size = 1``, variants 1-3 equal :func:`beta_tcvae_objective` bitwise.

    Args:
      log_px_z: ``[B]`` event-summed :math:`\log p(x|z)`.
      terms: :class:`TotalCorrelationTerms` of the batch (its ``group_size`` is the granularity ``s``).
      beta: scalar >= 0 (the code's default is 10).
      variant: 1, 2, 3 or 4.

    Returns:
      ``[B]`` objective to maximise.

    Raises:
      ValueError: as :func:`beta_tcvae_objective`, or for a ``variant`` outside 1-4.
    """
    check_one_of("variant", variant, STCVAE_VARIANTS)
    log_px_z = _check_objective_args(log_px_z, terms, beta)
    if variant == 3:
        return log_px_z - terms.mi - beta * terms.tc - terms.dwkl
    if variant == 4:
        return log_px_z - beta * ((terms.log_qz_x - terms.log_pz) - terms.dwkl)
    out = log_px_z - terms.mi - beta * terms.tc_between
    if variant == 2:
        out = out + (beta / 2) * jnp.mean(terms.tc_within)
    return out - terms.dwkl

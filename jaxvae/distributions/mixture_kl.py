r"""KL-divergence estimators between a Gaussian mixture and a Gaussian or another mixture.

``q`` is always a :class:`~jaxvae.distributions.mixture.MixtureNormal` (``C`` components over a
``D``-dim event, batch ``[...]``). ``p`` is either a :class:`~jaxvae.distributions.normal.Normal`
whose parameters are ``[..., D]`` (the last axis is the event, summed over) or another
``MixtureNormal``. Every estimator returns ``[...]``.

What each one is (``KL = KL(q || p)``, the true value; proofs in the docstrings):

================================  ============================================================
``kl_mc``                         unbiased (ancestral Monte Carlo), with its standard error
``kl_mc_stratified``              unbiased (component-stratified MC, weights exact), with se
``kl_variational``                Hershey & Olsen (2007) variational approximation: **not** a bound
``kl_upper_bound``                upper bound (joint convexity / matched components)
``kl_lower_bound``                lower bound (entropy upper bounds + exact or Jensen cross terms)
``kl_moment_matched``             Gaussian ``p``: KL(mm(q) || p), a **lower bound** (Pythagoras)
``population_kl``                 Rivera's batch aggregate-posterior KL to N(0, I) (a scalar)
================================  ============================================================

References:
  J. R. Hershey and P. A. Olsen, "Approximating the Kullback Leibler divergence between Gaussian
  mixture models", ICASSP 2007 (eqs. for :math:`D_{variational}`, the matched / product bounds).
  J.-L. Durrieu, J.-Ph. Thiran, F. Kelly, "Lower and upper bounds for approximation of the
  Kullback-Leibler divergence between Gaussian mixture models", ICASSP 2012.
  M. Rivera, "How to train your VAE", arXiv:2309.13160 (its code's ``VAE_GAN.train_step``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.distributions._math import HALF_LOG_2PI, lead, same_rank
from jaxvae.distributions.mixture import MixtureNormal
from jaxvae.distributions.normal import Normal, kl_normal_normal, normal_log_prob
from jaxvae.typing import PRNGKey

Target = Normal | MixtureNormal


class MCEstimate(NamedTuple):
    """A Monte Carlo estimate with its standard error.

    Attributes:
      estimate: ``[...]`` the estimate.
      stderr: ``[...]`` its estimated standard error (from the per-sample spread).
      values: per-sample terms: ``[S, ...]`` for :func:`kl_mc`, ``[S, C, ...]`` for
        :func:`kl_mc_stratified`.
    """

    estimate: jax.Array
    stderr: jax.Array
    values: jax.Array


# --------------------------------------------------------------------------- helpers
def _check_pair(q: MixtureNormal, p: Target) -> None:
    if not isinstance(q, MixtureNormal):
        raise ValueError(f"`q` must be a MixtureNormal; got {type(q).__name__}.")
    if isinstance(p, MixtureNormal):
        d_p = p.event_size
    elif isinstance(p, Normal):
        if len(p.batch_shape) < 1:
            raise ValueError("`p` (a Normal) must have the event axis D last; got a scalar Normal.")
        d_p = p.batch_shape[-1]
    else:
        raise ValueError(f"`p` must be a Normal or a MixtureNormal; got {type(p).__name__}.")
    if d_p != q.event_size:
        raise ValueError(f"`p` has event size {d_p}, but `q` has D = {q.event_size}.")


def _target_log_prob(p: Target, x: jax.Array) -> jax.Array:
    """``log p(x)`` for ``x [..., D]`` summed over the event; returns ``x.shape[:-1]`` (broadcast)."""
    if isinstance(p, MixtureNormal):
        return p.log_prob(x)
    n = max(x.ndim, p.loc.ndim, p.scale.ndim)
    return jnp.sum(normal_log_prob(lead(x, n), lead(p.loc, n), lead(p.scale, n)), axis=-1)


def _as_mixture(p: Target) -> MixtureNormal:
    """View a ``Normal [..., D]`` as a one-component mixture (logits ``[..., 1]``)."""
    if isinstance(p, MixtureNormal):
        return p
    shape = p.batch_shape
    loc = jnp.broadcast_to(p.loc, shape)[..., None, :]
    scale = jnp.broadcast_to(p.scale, shape)[..., None, :]
    return MixtureNormal(jnp.zeros(shape[:-1] + (1,), loc.dtype), loc, scale)


def _pairwise_kl(q: MixtureNormal, p: MixtureNormal) -> jax.Array:
    """``[..., Cq, Cp]``: :math:`KL(f_a \\| g_b)` between all component pairs (summed over D)."""
    _, lq, sq = q._params()
    _, lp, sp = p._params()
    n = max(lq.ndim, lp.ndim) + 1
    a = Normal(lead(lq[..., :, None, :], n), lead(sq[..., :, None, :], n))
    b = Normal(lead(lp[..., None, :, :], n), lead(sp[..., None, :, :], n))
    return jnp.sum(kl_normal_normal(a, b), axis=-1)


def _entropies(q: MixtureNormal) -> jax.Array:
    """``[..., C]`` differential entropies of the components."""
    _, _, s = q._params()
    return jnp.sum(jnp.log(s) + (HALF_LOG_2PI + 0.5), axis=-1)


# ---------------------------------------------------------------------- estimators
def kl_mc(key: PRNGKey, q: MixtureNormal, p: Target, num_samples: int) -> MCEstimate:
    r"""Plain Monte Carlo :math:`\frac1S\sum_s [\log q(x_s) - \log p(x_s)]`, :math:`x_s \sim q` (ancestral).

    **Unbiased**; individual estimates can be negative. The standard error is
    ``std(values, ddof=1) / sqrt(S)``. Gradients reach ``loc``/``scale`` of ``q`` pathwise and
    ``logits`` only through ``log q`` (not through the component choice), so the gradient with
    respect to ``q.logits`` is biased; use :func:`kl_mc_stratified` for training.

    Returns:
      :class:`MCEstimate` with ``values [S, ...]``.
    """
    _check_pair(q, p)
    if int(num_samples) < 2:
        raise ValueError(f"`num_samples` must be >= 2 (for the standard error); got {num_samples}.")
    x = q.sample(key, (int(num_samples),))  # [S, ..., D]
    vals = q.log_prob(x) - _target_log_prob(p, x)
    s = vals.shape[0]
    return MCEstimate(jnp.mean(vals, 0), jnp.std(vals, 0, ddof=1) / math.sqrt(s), vals)


def kl_mc_stratified(key: PRNGKey, q: MixtureNormal, p: Target, num_samples: int) -> MCEstimate:
    r"""Component-stratified Monte Carlo, weights exact.

    .. math:: \widehat{KL} = \sum_c \pi_c \frac1S \sum_s [\log q(x_{s,c}) - \log p(x_{s,c})],
       \qquad x_{s,c} = \mu_c + \sigma_c \epsilon_{s,c}

    **Unbiased**, never more variable than :func:`kl_mc` at the same number of draws per component
    (stratification removes the between-component variance), and fully differentiable
    (pathwise in ``loc``/``scale``, exact in ``logits``). Standard error
    :math:`\sqrt{\sum_c \pi_c^2\, \widehat{Var}_c / S}`.

    Args:
      num_samples: ``S`` draws **per component** (``S * C`` log-density evaluations).

    Returns:
      :class:`MCEstimate` with ``values [S, C, ...]``.
    """
    _check_pair(q, p)
    if int(num_samples) < 2:
        raise ValueError(f"`num_samples` must be >= 2 (for the standard error); got {num_samples}.")
    x = q.sample_per_component(key, int(num_samples))  # [S, C, ..., D]
    vals = q.log_prob(x) - _target_log_prob(p, x)  # [S, C, ...]
    w = jnp.moveaxis(q.weights(), -1, 0)  # [C, ...]
    est = jnp.sum(w * jnp.mean(vals, 0), 0)
    var_c = jnp.var(vals, 0, ddof=1)
    se = jnp.sqrt(jnp.sum(jnp.square(w) * var_c, 0) / vals.shape[0])
    return MCEstimate(est, se, vals)


def kl_variational(q: MixtureNormal, p: Target) -> jax.Array:
    r"""Hershey & Olsen (2007) variational approximation :math:`D_{var}(q \| p)`.

    .. math:: D_{var} = \sum_a \pi_a \log
       \frac{\sum_{a'} \pi_{a'} e^{-KL(f_a \| f_{a'})}}{\sum_b \omega_b e^{-KL(f_a \| g_b)}}

    **Neither an upper nor a lower bound** in general (it is the difference of two variational
    lower bounds). Exact for single Gaussians; zero for ``p == q``; invariant to permuting or
    splitting components. Closed form, differentiable.
    """
    _check_pair(q, p)
    pm = _as_mixture(p)
    log_pi = q.log_weights()  # [..., Ca]
    log_om = pm.log_weights()  # [..., Cb]
    kl_qq = _pairwise_kl(q, q)  # [..., Ca, Ca]
    kl_qp = _pairwise_kl(q, pm)  # [..., Ca, Cb]
    li, k1 = same_rank(log_pi[..., None, :], kl_qq)
    num = jax.nn.logsumexp(li - k1, axis=-1)
    lo, k2 = same_rank(log_om[..., None, :], kl_qp)
    den = jax.nn.logsumexp(lo - k2, axis=-1)
    num, den = same_rank(num, den)
    w, d = same_rank(jnp.exp(log_pi), num - den)
    return jnp.sum(w * d, axis=-1)


def kl_upper_bound(q: MixtureNormal, p: Target) -> jax.Array:
    r"""Closed-form **upper bound** on :math:`KL(q \| p)`.

    * ``p`` a Gaussian: joint convexity of KL in its first argument,
      :math:`KL(\sum_i \pi_i f_i \| p) \le \sum_i \pi_i KL(f_i \| p)`.
    * ``p`` a mixture with the same ``C``: matched components (chain rule on the joint over
      (component, x), Hershey & Olsen's "matched bound" / log-sum inequality),
      :math:`KL(q \| p) \le KL(\pi \| \omega) + \sum_i \pi_i KL(f_i \| g_i)`. Depends on the
      order of ``p``'s components (it bounds for *any* matching).

    Raises:
      ValueError: if ``p`` is a mixture with a different number of components.
    """
    _check_pair(q, p)
    if isinstance(p, Normal):
        kl_i = _pairwise_kl(q, _as_mixture(p))[..., 0]  # [..., C]
        w, k = same_rank(q.weights(), kl_i)
        return jnp.sum(w * k, -1)
    if p.num_components != q.num_components:
        raise ValueError(
            f"`p` must have the same number of components as `q` for the matched bound; "
            f"got {p.num_components} and {q.num_components}."
        )
    log_pi, log_om = same_rank(q.log_weights(), p.log_weights())
    kl_cat = jnp.sum(jnp.exp(log_pi) * (log_pi - log_om), -1)
    _, lq, sq = q._params()
    _, lp, sp = p._params()
    lq, lp = same_rank(lq, lp)
    sq, sp = same_rank(sq, sp)
    kl_i = jnp.sum(kl_normal_normal(Normal(lq, sq), Normal(lp, sp)), -1)
    w, k = same_rank(jnp.exp(log_pi), kl_i)
    return kl_cat + jnp.sum(w * k, -1)


def kl_lower_bound(q: MixtureNormal, p: Target) -> jax.Array:
    r"""Closed-form **lower bound** on :math:`KL(q \| p) = -H(q) - E_q[\log p]`.

    Entropy side (valid for any ``p``): :math:`-H(q) = E_q \log q \ge L_q` with
    :math:`L_q = \sum_a \pi_a \log \sum_{a'} \pi_{a'} e^{-KL(f_a\|f_{a'}) - H(f_a)}`
    (Jensen over a variational split of ``log q``; Durrieu et al. 2012), and, since a Gaussian
    maximises entropy per marginal variance, :math:`-H(q) \ge -H(\mathrm{mm}(q))`.

    Cross side: for Gaussian ``p``, :math:`E_q \log p` is exact (it only needs the first two
    moments). For mixture ``p``, Jensen gives
    :math:`E_{f_a} \log p \le \log \int f_a p = \log \sum_b \omega_b N(\mu_a; \mu_b, \sigma_a^2 + \sigma_b^2)`.

    The result is the largest of these valid bounds and 0.
    """
    _check_pair(q, p)
    log_pi = q.log_weights()
    h = _entropies(q)  # [..., Ca]
    kl_qq = _pairwise_kl(q, q)
    li, k1, hh = same_rank(log_pi[..., None, :], kl_qq, h[..., :, None])
    l_q = jnp.sum(jnp.exp(log_pi) * jax.nn.logsumexp(li - k1 - hh, -1), -1)
    mm = q.moment_matched()
    neg_h_mm = -jnp.sum(mm.entropy(), -1)
    neg_h = jnp.maximum(l_q, neg_h_mm)
    if isinstance(p, Normal):
        cross = -_cross_entropy_normal(q, p)  # exact E_q log p
    else:
        _, la, sa = q._params()
        log_om = p.log_weights()
        _, lb, sb = p._params()
        n = max(la.ndim, lb.ndim) + 1
        la4, sa4 = lead(la[..., :, None, :], n), lead(sa[..., :, None, :], n)
        lb4, sb4 = lead(lb[..., None, :, :], n), lead(sb[..., None, :, :], n)
        log_z = jnp.sum(normal_log_prob(la4, lb4, jnp.sqrt(jnp.square(sa4) + jnp.square(sb4))), -1)
        lo, lz = same_rank(log_om[..., None, :], log_z)
        w, t = same_rank(jnp.exp(log_pi), jax.nn.logsumexp(lo + lz, -1))
        cross = jnp.sum(w * t, -1)  # >= E_q log p
    return jnp.maximum(neg_h - cross, 0.0)


def _cross_entropy_normal(q: MixtureNormal, p: Normal) -> jax.Array:
    r"""Exact :math:`-E_q[\log p]` for diagonal Gaussian ``p``: depends on q's mean and marginal variance only."""
    m, v = q.mean(), q.variance()
    n = max(m.ndim, p.loc.ndim, p.scale.ndim)
    m, v, loc, scale = lead(m, n), lead(v, n), lead(p.loc, n), lead(p.scale, n)
    return jnp.sum(jnp.log(scale) + HALF_LOG_2PI + 0.5 * (v + jnp.square(m - loc)) / jnp.square(scale), -1)


def kl_moment_matched(q: MixtureNormal, p: Target) -> jax.Array:
    r"""KL from the moment-matched diagonal Gaussian :math:`\mathrm{mm}(q) = N(m, \mathrm{diag}\, v)`.

    * ``p`` a diagonal Gaussian: returns :math:`KL(\mathrm{mm}(q) \| p)`, a **lower bound** on
      :math:`KL(q \| p)`. Proof (Pythagorean identity of the moment projection onto an
      exponential family): :math:`E_q \log p` and :math:`E_q \log \mathrm{mm}(q)` depend on q only
      through the marginal means and variances, which q and mm(q) share, so
      :math:`KL(q\|p) = KL(q\|\mathrm{mm}(q)) + KL(\mathrm{mm}(q)\|p) \ge KL(\mathrm{mm}(q)\|p)`.
    * ``p`` a mixture: returns :math:`KL(\mathrm{mm}(q) \| \mathrm{mm}(p))`, a heuristic that is
      **not** a bound.
    """
    _check_pair(q, p)
    mm_q = q.moment_matched()
    mm_p = p.moment_matched() if isinstance(p, MixtureNormal) else p
    n = max(mm_q.loc.ndim, jnp.ndim(mm_p.loc), jnp.ndim(mm_p.scale))
    a = Normal(lead(mm_q.loc, n), lead(mm_q.scale, n))
    b = Normal(lead(mm_p.loc, n), lead(mm_p.scale, n))
    return jnp.sum(kl_normal_normal(a, b), -1)


def population_kl(loc: ArrayLike, log_var: ArrayLike, *, include_variance: bool = False, eps: float = 0.0) -> jax.Array:
    r"""Rivera's population (aggregate-posterior) KL of a batch to :math:`N(0, I)`.

    The batch aggregate posterior :math:`q(z) = \frac1B \sum_i N(\mu_i, \mathrm{diag}\,\sigma_i^2)` is
    replaced by one diagonal Gaussian :math:`N(m, \mathrm{diag}\, s^2)` with

    .. math:: m_d = \frac1B \sum_i \mu_{id}, \qquad
       s_d^2 = \frac1B \sum_i (\mu_{id} - m_d)^2 \;[+ \tfrac1B \sum_i \sigma_{id}^2],
       \qquad KL = -\tfrac12 \sum_d [1 + \log s_d^2 - m_d^2 - s_d^2].

    ``include_variance=False`` is the official code's "means only" form (biased batch variance
    of the means; it ignores ``log_var``). ``include_variance=True`` adds the mean posterior
    variance, which makes :math:`N(m, s^2)` the exact moment match of the aggregate mixture, so
    the value is then a **lower bound** on :math:`KL(q_{agg} \| N(0, I))` (see
    :func:`kl_moment_matched`). The means-only value is neither.

    Args:
      loc: ``[..., B, D]`` posterior means; ``B >= 2`` (batch axis -2).
      log_var: ``[..., B, D]`` posterior log-variances.
      include_variance: add :math:`\frac1B\sum_i \sigma_{id}^2` to :math:`s_d^2`.
      eps: added to :math:`s_d^2` before the log (0 by default: identical means give ``+inf``).

    Returns:
      ``[...]``, a scalar for a ``[B, D]`` batch (it is not per-example).

    Raises:
      ValueError: if ``B < 2`` (names ``loc``), the shapes differ, or values are non-finite.
    """
    _checks.check_rank_at_least("loc", loc, 2, "[..., B, D]")
    if np.shape(loc) != np.shape(log_var):
        raise ValueError(f"`log_var` must have the shape of `loc` {np.shape(loc)}; got {np.shape(log_var)}.")
    if np.shape(loc)[-2] < 2:
        raise ValueError(f"`loc` needs a batch of B >= 2 on axis -2 (batch variance); got shape {np.shape(loc)}.")
    _checks.check_finite("loc", loc)
    _checks.check_finite("log_var", log_var)
    loc = jnp.asarray(loc)
    m = jnp.mean(loc, axis=-2)
    s2 = jnp.mean(jnp.square(loc - m[..., None, :]), axis=-2)
    if include_variance:
        s2 = s2 + jnp.mean(jnp.exp(log_var), axis=-2)
    s2 = s2 + eps
    return -0.5 * jnp.sum(1.0 + jnp.log(s2) - jnp.square(m) - s2, axis=-1)

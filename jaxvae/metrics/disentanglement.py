r"""Disentanglement metrics against known factors of variation: MIG (and its group-aware form), SAP, FactorVAE.

Every metric takes arrays of representations or a function from factor classes to representations, never a
model. Factors are the classes of a full factorial grid (dSprites: :mod:`jaxvae.data.dsprites`); a factor
with one value (dSprites' colour) carries no information and is left out of every score.

**MIG**, the mutual information gap (Chen et al., 2018), for factor :math:`v_k` with the latent
units :math:`u` (single dimensions, or groups of dimensions for the group-aware form):

.. math::

    \mathrm{MIG} = \frac{1}{F}\sum_k \frac{I(u_{(1)}; v_k) - I(u_{(2)}; v_k)}{H(v_k)},

:math:`u_{(1)}, u_{(2)}` the units with the largest and second-largest mutual information with
:math:`v_k`, and :math:`H(v_k) = \log |V_k|` on a full grid. Two estimators of :math:`I`:

* :func:`mutual_information_gap` (Chen et al. 2018 §5; also the estimator of Chen, Xiang & Wang's
  ``mig_test.py``): from the Normal posteriors :math:`q(z|x_n)` of **every** image of the data set
  (dSprites: the exact factor grid), :math:`I(u; v_k) = \mathbb{E}[\log q(u \mid v_k) - \log q(u)]` with
  the aggregate posterior :math:`q(u) = \frac1N\sum_n q(u|x_n)` and its restriction to the images with
  the same value of :math:`v_k` (for a group :math:`u = z_g`, :math:`q(z_g|x) = \prod_{j \in g} q(z_j|x)`),
  the expectation estimated from one sample :math:`z_n \sim q(z|x_n)` at ``num_samples = 10,000`` images
  drawn without replacement. Both terms are evaluated at the same samples (the original code samples the
  two entropies separately; same expectation, lower variance here). Cost: about
  ``num_samples * N * D`` Normal log-densities (dSprites, ``D = 10``: 7e10, seconds on a GPU, many
  minutes on a CPU).
* :func:`mutual_information_gap_discrete` (the common estimator of disentanglement_lib): the posterior
  means of a sample of images, each dimension cut into ``num_bins = 20`` equal-width bins between its
  minimum and maximum (a group: the joint cell of its dimensions' bins, ``num_bins ** s`` cells), and the
  plug-in discrete mutual information with the factor classes; :math:`H(v_k)` is the plug-in entropy of
  the sample's classes. The plug-in estimate is biased upwards by about
  :math:`(\text{cells} - 1)(|V_k| - 1) / (2 n)` nats for ``n`` images, so use ``n`` well above the
  number of cells (disentanglement_lib uses 10,000 images).

**Group-aware MIG** (the granularity paper's ``mig_test.py``): the units are the contiguous groups of
``group_size = s`` latent dimensions of β-STCVAE (:func:`jaxvae.objectives.total_correlation.group_slices`,
the last group smaller if ``s`` does not divide ``D``); :math:`I(z_g; v_k)` is the mutual information
between the factor and the **whole group** (its joint entropy, not the sum of the dimensions' MIs), and the
gap is between the best and the second-best group. ``group_size = 1`` is MIG. A factor spread over two
dimensions of one group scores high on the group-aware MIG and low on MIG. At least two groups are needed.

**SAP** (Kumar et al., 2018): a ``[D, F]`` score matrix, for a continuous factor the :math:`R^2` of a
linear fit from one latent dimension (squared Pearson correlation), for a discrete factor the test
accuracy of a one-dimensional classifier (here: nearest class mean along that dimension; the
disentanglement_lib version fits a linear SVM); SAP is the mean over factors of the gap between the two
best dimensions. Classification accuracies have a floor at chance level, so a perfectly captured
discrete factor with ``K`` classes scores about ``1 - 1/K``, not 1.

**FactorVAE score** (Kim & Mnih, 2018), with disentanglement_lib's protocol as parameters: global
standard deviations of each dimension from ``num_variance_estimate`` random images; dimensions with a
global standard deviation below ``prune_threshold`` are dropped (collapsed units); each vote fixes one
factor (uniformly chosen) at a random value, draws ``batch_size`` images with the other factors random,
and votes for the dimension with the smallest variance relative to its global variance; a majority-vote
classifier (dimension -> most frequent factor) is fitted on ``num_train`` votes and scored on
``num_eval`` fresh votes. Chance level is about ``1/F``, not 0.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks
from jaxvae.distributions.normal import normal_log_prob
from jaxvae.objectives.iwae import logsumexp_finalize, logsumexp_init, logsumexp_update
from jaxvae.objectives.total_correlation import group_slices
from jaxvae.typing import PRNGKey

__all__ = [
    "FactorVaeScore",
    "MigResult",
    "SapResult",
    "factor_vae_score",
    "mutual_information_gap",
    "mutual_information_gap_discrete",
    "sap_score",
]


class MigResult(NamedTuple):
    """MIG (``group_size = 1``) or the group-aware MIG, with what it is made of.

    Attributes:
      mig: the mean normalised gap over the scored factors (a Python float).
      gaps: ``[F']`` normalised gap per scored factor.
      mutual_info: ``[K, F']`` estimated :math:`I(u; v_k)` in nats, ``K`` units (dimensions or groups).
      factor_entropy: ``[F']`` :math:`H(v_k)` in nats.
      factor_indices: the scored factors (those with more than one value), indices into ``factor_sizes``.
    """

    mig: float
    gaps: np.ndarray
    mutual_info: np.ndarray
    factor_entropy: np.ndarray
    factor_indices: tuple[int, ...]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_factor_sizes(factor_sizes: Sequence[int]) -> tuple[int, ...]:
    try:
        sizes = tuple(factor_sizes)
    except TypeError:
        raise ValueError(f"`factor_sizes` must be a sequence of positive ints; got {factor_sizes!r}.") from None
    if not sizes or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ValueError(f"`factor_sizes` must be a non-empty sequence of positive ints; got {factor_sizes!r}.")
    if all(s == 1 for s in sizes):
        raise ValueError(f"`factor_sizes` needs a factor with more than one value; got {sizes}.")
    return tuple(int(s) for s in sizes)


def _units(latent_dim: int, group_size: int) -> tuple[tuple[int, int], ...]:
    slices = group_slices(latent_dim, group_size)
    if len(slices) < 2:
        raise ValueError(
            f"`group_size` {group_size} leaves one group of the {latent_dim} dimensions; a gap needs at least two."
        )
    return slices


def _gap_result(mi: np.ndarray, entropy: np.ndarray, used: tuple[int, ...]) -> MigResult:
    top2 = -np.sort(-mi, axis=0)[:2]  # [2, F']
    gaps = (top2[0] - top2[1]) / entropy
    return MigResult(float(np.mean(gaps)), gaps, mi, entropy, used)


# ---------------------------------------------------------------------------- MIG from posteriors (sampled)
def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    pad = -x.shape[0] % multiple
    return jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, *x.shape[1:]))]) if pad else x


@functools.partial(jax.jit, static_argnames=("slices", "query_chunk", "reference_chunk"))
def _slice_logsumexp(zq, cls_q, loc, scale, cls, *, slices, query_chunk, reference_chunk):
    """``[S, 1 + F, K]``: logsumexp over references r of sum_{j in g} log q(zq_j | r), over all r (column 0)
    and over the r sharing the query's class of factor k (column 1 + k)."""
    s, n, d = zq.shape[0], loc.shape[0], loc.shape[1]
    num_f = cls.shape[1]
    zq_c = _pad_rows(zq, query_chunk).reshape(-1, query_chunk, d)
    cq_c = _pad_rows(cls_q, query_chunk).reshape(-1, query_chunk, num_f)
    valid = jnp.arange(n + (-n % reference_chunk)) < n
    refs = tuple(
        _pad_rows(a, reference_chunk).reshape(-1, reference_chunk, *a.shape[1:]) for a in (loc, scale, cls)
    ) + (valid.reshape(-1, reference_chunk),)

    def one_query_chunk(args):
        zc, cc = args

        def fold(state, ref):
            lc, sc, rc, ok = ref
            lp = normal_log_prob(zc[None, :, :], lc[:, None, :], sc[:, None, :])  # [cr, cq, D]
            lg = jnp.stack([jnp.sum(lp[..., a:b], axis=-1) for a, b in slices], axis=-1)  # [cr, cq, K]
            same = rc[:, None, :] == cc[None, :, :]  # [cr, cq, F]
            mask = jnp.concatenate([jnp.ones_like(same[..., :1]), same], axis=-1) & ok[:, None, None]
            return logsumexp_update(state, jnp.where(mask[..., None], lg[:, :, None, :], -jnp.inf)), None

        init = logsumexp_init((zc.shape[0], 1 + num_f, len(slices)), dtype=zc.dtype)
        state, _ = jax.lax.scan(fold, init, refs)
        return logsumexp_finalize(state)

    return jax.lax.map(one_query_chunk, (zq_c, cq_c)).reshape(-1, 1 + num_f, len(slices))[:s]


def _check_factors(factors: Any, n: int) -> np.ndarray:
    f = np.asarray(factors)
    if f.ndim != 2 or len(f) != n:
        raise ValueError(f"`factors` must be [N, F] with N = {n} rows like `loc`; got shape {f.shape}.")
    if f.dtype == bool or f.dtype.kind not in "iu":
        raise ValueError(f"`factors` must be integer factor classes; got dtype {f.dtype}.")
    if f.size and f.min() < 0:
        raise ValueError("`factors` must hold non-negative classes.")
    return f.astype(np.int64)


def mutual_information_gap(
    key: PRNGKey,
    loc: ArrayLike,
    scale: ArrayLike,
    factors: ArrayLike,
    *,
    group_size: int = 1,
    num_samples: int = 10_000,
    z: ArrayLike | None = None,
    query_chunk: int = 128,
    reference_chunk: int = 1024,
) -> MigResult:
    r"""MIG (or the group-aware MIG) from the Normal posteriors of every image of a data set.

    Chen et al. (2018)'s definition on the whole data set (for dSprites: the exact factor grid), with the
    aggregate posterior :math:`q(u) = \frac1N \sum_n q(u|x_n)` and its restriction to the images of each
    factor value, :math:`q(u \mid v_k = v) = \frac1{N_v} \sum_{n: v_k(n) = v} q(u|x_n)`:

    .. math:: I(u; v_k) = \mathbb{E}\big[\log q(u \mid v_k) - \log q(u)\big],

    the expectation over images drawn uniformly and one sample :math:`z_n \sim q(z|x_n)` each, estimated at
    ``num_samples`` images drawn without replacement. Both log-densities are evaluated at the same samples
    (one pass over all ``N`` posteriors per sample), so the estimate's noise is that of a per-image
    log-ratio, not of two separately sampled entropies. :math:`H(v_k)` is the entropy of the factor's
    classes over the ``N`` images (``log |V_k|`` on a full grid).

    Args:
      key: PRNG key for the samples ``z`` (unless given) and the choice of evaluated images.
      loc: ``[N, D]`` posterior means of every image.
      scale: ``[N, D]`` posterior standard deviations (> 0).
      factors: ``[N, F]`` integer factor classes of the same images (dSprites:
        ``jaxvae.data.dsprites.index_to_classes(np.arange(737280))``); factors constant over the data
        set (dSprites' colour) are not scored.
      group_size: ``s``: 1 for MIG, > 1 for the group-aware MIG over contiguous groups of ``s`` dimensions.
      num_samples: images at which the expectation is evaluated (all ``N`` when ``N`` is smaller).
      z: optional ``[N, D]`` posterior samples to use instead of drawing ``loc + scale * eps``.
      query_chunk, reference_chunk: block sizes; a block holds ``query_chunk * reference_chunk * (1 + F) * K``
        floats (K units). Cost: ``num_samples * N * D`` Normal log-densities (dSprites, 10,000 samples,
        ``D = 10``: 7e10; seconds on a GPU, many minutes on a CPU).

    Returns:
      :class:`MigResult` (``mutual_info`` has one row per dimension or group).

    Raises:
      ValueError: for ``loc``/``scale``/``z`` not ``[N, D]`` alike, ``factors`` not integer ``[N, F]``, a
        non-positive ``scale``, a ``group_size`` leaving fewer than two groups, no varying factor, or
        non-positive ``num_samples`` / chunk sizes.
    """
    loc, scale = jnp.asarray(loc), jnp.asarray(scale)
    if loc.ndim != 2 or scale.shape != loc.shape:
        raise ValueError(f"`loc` and `scale` must both be [N, D]; got {loc.shape} and {scale.shape}.")
    n, d = loc.shape
    factors = _check_factors(factors, n)
    _checks.check_finite("loc", loc)
    _checks.check_positive("scale", scale)
    num_samples = _check_int("num_samples", num_samples, 1)
    query_chunk = _check_int("query_chunk", query_chunk, 1)
    reference_chunk = _check_int("reference_chunk", reference_chunk, 1)
    slices = _units(d, group_size)
    used = tuple(k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1)
    if not used:
        raise ValueError("`factors` has no factor that varies over the data set.")
    k_z, k_pick = jax.random.split(key)
    if z is None:
        z = loc + scale * jax.random.normal(k_z, loc.shape, dtype=loc.dtype)
    else:
        z = jnp.asarray(z, loc.dtype)
        if z.shape != loc.shape:
            raise ValueError(f"`z` must have the shape of `loc` {loc.shape}; got {z.shape}.")
        _checks.check_finite("z", z)

    cls = np.stack([np.unique(factors[:, k], return_inverse=True)[1] for k in used], axis=1)  # [N, F'] 0..|V|-1
    pick = np.asarray(jax.random.permutation(k_pick, n)[: min(num_samples, n)])
    lse = _slice_logsumexp(
        z[pick], jnp.asarray(cls[pick]), loc, scale, jnp.asarray(cls),
        slices=slices, query_chunk=min(query_chunk, len(pick)), reference_chunk=min(reference_chunk, n),
    )  # fmt: skip
    lse = np.asarray(lse, dtype=np.float64)  # [S, 1 + F', K]
    counts = np.stack([np.full(len(pick), n)] + [np.bincount(cls[:, j])[cls[pick, j]] for j in range(len(used))], 1)
    log_q = lse - np.log(counts)[:, :, None]
    mi = (log_q[:, 1:, :] - log_q[:, :1, :]).mean(axis=0).T  # [K, F']
    entropies = np.array([_entropy_discrete(factors[:, k]) for k in used])
    return _gap_result(mi, entropies, used)


# ---------------------------------------------------------------------------- MIG from discretised means
def _check_codes_and_factors(codes: Any, factors: Any, factor_sizes: Sequence[int] | None, what: str = ""):
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2:
        raise ValueError(f"`codes{what}` must be [n, D]; got shape {codes.shape}.")
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"`codes{what}` must be finite.")
    if factors.ndim != 2 or len(factors) != len(codes):
        raise ValueError(
            f"`factors{what}` must be [n, F] with n = {len(codes)} rows like `codes`; got {factors.shape}."
        )
    if factors.dtype == bool or factors.dtype.kind not in "iu":
        raise ValueError(f"`factors{what}` must be integer factor classes; got dtype {factors.dtype}.")
    if factor_sizes is not None:
        sizes = np.asarray(factor_sizes)
        if len(sizes) != factors.shape[1]:
            raise ValueError(f"`factor_sizes` has {len(sizes)} entries but `factors{what}` {factors.shape[1]} columns.")
        if factors.size and (factors.min() < 0 or np.any(factors.max(axis=0) >= sizes)):
            raise ValueError(f"`factors{what}` must hold classes in [0, factor size) per column.")
    elif factors.size and factors.min() < 0:
        raise ValueError(f"`factors{what}` must hold non-negative classes.")
    return codes, factors.astype(np.int64)


def _discretize(x: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-width bins between each column's min and max: ``[n, D]`` floats -> ``[n, D]`` bin ids 0..bins-1."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    width = np.where(hi > lo, (hi - lo) / num_bins, 1.0)
    return np.clip(np.floor((x - lo) / width), 0, num_bins - 1).astype(np.int64)


def _discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in :math:`I(a; b)` in nats of two label vectors."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    p = joint / len(a)
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))


def _entropy_discrete(a: np.ndarray) -> float:
    p = np.bincount(np.unique(a, return_inverse=True)[1]) / len(a)
    return float(-np.sum(p * np.log(p)))


def mutual_information_gap_discrete(
    codes: ArrayLike,
    factors: ArrayLike,
    *,
    group_size: int = 1,
    num_bins: int = 20,
    factor_sizes: Sequence[int] | None = None,
) -> MigResult:
    """MIG (or the group-aware MIG) from discretised representations (the disentanglement_lib estimator).

    Args:
      codes: ``[n, D]`` representations (posterior means) of ``n`` images.
      factors: ``[n, F]`` integer factor classes of the same images.
      group_size: 1 for MIG; ``s > 1`` for the group-aware MIG (joint bins of each group's dimensions).
      num_bins: equal-width bins per dimension, between its minimum and maximum over the ``n`` images.
      factor_sizes: optional sizes to check ``factors`` against.

    Returns:
      :class:`MigResult`; factors constant over the sample are not scored.

    Raises:
      ValueError: for shapes other than ``[n, D]`` / ``[n, F]``, non-finite codes, classes outside the
        sizes, ``num_bins < 2``, a ``group_size`` leaving fewer than two groups, or no varying factor.
    """
    codes, factors = _check_codes_and_factors(codes, factors, factor_sizes)
    num_bins = _check_int("num_bins", num_bins, 2)
    slices = _units(codes.shape[1], group_size)
    bins = _discretize(codes, num_bins)
    cells = [np.ravel_multi_index(tuple(bins[:, a:b].T), (num_bins,) * (b - a)) for a, b in slices]
    used = tuple(k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1)
    if not used:
        raise ValueError("`factors` has no factor that varies over the sample.")
    mi = np.array([[_discrete_mutual_info(c, factors[:, k]) for k in used] for c in cells])
    entropies = np.array([_entropy_discrete(factors[:, k]) for k in used])
    return _gap_result(mi, entropies, used)


# ---------------------------------------------------------------------------- SAP
class SapResult(NamedTuple):
    """SAP score (Kumar et al. 2018).

    Attributes:
      sap: mean over factors of the gap between the two best dimensions' scores (Python float).
      score_matrix: ``[D, F']`` R^2 (continuous factors) or test accuracy (discrete factors).
      factor_indices: the scored factors (those varying in the training sample).
    """

    sap: float
    score_matrix: np.ndarray
    factor_indices: tuple[int, ...]


def sap_score(
    codes_train: ArrayLike,
    factors_train: ArrayLike,
    codes_test: ArrayLike | None = None,
    factors_test: ArrayLike | None = None,
    *,
    discrete: bool | Sequence[bool] = False,
) -> SapResult:
    r"""SAP: separated attribute predictability (Kumar et al. 2018).

    Continuous factor ``k``, dimension ``j``: :math:`R^2 = \mathrm{Cov}(z_j, v_k)^2 / (\mathrm{Var}\,z_j\,
    \mathrm{Var}\,v_k)` on the training codes (0 for a constant dimension). Discrete factor: accuracy on the
    test codes of the nearest-class-mean classifier along :math:`z_j` fitted on the training codes.

    Args:
      codes_train: ``[n, D]`` representations; factors_train: ``[n, F]`` factor classes (or values).
      codes_test, factors_test: held-out pairs for discrete factors (required when any factor is discrete).
      discrete: one bool for all factors or one per factor (dSprites: shape discrete, the rest continuous).

    Raises:
      ValueError: for mismatched shapes, non-finite codes, a missing test set for discrete factors, or a
        ``discrete`` list of the wrong length.
    """
    codes, factors = _check_codes_and_factors(codes_train, factors_train, None, "_train")
    f = factors.shape[1]
    flags = [bool(discrete)] * f if isinstance(discrete, (bool, np.bool_)) else [bool(x) for x in discrete]
    if len(flags) != f:
        raise ValueError(f"`discrete` must be one bool or one per factor ({f}); got {len(flags)}.")
    if any(flags):
        if codes_test is None or factors_test is None:
            raise ValueError("`codes_test` and `factors_test` are required when a factor is discrete.")
        codes_t, factors_t = _check_codes_and_factors(codes_test, factors_test, None, "_test")
        if codes_t.shape[1] != codes.shape[1] or factors_t.shape[1] != f:
            raise ValueError("`codes_test` / `factors_test` must have the columns of the training arrays.")
    if codes.shape[1] < 2:
        raise ValueError(f"`codes_train` needs at least two dimensions for a gap; got {codes.shape[1]}.")
    used = tuple(k for k in range(f) if len(np.unique(factors[:, k])) > 1)
    if not used:
        raise ValueError("`factors_train` has no factor that varies over the sample.")
    scores = np.zeros((codes.shape[1], len(used)))
    for col, k in enumerate(used):
        y = factors[:, k].astype(np.float64)
        if not flags[k]:
            zc = codes - codes.mean(0)
            yc = y - y.mean()
            var_z = np.mean(zc * zc, axis=0)
            cov = np.mean(zc * yc[:, None], axis=0)
            ok = var_z > 1e-12 * max(1.0, float(np.max(var_z)))
            scores[:, col] = np.where(ok, cov**2 / np.where(ok, var_z, 1.0) / np.mean(yc * yc), 0.0)
        else:
            classes = np.unique(factors[:, k])
            means = np.stack([codes[factors[:, k] == c].mean(0) for c in classes])  # [C, D]
            pred = classes[np.argmin(np.abs(codes_t[:, None, :] - means[None]), axis=1)]  # [n_test, D]
            scores[:, col] = np.mean(pred == factors_t[:, k][:, None], axis=0)
    top2 = -np.sort(-scores, axis=0)[:2]
    return SapResult(float(np.mean(top2[0] - top2[1])), scores, used)


# ---------------------------------------------------------------------------- FactorVAE score
class FactorVaeScore(NamedTuple):
    """FactorVAE disentanglement score (Kim & Mnih 2018).

    Attributes:
      eval_accuracy: majority-vote accuracy on the evaluation votes (the score).
      train_accuracy: accuracy on the votes the classifier was fitted on.
      num_active_dims: dimensions kept after pruning.
      factor_indices: the factors voted on (those with more than one value).
    """

    eval_accuracy: float
    train_accuracy: float
    num_active_dims: int
    factor_indices: tuple[int, ...]


def _representations(fn: Callable[[np.ndarray], Any], classes: np.ndarray, d: int | None) -> np.ndarray:
    r = np.asarray(fn(classes), dtype=np.float64)
    if r.ndim != 2 or len(r) != len(classes) or (d is not None and r.shape[1] != d):
        want = f"[{len(classes)}, {d if d is not None else 'D'}]"
        raise ValueError(f"`representation_fn` must map [n, F] classes to {want} codes; got shape {r.shape}.")
    if not np.all(np.isfinite(r)):
        raise ValueError("`representation_fn` returned non-finite codes.")
    return r


def factor_vae_score(
    representation_fn: Callable[[np.ndarray], ArrayLike],
    factor_sizes: Sequence[int],
    *,
    seed: int,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    votes_per_call: int = 64,
) -> FactorVaeScore:
    """The FactorVAE score with disentanglement_lib's sampling protocol (module docstring).

    Args:
      representation_fn: ``classes int64 [n, F] -> codes [n, D]`` (e.g. render the images of the classes
        and return the posterior means); called with up to ``votes_per_call * batch_size`` rows at once.
      factor_sizes: the grid's factor sizes; factors with one value are not voted on.
      seed: NumPy seed of the whole protocol (factor choices, values, images).
      batch_size: images per vote (``L``); num_train, num_eval: votes to fit and to score the classifier;
      num_variance_estimate: images for the global variances; prune_threshold: minimum global standard
        deviation of a kept dimension; votes_per_call: votes rendered per call of ``representation_fn``.

    Returns:
      :class:`FactorVaeScore`; 0 accuracies if every dimension is pruned.

    Raises:
      ValueError: for bad sizes or counts, a negative threshold, or ``representation_fn`` output that is
        not finite ``[n, D]``.
    """
    sizes = np.asarray(_check_factor_sizes(factor_sizes))
    seed = _check_int("seed", seed, 0)
    batch_size = _check_int("batch_size", batch_size, 2)
    num_train = _check_int("num_train", num_train, 1)
    num_eval = _check_int("num_eval", num_eval, 1)
    num_variance_estimate = _check_int("num_variance_estimate", num_variance_estimate, 2)
    votes_per_call = _check_int("votes_per_call", votes_per_call, 1)
    if not (isinstance(prune_threshold, numbers.Real) and prune_threshold >= 0):
        raise ValueError(f"`prune_threshold` must be a number >= 0; got {prune_threshold!r}.")
    rng = np.random.default_rng(seed)
    used = np.nonzero(sizes > 1)[0]

    def random_classes(shape):
        return rng.integers(0, sizes, size=(*shape, len(sizes)))

    codes = _representations(representation_fn, random_classes((num_variance_estimate,)), None)
    d = codes.shape[1]
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.nonzero(np.sqrt(global_var) >= prune_threshold)[0]
    if active.size == 0:
        return FactorVaeScore(0.0, 0.0, 0, tuple(int(k) for k in used))

    def votes(num):
        counts = np.zeros((len(sizes), d), dtype=np.int64)
        done = 0
        while done < num:
            v = min(votes_per_call, num - done)
            fixed = used[rng.integers(0, len(used), size=v)]  # [v] the factor each vote fixes
            classes = random_classes((v, batch_size))
            rows = np.arange(v)
            classes[rows, :, fixed] = classes[rows, 0, fixed][:, None]
            r = _representations(representation_fn, classes.reshape(v * batch_size, -1), d).reshape(v, batch_size, d)
            local = np.var(r, axis=1, ddof=1)[:, active] / global_var[active]
            np.add.at(counts, (fixed, active[np.argmin(local, axis=1)]), 1)
            done += v
        return counts

    train = votes(num_train)
    classifier = np.argmax(train, axis=0)  # [D]: the factor each dimension votes for (ties: lowest)
    dims = np.arange(d)
    evals = votes(num_eval)
    train_acc = train[classifier, dims].sum() / train.sum()
    eval_acc = evals[classifier, dims].sum() / evals.sum()
    return FactorVaeScore(float(eval_acc), float(train_acc), int(active.size), tuple(int(k) for k in used))

r"""Image-quality metrics: Fréchet distance and KID between feature sets, and per-image MAE / PSNR.

Feature-set distances (host-side NumPy, float64; the features come from any network, e.g.
:mod:`jaxvae.metrics.mnist_features` for "MNIST-FID"):

* :func:`frechet_distance` between Gaussians :math:`N(\mu_1, \Sigma_1)` and :math:`N(\mu_2, \Sigma_2)`
  fitted to two feature sets (Heusel et al., 2017, "FID" when the features are Inception's):

  .. math:: d^2 = \|\mu_1 - \mu_2\|^2 + \operatorname{tr}\big(\Sigma_1 + \Sigma_2
     - 2 (\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2})^{1/2}\big).

  The trace of the matrix square root is computed from symmetric eigendecompositions only:
  :math:`\Sigma_1^{1/2} = V \sqrt{\Lambda_+} V^T` (negative round-off eigenvalues clipped to 0),
  then the eigenvalues of the symmetric PSD :math:`M = \Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}`, so
  :math:`\operatorname{tr} M^{1/2} = \sum_i \sqrt{\lambda_i(M)_+}`. Unlike ``scipy.linalg.sqrtm``
  of the non-symmetric :math:`\Sigma_1\Sigma_2` (the usual implementation) this never returns
  complex values and stays exact for singular covariances (fewer samples than features, dead units).
* :func:`kernel_inception_distance` (KID; Bińkowski et al., 2018): the unbiased estimator of the
  squared MMD with the cubic polynomial kernel :math:`k(x, y) = (x^T y / F + 1)^3`, averaged over
  random subsets, with its spread.

Per-image reconstruction errors (jittable JAX, ``[B]``, the mean over each image's pixels):

* :func:`mean_absolute_error`: :math:`\frac1P \sum_p |x_p - \hat x_p|` (Rivera's loss uses 5000 x the batch mean).
* :func:`psnr`: :math:`10 \log_{10}(R^2 / \mathrm{MSE})` with :math:`R` the width of ``value_range``
  (2 for images in [-1, 1], 1 for [0, 1]); ``+inf`` for identical images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvae.distributions import _checks


# ----------------------------------------------------------------------------- feature sets
def _features(name: str, x: ArrayLike, min_rows: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < min_rows or a.shape[1] < 1:
        raise ValueError(f"`{name}` must be features [N, F] with N >= {min_rows}; got shape {np.shape(x)}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite; found {int(np.sum(~np.isfinite(a)))} non-finite value(s).")
    return a


def gaussian_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[F]`` and covariance ``[F, F]`` (unbiased, ``ddof=1``) of features ``[N, F]``, float64."""
    f = _features("features", features)
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def _sym_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (s + s.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    r"""Squared Fréchet (2-Wasserstein) distance between two Gaussians (module docstring), float64.

    Args:
      mu1, mu2: ``[F]`` means.
      sigma1, sigma2: ``[F, F]`` symmetric positive semi-definite covariances.

    Returns:
      ``d^2 >= 0`` as a Python float (round-off below 0 is clipped).

    Raises:
      ValueError: for mismatched shapes, non-finite values, or a covariance that is not symmetric.
    """
    m1, m2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"`mu1` and `mu2` must be vectors [F] of one size; got {m1.shape} and {m2.shape}.")
    f = m1.shape[0]
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (f, f):
            raise ValueError(f"`{name}` must be [F, F] = {(f, f)}; got {s.shape}.")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"`{name}` must be finite.")
        if not np.allclose(s, s.T, rtol=1e-6, atol=1e-8 * max(1.0, float(np.abs(s).max(initial=0.0)))):
            raise ValueError(f"`{name}` must be symmetric (a covariance matrix).")
    for name, m in (("mu1", m1), ("mu2", m2)):
        if not np.all(np.isfinite(m)):
            raise ValueError(f"`{name}` must be finite.")
    r1 = _sym_sqrt(s1)
    m = r1 @ (0.5 * (s2 + s2.T)) @ r1
    tr_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None))))
    d2 = float(np.sum(np.square(m1 - m2)) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(d2, 0.0)


def frechet_distance_from_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """:func:`frechet_distance` of the Gaussians fitted (:func:`gaussian_statistics`) to two ``[N, F]`` sets."""
    f1 = _features("features1", features1)
    f2 = _features("features2", features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"`features1` and `features2` must have one feature size; got {f1.shape} and {f2.shape}.")
    return frechet_distance(*gaussian_statistics(f1), *gaussian_statistics(f2))


class KIDResult(NamedTuple):
    """KID over random subsets.

    Attributes:
      mean: the average of the per-subset unbiased MMD^2 estimates (the reported KID).
      std: their standard deviation (``ddof=1``): how much one subset's estimate varies (the "KID
        std" most papers report).
      stderr: ``std / sqrt(num_subsets)``: the Monte Carlo error of ``mean`` from the choice of
        subsets only. Subsets of one finite sample overlap, so this understates the error with
        respect to fresh data; compare models on the same real features.
      values: ``[num_subsets]`` the per-subset estimates.
    """

    mean: float
    std: float
    stderr: float
    values: np.ndarray


def _polynomial_kernel(a: np.ndarray, b: np.ndarray, degree: int, coef0: float) -> np.ndarray:
    return (a @ b.T / a.shape[1] + coef0) ** degree


def mmd2_unbiased(x: ArrayLike, y: ArrayLike, *, degree: int = 3, coef0: float = 1.0) -> float:
    r"""Unbiased :math:`\widehat{MMD}^2_u` between samples ``x [m, F]`` and ``y [n, F]`` (``m, n >= 2``).

    .. math:: \frac{\sum_{i \ne j} k(x_i, x_j)}{m(m-1)} + \frac{\sum_{i \ne j} k(y_i, y_j)}{n(n-1)}
       - \frac{2}{mn} \sum_{i,j} k(x_i, y_j), \qquad k(a, b) = (a^T b / F + c)^d.
    """
    a, b = _features("x", x), _features("y", y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"`x` and `y` must have one feature size; got {a.shape} and {b.shape}.")
    m, n = len(a), len(b)
    kxx = _polynomial_kernel(a, a, degree, coef0)
    kyy = _polynomial_kernel(b, b, degree, coef0)
    kxy = _polynomial_kernel(a, b, degree, coef0)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    features1: ArrayLike,
    features2: ArrayLike,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    degree: int = 3,
    coef0: float = 1.0,
) -> KIDResult:
    """KID: :func:`mmd2_unbiased` on ``num_subsets`` random subsets (without replacement) of each set.

    Args:
      features1, features2: ``[N1, F]``, ``[N2, F]``.
      num_subsets: number of subset pairs (>= 1; the standard errors need >= 2).
      subset_size: rows per subset, capped at ``min(N1, N2)`` (Bińkowski et al. use 1000).
      seed: seed of ``np.random.default_rng`` choosing the subsets.
      degree, coef0: the polynomial kernel (3 and 1: KID's).

    Returns:
      :class:`KIDResult`.
    """
    f1, f2 = _features("features1", features1), _features("features2", features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"`features1` and `features2` must have one feature size; got {f1.shape} and {f2.shape}.")
    for name, v in (("num_subsets", num_subsets), ("subset_size", subset_size), ("degree", degree)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
    if subset_size < 2:
        raise ValueError(f"`subset_size` must be >= 2 (the unbiased estimator); got {subset_size}.")
    m = min(int(subset_size), len(f1), len(f2))
    rng = np.random.default_rng(seed)
    values = np.empty(int(num_subsets))
    for s in range(int(num_subsets)):
        a = f1[rng.choice(len(f1), m, replace=False)]
        b = f2[rng.choice(len(f2), m, replace=False)]
        values[s] = mmd2_unbiased(a, b, degree=degree, coef0=coef0)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return KIDResult(float(values.mean()), std, std / math.sqrt(len(values)), values)


# ------------------------------------------------------------------------------ per image
def _check_pair(x: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array]:
    if np.ndim(x) < 1 or np.shape(x) != np.shape(y):
        raise ValueError(f"`x` and `x_hat` must be images [B, ...] of one shape; got {np.shape(x)} and {np.shape(y)}.")
    _checks.check_finite("x", x)
    _checks.check_finite("x_hat", y)
    return jnp.asarray(x), jnp.asarray(y)


def _per_example_mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def mean_absolute_error(x: ArrayLike, x_hat: ArrayLike) -> jax.Array:
    """``[B]``: the mean absolute error over each image's pixels and channels."""
    x, y = _check_pair(x, x_hat)
    return _per_example_mean(jnp.abs(x - y))


def psnr(x: ArrayLike, x_hat: ArrayLike, *, value_range: Sequence[float] = (-1.0, 1.0)) -> jax.Array:
    r"""``[B]``: peak signal-to-noise ratio in dB, :math:`10\log_{10}(R^2 / \mathrm{MSE})`.

    Args:
      x, x_hat: ``[B, ...]`` images of one shape.
      value_range: ``(low, high)`` of the data, ``R = high - low`` (default ``(-1, 1)``: ``R = 2``).
        The same images in ``[0, 1]`` with ``value_range=(0, 1)`` give the same PSNR.

    Returns:
      ``[B]``; ``+inf`` where the images are identical.
    """
    x, y = _check_pair(x, x_hat)
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"`value_range` must be (low, high); got {value_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"`value_range` must be finite with low < high; got {value_range!r}.")
    mse = _per_example_mean(jnp.square(x - y))
    return 10.0 * (2.0 * math.log10(hi - lo) - jnp.log10(mse))

"""Paired comparisons of two models over seeds: summaries, the paired difference, exact sign-based tests.

Two models trained with the same seeds (same data, order and noise per seed; e.g. as members of one
program, :mod:`jaxvae.train.multi`) give paired results ``a_s``, ``b_s``. The seed-to-seed noise is
then shared, and the per-seed differences ``d_s = a_s - b_s`` measure the effect with far less noise
than the two unpaired means. NumPy on the host, float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["mean_std", "paired_comparison", "paired_p_values"]


def mean_std(values: Sequence[float]) -> dict[str, float | int]:
    """``{"mean", "std" (ddof=1; 0 for one value), "n"}`` of ``values``.

    Raises:
      ValueError: if ``values`` is empty or not finite.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or not len(a) or not np.all(np.isfinite(a)):
        raise ValueError(f"`values` must be a non-empty finite 1-D sequence; got shape {a.shape}.")
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def paired_p_values(d: Sequence[float], max_exact: int = 20) -> dict[str, Any]:
    r"""Exact one-sided p-values that paired differences ``d`` ``[n]`` are centred below zero.

    ``p_sign_flip``: under the null hypothesis the sign of each :math:`d_s` is as likely + as - (the
    seed-to-seed noise is symmetric and the two models exchangeable), so with :math:`T = \sum_s d_s`,
    :math:`p = \#\{\epsilon \in \{-1, +1\}^n : \sum_s \epsilon_s |d_s| \le T\} / 2^n` over all
    :math:`2^n` sign patterns (the observed one included, so :math:`p \ge 2^{-n}`); exact for
    ``n <= max_exact``, else :math:`2^{20}` patterns drawn with ``default_rng(0)`` (``p_sign_flip_exact``
    says which). ``p_sign_test``: with :math:`k = \#\{d_s < 0\}`,
    :math:`p = \sum_{j \ge k} \binom{n}{j} / 2^n`. Distribution-free; they say how often the seed noise
    alone gives a result as far in that direction, not how large the effect is. For the other direction
    pass ``-d``.

    Raises:
      ValueError: if ``d`` is not a non-empty finite 1-D array, or ``max_exact`` is outside [0, 24]
        (``2^max_exact`` patterns are enumerated).
    """
    d = np.asarray(d, np.float64)
    if d.ndim != 1 or not len(d) or not np.all(np.isfinite(d)):
        raise ValueError(f"`d` must be a non-empty finite 1-D array; got shape {d.shape}.")
    if not 0 <= max_exact <= 24:
        raise ValueError(f"`max_exact` must be in [0, 24] (2^max_exact patterns are enumerated); got {max_exact}.")
    n, t, a = len(d), float(d.sum()), np.abs(d)
    tol = 1e-12 * max(1.0, float(a.sum()))
    exact = n <= max_exact
    count, total = 0, 0
    if exact:
        bits = np.arange(n)
        for start in range(0, 2**n, 2**16):
            codes = np.arange(start, min(start + 2**16, 2**n))[:, None]
            signs = 1.0 - 2.0 * ((codes >> bits) & 1)
            count += int(np.sum(signs @ a <= t + tol))
            total += len(codes)
    else:
        rng = np.random.default_rng(0)
        for _ in range(16):
            signs = rng.choice(np.array([-1.0, 1.0]), size=(2**16, n))
            count += int(np.sum(signs @ a <= t + tol))
            total += 2**16
    k = int(np.sum(d < 0))
    p_sign = sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n
    return {"p_sign_flip": count / total, "p_sign_flip_exact": exact, "p_sign_test": p_sign}


def paired_comparison(
    a: Mapping[int, float] | Sequence[tuple[int, float]], b: Mapping[int, float] | Sequence[tuple[int, float]]
) -> dict[str, Any]:
    """Model ``a`` minus model ``b``, unpaired and paired by seed.

    Args:
      a, b: per-seed results, ``{seed: value}`` (or ``(seed, value)`` pairs).

    Returns:
      ``diff`` = mean(a) - mean(b); ``se`` = sqrt(s_a^2 / n_a + s_b^2 / n_b) (unpaired, ``ddof=1``;
      NaN with one value on a side); ``z`` = diff / se; and ``paired`` over the seeds both hold: mean
      and standard deviation (``ddof=1``) of the differences d_s, ``se`` = std / sqrt(n), ``z``,
      ``n``, ``a_lower`` = #{s: d_s < 0}, and :func:`paired_p_values` for ``a`` below ``b``.

    Raises:
      ValueError: if a side is empty or holds a non-finite value, or the two share no seed.
    """
    a, b = dict(a), dict(b)
    if not a or not b:
        raise ValueError(f"`a` and `b` must each hold at least one seed's value; got {len(a)} and {len(b)}.")
    va, vb = np.asarray(list(a.values()), np.float64), np.asarray(list(b.values()), np.float64)
    if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))):
        raise ValueError("`a` and `b` must hold finite values.")
    diff = float(va.mean() - vb.mean())
    se = math.sqrt(va.var(ddof=1) / len(va) + vb.var(ddof=1) / len(vb)) if min(len(va), len(vb)) > 1 else math.nan
    out: dict[str, Any] = {"diff": diff, "se": se, "z": diff / se if se > 0 else math.nan}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"`a` and `b` share no seed; got {sorted(a)} and {sorted(b)}.")
    d = np.asarray([a[s] - b[s] for s in seeds], np.float64)
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    pse = sd / math.sqrt(len(d)) if len(d) > 1 else math.nan
    out["paired"] = {
        "mean": float(d.mean()),
        "std": sd,
        "se": pse,
        "z": float(d.mean()) / pse if pse > 0 else math.nan,
        "n": len(d),
        "seeds": seeds,
        "a_lower": int(np.sum(d < 0)),
        **paired_p_values(d),
    }
    return out

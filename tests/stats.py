"""Statistical helpers for tests: tolerances come from standard errors, not hope.

Every statistical assertion uses ``Z = 5`` standard errors (two-sided false-failure rate ~5.7e-7
per assertion; with a few hundred such assertions the suite's false-failure rate stays < 1e-3),
or a p-value threshold ``ALPHA = 1e-6`` for KS / chi-square tests.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

Z = 5.0
ALPHA = 1e-6


def assert_close_clt(estimate, target, se, *, z: float = Z, what: str = "estimate"):
    """Assert ``|estimate - target| <= z * se`` elementwise."""
    estimate, target, se = (np.asarray(a, dtype=np.float64) for a in (estimate, target, se))
    err = np.abs(estimate - target)
    bound = z * se + 1e-12
    assert np.all(err <= bound), f"{what}: |{estimate} - {target}| = {err} exceeds {z} standard errors ({bound})"


def assert_mean_matches(samples, mean, var=None, *, axis=0, what="sample mean"):
    """Sample mean against the closed-form ``mean``; se from the true ``var`` if given, else the sample's."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    v = np.var(samples, axis=axis, ddof=1) if var is None else np.asarray(var, dtype=np.float64)
    assert_close_clt(samples.mean(axis=axis), mean, np.sqrt(v / n), what=what)


def assert_var_matches(samples, var, *, axis=0, what="sample variance"):
    """Sample variance against ``var`` with se(s^2) ~ sqrt(Var[(X-mu)^2] / n), estimated from the samples."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    dev2 = np.square(samples - samples.mean(axis=axis, keepdims=True))
    se = np.sqrt(np.var(dev2, axis=axis, ddof=1) / n)
    assert_close_clt(dev2.sum(axis=axis) / (n - 1), var, se, what=what)


def ks_test(samples, cdf, *, alpha: float = ALPHA, what="KS"):
    """One-sample Kolmogorov-Smirnov test against ``cdf`` (a callable)."""
    res = sps.kstest(np.asarray(samples, dtype=np.float64).ravel(), cdf)
    assert res.pvalue > alpha, f"{what}: KS statistic {res.statistic:.4g}, p = {res.pvalue:.3g} < {alpha}"


def chi2_test(counts, probs, *, alpha: float = ALPHA, min_expected: float = 5.0, what="chi-square"):
    """Chi-square goodness of fit of integer ``counts`` to ``probs`` (cells with expected < 5 pooled)."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    expected = n * probs / probs.sum()
    keep = expected >= min_expected
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    res = sps.chisquare(obs, exp)
    assert res.pvalue > alpha, f"{what}: chi2 = {res.statistic:.4g}, p = {res.pvalue:.3g} < {alpha}"


def binomial_se(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / n))

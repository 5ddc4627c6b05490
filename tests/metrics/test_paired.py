"""Paired seed comparisons (jaxvae.metrics.paired)."""

import math

import numpy as np
import pytest

from jaxvae.metrics.paired import mean_std, paired_comparison, paired_p_values


@pytest.mark.parametrize(
    "d, p_flip, p_sign",
    [
        # sums of (+-3, +-1, +-1): {5, 3, 3, 1, -1, -3, -3, -5}; T = -3 -> 3 of 8 at or below; 2 of 3 negative
        ([-3.0, -1.0, 1.0], 3 / 8, 4 / 8),
        ([-0.2, -0.1, -0.3], 1 / 8, 1 / 8),  # every seed below: only the observed pattern
        ([0.2, 0.1, 0.3], 8 / 8, 1.0),  # every seed above: every pattern is at or below
        # sums of (+-1, +-2, +-4, +-8) are the odd numbers -15..15; T = 1 -> 9 of 16; 3 of 4 below -> 5 of 16
        ([-1.0, -2.0, -4.0, 8.0], 9 / 16, 5 / 16),  # most seeds below, yet the sum is positive
    ],
)
def test_paired_p_values_match_hand_enumeration(d, p_flip, p_sign):
    p = paired_p_values(d)
    assert p["p_sign_flip"] == pytest.approx(p_flip) and p["p_sign_flip_exact"]
    assert p["p_sign_test"] == pytest.approx(p_sign)


def test_paired_p_values_sampled_beyond_max_exact_agree_with_exact():
    d = np.random.default_rng(3).normal(-0.1, 0.2, size=12)
    exact = paired_p_values(d)
    sampled = paired_p_values(d, max_exact=8)
    assert exact["p_sign_flip_exact"] and not sampled["p_sign_flip_exact"]
    # 2^20 sampled patterns: the binomial standard error of p is below 5e-4
    assert sampled["p_sign_flip"] == pytest.approx(exact["p_sign_flip"], abs=0.0025)
    assert sampled["p_sign_test"] == exact["p_sign_test"]


def test_paired_p_values_refuse_nan_empty_and_a_huge_enumeration():
    for bad in ([], [-0.1, float("nan")], [[1.0]]):
        with pytest.raises(ValueError, match="non-empty finite"):
            paired_p_values(bad)
    with pytest.raises(ValueError, match="max_exact"):
        paired_p_values([-0.1, 0.2], max_exact=40)


def test_paired_comparison_pairs_by_seed():
    a = {0: 1.0, 1: 1.5, 2: 3.0}
    b = {0: 2.0, 1: 2.0, 3: 9.0}  # seed 3 has no partner, seed 2 neither
    c = paired_comparison(a, b)
    assert c["diff"] == pytest.approx(np.mean([1.0, 1.5, 3.0]) - np.mean([2.0, 2.0, 9.0]))
    se = math.sqrt(np.var([1.0, 1.5, 3.0], ddof=1) / 3 + np.var([2.0, 2.0, 9.0], ddof=1) / 3)
    assert c["se"] == pytest.approx(se) and c["z"] == pytest.approx(c["diff"] / se)
    p = c["paired"]
    assert p["seeds"] == [0, 1] and p["n"] == 2 and p["a_lower"] == 2
    assert p["mean"] == pytest.approx(-0.75) and p["std"] == pytest.approx(np.std([-1.0, -0.5], ddof=1))
    assert p["p_sign_flip"] == pytest.approx(1 / 4) and p["p_sign_test"] == pytest.approx(1 / 4)
    assert paired_comparison(list(a.items()), list(b.items())) == c


def test_paired_comparison_and_mean_std_refuse_bad_input():
    with pytest.raises(ValueError, match="at least one seed"):
        paired_comparison({}, {0: 1.0})
    with pytest.raises(ValueError, match="share no seed"):
        paired_comparison({0: 1.0}, {1: 1.0})
    with pytest.raises(ValueError, match="finite"):
        paired_comparison({0: float("nan")}, {0: 1.0})
    assert mean_std([2.0]) == {"mean": 2.0, "std": 0.0, "n": 1}
    assert mean_std([1.0, 3.0])["std"] == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match="non-empty finite"):
        mean_std([])

"""The evaluation protocols of the Gemp experiment (experiments/inverted_ssvae/evaluate.py)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from experiments.inverted_ssvae import classifier
from experiments.inverted_ssvae import data as D
from experiments.inverted_ssvae import evaluate as E
from jaxvae.models import inverted_ssvae as m
from tests.experiments.inverted_ssvae_fakes import FakeMnist, small_cfg


def test_match_dims_is_greedy_by_probability_and_one_to_one():
    p = np.full((10, 10), 0.01)
    p[5, 8], p[6, 8], p[7, 5], p[8, 5], p[9, 9] = 0.9, 0.8, 0.7, 0.6, 0.5
    got = E.match_dims(p)
    assert got[5] == 8 and got[7] == 5 and got[9] == 9  # highest-probability claims win
    assert sorted(got.values()) == [5, 6, 7, 8, 9]  # every digit 5-9 used once
    assert got[6] in (6, 7) and got[8] in (6, 7)


def test_authors_matching_rule_keeps_uncontested_first_choices():
    p = np.full((10, 10), 0.01)
    # dims 5 and 6 both want digit 8; dim 7's uncontested first choice 9 (0.3) is lower than dim 6's
    # second choice 9 (0.5): the authors' rule keeps 9 for dim 7, the greedy rule gives it to dim 6.
    p[5, 8], p[6, 8], p[6, 9], p[7, 9], p[8, 5], p[9, 6] = 0.9, 0.8, 0.5, 0.3, 0.6, 0.6
    a, g = E.match_dims_argmax_first(p), E.match_dims(p)
    assert a[5] == 8 and a[7] == 9 and a[8] == 5 and a[9] == 6 and a[6] == 7
    assert g[6] == 9 and g[7] == 7
    # every dim in a clash: the best claimant of the first clashing digit wins, the rest re-match
    q = np.full((10, 10), 0.01)
    q[5:10, 5] = [0.5, 0.9, 0.4, 0.3, 0.2]
    q[5, 6], q[7, 7], q[8, 8], q[9, 9] = 0.3, 0.2, 0.2, 0.1
    b = E.match_dims_argmax_first(q)
    assert b[6] == 5 and b[5] == 6 and sorted(b.values()) == [5, 6, 7, 8, 9]
    rng = np.random.default_rng(0)
    for _ in range(50):  # always a one-to-one map of dims 5-9 onto digits 5-9
        assert sorted(E.match_dims_argmax_first(rng.random((10, 10))).values()) == [5, 6, 7, 8, 9]


def test_clipped_ce_is_the_authors_kl_and_caps_at_minus_log_eps():
    log_q = np.log(np.array([[0.7, 0.2, 0.1], [1 - 2e-9, 1e-9, 1e-9]]))
    got = E.clipped_ce(log_q, np.array([0, 1]))
    t0 = np.array([1.0, 1e-6, 1e-6])
    np.testing.assert_allclose(got[0], np.sum(t0 * (np.log(t0) - np.log([0.7, 0.2, 0.1]))), rtol=1e-9)
    assert abs(got[0] + np.log(0.7)) < 1e-4  # about the cross-entropy
    assert abs(got[1] + np.log(1e-6)) < 1e-3  # capped near 13.8 nats instead of 20.7


def test_compare_pairs_by_seed_not_by_position_and_refuses_an_empty_side():
    m2 = [{"seed": s, "ce_59": c} for s, c in zip((0, 1, 2), (2.0, 2.5, 1.0))]
    un = [{"seed": s, "ce_59": c} for s, c in zip((2, 1, 0), (0.9, 2.4, 1.9))]  # same pairs, other order
    c = E.compare(un, m2)
    assert c["paired"]["mean"] == pytest.approx(-0.1) and c["paired"]["a_lower"] == 3 and c["paired"]["n"] == 3
    assert c["paired"]["p_sign_flip"] == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="at least one seed"):
        E.compare([], m2)


def test_summarize_takes_every_float_and_flags_a_diverged_seed():
    rows = [{"seed": 0, "ce_59": 1.0, "acc": 0.5, "z_bar": [0.0]}, {"seed": 1, "ce_59": 2.0, "acc": float("nan")}]
    s = E.summarize(rows)
    assert set(s) == {"ce_59", "acc"}
    assert s["ce_59"] == {"mean": 1.5, "std": pytest.approx(np.sqrt(0.5)), "n": 2}
    assert s["acc"] == {"mean": None, "std": None, "n": 2, "non_finite": 1}


@pytest.fixture(scope="module")
def tiny():
    cfg = m.Config(hidden_y=(8,), hidden_z=(4,), hidden_x=(8,))
    data = D.build_data(small_cfg(), mnist=FakeMnist())
    clf = classifier.train_classifier(
        data["eval_x"], data["eval_y"], data["eval_x"][:20], data["eval_y"][:20], epochs=1, batch_size=32
    )[0]
    return cfg, m.init(cfg, 0)[0], data, clf


def test_evaluate_untapped_matches_dims_one_to_one_and_scores_digits_5_9(tiny):
    cfg, params, data, clf = tiny
    ev = E.evaluate_untapped(cfg, params, data, clf)
    assert sorted(ev["dim_to_digit"].values()) == list(range(10)) == sorted(ev["dim_to_digit_authors"].values())
    assert all(ev["dim_to_digit"][str(d)] == d for d in range(5))
    assert ev["decoded"].shape == (10, 784) and len(ev["z_bar"]) == 2 and np.all(np.abs(ev["z_bar"]) < 1.5)
    # ce_59 by hand: -log q(matched dim | x) over the digit-5-9 images
    log_q = np.asarray(jax.nn.log_softmax(m.classify(cfg, params, data["eval_x"])))
    dim = {g: int(d) for d, g in ev["dim_to_digit"].items()}
    target = np.array([dim[g] for g in data["eval_y"]])
    want = -log_q[np.arange(len(target)), target]
    np.testing.assert_allclose(ev["ce_59"], want.mean(), rtol=1e-5)
    np.testing.assert_allclose(ev["ce_59_test_only"], want[data["eval_test_mask"]].mean(), rtol=1e-5)
    assert 0.0 <= ev["acc_59"] <= 1.0 and 0.0 <= ev["acc_04_labeled"] <= 1.0


def test_evaluate_m2_is_the_error_of_argmax_q_y_given_x(tiny):
    cfg, params, data, _ = tiny
    pred = np.argmax(np.asarray(m.classify(cfg, params, data["eval_x"])), -1)
    assert E.evaluate_m2(cfg, params, data)["test_error"] == pytest.approx(np.mean(pred != data["eval_y"]))
    other = dataclasses.replace(cfg, reverse="none")  # the evaluation does not depend on the reverse mode
    assert E.evaluate_m2(other, params, data) == E.evaluate_m2(cfg, params, data)

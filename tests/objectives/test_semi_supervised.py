"""Tests of the semi-supervised bounds (Kingma et al. M2, Gemp et al. reverse bounds)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.objectives import semi_supervised as ss


def _rand(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_labeled_and_unlabeled_bounds_are_the_sums_of_their_terms(variant):
    lp, kl, lq = _rand(0, 7), np.abs(_rand(1, 7)), _rand(2, 7)
    j = variant(lambda a, b: ss.labeled_bound(a, b, log_py=-math.log(10)))(lp, kl)
    np.testing.assert_allclose(j, lp - math.log(10) - kl, rtol=1e-6)
    ju = variant(lambda a, b, c: ss.unlabeled_bound(a, b, c, log_py=-math.log(10)))(lp, kl, lq)
    np.testing.assert_allclose(ju, lp - math.log(10) - kl - lq, rtol=1e-6, atol=1e-6)


def test_enumerated_bound_matches_explicit_loop_over_classes(variant):
    logits, bounds = _rand(3, 5, 10) * 3, _rand(4, 5, 10) * 50
    got = variant(ss.unlabeled_bound_enumerated)(logits, bounds)
    for b in range(5):
        l64 = logits[b].astype(np.float64)
        log_q = l64 - np.log(np.sum(np.exp(l64 - l64.max()))) - l64.max()
        want = 0.0
        for c in range(10):  # sum_c q(c|x) (J(x, c) - log q(c|x))
            want += math.exp(log_q[c]) * (bounds[b, c] - log_q[c])
        np.testing.assert_allclose(got[b], want, rtol=1e-5)


def test_enumerated_bound_is_logsumexp_at_the_optimal_q_and_below_it_elsewhere():
    # sum_c q_c (J_c - log q_c) <= logsumexp(J), with equality iff q = softmax(J) (Gibbs' inequality).
    bounds = _rand(5, 4, 10) * 5
    at_opt = ss.unlabeled_bound_enumerated(bounds, bounds)
    np.testing.assert_allclose(at_opt, jax.scipy.special.logsumexp(bounds, axis=-1), rtol=1e-5)
    other = ss.unlabeled_bound_enumerated(_rand(6, 4, 10), bounds)
    assert np.all(np.asarray(other) < np.asarray(jax.scipy.special.logsumexp(bounds, axis=-1)))


def test_reverse_bounds():
    lqy, lqz, lpx = _rand(7, 6), _rand(8, 6), _rand(9, 6)
    lqx = ss.log_uniform_bernoulli(784)
    j17 = ss.reverse_bound_z_observed(lqy, lqz, lpx, log_qx=lqx)
    np.testing.assert_allclose(j17, lqy + lqz - lpx - 784 * math.log(2), rtol=1e-6)
    lpz = ss.log_uniform_box(2, -1.5, 1.5)
    j5 = ss.reverse_bound(lqy, lqz, lpx, log_qx=lqx, log_pz=lpz)
    np.testing.assert_allclose(np.asarray(j5) - np.asarray(j17), -lpz * np.ones(6), rtol=1e-4)


def test_constant_priors():
    assert ss.log_uniform_categorical(10) == pytest.approx(-math.log(10))
    assert ss.log_uniform_box(2, -1.5, 1.5) == pytest.approx(-2 * math.log(3.0))
    assert ss.log_uniform_bernoulli(784) == pytest.approx(-784 * math.log(2.0))


def test_cross_entropy_labels_and_one_hot_agree_and_match_log_softmax(variant):
    logits = _rand(10, 8, 10) * 4
    y = np.arange(8) % 10
    ce_int = variant(ss.classification_cross_entropy)(logits, y)
    ce_1h = variant(ss.classification_cross_entropy)(logits, np.eye(10, dtype=np.float32)[y])
    np.testing.assert_allclose(ce_int, ce_1h, rtol=1e-6)
    want = -np.asarray(jax.nn.log_softmax(logits))[np.arange(8), y]
    np.testing.assert_allclose(ce_int, want, rtol=1e-6)


def test_l2_loss_is_the_euclidean_norm_with_finite_gradient_at_zero():
    x, m = np.abs(_rand(11, 3, 784)) % 1, np.abs(_rand(12, 3, 784)) % 1
    np.testing.assert_allclose(ss.l2_reconstruction_loss(x, m), np.linalg.norm(m - x, axis=-1), rtol=1e-5)
    g = jax.grad(lambda mm: jnp.sum(ss.l2_reconstruction_loss(x, mm)))(jnp.asarray(x))
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ss.labeled_bound(np.zeros((3, 1)), np.zeros(3)), "log_px_yz"),
        (lambda: ss.labeled_bound(np.zeros(3), np.zeros(4)), "batch size"),
        (lambda: ss.labeled_bound(np.zeros(3), np.array([0, np.nan, 0.0])), "kl_z"),
        (lambda: ss.labeled_bound(np.zeros(3), np.zeros(3), log_py=np.zeros(4)), "batch size"),
        (lambda: ss.unlabeled_bound_enumerated(np.zeros((3, 10)), np.zeros((3, 9))), "same shape"),
        (lambda: ss.unlabeled_bound_enumerated(np.zeros(10), np.zeros(10)), "logits_y"),
        (lambda: ss.reverse_bound_z_observed(np.zeros(3), np.zeros(3), np.zeros(3), log_qx=np.zeros(2)), "batch size"),
        (lambda: ss.reverse_bound(np.zeros(3), np.zeros(3), np.zeros(3), log_qx=0.0, log_pz=np.inf), "log_pz"),
        (lambda: ss.classification_cross_entropy(np.zeros((3, 10)), np.array([0, 1, 10])), r"\[0, 10\)"),
        (lambda: ss.classification_cross_entropy(np.zeros((3, 10)), np.zeros(3, np.float32)), "integer labels"),
        (lambda: ss.classification_cross_entropy(np.zeros((3, 10)), np.zeros((3, 9))), "targets"),
        (lambda: ss.l2_reconstruction_loss(np.zeros((3, 4)), np.zeros((3, 5))), "same shape"),
        (lambda: ss.log_uniform_box(2, 1.0, 1.0), "low"),
        (lambda: ss.log_uniform_categorical(1), "num_classes"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()

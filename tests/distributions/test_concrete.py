"""Concrete / Gumbel-Softmax: density vs the paper formula and SciPy, normalisation, argmax law,
straight-through gradients, low-temperature numerics, schedules, errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special as sps_special
from scipy import stats as sps

from jaxvae.distributions.concrete import (
    Concrete,
    concrete_log_prob_log_sample,
    constant_temperature,
    exponential_decay_temperature,
)
from tests import stats


def _np_concrete_log_prob(y, logits, tau):
    """float64 transcription of papers.md §1.4 (Gemp et al.'s log_gumbel_softmax)."""
    y = np.asarray(y, np.float64)
    pi = sps_special.softmax(np.asarray(logits, np.float64), axis=-1)
    k = y.shape[-1]
    return (
        math.lgamma(k)
        + (k - 1) * np.log(tau)
        + np.sum(np.log(pi), -1)
        - (tau + 1) * np.sum(np.log(y), -1)
        - k * np.log(np.sum(pi * y ** (-tau), -1))
    )


@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_log_prob_matches_paper_formula(tau):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)) * 2
    y = rng.dirichlet(np.ones(4), size=5)
    want = _np_concrete_log_prob(y, logits, tau)
    got32 = Concrete(jnp.asarray(logits, jnp.float32), jnp.float32(tau)).log_prob(jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-4)
    with jax.enable_x64(True):
        got64 = Concrete(jnp.asarray(logits), jnp.float64(tau)).log_prob(jnp.asarray(y))
        np.testing.assert_allclose(got64, want, rtol=1e-12)
        np.testing.assert_allclose(Concrete(jnp.asarray(logits), tau).log_prob_log_sample(np.log(y)), want, rtol=1e-12)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_two_classes_is_logistic_in_logit_space(tau):
    """For C = 2, x = log(y1/y2) ~ Logistic((l1 - l2)/tau, 1/tau) and q(y1) = p_x(x) / (y1 y2)."""
    logits = np.array([[1.3, -0.4], [0.0, 2.5]])
    with jax.enable_x64(True):
        d = Concrete(jnp.asarray(logits), tau)
        x = np.linspace(-12.0, 12.0, 41) / tau
        log_y = np.stack([-np.logaddexp(0, -x), -np.logaddexp(0, x)], -1)[:, None, :]  # [41, 1, 2]
        got = np.asarray(d.log_prob_log_sample(log_y)) + log_y.sum(-1)
    want = sps.logistic.logpdf(x[:, None], loc=(logits[:, 0] - logits[:, 1]) / tau, scale=1 / tau)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_two_classes_density_integrates_to_one(tau):
    """Integrate q(y1) dy1 = q(y(x)) y1 y2 dx over the logit x on a fine grid (the density at x is ~e^{-|x| tau})."""
    with jax.enable_x64(True):
        d = Concrete(jnp.array([0.7, -0.2]), tau)
        x = np.linspace(-60.0, 60.0, 24001) / tau
        log_y = np.stack([-np.logaddexp(0, -x), -np.logaddexp(0, x)], -1)
        integrand = np.exp(np.asarray(d.log_prob_log_sample(log_y)) + log_y.sum(-1))
    np.testing.assert_allclose(np.trapezoid(integrand, x), 1.0, rtol=1e-6)


@pytest.mark.parametrize("tau", [0.7, 2.0])
def test_three_classes_density_integrates_to_one(tau):
    """Integrate over the 2-simplex in log-ratio coordinates u = log(y_{1,2}/y_3); |d(y1,y2)/du| = y1 y2 y3."""
    with jax.enable_x64(True):
        d = Concrete(jnp.array([0.5, -0.3, 0.2]), tau)
        u = np.linspace(-40.0, 40.0, 1201) / tau
        u1, u2 = np.meshgrid(u, u, indexing="ij")
        log_y = jax.nn.log_softmax(jnp.stack([u1, u2, np.zeros_like(u1)], -1), axis=-1)
        integrand = np.exp(np.asarray(d.log_prob_log_sample(log_y) + log_y.sum(-1)))
    total = np.trapezoid(np.trapezoid(integrand, u, axis=1), u)
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)


@pytest.mark.statistical
@pytest.mark.parametrize("tau", [0.05, 0.5, 5.0])
def test_argmax_follows_softmax_at_any_temperature(tau, variant):
    logits = jnp.array([1.0, 0.0, -1.0, 0.5, 2.0])
    d = Concrete(logits, tau)
    y = variant(lambda k: d.sample(k, 20_000))(jax.random.key(3))
    counts = np.bincount(np.asarray(jnp.argmax(y, -1)), minlength=5)
    stats.chi2_test(counts, sps_special.softmax(np.float64(logits)), what=f"argmax at tau={tau}")


@pytest.mark.statistical
@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_samples_agree_with_density_two_classes(tau):
    """KS of the sampled logit log(y1/y2) against the Logistic law the density reduces to."""
    logits = jnp.array([0.8, -0.6])
    log_y = Concrete(logits, tau).sample_log(jax.random.key(4), 20_000)
    x = np.asarray(log_y[:, 0] - log_y[:, 1], np.float64)
    stats.ks_test(x, sps.logistic(loc=1.4 / tau, scale=1 / tau).cdf, what=f"Concrete logit at tau={tau}")


def test_sample_forms_agree(key):
    d = Concrete(jnp.array([[0.3, -1.0, 2.0], [0.0, 0.0, 0.0]]), jnp.array([0.5, 1.5]))
    log_y = d.sample_log(key, 6)
    y = d.sample(key, 6)
    y2, log_q = d.sample_and_log_prob(key, 6)
    chex.assert_shape([log_y, y, y2], (6, 2, 3))
    chex.assert_shape(log_q, (6, 2))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(log_q, d.log_prob_log_sample(log_y), rtol=1e-6)
    np.testing.assert_allclose(log_q, d.log_prob(y), rtol=1e-4, atol=1e-4)


def test_straight_through(key):
    d = Concrete(jnp.array([[0.3, -1.0, 2.0, 0.1], [1.0, 0.0, 0.0, -2.0]]), 0.5)
    hard = d.sample_hard(key, 3)
    soft = d.sample(key, 3)
    np.testing.assert_array_equal(hard, jax.nn.one_hot(jnp.argmax(soft, -1), 4))
    w = jax.random.normal(jax.random.key(9), (3, 2, 4))

    def loss(logits, tau, sampler):
        return jnp.sum(w * getattr(Concrete(logits, tau), sampler)(key, 3))

    g_hard = jax.grad(loss, argnums=(0, 1))(d.logits, 0.5, "sample_hard")
    g_soft = jax.grad(loss, argnums=(0, 1))(d.logits, 0.5, "sample")
    chex.assert_trees_all_close(g_hard, g_soft, rtol=1e-6, atol=1e-7)
    assert np.any(np.abs(g_soft[0]) > 1e-3)


def test_low_temperature_extreme_logits_finite(key):
    logits = jnp.array([[50.0, -50.0, 0.0, 49.9], [-50.0, -50.0, -50.0, 50.0]])
    tau = 0.05
    d = Concrete(logits, tau)
    y = d.sample(key, 8)
    assert np.any(np.asarray(y) == 0.0), "the case the log-space entry exists for: y underflows to 0"

    def total(lg, t):
        d = Concrete(lg, t)
        y, log_q = d.sample_and_log_prob(key, 8)
        lp = Concrete(jnp.zeros_like(lg), t).log_prob_log_sample(d.sample_log(key, 8))
        return jnp.sum(log_q) - jnp.sum(lp) + jnp.sum(y[..., 0]) + jnp.sum(d.sample_hard(key, 8)[..., 1])

    chex.assert_tree_all_finite(jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(logits, tau))
    chex.assert_tree_all_finite(d.sample_log(key, 8))


def test_check_grads_x64():
    with jax.enable_x64(True):
        logits = jnp.array([[0.3, -1.0, 2.0], [0.5, 0.1, -0.4]])
        log_y = jax.nn.log_softmax(jnp.array([[1.0, -2.0, 0.5], [0.0, 0.3, -0.1]]), -1)
        key = jax.random.key(5)
        tau = jnp.float64(0.6)
        # jit keeps the recompilations of the nested jvp/vjp checks few.
        # Second order in reverse mode, first order forward: the order-2 fwd check only re-compiles
        # the same derivatives and doubles the cost.
        jf, jargs = jax.jit(concrete_log_prob_log_sample), (log_y, logits, tau)
        check_grads(jf, jargs, order=1, modes=("fwd",))
        check_grads(jf, jargs, order=2, modes=("rev",))
        # The pathwise sample map is a log_softmax of an affine map: first order suffices.
        sample = jax.jit(lambda lg, t: Concrete(lg, t).sample_log(key, 2))
        check_grads(sample, (logits, tau), order=1, modes=("fwd", "rev"))


def test_jit_matches_eager_and_vmap(key):
    d = Concrete(jnp.array([[0.3, -1.0, 2.0], [0.0, 1.0, 0.0]]), jnp.array(0.7))
    eager = d.sample_and_log_prob(key, 4)
    jitted = jax.jit(lambda d, k: d.sample_and_log_prob(k, 4))(d, key)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)
    # A traced temperature (a schedule value inside jit) works and gives the same numbers.
    sched = exponential_decay_temperature(1.0, 0.5, 0.05)
    y_traced = jax.jit(lambda s: Concrete(d.logits, sched(s)).sample(key))(jnp.int32(1))
    np.testing.assert_allclose(y_traced, Concrete(d.logits, 0.5).sample(key), rtol=1e-5, atol=1e-7)
    ly = d.sample_log(key, 5)
    vm = jax.vmap(d.log_prob_log_sample)(ly)
    np.testing.assert_allclose(vm, d.log_prob_log_sample(ly), rtol=1e-6)


@pytest.mark.parametrize(
    "logits_shape, tau_shape, sample_shape",
    [((3,), (), ()), ((2, 3), (), 4), ((2, 3), (2,), (4, 5)), ((1, 3), (2,), ())],
    ids=["single", "batch2-n4", "per-row-tau", "tau-broadcasts-logits"],
)
def test_shapes(logits_shape, tau_shape, sample_shape, key):
    d = Concrete(jnp.zeros(logits_shape), jnp.full(tau_shape, 0.5))
    batch = np.broadcast_shapes(logits_shape[:-1], tau_shape)
    s = (sample_shape if isinstance(sample_shape, tuple) else (sample_shape,)) + batch
    assert d.batch_shape == batch

    def outputs():
        y, log_q = d.sample_and_log_prob(key, sample_shape)
        return y, d.sample_hard(key, sample_shape), log_q, d.log_prob(y)

    y, hard, log_q, lp = jax.eval_shape(outputs)  # shapes without compiling anything
    chex.assert_shape([y, hard], s + (3,))
    chex.assert_shape([log_q, lp], s)


def test_schedules():
    const = constant_temperature(0.7)
    np.testing.assert_allclose(const(0), 0.7)
    np.testing.assert_allclose(jax.jit(const)(jnp.arange(3)), [0.7, 0.7, 0.7], rtol=1e-7)
    tau0, rate, floor, ds = 2.0, 0.9, 0.3, 10
    sched = exponential_decay_temperature(tau0, rate, floor, decay_steps=ds)
    steps = np.array([0, 1, 5, 10, 37, 100, 1000])
    want = np.maximum(floor, tau0 * rate ** (steps / ds))
    np.testing.assert_allclose(sched(steps), want, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(sched)(jnp.asarray(steps)), want, rtol=1e-6)
    jang = exponential_decay_temperature(1.0, math.exp(-1e-4), 0.5)
    np.testing.assert_allclose(jang(3000), max(0.5, math.exp(-0.3)), rtol=1e-6)


def test_bad_inputs_raise():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`temperature`"):
            Concrete(jnp.zeros(3), bad)
    with pytest.raises(ValueError, match="`temperature`"):
        Concrete(jnp.zeros((2, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match="`logits`"):
        Concrete(jnp.array([0.0, jnp.nan]), 1.0)
    with pytest.raises(ValueError, match="`logits`.*2 classes"):
        Concrete(jnp.zeros((2, 1)), 1.0)
    d = Concrete(jnp.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="`y`.*last axis 3"):
        d.log_prob(jnp.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="`log_y`"):
        d.log_prob_log_sample(jnp.zeros((5, 3)))
    for kwargs, name in [
        (dict(tau0=0.0, rate=0.9, floor=0.1), "tau0"),
        (dict(tau0=1.0, rate=1.5, floor=0.1), "rate"),
        (dict(tau0=1.0, rate=0.0, floor=0.1), "rate"),
        (dict(tau0=1.0, rate=0.9, floor=0.0), "floor"),
        (dict(tau0=1.0, rate=0.9, floor=2.0), "floor"),
        (dict(tau0=1.0, rate=0.9, floor=0.1, decay_steps=0), "decay_steps"),
    ]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            exponential_decay_temperature(**kwargs)
    with pytest.raises(ValueError, match="`tau`"):
        constant_temperature(-0.5)


def test_log_prob_of_an_underflowed_sample_is_minus_inf_not_nan():
    """A sample whose entry underflowed to 0 lies outside the open simplex: -inf, with a zero gradient."""
    q = Concrete(jnp.array([0.3, -0.2, 0.1]), 0.5)
    y = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    lp = q.log_prob(y)
    assert lp.shape == (3,)
    assert np.isneginf(lp[0]) and np.isneginf(lp[1])
    np.testing.assert_allclose(lp[2], q.log_prob_log_sample(jnp.log(y[2])), rtol=1e-6)
    g = jax.grad(lambda logits: jnp.sum(jnp.where(jnp.isfinite(lp), Concrete(logits, 0.5).log_prob(y), 0.0)))(q.logits)
    assert np.all(np.isfinite(g))

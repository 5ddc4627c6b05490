"""Total-correlation estimators (MWS, MSS), the grouped decomposition and the β-(S)TCVAE objectives."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from jaxvae.objectives.total_correlation import (
    MarginalLogDensities,
    TotalCorrelationTerms,
    beta_stcvae_objective,
    beta_tcvae_objective,
    group_slices,
    marginal_log_densities,
    mss_log_weights,
    total_correlation_terms,
)
from tests import stats as tstats


def _posteriors(n, d, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(n, d)) * spread
    scale = np.exp(rng.uniform(-0.7, 0.0, size=(n, d)))
    z = loc + scale * rng.normal(size=(n, d))
    return z, loc, scale


def _exact(z, loc, scale, slices):
    """Exact log q(z), log q(z_d) [., D], log q(z_g) [., K] of the aggregate posterior of (loc, scale), float64."""
    lq = stats.norm.logpdf(z[:, None, :], loc[None], scale[None])  # [Q, N, D]
    n = loc.shape[0]
    joint = special.logsumexp(lq.sum(-1), axis=1) - math.log(n)
    dims = special.logsumexp(lq, axis=1) - math.log(n)
    groups = np.stack([special.logsumexp(lq[..., a:b].sum(-1), axis=1) for a, b in slices], -1) - math.log(n)
    return joint, dims, groups


# ---------------------------------------------------------------------------- groups and weights
def test_group_slices():
    assert group_slices(7, 3) == ((0, 3), (3, 6), (6, 7))
    assert group_slices(4, 1) == ((0, 1), (1, 2), (2, 3), (3, 4))
    assert group_slices(16, 2)[-1] == (14, 16) and len(group_slices(16, 2)) == 8
    assert group_slices(5, 5) == ((0, 5),)
    with pytest.raises(ValueError, match="`group_size` must be <= the latent dimension 5"):
        group_slices(5, 6)
    with pytest.raises(ValueError, match="`group_size`"):
        group_slices(5, 0)
    with pytest.raises(ValueError, match="`latent_dim`"):
        group_slices(0, 1)


@pytest.mark.parametrize("b, n", [(2, 2), (2, 10), (5, 5), (6, 1000)])
def test_mss_weights_follow_appendix_c2(b, n):
    w = np.exp(mss_log_weights(b, n))
    m = b - 1
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.diag(w), 1.0 / n)
    for i in range(b):
        others = np.delete(w[i], i)
        # one other example weighs (N - M) / (N M), the remaining B - 2 weigh 1 / M
        strat = (n - m) / (n * m)
        assert w[i, (i + 1) % b] == pytest.approx(strat)
        rest = np.delete(w[i], [i, (i + 1) % b])
        np.testing.assert_allclose(rest, 1.0 / m)
        assert np.sum(others) == pytest.approx((n - 1) / n)


def test_mss_weights_errors():
    with pytest.raises(ValueError, match="`batch_size` must be >= 2"):
        mss_log_weights(1, 10)
    with pytest.raises(ValueError, match="`dataset_size` must be >= the batch size 5"):
        mss_log_weights(5, 4)


# ---------------------------------------------------------------------------- decomposition identities
@pytest.mark.parametrize("estimator", ["mws", "mss"])
@pytest.mark.parametrize("s", [1, 2, 3, 7])
def test_identities(estimator, s, variant):
    z, loc, scale = (jnp.asarray(a, jnp.float32) for a in _posteriors(9, 7, seed=s))
    f = variant(functools.partial(total_correlation_terms, dataset_size=50, group_size=s, estimator=estimator))
    t = f(z, loc, scale)
    assert isinstance(t, TotalCorrelationTerms) and all(v.shape == (9,) for v in t)
    np.testing.assert_allclose(t.tc, t.tc_between + t.tc_within, atol=2e-5)
    np.testing.assert_allclose(t.mi + t.tc + t.dwkl, t.log_qz_x - t.log_pz, atol=2e-5)
    np.testing.assert_allclose(t.log_qz_x, stats.norm.logpdf(z, loc, scale).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(t.log_pz, stats.norm.logpdf(z).sum(-1), rtol=1e-5)
    if s == 1:
        np.testing.assert_array_equal(t.tc_between, t.tc)
        np.testing.assert_array_equal(t.tc_within, 0.0)
    if s == 7:  # one group holds every dimension: nothing lies between groups
        np.testing.assert_allclose(t.tc_between, 0.0, atol=2e-5)


def test_group_marginals_with_singleton_groups_match_the_general_path():
    """s = 1 reuses the per-dimension marginals; the group path (s = D, one group per call) agrees with them."""
    z, loc, scale = _posteriors(6, 3, seed=4)
    m = marginal_log_densities(z, loc, scale, dataset_size=20, group_size=1)
    assert m.log_qz_groups is m.log_qz_dims
    m3 = marginal_log_densities(z, loc, scale, dataset_size=20, group_size=3)
    np.testing.assert_allclose(m3.log_qz_groups[:, 0], m.log_qz, rtol=1e-6)


# ---------------------------------------------------------------------------- against the exact aggregate posterior
@pytest.mark.parametrize("s", [1, 2, 3])
def test_mws_with_the_whole_dataset_as_batch(s):
    """M = N: the published log(N M) normaliser gives exact - log N; the log M normaliser gives the exact values."""
    n, d = 12, 5
    z, loc, scale = _posteriors(n, d, seed=10 + s)
    slices = group_slices(d, s)
    joint, dims, groups = _exact(z, loc, scale, slices)
    with jax.enable_x64():
        pub = marginal_log_densities(z, loc, scale, dataset_size=n, group_size=s)
        exact = marginal_log_densities(z, loc, scale, dataset_size=n, group_size=s, mws_normalizer="log_m")
        t_pub = total_correlation_terms(z, loc, scale, dataset_size=n, group_size=s)
        t_exact = total_correlation_terms(z, loc, scale, dataset_size=n, group_size=s, mws_normalizer="log_m")
    log_n = math.log(n)
    np.testing.assert_allclose(pub.log_qz, joint - log_n, rtol=1e-12)
    np.testing.assert_allclose(pub.log_qz_dims, dims - log_n, rtol=1e-12)
    np.testing.assert_allclose(pub.log_qz_groups, groups - log_n, rtol=1e-12)
    np.testing.assert_allclose(exact.log_qz, joint, rtol=1e-12)
    np.testing.assert_allclose(exact.log_qz_dims, dims, rtol=1e-12)
    np.testing.assert_allclose(exact.log_qz_groups, groups, rtol=1e-12)
    k = len(slices)
    np.testing.assert_allclose(t_exact.tc, joint - dims.sum(-1), rtol=1e-10)
    np.testing.assert_allclose(t_exact.tc_between, joint - groups.sum(-1), atol=1e-10)
    # the published normaliser offsets TC by (D-1) log N, TC_B by (K-1) log N, sum TC_g by (D-K) log N
    np.testing.assert_allclose(t_pub.tc - t_exact.tc, (d - 1) * log_n, rtol=1e-10)
    np.testing.assert_allclose(t_pub.tc_between - t_exact.tc_between, (k - 1) * log_n, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(t_pub.tc_within - t_exact.tc_within, (d - k) * log_n, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(t_pub.mi - t_exact.mi, log_n, rtol=1e-10)


def test_mss_is_unbiased_for_the_aggregate_posterior():
    """E over uniformly drawn batches of exp(MSS estimate) = exact q(z), q(z_d), q(z_g) (within 5 standard errors)."""
    n, d, b, s, trials = 16, 3, 5, 2, 20_000
    z_all, loc, scale = _posteriors(n, d, seed=3, spread=0.7)
    star = 4  # the example whose sample is evaluated
    z_star = z_all[star]
    joint, dims, groups = _exact(z_star[None], loc, scale, group_slices(d, s))

    rng = np.random.default_rng(0)
    pool = np.delete(np.arange(n), star)
    others = pool[np.argsort(rng.random((trials, n - 1)), axis=1)[:, : b - 1]]  # uniform, without replacement
    pos = rng.integers(0, b, trials)  # the example's row in the batch (every row's weights are exercised)
    batch = np.stack([np.insert(o, p, star) for o, p in zip(others, pos)])
    assert np.all(batch[np.arange(trials), pos] == star)
    zb = loc[batch].copy()  # the other rows' samples do not enter row `pos`
    zb[np.arange(trials), pos] = z_star

    est = jax.vmap(lambda zz, ll, ss: marginal_log_densities(zz, ll, ss, dataset_size=n, group_size=s, estimator="mss"))
    with jax.enable_x64():
        m = est(jnp.asarray(zb), jnp.asarray(loc[batch]), jnp.asarray(scale[batch]))
        rows = np.arange(trials), pos
        q_joint = np.exp(np.asarray(m.log_qz)[rows])
        q_dims = np.exp(np.asarray(m.log_qz_dims)[rows])
        q_groups = np.exp(np.asarray(m.log_qz_groups)[rows])
    tstats.assert_mean_matches(q_joint, np.exp(joint[0]), what="MSS q(z)")
    tstats.assert_mean_matches(q_dims, np.exp(dims[0]), what="MSS q(z_d)")
    tstats.assert_mean_matches(q_groups, np.exp(groups[0]), what="MSS q(z_g)")
    # the test has power: MWS with the published normaliser is far off in density (factor ~ 1/N)
    with jax.enable_x64():
        mws = jax.vmap(lambda zz, ll, ss: marginal_log_densities(zz, ll, ss, dataset_size=n).log_qz)(
            jnp.asarray(zb), jnp.asarray(loc[batch]), jnp.asarray(scale[batch])
        )
    assert np.exp(np.asarray(mws)[rows]).mean() < 0.5 * np.exp(joint[0])


# ---------------------------------------------------------------------------- objectives
def _model_loss(params, x, eps, *, objective, group_size, beta=10.0, estimator="mws", n=1000):
    """A tiny linear-Gaussian VAE: everything the loss sees depends on the parameters."""
    loc = x @ params["enc_loc"]
    scale = jnp.exp(x @ params["enc_log_scale"])
    z = loc + scale * eps
    recon = z @ params["dec"]
    log_px_z = -0.5 * jnp.sum(jnp.square(x - recon), axis=-1)
    t = total_correlation_terms(z, loc, scale, dataset_size=n, group_size=group_size, estimator=estimator)
    return -jnp.mean(objective(log_px_z, t, beta))


def _params_and_data(b=16, x_dim=6, d=5, seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    params = {
        "enc_loc": jax.random.normal(k[0], (x_dim, d)) * 0.5,
        "enc_log_scale": jax.random.normal(k[1], (x_dim, d)) * 0.1,
        "dec": jax.random.normal(k[2], (d, x_dim)) * 0.5,
    }
    return params, jax.random.normal(k[3], (b, x_dim)), jax.random.normal(k[4], (b, d))


@pytest.mark.parametrize("estimator", ["mws", "mss"])
# variant 2 (the default) in the default tier, 1 and 3 in the slow tier
@pytest.mark.parametrize("var", [pytest.param(1, marks=pytest.mark.slow), 2, pytest.param(3, marks=pytest.mark.slow)])
def test_stcvae_with_granularity_one_is_beta_tcvae_bitwise(estimator, var, variant):
    params, x, eps = _params_and_data()
    stc = functools.partial(beta_stcvae_objective, variant=var)
    ref = variant(
        jax.value_and_grad(
            functools.partial(_model_loss, objective=beta_tcvae_objective, group_size=2, estimator=estimator)
        )
    )
    got = variant(jax.value_and_grad(functools.partial(_model_loss, objective=stc, group_size=1, estimator=estimator)))
    (l_ref, g_ref), (l_got, g_got) = ref(params, x, eps), got(params, x, eps)
    assert np.array_equal(np.asarray(l_ref), np.asarray(l_got))
    for k in g_ref:
        assert np.array_equal(np.asarray(g_ref[k]), np.asarray(g_got[k])), k
    # and the per-example objectives too
    z, loc, scale = _posteriors(8, 5, seed=1)
    log_px = -jnp.arange(8.0)
    t1 = total_correlation_terms(z, loc, scale, dataset_size=100, group_size=1, estimator=estimator)
    assert np.array_equal(beta_stcvae_objective(log_px, t1, 4.0, variant=var), beta_tcvae_objective(log_px, t1, 4.0))


def test_stcvae_with_granularity_two_differs_from_beta_tcvae():
    params, x, eps = _params_and_data()
    tc = _model_loss(params, x, eps, objective=beta_tcvae_objective, group_size=2)
    for var in (1, 2):
        stc = _model_loss(params, x, eps, objective=functools.partial(beta_stcvae_objective, variant=var), group_size=2)
        assert abs(float(stc) - float(tc)) > 1e-3
    v3 = _model_loss(params, x, eps, objective=functools.partial(beta_stcvae_objective, variant=3), group_size=2)
    assert float(v3) == float(tc)  # variant 3 is β-TCVAE at every granularity


def test_objective_formulas():
    z, loc, scale = _posteriors(10, 6, seed=2)
    t = total_correlation_terms(z, loc, scale, dataset_size=300, group_size=2)
    log_px = jnp.linspace(-50.0, -10.0, 10)
    beta = 10.0
    tc = beta_tcvae_objective(log_px, t, beta)
    np.testing.assert_allclose(tc, log_px - t.mi - beta * t.tc - t.dwkl, rtol=1e-6)
    v1 = beta_stcvae_objective(log_px, t, beta, variant=1)
    np.testing.assert_allclose(v1, log_px - t.mi - beta * t.tc_between - t.dwkl, rtol=1e-6)
    v2 = beta_stcvae_objective(log_px, t, beta)  # default variant 2: the batch-mean within-group TC, rewarded
    np.testing.assert_allclose(v2, v1 + beta / 2 * np.mean(t.tc_within), rtol=1e-6)
    assert np.ptp(np.asarray(v2 - v1)) < 1e-4  # the same scalar for every example
    v4 = beta_stcvae_objective(log_px, t, beta, variant=4)
    np.testing.assert_allclose(v4, log_px - beta * (t.mi + t.tc), rtol=1e-5)
    # beta = 1: beta-TCVAE is the single-sample ELBO log p(x|z) + log p(z) - log q(z|x), whatever the estimator
    np.testing.assert_allclose(beta_tcvae_objective(log_px, t, 1.0), log_px + t.log_pz - t.log_qz_x, rtol=1e-5)


def test_variant_two_batch_mean_has_the_per_example_gradient():
    """After the batch mean, the code's batch-mean term has the value and gradient of the per-example term."""
    params, x, eps = _params_and_data(seed=3)

    def per_example(log_px_z, t, beta):
        return log_px_z - t.mi - beta * t.tc_between + beta / 2 * t.tc_within - t.dwkl

    a = jax.value_and_grad(functools.partial(_model_loss, objective=beta_stcvae_objective, group_size=2))(
        params, x, eps
    )
    b = jax.value_and_grad(functools.partial(_model_loss, objective=per_example, group_size=2))(params, x, eps)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
    for k in a[1]:
        np.testing.assert_allclose(a[1][k], b[1][k], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- errors
def test_bad_inputs_name_the_argument():
    z, loc, scale = _posteriors(4, 3)
    good = dict(dataset_size=10)
    with pytest.raises(ValueError, match=r"`z` must be \[B, D\]"):
        marginal_log_densities(z[0], loc[0], scale[0], **good)
    with pytest.raises(ValueError, match="`loc` must have the shape of `z`"):
        marginal_log_densities(z, loc[:3], scale, **good)
    with pytest.raises(ValueError, match="`scale` must have the shape"):
        marginal_log_densities(z, loc, scale[:, :2], **good)
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        marginal_log_densities(z, loc, -scale, **good)
    with pytest.raises(ValueError, match="`z` must be finite"):
        marginal_log_densities(np.full_like(z, np.nan), loc, scale, **good)
    with pytest.raises(ValueError, match="`z` must be a floating"):
        marginal_log_densities(np.zeros((4, 3), int), loc, scale, **good)
    with pytest.raises(ValueError, match="`dataset_size` must be >= the batch size 4"):
        marginal_log_densities(z, loc, scale, dataset_size=3)
    with pytest.raises(ValueError, match="`dataset_size`"):
        marginal_log_densities(z, loc, scale, dataset_size=10.0)
    with pytest.raises(ValueError, match="`estimator`"):
        marginal_log_densities(z, loc, scale, estimator="exact", **good)
    with pytest.raises(ValueError, match="`mws_normalizer`"):
        marginal_log_densities(z, loc, scale, mws_normalizer="log_n", **good)
    with pytest.raises(ValueError, match="`mws_normalizer` applies to estimator='mws' only"):
        marginal_log_densities(z, loc, scale, estimator="mss", mws_normalizer="log_m", **good)
    with pytest.raises(ValueError, match="`batch_size` must be >= 2"):
        marginal_log_densities(z[:1], loc[:1], scale[:1], estimator="mss", **good)
    with pytest.raises(ValueError, match="`group_size`"):
        marginal_log_densities(z, loc, scale, group_size=4, **good)
    with pytest.raises(ValueError, match="`prior_loc` / `prior_scale` must broadcast"):
        total_correlation_terms(z, loc, scale, prior_loc=np.zeros((2, 4, 3)), **good)
    with pytest.raises(ValueError, match="`prior_scale` must be > 0"):
        total_correlation_terms(z, loc, scale, prior_scale=0.0, **good)


def test_bad_objective_arguments():
    z, loc, scale = _posteriors(4, 3)
    t = total_correlation_terms(z, loc, scale, dataset_size=10)
    with pytest.raises(ValueError, match=r"`log_px_z` must be the per-example \[B\]"):
        beta_tcvae_objective(jnp.zeros((4, 1)), t, 1.0)
    with pytest.raises(ValueError, match="`beta` must be finite and >= 0"):
        beta_tcvae_objective(jnp.zeros(4), t, -1.0)
    with pytest.raises(ValueError, match="`beta` must be a scalar"):
        beta_stcvae_objective(jnp.zeros(4), t, jnp.ones(4))
    with pytest.raises(ValueError, match="`variant`"):
        beta_stcvae_objective(jnp.zeros(4), t, 1.0, variant=5)
    with pytest.raises(ValueError, match="`terms` must be TotalCorrelationTerms"):
        beta_tcvae_objective(jnp.zeros(4), tuple(t), 1.0)
    with pytest.raises(ValueError, match="`terms` must be TotalCorrelationTerms"):
        beta_tcvae_objective(jnp.zeros(4), MarginalLogDensities(*t[:3]), 1.0)


def test_traced_beta_and_jit():
    z, loc, scale = (jnp.asarray(a, jnp.float32) for a in _posteriors(6, 4, seed=7))

    @jax.jit
    def f(z, loc, scale, beta):
        t = total_correlation_terms(z, loc, scale, dataset_size=60, group_size=3, estimator="mss")
        return beta_stcvae_objective(jnp.zeros(6), t, beta)

    eager = beta_stcvae_objective(
        jnp.zeros(6), total_correlation_terms(z, loc, scale, dataset_size=60, group_size=3, estimator="mss"), 2.5
    )
    np.testing.assert_allclose(f(z, loc, scale, 2.5), eager, rtol=1e-6)

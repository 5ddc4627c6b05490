"""Mixture KL estimators: exact reductions, invariances, bounds vs exact (1-D quad) and MC references, unbiasedness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate
from scipy import stats as sps

from jaxvae.distributions import mixture_kl as mk
from jaxvae.distributions.mixture import MixtureNormal
from jaxvae.distributions.normal import Normal, kl_normal_normal
from tests import stats

CLOSED = {
    "variational": mk.kl_variational,
    "upper": mk.kl_upper_bound,
    "lower": mk.kl_lower_bound,
    "moment_matched": mk.kl_moment_matched,
}


def _mix(key, c=3, d=2, batch=(), spread=1.5, dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(key, 3)
    return MixtureNormal(
        jax.random.normal(k1, batch + (c,), dtype),
        spread * jax.random.normal(k2, batch + (c, d), dtype),
        jnp.exp(0.4 * jax.random.normal(k3, batch + (c, d), dtype)),
    )


def _normal(key, d=2):
    k1, k2 = jax.random.split(key)
    return Normal(0.5 * jax.random.normal(k1, (d,)), jnp.exp(0.3 * jax.random.normal(k2, (d,))))


# ---------------------------------------------------------------- 1-D exact oracle (float64 quad)
def _np_mix_pdf(x, logits, loc, scale):
    w = np.exp(logits - np.max(logits))
    w = w / w.sum()
    return float(np.sum(w * sps.norm.pdf(x, loc[:, 0], scale[:, 0])))


def _exact_kl_1d(q, p):
    ql, qm, qs = (np.asarray(a, np.float64) for a in (q.logits, q.loc, q.scale))
    if isinstance(p, Normal):
        pdf_p = lambda x: float(sps.norm.pdf(x, float(p.loc[0]), float(p.scale[0])))  # noqa: E731
    else:
        pl, pm, ps = (np.asarray(a, np.float64) for a in (p.logits, p.loc, p.scale))
        pdf_p = lambda x: _np_mix_pdf(x, pl, pm, ps)  # noqa: E731

    def integrand(x):
        qx = _np_mix_pdf(x, ql, qm, qs)
        return 0.0 if qx == 0.0 else qx * (np.log(qx) - np.log(pdf_p(x)))

    lo, hi = float((qm - 12 * qs).min()), float((qm + 12 * qs).max())
    val, err = integrate.quad(integrand, lo, hi, points=sorted(qm[:, 0].tolist()), limit=400, epsabs=1e-11)
    return val


def _q1d():
    return MixtureNormal(
        jnp.array([0.4, -0.3, 0.1]), jnp.array([[-1.5], [0.3], [2.0]]), jnp.array([[0.5], [1.2], [0.7]])
    )


def _p1d(kind):
    if kind == "normal":
        return Normal(jnp.array([0.2]), jnp.array([1.4]))
    return MixtureNormal(
        jnp.array([0.0, 0.5, -0.2]), jnp.array([[-1.0], [1.0], [2.5]]), jnp.array([[0.8], [0.9], [1.1]])
    )


# ------------------------------------------------------------------------ exact identities
@pytest.mark.parametrize("name", list(CLOSED))
@pytest.mark.parametrize("p_kind", ["normal", "mixture"])
def test_one_component_reduces_to_gaussian_kl(key, name, p_kind):
    k1, k2 = jax.random.split(key)
    f = _normal(k1, 3)
    g = _normal(k2, 3)
    q = MixtureNormal(jnp.zeros((1,)), f.loc[None], f.scale[None])
    p = g if p_kind == "normal" else MixtureNormal(jnp.zeros((1,)), g.loc[None], g.scale[None])
    exact = jnp.sum(kl_normal_normal(f, g))
    if name == "lower" and p_kind == "mixture":  # Jensen on the cross term: a bound, not exact
        assert CLOSED[name](q, p) <= exact + 1e-6
    else:
        np.testing.assert_allclose(CLOSED[name](q, p), exact, rtol=1e-5, atol=1e-6)


def test_kl_to_itself(key):
    q = _mix(key)
    np.testing.assert_allclose(mk.kl_variational(q, q), 0.0, atol=1e-6)
    np.testing.assert_allclose(mk.kl_upper_bound(q, q), 0.0, atol=1e-6)
    assert mk.kl_lower_bound(q, q) == 0.0
    np.testing.assert_allclose(mk.kl_moment_matched(q, q), 0.0, atol=1e-6)


def _permute(m, perm):
    return MixtureNormal(m.logits[..., perm], m.loc[..., perm, :], m.scale[..., perm, :])


def _split_first(m):
    """Split component 0 into two identical halves (logit - log 2 each)."""
    lg = jnp.concatenate([m.logits[:1] - jnp.log(2.0), m.logits[:1] - jnp.log(2.0), m.logits[1:]])
    return MixtureNormal(lg, jnp.concatenate([m.loc[:1], m.loc]), jnp.concatenate([m.scale[:1], m.scale]))


@pytest.mark.parametrize("name", list(CLOSED))
@pytest.mark.parametrize("p_kind", ["normal", "mixture"])
def test_permutation_and_split_invariance(key, name, p_kind):
    k1, k2 = jax.random.split(key)
    q = _mix(k1)
    p = _normal(k2) if p_kind == "normal" else _mix(k2)
    fn = CLOSED[name]
    ref = fn(q, p)
    perm = jnp.array([2, 0, 1])
    if name == "upper" and p_kind == "mixture":  # matched bound: permute / split both sides together
        np.testing.assert_allclose(fn(_permute(q, perm), _permute(p, perm)), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fn(_split_first(q), _split_first(p)), ref, rtol=1e-5, atol=1e-6)
        return
    np.testing.assert_allclose(fn(_permute(q, perm), p), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fn(_split_first(q), p), ref, rtol=1e-5, atol=1e-6)
    if p_kind == "mixture":
        np.testing.assert_allclose(fn(q, _permute(p, perm)), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fn(q, _split_first(p)), ref, rtol=1e-5, atol=1e-6)


# -------------------------------------------------------- bounds and MC vs exact 1-D oracle
@pytest.mark.parametrize("p_kind", ["normal", "mixture"])
def test_bounds_bracket_exact_1d(p_kind):
    q, p = _q1d(), _p1d(p_kind)
    exact = _exact_kl_1d(q, p)
    tol = 1e-5 * max(1.0, exact)  # float32 closed forms vs a float64 quad
    assert float(mk.kl_lower_bound(q, p)) <= exact + tol
    assert float(mk.kl_upper_bound(q, p)) >= exact - tol
    if p_kind == "normal":
        assert float(mk.kl_moment_matched(q, p)) <= exact + tol
        assert float(mk.kl_lower_bound(q, p)) > 0.0  # not vacuous here (the mixture-p one may clip at 0)


@pytest.mark.statistical
@pytest.mark.parametrize("estimator", ["kl_mc", "kl_mc_stratified"])
@pytest.mark.parametrize("p_kind", ["normal", "mixture"])
def test_mc_unbiased_against_exact_1d(estimator, p_kind):
    q, p = _q1d(), _p1d(p_kind)
    exact = _exact_kl_1d(q, p)
    fn = jax.jit(getattr(mk, estimator), static_argnums=3)
    # many small, independent estimates: their mean is within z * sd / sqrt(R) of the truth
    keys = jax.random.split(jax.random.key(11), 2000)
    est = np.asarray(jax.vmap(lambda k: fn(k, q, p, 4).estimate)(keys), np.float64)
    stats.assert_mean_matches(est, exact, what=f"{estimator} mean of repeats")
    # one big estimate is within z of its own reported standard error
    big = fn(jax.random.key(12), q, p, 20_000)
    stats.assert_close_clt(big.estimate, exact, big.stderr, what=f"{estimator} vs its stderr")


@pytest.mark.statistical
def test_stratified_gradient_matches_exact_1d():
    """d KL / d (logits, loc) from kl_mc_stratified vs central differences of the quad KL."""
    q0, p = _q1d(), _p1d("normal")

    def est(logits, loc, k):
        return mk.kl_mc_stratified(k, MixtureNormal(logits, loc, q0.scale), p, 8).estimate

    keys = jax.random.split(jax.random.key(13), 2000)
    g_l, g_m = jax.vmap(jax.grad(est, argnums=(0, 1)), in_axes=(None, None, 0))(q0.logits, q0.loc, keys)
    h = 1e-4
    for arr_name, g in (("logits", g_l), ("loc", g_m)):
        base = np.asarray(getattr(q0, arr_name), np.float64)
        fd = np.zeros(base.size)
        for i in range(base.size):
            plus, minus = base.copy().ravel(), base.copy().ravel()
            plus[i] += h
            minus[i] -= h

            def kw(v):
                d = dict(logits=q0.logits, loc=q0.loc, scale=q0.scale)
                d[arr_name] = v.reshape(base.shape)
                return d

            fd[i] = (_exact_kl_1d(_np_mix(**kw(plus)), p) - _exact_kl_1d(_np_mix(**kw(minus)), p)) / (2 * h)
        stats.assert_mean_matches(np.asarray(g, np.float64).reshape(len(keys), -1), fd, what=f"d KL / d {arr_name}")


class _np_mix:  # a plain container so float64 perturbations survive (MixtureNormal would cast to float32)
    def __init__(self, logits, loc, scale):
        self.logits, self.loc, self.scale = (np.asarray(a, np.float64) for a in (logits, loc, scale))


# ------------------------------------------------------ bounds vs a large MC reference (D = 3)
@pytest.mark.statistical
@pytest.mark.parametrize("p_kind", ["normal", "mixture"])
def test_bounds_bracket_mc_reference(p_kind):
    q = _mix(jax.random.key(21), c=4, d=3)
    p = _normal(jax.random.key(22), 3) if p_kind == "normal" else _mix(jax.random.key(22), c=4, d=3)
    ref = jax.jit(mk.kl_mc_stratified, static_argnums=3)(jax.random.key(23), q, p, 50_000)
    band = stats.Z * float(ref.stderr)
    lower, upper = float(mk.kl_lower_bound(q, p)), float(mk.kl_upper_bound(q, p))
    assert lower <= float(ref.estimate) + band, (lower, ref)
    assert upper >= float(ref.estimate) - band, (upper, ref)
    assert lower <= upper
    if p_kind == "normal":
        assert float(mk.kl_moment_matched(q, p)) <= float(ref.estimate) + band


# ----------------------------------------------------------------------- population KL
def _np_population_kl(loc, log_var, include_variance):
    loc, log_var = np.asarray(loc, np.float64), np.asarray(log_var, np.float64)
    m = loc.mean(0)
    s2 = loc.var(0) + (np.exp(log_var).mean(0) if include_variance else 0.0)
    return -0.5 * np.sum(1 + np.log(s2) - m**2 - s2)


@pytest.mark.parametrize("include_variance", [False, True])
def test_population_kl_formula(key, include_variance):
    loc = 0.7 * jax.random.normal(key, (16, 5)) + 0.3
    log_var = 0.5 * jax.random.normal(jax.random.key(1), (16, 5))
    got = mk.population_kl(loc, log_var, include_variance=include_variance)
    assert got.shape == ()
    np.testing.assert_allclose(got, _np_population_kl(loc, log_var, include_variance), rtol=1e-5)


def test_population_kl_equal_sigma_and_moment_matching(key):
    loc = jax.random.normal(key, (2, 10, 4))  # two batches of B = 10
    sigma2 = 0.3
    log_var = jnp.full(loc.shape, np.log(sigma2), jnp.float32)
    with_var = mk.population_kl(loc, log_var, include_variance=True)
    assert with_var.shape == (2,)
    # equal sigma: the exact variant is the means-only formula with s2 -> s2 + sigma2
    m = jnp.mean(loc, -2)
    s2 = jnp.var(loc, -2) + sigma2
    np.testing.assert_allclose(with_var, -0.5 * jnp.sum(1 + jnp.log(s2) - m**2 - s2, -1), rtol=1e-5)
    # and it is the KL of the moment-matched aggregate posterior (uniform weights) to N(0, I)
    agg = MixtureNormal(jnp.zeros((2, 10)), loc, jnp.exp(0.5 * log_var))
    prior = Normal(jnp.zeros(4), jnp.ones(4))
    np.testing.assert_allclose(with_var, mk.kl_moment_matched(agg, prior), rtol=1e-5)
    mm = agg.moment_matched()
    np.testing.assert_allclose(
        with_var, jnp.sum(kl_normal_normal(mm, Normal(0.0 * mm.loc, 1.0 + 0.0 * mm.loc)), -1), rtol=1e-5
    )


@pytest.mark.statistical
def test_population_kl_with_variance_is_a_lower_bound(key):
    loc = jax.random.normal(key, (12, 3))
    log_var = 0.5 * jax.random.normal(jax.random.key(2), (12, 3)) - 1.0
    agg = MixtureNormal(jnp.zeros(12), loc, jnp.exp(0.5 * log_var))
    ref = jax.jit(mk.kl_mc_stratified, static_argnums=3)(
        jax.random.key(3), agg, Normal(jnp.zeros(3), jnp.ones(3)), 5000
    )
    assert float(mk.population_kl(loc, log_var, include_variance=True)) <= float(ref.estimate) + stats.Z * float(
        ref.stderr
    )


def test_population_kl_errors():
    with pytest.raises(ValueError, match="`loc`.*B >= 2"):
        mk.population_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="`log_var`"):
        mk.population_kl(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="`loc`"):
        mk.population_kl(jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="`loc`.*finite"):
        mk.population_kl(jnp.array([[0.0], [jnp.nan]]), jnp.zeros((2, 1)))


# ------------------------------------------------------------------- gradients, jit, errors
@pytest.mark.parametrize("name", list(CLOSED) + ["population"])
def test_check_grads_x64(name):
    with jax.enable_x64():
        q = _mix(jax.random.key(31), c=2, d=2, dtype=jnp.float64)
        p = _mix(jax.random.key(32), c=2, d=2, dtype=jnp.float64)

        if name == "population":

            def f(loc, log_var):
                return mk.population_kl(loc, log_var, include_variance=True)

            args = (q.loc, 2.0 * jnp.log(q.scale))  # B = 3, D = 2
        else:

            def f(lg, mu, log_s):
                return CLOSED[name](MixtureNormal(lg, mu, jnp.exp(log_s)), p)

            args = (q.logits, q.loc, jnp.log(q.scale))
        # order 1 in both modes; order 2 in reverse mode except for the logsumexp-heavy forms, where
        # it costs ~15 s CPU each on the shared machine
        check_grads(jax.jit(f), args, order=1, modes=("fwd", "rev"))
        if name not in ("variational", "lower"):
            check_grads(jax.jit(f), args, order=2, modes=("rev",))


def test_jit_equals_nojit(key, variant):
    q = _mix(key, batch=(4,))
    p = _normal(jax.random.key(1))
    for fn in CLOSED.values():
        out = variant(fn)(q, p)
        assert out.shape == (4,)
        np.testing.assert_allclose(out, fn(q, p), rtol=1e-5, atol=1e-6)
    mc = variant(lambda k, q, p: mk.kl_mc_stratified(k, q, p, 3))(key, q, p)
    assert mc.estimate.shape == (4,) and mc.values.shape == (3, 3, 4)


def test_batch_equals_loop(key):
    q = _mix(key, batch=(3,))
    p = _normal(jax.random.key(1))
    fns = jax.jit(lambda q, p: [fn(q, p) for fn in CLOSED.values()])
    out = fns(q, p)
    loop = [fns(MixtureNormal(q.logits[i], q.loc[i], q.scale[i]), p) for i in range(3)]
    for j in range(len(CLOSED)):
        np.testing.assert_allclose(out[j], np.stack([r[j] for r in loop]), rtol=1e-5, atol=1e-6)


def test_bad_arguments(key):
    q = _mix(key)
    with pytest.raises(ValueError, match="`p` has event size"):
        mk.kl_variational(q, _normal(key, 3))
    with pytest.raises(ValueError, match="`q`"):
        mk.kl_upper_bound(_normal(key), _normal(key))
    with pytest.raises(ValueError, match="`p` must have the same number of components"):
        mk.kl_upper_bound(q, _mix(key, c=2))
    with pytest.raises(ValueError, match="`num_samples`"):
        mk.kl_mc(key, q, _normal(key), 1)

"""Tests of the structured rectified-Gaussian hierarchy (jaxvae.models.rectified_hvae)."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae.models import rectified_hvae as rh
from tests import stats

SMALL = rh.Config(latent_sizes=(6, 5, 4, 3), up_hidden=(16, 12, 8, 6), down_hidden=(6, 5, 4), decoder_hidden=16)
B = 8


def _cfg(**kw):
    return dataclasses.replace(SMALL, **kw)


@pytest.fixture(scope="module")
def x():
    return (jax.random.uniform(jax.random.key(11), (B, 784)) < 0.3).astype(jnp.float32)


@pytest.fixture(scope="module")
def small_init():
    # Every variant (units, posterior, kl) has the same parameter tree: one init serves all tests.
    return rh.init(SMALL, jax.random.key(0))


@pytest.fixture(scope="module")
def trained_init(small_init, x):
    """Parameters with running BN averages moved away from their initial values (3 training passes)."""
    params, state = small_init
    for i in range(3):
        state = _loss(SMALL, params, state, x, jax.random.key(100 + i)).model_state
    return params, state


# Jitted entry points with the config static: each compiles once per config for the whole module
# (compilation dominates the run time of this file on a loaded 2-core machine).
@functools.partial(jax.jit, static_argnums=0)
def _loss(cfg, params, state, x, key):
    return rh.make_loss_fn(cfg)(params, state, {"x": x}, key)


@functools.partial(jax.jit, static_argnums=0)
def _eval(cfg, params, state, x, key):
    return rh.make_eval_fn(cfg)(params, state, {"x": x}, key)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _log_w(cfg, params, state, key, x, k):
    return rh.make_log_weight_fn(cfg, params, state)(key, x, k)


def _with_scales(pairs):
    """The model's (loc, log_var) pairs as (loc, scale), the parameters the checks below use."""
    return tuple((loc, jnp.exp(0.5 * log_var)) for loc, log_var in pairs)


@functools.partial(jax.jit, static_argnums=0)
def _forward(cfg, params, state, x, key):
    fwd = rh.RectifiedHVAE(cfg).apply({"params": params, **state}, x, key, train=False)
    return fwd._replace(q_params=_with_scales(fwd.q_params), p_params=_with_scales(fwd.p_params))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _messages(cfg, params, state, x, train=False):
    out = rh.RectifiedHVAE(cfg).apply(
        {"params": params, **state},
        x,
        train,
        method=rh.RectifiedHVAE.bottom_up,
        mutable=["batch_stats"] if train else False,
    )
    return _with_scales(out[0] if train else out)


# ----------------------------------------------------------------------------- config and shapes


@pytest.mark.parametrize(
    "field,value",
    [
        ("units", "laplace"),
        ("posterior", "ladder"),
        ("kl", "exact"),
        ("activation", "nope"),
        ("up_hidden", (16, 12)),
        ("down_hidden", (6, 5)),
        ("latent_sizes", (6, 0, 4, 3)),
        ("min_scale", 0.0),
        ("bn_momentum", 1.0),
        ("kl_samples", 0),
    ],
)
def test_config_rejects_bad_fields_by_name(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        _cfg(**{field: value})


def test_loss_fn_rejects_wrong_data_shape(small_init):
    params, state = small_init
    with pytest.raises(ValueError, match="`x`"):
        rh.make_loss_fn(SMALL)(params, state, {"x": jnp.zeros((4, 100))}, jax.random.key(0))


def test_shapes_of_every_output(small_init, x):
    cfg = SMALL
    params, state = small_init
    assert set(state) == {"batch_stats"}
    out = _loss(cfg, params, state, x, jax.random.key(1))
    chex.assert_shape(out.loss, ())
    assert set(out.metrics) == {"elbo", "log_px_z", "kl", "kl_1", "kl_2", "kl_3", "kl_4"}
    chex.assert_tree_all_finite(out)
    assert jax.tree.structure(out.model_state) == jax.tree.structure(state)
    ev = _eval(cfg, params, state, x.reshape(B, 28, 28), jax.random.key(2))
    assert set(ev) == set(out.metrics)
    for v in ev.values():
        chex.assert_shape(v, (B,))
    np.testing.assert_allclose(ev["elbo"], ev["log_px_z"] - ev["kl"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ev["kl"], sum(ev[f"kl_{l}"] for l in range(1, 5)), rtol=1e-5, atol=1e-3)
    for l in range(1, 5):  # closed-form KLs are >= 0
        assert bool(jnp.all(ev[f"kl_{l}"] >= -1e-4)), l
    chex.assert_shape(_log_w(cfg, params, state, jax.random.key(3), x[:3], 5), (5, 3))
    zs = rh.posterior_samples(cfg, params, state, jax.random.key(4), x[:3], num_samples=2)
    assert [z.shape for z in zs] == [(2, 3, d) for d in cfg.latent_sizes]
    assert all(bool(jnp.all(z >= 0)) for z in zs)
    chex.assert_shape(rh.sample_images(cfg, params, state, jax.random.key(5), 4), (4, 28, 28))
    chex.assert_shape(rh.layer_variation_images(cfg, params, state, jax.random.key(6), 3), (4, 3, 28, 28))


# ----------------------------------------------------------------------------- numerics at the extremes


def _set_heads(params, loc_value, scale_raw):
    """Every prior/posterior Gaussian gets loc = loc_value exactly (kernels zeroed) and softplus(scale_raw)."""
    params = jax.tree.map(lambda a: a, params)  # copy the containers
    params = dict(params)
    for name in list(params):
        if "head" in name:
            head = {k: dict(v) for k, v in params[name].items()}
            head["loc"]["kernel"] = jnp.zeros_like(head["loc"]["kernel"])
            head["loc"]["bias"] = jnp.full_like(head["loc"]["bias"], loc_value)
            head["scale"]["kernel"] = jnp.zeros_like(head["scale"]["kernel"])
            head["scale"]["bias"] = jnp.full_like(head["scale"]["bias"], scale_raw)
            params[name] = head
    params["top_loc"] = jnp.full_like(params["top_loc"], loc_value)
    params["top_raw_scale"] = jnp.full_like(params["top_raw_scale"], scale_raw)
    return params


EXTREMES = {  # (loc, raw scale): scale = softplus(raw) + min_scale
    "spike": (-30.0, 0.5413),  # loc/scale ~ -30 in p, ~ -42 in the precision-weighted q
    "slab": (30.0, 0.5413),
    "spike-small-scale": (-3.0, -4.6),  # scale ~ 0.011: loc/scale ~ -270
    "wide": (0.0, 8.0),
}


@pytest.mark.slow  # ~50 s each on the 2-core machine; the default tier's shape test checks finiteness
@pytest.mark.parametrize("kl", ["analytic", "mc", "sample"])
def test_loss_and_gradients_finite_at_extremes(kl, small_init, x):
    cfg = _cfg(kl=kl, kl_samples=3)
    params0, state = small_init
    grad_fn = jax.jit(jax.value_and_grad(lambda p: rh.make_loss_fn(cfg)(p, state, {"x": x}, jax.random.key(1)).loss))
    for name, (loc, scale_raw) in EXTREMES.items():
        params = _set_heads(params0, loc, scale_raw)
        value, grads = grad_fn(params)
        assert np.isfinite(float(value)), name
        chex.assert_tree_all_finite(grads)
        lw = _log_w(cfg, params, state, jax.random.key(2), x[:2], 4)
        assert bool(jnp.all(jnp.isfinite(lw))), name
        if name == "spike":  # every unit deep in the spike: every sample is an exact zero
            fwd = _forward(cfg, params, state, x[:2], jax.random.key(3))
            assert all(bool(jnp.all(z == 0.0)) for z in fwd.z)


# ----------------------------------------------------------------------------- structured vs mean-field


def test_mean_field_posterior_is_the_bottom_up_message(small_init, x):
    params, state = small_init
    cfg = _cfg(posterior="mean_field")
    fwd = _forward(cfg, params, state, x, jax.random.key(0))
    for (q_loc, q_scale), (m, s) in zip(fwd.q_params, _messages(cfg, params, state, x)):
        np.testing.assert_array_equal(q_loc, m)
        np.testing.assert_array_equal(q_scale, s)


def test_structured_posterior_is_precision_weighted_prior_and_message(small_init, x):
    params, state = small_init
    fwd = _forward(SMALL, params, state, x, jax.random.key(0))
    for (q_loc, q_scale), (p_loc, p_scale), (m, s) in zip(
        fwd.q_params, fwd.p_params, _messages(SMALL, params, state, x)
    ):
        p_loc, p_scale, m, s = (np.asarray(a, np.float64) for a in (p_loc, p_scale, m, s))
        prec = p_scale**-2 + s**-2
        np.testing.assert_allclose(q_scale, prec**-0.5, rtol=1e-5)
        np.testing.assert_allclose(q_loc, (p_loc * p_scale**-2 + m * s**-2) / prec, rtol=1e-4, atol=1e-5)


def test_structured_reduces_to_mean_field_when_prior_is_flat(small_init, x):
    """With prior scales -> infinity the precision weighting gives the message alone, i.e. mean-field."""
    params, state = small_init
    flat = dict(params)
    for name in list(flat):
        if name.startswith("down_head"):
            head = {k: dict(v) for k, v in flat[name].items()}
            head["scale"]["bias"] = jnp.full_like(head["scale"]["bias"], 1e4)
            flat[name] = head
    flat["top_raw_scale"] = jnp.full_like(flat["top_raw_scale"], 1e4)
    key = jax.random.key(3)
    s = _forward(SMALL, flat, state, x, key)
    m = _forward(_cfg(posterior="mean_field"), flat, state, x, key)
    for zs, zm in zip(s.z, m.z):
        np.testing.assert_allclose(zs, zm, rtol=1e-4, atol=1e-4)


def test_structured_posterior_depends_on_parent_and_mean_field_does_not(small_init, x):
    params, state = small_init
    for cfg, depends in ((SMALL, True), (_cfg(posterior="mean_field"), False)):
        a = _forward(cfg, params, state, x, jax.random.key(0))
        b = _forward(cfg, params, state, x, jax.random.key(1))  # different z_2, same x
        differs = not np.allclose(a.q_params[0][0], b.q_params[0][0])
        assert differs == depends, cfg.posterior


# ----------------------------------------------------------------------------- ablations and weights


@pytest.mark.slow
def test_gaussian_unit_ablation_trains_and_has_no_exact_zeros(small_init, x):
    cfg = _cfg(units="gaussian")
    params, state = small_init
    opt = optax.adamax(2e-3)
    opt_state = opt.init(params)
    loss_fn = rh.make_loss_fn(cfg)

    @jax.jit
    def step(params, state, opt_state, key):
        (loss, out), g = jax.value_and_grad(
            lambda p: (lambda o: (o.loss, o))(loss_fn(p, state, {"x": x}, key)), has_aux=True
        )(params)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), out.model_state, opt_state, loss

    losses = []
    for i in range(40):
        params, state, opt_state, loss = step(params, state, opt_state, jax.random.key(i))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    fwd = _forward(cfg, params, state, x, jax.random.key(9))
    assert all(int(jnp.sum(z == 0.0)) == 0 for z in fwd.z)
    assert any(bool(jnp.any(z < 0.0)) for z in fwd.z)  # Normal units, not rectified


def test_gaussian_unit_ablation_uses_normal_units(small_init, x):
    from jaxvae.distributions.normal import Normal, kl_normal_normal

    params, state = small_init
    cfg = _cfg(units="gaussian")
    fwd = _forward(cfg, params, state, x, jax.random.key(9))
    assert any(bool(jnp.any(z < 0.0)) for z in fwd.z)
    for z, (ql, qs), (pl, ps), lq, kl in zip(fwd.z, fwd.q_params, fwd.p_params, fwd.log_qz, fwd.kl):
        np.testing.assert_allclose(lq, Normal(ql, qs).log_prob(z).sum(-1), rtol=1e-5)
        np.testing.assert_allclose(kl, kl_normal_normal(Normal(ql, qs), Normal(pl, ps)).sum(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("units", ["rectified", pytest.param("gaussian", marks=pytest.mark.slow)])
def test_log_weight_at_k1_equals_single_sample_elbo(units, trained_init, x):
    """With kl='sample' the ELBO's KL is log q - log p at the propagated sample: log_w(K=1) is exact."""
    params, state = trained_init
    cfg = _cfg(units=units, kl="sample")
    key = jax.random.key(5)
    lw = _log_w(cfg, params, state, key, x, 1)
    ev = _eval(cfg, params, state, x, key)
    np.testing.assert_allclose(lw[0], ev["elbo"], rtol=1e-5, atol=1e-3)


@pytest.mark.slow
@pytest.mark.statistical
def test_mean_log_weight_matches_analytic_kl_elbo(trained_init, x):
    """E_q[log w] = ELBO; the analytic-KL estimator has the same expectation (CLT band, z = 5)."""
    params, state = trained_init
    xs = x[:2]
    n = 2000
    lw = np.asarray(_log_w(SMALL, params, state, jax.random.key(7), xs, n), np.float64)  # [n, 2]
    reps = np.asarray(
        jax.jit(jax.vmap(lambda k: rh.make_eval_fn(SMALL)(params, state, {"x": xs}, k)["elbo"]))(
            jax.random.split(jax.random.key(8), n)
        ),
        np.float64,
    )  # [n, 2]
    se = np.sqrt(lw.var(0, ddof=1) / n + reps.var(0, ddof=1) / n)
    stats.assert_close_clt(lw.mean(0), reps.mean(0), se, what="E[log w] vs analytic-KL ELBO")


def test_log_weights_score_exact_zeros_on_the_mixed_measure(small_init, x):
    """log q and log p are RectifiedNormal log-densities; an exact zero scores log Phi(-loc/scale)."""
    from scipy.special import log_ndtr

    from jaxvae.distributions.rectified_normal import RectifiedNormal

    params, state = small_init
    fwd = _forward(SMALL, params, state, x, jax.random.key(4))
    assert sum(int(jnp.sum(z == 0.0)) for z in fwd.z) > 0  # the check below covers zeros
    log_prob = jax.jit(lambda loc, scale, z: RectifiedNormal(loc, scale).log_prob(z))
    for z, (ql, qs), (pl, ps), lq, lp in zip(fwd.z, fwd.q_params, fwd.p_params, fwd.log_qz, fwd.log_pz):
        per_unit_q = np.asarray(log_prob(ql, qs, z), np.float64)
        np.testing.assert_allclose(lq, per_unit_q.sum(-1), rtol=1e-5)
        np.testing.assert_allclose(lp, np.asarray(log_prob(pl, ps, z)).sum(-1), rtol=1e-5)
        zero = np.asarray(z == 0.0)
        a_q = np.asarray(ql, np.float64) / np.asarray(qs, np.float64)
        np.testing.assert_allclose(per_unit_q[zero], log_ndtr(-a_q[zero]), rtol=1e-4, atol=1e-5)


@pytest.mark.statistical
def test_posterior_conditional_means_rao_blackwellise_the_samples(trained_init, x):
    """mean_s E[z_l | z_{l+1}^(s), x] and mean_s z_l^(s) estimate the same E_q[z_l | x] (z = 5 CLT band)."""
    params, state = trained_init
    n = 1000
    cm = rh.posterior_conditional_means(SMALL, params, state, jax.random.key(1), x[:2], num_samples=n)
    zs = rh.posterior_samples(SMALL, params, state, jax.random.key(2), x[:2], num_samples=n)
    assert [c.shape for c in cm] == [(n, 2, d) for d in SMALL.latent_sizes]
    np.testing.assert_allclose(cm[-1], jnp.broadcast_to(cm[-1][:1], cm[-1].shape), rtol=1e-6)  # top: exact
    for c, z in zip(cm, zs):
        c, z = np.asarray(c, np.float64), np.asarray(z, np.float64)
        se = np.sqrt(c.var(0, ddof=1) / n + z.var(0, ddof=1) / n)
        stats.assert_close_clt(c.mean(0), z.mean(0), se + 1e-7, what="conditional-mean vs sample mean")
        assert np.all(c.var(0) <= z.var(0) + 1e-6)  # Rao-Blackwellisation never adds variance (per unit)


# ----------------------------------------------------------------------------- batch norm


def test_batch_stats_update_in_training_and_not_in_eval(small_init, x):
    params, state = small_init
    out = _loss(SMALL, params, state, x, jax.random.key(0))
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), out.model_state, state))
    assert changed and all(changed), "every BatchNorm layer's running statistics move in training mode"
    eval_state = jax.jit(
        lambda v: rh.RectifiedHVAE(SMALL).apply(v, x, jax.random.key(0), train=False, mutable=["batch_stats"])[1]
    )({"params": params, **out.model_state})
    chex.assert_trees_all_equal(dict(eval_state), dict(out.model_state))


def test_eval_mode_is_per_example_and_training_mode_is_not(trained_init, x):
    params, state = trained_init
    full = _messages(SMALL, params, state, x)
    half = _messages(SMALL, params, state, x[:4])
    np.testing.assert_allclose(full[0][0][:4], half[0][0], rtol=1e-5, atol=1e-6)
    tr_full = _messages(SMALL, params, state, x, True)
    tr_half = _messages(SMALL, params, state, x[:4], True)
    assert not np.allclose(tr_full[0][0][:4], tr_half[0][0])


# ----------------------------------------------------------------------------- with the engine


@pytest.mark.slow
def test_engine_train_step_runs_without_skips(small_init, x):
    from jaxvae.train.steps import create_train_state, make_train_step

    params, state = small_init
    opt = optax.adamax(2e-3)
    ts = create_train_state(jax.random.key(1), params, state, opt)
    step = make_train_step(rh.make_loss_fn(SMALL), opt)
    first = None
    for _ in range(30):
        ts, metrics = step(ts, {"x": x})
        first = float(metrics["loss"]) if first is None else first
    assert int(ts.skipped) == 0
    assert float(metrics["loss"]) < first


def test_objective_terms_sum_the_layer_kls_and_update_batch_stats_only_in_training(small_init, x):
    params, state = small_init
    t, new_state = rh.objective_terms(SMALL, params, state, {"x": x}, jax.random.key(2), train=True)
    assert t.kl_layers.shape == (B, SMALL.num_layers) and t.elbo.shape == (B,)
    np.testing.assert_allclose(t.kl, t.kl_layers.sum(-1), rtol=1e-5)
    np.testing.assert_allclose(t.elbo, t.log_px_z - t.kl, rtol=1e-5)
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, new_state, state)))
    _, same = rh.objective_terms(SMALL, params, state, {"x": x}, jax.random.key(2), train=False)
    assert same is state
    ev = rh.make_eval_fn(SMALL)(params, state, {"x": x}, jax.random.key(2))
    np.testing.assert_allclose(ev["kl_4"], rh.objective_terms(SMALL, params, state, {"x": x}, jax.random.key(2),
                                                              train=False)[0].kl_layers[:, 3], rtol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="entry 'x'"):
        rh.objective_terms(SMALL, params, state, {"y": x}, jax.random.key(2))

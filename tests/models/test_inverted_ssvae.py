"""Tests of Gemp et al.'s inverted SSVAE / Kingma et al.'s M2 (jaxvae.models.inverted_ssvae)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.distributions.bernoulli import bernoulli_log_prob
from jaxvae.distributions.normal import normal_log_prob_logvar
from jaxvae.models import inverted_ssvae as m
from jaxvae.objectives import semi_supervised as ss
from tests.stats import Z

# Small nets keep the suite fast; the maths does not depend on the sizes.
D = 16
SMALL = m.Config(hidden_y=(16,), hidden_z=(8,), hidden_x=(32,), x_shape=(D,))


def _batch(seed=0, b=6, reverse=True, z_u=False):
    rng = np.random.default_rng(seed)
    out = {
        "x_l": (rng.random((b, D)) < 0.3).astype(np.float32),
        "y_l": rng.integers(0, 10, b).astype(np.int32),
        "x_u": (rng.random((b, D)) < 0.3).astype(np.float32),
    }
    if reverse:
        out["y_u"] = m.corner_labels()[rng.integers(0, 10, b)]
        if z_u:
            out["z_u"] = rng.uniform(-1.4, 1.4, (b, 2)).astype(np.float32)
    return out


def _params(cfg, seed=0):
    return m.init(cfg, jax.random.key(seed))[0]


def test_init_builds_the_paper_architecture():
    params = _params(m.Config())
    shapes = {"/".join(k.key for k in path[:-1]): v.shape for path, v in jax.tree_util.tree_flatten_with_path(params)[0]
              if path[-1].key == "kernel"}  # fmt: skip
    assert shapes["y_net/dense_0"] == (784, 50) and shapes["y_net/dense_1"] == (50, 50)
    assert shapes["y_net/dense_2"] == (50, 10)
    assert shapes["z_in_x"] == (784, 10) and shapes["z_in_y"] == (10, 10) and shapes["z_net/dense_0"] == (10, 10)
    assert shapes["z_head/loc"] == (10, 2) and shapes["z_head/scale"] == (10, 2)
    assert shapes["x_in_y"] == (10, 250) and shapes["x_in_z"] == (2, 250)
    assert shapes["x_net/dense_0"] == (250, 500) and shapes["x_net/dense_1"] == (500, 784)


def test_enumerated_bound_equals_explicit_python_loop_over_classes():
    cfg = dataclasses.replace(SMALL, unlabeled="enumerate", reverse="none")
    params = _params(cfg)
    batch = {"x_u": _batch()["x_u"]}
    key = jax.random.key(3)
    got = m.objective_terms(cfg, params, {}, batch, key)[0].j_fu
    # The documented key use: split(key, 3) = (labeled, unlabeled, reverse); one [B, C, D] normal draw.
    k_u = jax.random.split(key, 3)[1]
    x = batch["x_u"]
    b = x.shape[0]
    eps = jax.random.normal(k_u, (b, 10, cfg.latent_dim))
    ap = lambda meth, *a: m.InvertedSSVAE(cfg).apply({"params": params}, *a, method=getattr(m.InvertedSSVAE, meth))
    log_q = np.asarray(jax.nn.log_softmax(ap("classify", x)), np.float64)
    want = np.zeros(b)
    for c in range(10):
        y = np.zeros((b, 10), np.float32)
        y[:, c] = 1
        loc, log_var = ap("encode_z", x, y)
        u = loc + jnp.exp(0.5 * log_var) * eps[:, c]
        z = cfg.z_low + (cfg.z_high - cfg.z_low) * jax.nn.sigmoid(u)
        log_det = jnp.sum(math.log(cfg.z_high - cfg.z_low) + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u), -1)
        log_qz = jnp.sum(normal_log_prob_logvar(u, loc, log_var), -1) - log_det
        log_px = jnp.sum(bernoulli_log_prob(x, ap("decode", y, z)), -1)
        j_c = np.asarray(log_px - math.log(10) - (log_qz + 2 * math.log(3.0)), np.float64)
        want += np.exp(log_q[:, c]) * (j_c - log_q[:, c])
    np.testing.assert_allclose(got, want, rtol=2e-5)


@pytest.mark.statistical
def test_relaxed_objective_approaches_enumerated_as_temperature_goes_to_zero():
    # E_{y ~ Concrete(tau)}[J_fl(x, y)] -> sum_c q(c|x) J_fl(x, c) as tau -> 0, i.e. (j_fu - entropy_y)
    # of the relaxed mode matches that of the enumerated mode in expectation (over y and z noise).
    # (The Concrete *density* term does not converge to the categorical entropy: KL between two
    # Concretes of one temperature does not depend on the temperature.)
    base = dataclasses.replace(SMALL, reverse="none", temperature=0.01)
    params = _params(base, seed=1)
    # Make the decoder depend strongly on y, so that a relaxed (non-one-hot) y visibly changes J_fl.
    params = {**params, "x_in_y": {**params["x_in_y"], "kernel": params["x_in_y"]["kernel"] * 20}}
    x = _batch(seed=2, b=3)["x_u"]
    n = 400
    keys = jax.random.split(jax.random.key(5), n)

    def expected_labeled(cfg):
        f = jax.jit(
            jax.vmap(lambda k: (lambda t: t.j_fu - t.entropy_y)(m.objective_terms(cfg, params, {}, {"x_u": x}, k)[0]))
        )
        return np.asarray(f(keys), np.float64)  # [n, B]

    rel = expected_labeled(base)
    enu = expected_labeled(dataclasses.replace(base, unlabeled="enumerate"))
    se = np.sqrt(rel.var(0, ddof=1) / n + enu.var(0, ddof=1) / n)
    assert np.all(np.abs(rel.mean(0) - enu.mean(0)) <= Z * se), (rel.mean(0), enu.mean(0), se)
    # ... and at tau = 1 the relaxed decoder input is far from one-hot: the test can tell the difference.
    warm = expected_labeled(dataclasses.replace(base, temperature=1.0))
    se1 = np.sqrt(warm.var(0, ddof=1) / n + enu.var(0, ddof=1) / n)
    assert np.any(np.abs(warm.mean(0) - enu.mean(0)) > Z * se1)


def test_box_log_det_used_in_q_z_matches_jacfwd():
    cfg = SMALL
    with jax.enable_x64():
        u = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)) * 3, jnp.float64)
        for row in u:
            fwd = m.box(cfg).forward
            _, want = jnp.linalg.slogdet(jax.jacfwd(fwd)(row))
            np.testing.assert_allclose(m.box(cfg).forward_log_det_jacobian(row), want, rtol=1e-10)
            np.testing.assert_allclose(m.box(cfg).inverse(fwd(row)), row, rtol=1e-8)


def test_sampled_z_and_its_density_agree():
    # kl_z from the sampler (= log q(z) - log p(z)) equals the density evaluated at the sampled z.
    cfg = SMALL
    loc, log_var = jnp.array([[0.3, -1.0], [2.0, 0.5]]), jnp.array([[-0.5, 0.2], [0.0, -2.0]])
    z, kl = m.z_posterior_sample(cfg, jax.random.key(0), loc, log_var)
    assert np.all((np.asarray(z) > -1.5) & (np.asarray(z) < 1.5))
    want = m.z_posterior_log_prob(cfg, z, loc, log_var) - ss.log_uniform_box(2, -1.5, 1.5)
    np.testing.assert_allclose(kl, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(reverse="z_sampled"),
        dict(reverse_sample="relaxed"),
        dict(relaxed_y_prior="concrete", temperature=0.3),
        dict(unlabeled="enumerate", z_space="real", latent_dim=5),
        dict(unlabeled="enumerate", reverse="none"),
        dict(
            alpha_fd=1.0,
            alpha_rd=0.01,
            code=m.AuthorsCode(
                weight_fl=0.1,
                weight_fu=0.1,
                weight_ru=0.1,
                fd_loss="concrete_sample",
                rd_input="hard_sample",
                init_std=0.001,
            ),
        ),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default",
)
def test_loss_and_gradients_are_finite(overrides):
    cfg = dataclasses.replace(SMALL, **overrides)
    params = _params(cfg)
    loss_fn = m.make_loss_fn(cfg)
    (loss, out), grads = jax.value_and_grad(
        lambda p: (lambda o: (o.loss, o))(loss_fn(p, {}, _batch(), jax.random.key(1))), has_aux=True
    )(params)
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert all(np.isfinite(v) for v in out.metrics.values())
    if cfg.reverse != "none":
        assert "j_ru" in out.metrics


@pytest.mark.parametrize("z_u", [False, True])
def test_m2_objective_is_untapped_objective_minus_reverse_term_for_the_same_key(z_u):
    batch = _batch(z_u=z_u)
    key = jax.random.key(7)
    unt = m.make_loss_fn(SMALL)
    m2 = m.make_loss_fn(dataclasses.replace(SMALL, reverse="none"))
    params = _params(SMALL)
    a, b = unt(params, {}, batch, key), m2(params, {}, {k: v for k, v in batch.items() if k not in ("y_u", "z_u")}, key)
    for k in ("j_fl", "j_fu", "j_fd", "j_rd"):
        assert float(a.metrics[k]) == float(b.metrics[k])  # bitwise: same noise for the shared streams
    np.testing.assert_allclose(float(a.loss), float(b.loss) - float(a.metrics["j_ru"]), rtol=1e-6)


def test_hard_reverse_sample_passes_no_pathwise_gradient_to_the_decoder():
    # With the stop-gradient sample, the decoder gradient of J_ru comes only from -log p(x~|y,z);
    # the classifier terms log q(y|x~), log q(z|x~,y) give the decoder no gradient.
    cfg = SMALL
    params = _params(cfg)
    batch = {"y_u": m.corner_labels(), "z_u": np.zeros((10, 2), np.float32), "x_u": _batch()["x_u"]}

    def j_ru_without_likelihood(p):
        t = m.objective_terms(cfg, p, {}, batch, jax.random.key(0))[0]
        # recompute -log p(x~) with the same sample and add it back: what is left is q-terms + const
        return jnp.sum(t.j_ru)

    g = jax.grad(j_ru_without_likelihood)(params)
    g_relaxed = jax.grad(
        lambda p: jnp.sum(
            m.objective_terms(dataclasses.replace(cfg, reverse_sample="relaxed"), p, {}, batch, jax.random.key(0))[
                0
            ].j_ru
        )
    )(params)
    # The y/z encoders get gradients in both modes; the pathwise decoder gradient differs between modes.
    assert np.any(np.asarray(g["y_net"]["dense_0"]["kernel"]) != 0)
    assert not np.allclose(g["x_net"]["dense_0"]["kernel"], g_relaxed["x_net"]["dense_0"]["kernel"])


def test_eval_fn_and_helpers():
    params = _params(SMALL)
    b = _batch()
    ev = m.make_eval_fn(SMALL)(params, {}, {"x": b["x_l"], "y": b["y_l"]}, jax.random.key(0))
    assert set(ev) == {"cross_entropy", "correct", "labeled_bound", "unlabeled_bound"}
    assert all(v.shape == (6,) and np.all(np.isfinite(v)) for v in ev.values())
    z = m.z_posterior_mean(SMALL, params, b["x_l"], np.eye(10, dtype=np.float32)[b["y_l"]])
    assert z.shape == (6, 2) and np.all(np.abs(np.asarray(z)) < 1.5)
    img = m.decode_mean(SMALL, params, np.eye(10, dtype=np.float32), np.zeros((10, 2), np.float32))
    assert img.shape == (10, D) and np.all((np.asarray(img) >= 0) & (np.asarray(img) <= 1))
    c = m.corner_labels()
    np.testing.assert_allclose(c.sum(-1), 1, rtol=1e-6)
    assert np.allclose(np.diag(c), 0.95)


def _without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


@pytest.mark.parametrize(
    "batch, match",
    [
        (_without(_batch(), "y_u"), "y_u"),
        ({**_batch(), "x_l": np.zeros((6, D + 1), np.float32)}, "x_l"),
        ({**_batch(), "y_l": np.array([0, 1, 2, 3, 4, 10], np.int32)}, r"y_l.*\[0, 10\)"),
        ({**_batch(), "y_l": np.zeros(6, np.float32)}, "int labels"),
        ({**_batch(), "x_u": np.full((6, D), 2.0, np.float32)}, "x_u"),
        ({**_batch(), "y_u": np.ones((6, 10), np.float32)}, "simplex"),
        ({**_batch(), "z_u": np.full((6, 2), 1.5, np.float32)}, "open box"),
        ({**_batch(), "z_u": np.zeros((6, 3), np.float32)}, "z_u"),
        ({**_batch(), "extra": np.zeros(6)}, "unknown key"),
        (_without(_batch(), "y_l"), "both 'x_l' and 'y_l'"),
        ({"y_u": m.corner_labels()}, "labeled pairs"),
    ],
)
def test_bad_batch_raises_value_error(batch, match):
    with pytest.raises(ValueError, match=match):
        m.make_loss_fn(SMALL)(_params(SMALL), {}, batch, jax.random.key(0))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(hidden_x=()), "hidden_x"),
        (dict(unlabeled="sum"), "unlabeled"),
        (dict(reverse="both"), "reverse"),
        (dict(z_low=1.0, z_high=-1.0), "z_low"),
        (dict(temperature=0.0), "temperature"),
        (dict(alpha_fd=-1.0), "alpha_fd"),
        (dict(num_classes=1), "num_classes"),
    ],
)
def test_bad_config_raises_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        m.Config(**kw)


# ---------------------------------------------------------------- the authors' code's objective options

CODE = dict(weight_fl=0.1, weight_fu=0.1, weight_ru=0.1, alpha_fd=1.0, alpha_rd=0.01)


def _with_weights(cfg, w):
    """``cfg`` with the weights of ``w``: ``alpha_*`` on the Config, ``weight_*`` on its AuthorsCode."""
    code = dataclasses.replace(cfg.code, **{k: v for k, v in w.items() if k.startswith("weight_")})
    return dataclasses.replace(cfg, code=code, **{k: v for k, v in w.items() if k.startswith("alpha_")})


@pytest.mark.parametrize(
    "w",
    [CODE, dict(weight_fl=2.0, weight_fu=0.5, weight_ru=3.0, alpha_fd=0.7, alpha_rd=4.0)],
    ids=["code_demo", "arbitrary"],
)
def test_weighted_loss_is_the_hand_assembled_weighted_sum_of_the_terms(w):
    cfg = _with_weights(SMALL, w)
    params, batch, key = _params(cfg), _batch(), jax.random.key(3)
    out = m.make_loss_fn(cfg)(params, {}, batch, key)
    t = m.objective_terms(cfg, params, {}, batch, key)[0]  # the same key: the same noise
    want = (
        -w["weight_fl"] * np.mean(t.j_fl)
        - w["weight_fu"] * np.mean(t.j_fu)
        - w["weight_ru"] * np.mean(t.j_ru)
        + w["alpha_fd"] * np.mean(t.j_fd)
        + w["alpha_rd"] * np.mean(t.j_rd)
    )
    np.testing.assert_allclose(float(out.loss), want, rtol=1e-5)
    # and the weights do act: the unweighted loss is a different number
    plain = m.make_loss_fn(SMALL)(params, {}, batch, key)
    assert abs(float(plain.loss) - float(out.loss)) > 1e-3 * abs(float(plain.loss))


def test_code_weights_are_the_paper_weights_times_a_tenth():
    # The demo's coefficients are the paper's eq. 8 (a_fd, a_rd) = (10, 0.1) scaled by 0.1 overall.
    params, batch, key = _params(SMALL), _batch(), jax.random.key(4)
    code = m.make_loss_fn(_with_weights(SMALL, CODE))(params, {}, batch, key)
    paper = m.make_loss_fn(SMALL)(params, {}, batch, key)
    np.testing.assert_allclose(float(code.loss), 0.1 * float(paper.loss), rtol=1e-5)


def test_concrete_sample_fd_loss_matches_its_definition_and_upper_bounds_the_cross_entropy():
    cfg = dataclasses.replace(SMALL, code=m.AuthorsCode(fd_loss="concrete_sample"))
    params, batch = _params(cfg), _batch(b=200)
    key = jax.random.key(5)
    terms = jax.jit(
        lambda c, p, b, k: m.objective_terms(c, p, {}, b, k)[0], static_argnums=0
    )  # compiled: eager dispatch made this test take ~1 min
    t = terms(cfg, params, batch, key)
    # by hand: the Concrete sample drawn from fold_in(k_l, 1), k_l the first of three subkeys
    k_l = jax.random.split(key, 3)[0]
    logits = m.classify(cfg, params, batch["x_l"])
    g = jax.random.gumbel(jax.random.fold_in(k_l, 1), logits.shape)
    log_ys = jax.nn.log_softmax(logits + g, axis=-1)  # tau = 1
    want = -np.maximum(np.asarray(log_ys)[np.arange(200), batch["y_l"]], np.log(1e-6))
    np.testing.assert_allclose(np.asarray(t.j_fd), want, rtol=1e-5, atol=1e-6)
    # E_g[-log softmax(l + g)_k] >= -log softmax(l)_k (Jensen): the mean over 200 draws must exceed the CE
    ce = terms(SMALL, params, batch, key).j_fd
    many = jax.jit(jax.vmap(lambda k: m.objective_terms(cfg, params, {}, batch, k)[0].j_fd))(jax.random.split(key, 64))
    assert float(jnp.mean(many)) > float(jnp.mean(ce))
    # the labeled bound sees the same noise as with the cross-entropy
    np.testing.assert_array_equal(np.asarray(t.j_fl), np.asarray(terms(SMALL, params, batch, key).j_fl))


def test_hard_sample_rd_term_has_no_gradient_and_mean_rd_term_has_one():
    params, batch, key = _params(SMALL), _batch(), jax.random.key(6)

    def grad_of_rd(cfg):
        return jax.grad(lambda p: jnp.mean(m.objective_terms(cfg, p, {}, batch, key)[0].j_rd))(params)

    g_hard = grad_of_rd(dataclasses.replace(SMALL, code=m.AuthorsCode(rd_input="hard_sample")))
    g_mean = grad_of_rd(SMALL)
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(g_hard))
    assert np.any(np.asarray(g_mean["x_net"]["dense_0"]["kernel"]) != 0)
    # the hard-sample term is the norm of x minus a binary image
    t = m.objective_terms(
        dataclasses.replace(SMALL, code=m.AuthorsCode(rd_input="hard_sample")), params, {}, batch, key
    )[0]
    assert np.all(np.asarray(t.j_rd) >= 0) and np.all(np.isfinite(np.asarray(t.j_rd)))


def test_init_std_gives_a_normal_init_of_that_scale():
    params = _params(m.Config(code=m.AuthorsCode(init_std=0.001)))
    k = np.asarray(params["x_net"]["dense_0"]["kernel"])  # 250 x 500 draws
    assert abs(k.std() - 0.001) < 5e-5 and abs(k.mean()) < 5e-5
    for name in ("loc", "scale"):  # the Gaussian head of q(z|x,y) too
        assert np.asarray(params["z_head"][name]["kernel"]).std() < 0.003
    glorot = np.asarray(_params(m.Config())["x_net"]["dense_0"]["kernel"])
    assert glorot.std() > 0.05


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(fd_loss="kl"), "fd_loss"),
        (dict(rd_input="sample"), "rd_input"),
        (dict(weight_fu=-0.1), "weight_fu"),
        (dict(init_std=0.0), "init_std"),
        (dict(reverse_z_high=float("nan")), "reverse_z_high"),
    ],
)
def test_bad_code_option_raises_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        m.AuthorsCode(**kw)


# ------------------------------------------- DEMO_mnist5.py-era options: softplus std, q box vs reverse box

WIDE = dataclasses.replace(SMALL, z_low=-6.0, z_high=6.0, code=m.AuthorsCode(reverse_z_low=-1.5, reverse_z_high=1.5))


def _np_log_normal_std(u, loc, std):
    return -0.5 * np.log(2 * np.pi) - np.log(std) - (u - loc) ** 2 / (2 * std**2)


def test_softplus_std_density_is_the_normal_density_of_that_std_through_the_box():
    sp = dataclasses.replace(WIDE, scale_param="softplus")
    params = _params(sp, seed=2)  # same parameter shapes in both modes
    b = _batch(seed=3)
    y1h = np.eye(10, dtype=np.float32)[b["y_l"]]
    # the raw head output a: the 'log_var' mode returns the layer output as is
    loc, a = (np.asarray(v, np.float64) for v in m.encode_z(WIDE, params, b["x_l"], y1h))
    loc_sp, log_var_sp = m.encode_z(sp, params, b["x_l"], y1h)
    np.testing.assert_array_equal(np.asarray(loc_sp), loc.astype(np.float32))
    std = np.log1p(np.exp(a)) + 1e-5  # softplus(a) + the authors' 1e-5
    np.testing.assert_allclose(np.exp(0.5 * np.asarray(log_var_sp, np.float64)), std, rtol=1e-5)
    # log q(z|x,y) at a z in the [-6, 6] box, by hand: Normal(u; loc, std) minus the scaled-sigmoid log-det
    z = np.random.default_rng(4).uniform(-5.5, 5.5, loc.shape)
    p = (z + 6.0) / 12.0
    u = np.log(p / (1 - p))
    want = np.sum(_np_log_normal_std(u, loc, std) - np.log(12.0 * p * (1 - p)), axis=-1)
    got = m.z_posterior_log_prob(sp, jnp.asarray(z, jnp.float32), loc_sp, log_var_sp)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=1e-4)
    # the same head read as a log-variance gives a different density: the option does act
    other = np.sum(_np_log_normal_std(u, loc, np.exp(0.5 * a)) - np.log(12.0 * p * (1 - p)), axis=-1)
    assert np.max(np.abs(other - want)) > 0.1
    # the sampler: z = -6 + 12 sigmoid(loc + std * eps), kl = log q(z) - log U[-6, 6]^2
    key = jax.random.key(8)
    zs, kl = m.z_posterior_sample(sp, key, loc_sp, log_var_sp)
    eps = np.asarray(jax.random.normal(key, loc.shape), np.float64)
    us = loc + std * eps
    np.testing.assert_allclose(np.asarray(zs), -6.0 + 12.0 / (1 + np.exp(-us)), rtol=1e-5, atol=1e-5)
    ps = 1 / (1 + np.exp(-us))
    want_kl = np.sum(_np_log_normal_std(us, loc, std) - np.log(12.0 * ps * (1 - ps)), -1) + 2 * np.log(12.0)
    np.testing.assert_allclose(np.asarray(kl, np.float64), want_kl, rtol=1e-4, atol=1e-4)


def test_reverse_box_draws_unfeatured_z_inside_it_and_scores_them_with_its_density():
    z, log_pz = m.reverse_z_sample(WIDE, jax.random.key(0), (4000, 2))
    z = np.asarray(z)
    assert np.all(np.abs(z) <= 1.5) and np.abs(z).max() > 1.4  # [-1.5, 1.5], not the q box [-6, 6]
    np.testing.assert_allclose(np.asarray(log_pz), -2 * math.log(3.0), rtol=1e-6)
    assert m.reverse_box(WIDE) == (-1.5, 1.5) and m.reverse_box(SMALL) == (-1.5, 1.5)
    assert m.reverse_box(dataclasses.replace(SMALL, z_low=-6.0, z_high=6.0)) == (-6.0, 6.0)
    # eq. 5 with a given z: -log p(z) uses the reverse box's density, not the q box's
    rev = dataclasses.replace(WIDE, reverse="z_sampled")
    full = dataclasses.replace(rev, code=m.AuthorsCode())
    params, batch, key = _params(rev), _batch(z_u=True), jax.random.key(2)
    d = m.objective_terms(rev, params, {}, batch, key)[0].j_ru - m.objective_terms(full, params, {}, batch, key)[0].j_ru
    np.testing.assert_allclose(np.asarray(d), -2 * math.log(4.0), rtol=1e-5)
    # the loss's own draws (no z_u) come from the reverse box too: they decode like z's inside it
    t = m.objective_terms(dataclasses.replace(WIDE, reverse="z_sampled"), params, {}, _batch(), key)[0]
    assert np.all(np.isfinite(np.asarray(t.j_ru)))


def test_posterior_mean_uses_the_q_box():
    params = _params(WIDE)
    head = params["z_head"]
    params = {**params, "z_head": {**head, "loc": {**head["loc"], "bias": head["loc"]["bias"].at[:2].set(3.0)}}}
    b = _batch()
    z = np.asarray(m.z_posterior_mean(WIDE, params, b["x_l"], np.eye(10, dtype=np.float32)[b["y_l"]]))
    loc = np.asarray(m.encode_z(WIDE, params, b["x_l"], np.eye(10, dtype=np.float32)[b["y_l"]])[0])
    np.testing.assert_allclose(z, -6.0 + 12.0 / (1 + np.exp(-loc)), rtol=1e-5)
    assert np.all(z > 1.5)  # outside the reverse box: the evaluation's z_bar is in q's [-6, 6]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(scale_param="softplus"),
        dict(scale_param="softplus", reverse="z_sampled"),
        dict(scale_param="softplus", unlabeled="enumerate"),
        dict(scale_param="softplus", z_space="real", code=m.AuthorsCode(), z_low=-1.5, z_high=1.5),
    ],
    ids=["softplus", "softplus_z_sampled", "softplus_enumerate", "softplus_real"],
)
def test_demo_mnist5_options_give_finite_loss_and_gradients(overrides):
    cfg = dataclasses.replace(WIDE, **overrides)
    params = _params(cfg)
    for batch in (_batch(), _batch(z_u=True)):
        loss, grads = jax.jit(jax.value_and_grad(lambda p: m.make_loss_fn(cfg)(p, {}, batch, jax.random.key(1)).loss))(
            params
        )
        assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(scale_param="std"), r"scale_param.*softplus.*log_var"),
        (dict(code=m.AuthorsCode(reverse_z_low=-2.0)), "reverse_z_low"),
        (dict(z_low=-6.0, z_high=6.0, code=m.AuthorsCode(reverse_z_low=1.0, reverse_z_high=0.5)), "reverse_z_low"),
        (dict(z_space="real", code=m.AuthorsCode(reverse_z_low=-1.0)), "z_space='box' only"),
        (dict(code={"fd_loss": "cross_entropy"}), "`code` must be an AuthorsCode"),
    ],
)
def test_bad_demo_mnist5_option_raises_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        m.Config(**kw)


def test_temperature_schedule_follows_the_step_and_a_batch_entry_overrides_it():
    cfg = dataclasses.replace(SMALL, temperature=1.0, temperature_decay_rate=0.5, temperature_floor=0.2)
    np.testing.assert_allclose(
        [float(m.temperature_at(cfg, t)) for t in (0, 1, 2, 10)], [1.0, 0.5, 0.25, 0.2], rtol=1e-6
    )
    assert float(m.temperature_at(SMALL, 7)) == SMALL.temperature  # no decay: fixed (the paper)
    params, batch, key = _params(cfg), _batch(), jax.random.key(3)
    at_step_2 = m.make_loss_fn(cfg)(params, {}, batch, key, step=2)
    terms, _ = m.objective_terms(cfg, params, {}, batch, key, temperature=0.25)
    np.testing.assert_allclose(at_step_2.loss, m.total_loss(cfg, terms)[0], rtol=1e-6)
    forced = m.make_loss_fn(cfg)(params, {}, {**batch, "temperature": np.float32(0.25)}, key, step=9)
    np.testing.assert_allclose(forced.loss, at_step_2.loss, rtol=1e-6)
    with pytest.raises(ValueError, match="temperature_decay_rate"):
        m.Config(temperature_decay_rate=0.0)

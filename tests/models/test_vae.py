import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae.distributions.normal import Normal, kl_normal_normal
from jaxvae.models import vae
from tests import stats

# Small widths keep compile times low; the default (784-500-500-50 tanh) is checked once below.
MLP_CFG = vae.Config(latent_dim=4, hidden=(32,), x_shape=(784,))
CONV_CFG = vae.Config(
    arch="conv", latent_dim=4, hidden=(16,), conv_channels=(4, 8), x_shape=(28, 28, 1), activation="relu"
)


def _data(cfg, n, seed=0):
    """Binary 'images': a few fixed prototypes with 5% pixel flips (learnable structure)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((4,) + cfg.x_shape) < 0.3
    x = protos[rng.integers(0, 4, n)] ^ (rng.random((n,) + cfg.x_shape) < 0.05)
    return jnp.asarray(x, jnp.float32)


@pytest.fixture(scope="module", params=["mlp", "conv"])
def model(request):
    cfg = MLP_CFG if request.param == "mlp" else CONV_CFG
    params, model_state = vae.init(cfg, jax.random.key(0))
    return cfg, params, model_state


def test_default_config_is_burda_architecture():
    cfg = vae.Config()
    params, model_state = vae.init(cfg, jax.random.key(0))
    assert model_state == {}
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes["encoder"]["dense_0"]["kernel"] == (784, 500)
    assert shapes["encoder"]["dense_1"]["kernel"] == (500, 500)
    assert shapes["head"]["loc"]["kernel"] == (500, 50)
    assert shapes["decoder"]["dense_0"]["kernel"] == (50, 500)
    assert shapes["decoder"]["dense_2"]["kernel"] == (500, 784)
    assert cfg.activation == "tanh"


def test_shapes(model):
    cfg, params, ms = model
    x = _data(cfg, 3)
    m = vae.VAE(cfg)
    q = m.apply({"params": params}, x, method=vae.VAE.encode)
    assert isinstance(q, Normal)
    assert q.loc.shape == (3, cfg.latent_dim) and q.scale.shape == (3, cfg.latent_dim)
    z = jnp.zeros((5, 3, cfg.latent_dim))
    assert m.apply({"params": params}, z, method=vae.VAE.decode).shape == (5, 3) + cfg.x_shape
    out = vae.make_eval_fn(cfg)(params, ms, {"x": x}, jax.random.key(1))
    assert set(out) == {"elbo", "log_px_z", "kl"}
    assert all(v.shape == (3,) for v in out.values())
    lw = vae.make_log_weight_fn(cfg, params, ms)(jax.random.key(2), x, 7)
    assert lw.shape == (7, 3)
    assert vae.sample_images(cfg, params, jax.random.key(3), 2).shape == (2,) + cfg.image_shape
    rec = vae.reconstruct(cfg, params, x)
    assert rec.shape == (3,) + cfg.image_shape and jnp.all((rec >= 0) & (rec <= 1))


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_finite_loss_and_grads(model, kl):
    cfg, params, ms = model
    if cfg.arch == "conv" and kl == "mc":
        pytest.skip("the KL path does not depend on the architecture; covered by mlp")
    cfg = dataclasses.replace(cfg, kl=kl)
    x = _data(cfg, 8)
    loss_fn = jax.jit(vae.make_loss_fn(cfg))
    (loss, out), grads = jax.value_and_grad(
        lambda p: (lambda o: (o.loss, o))(loss_fn(p, ms, {"x": x}, jax.random.key(1))), has_aux=True
    )(params)
    assert jnp.isfinite(loss) and loss.shape == ()
    assert set(out.metrics) == {"elbo", "log_px_z", "kl"}
    np.testing.assert_allclose(loss, -out.metrics["elbo"], rtol=1e-6)  # beta = 1
    assert out.model_state == ms
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))


def test_jit_matches_nojit():
    cfg, (params, ms) = MLP_CFG, vae.init(MLP_CFG, jax.random.key(0))
    x = _data(cfg, 4)
    loss_fn = vae.make_loss_fn(cfg)
    a = loss_fn(params, ms, {"x": x}, jax.random.key(5))
    b = jax.jit(loss_fn)(params, ms, {"x": x}, jax.random.key(5))
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
    for k in a.metrics:
        np.testing.assert_allclose(a.metrics[k], b.metrics[k], rtol=1e-5, atol=1e-4)


def test_analytic_kl_matches_normal_record():
    """The loss's KL equals sum_d KL(q || N(0, 1)) computed from the `encode` record."""
    cfg, (params, ms) = MLP_CFG, vae.init(MLP_CFG, jax.random.key(0))
    x = _data(cfg, 4)
    q = vae.VAE(cfg).apply({"params": params}, x, method=vae.VAE.encode)
    want = jnp.sum(kl_normal_normal(q, Normal(jnp.zeros_like(q.loc), jnp.ones_like(q.scale))), axis=-1)
    got = vae.make_eval_fn(cfg)(params, ms, {"x": x}, jax.random.key(0))["kl"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_beta_weights_only_the_kl():
    cfg, (params, ms) = MLP_CFG, vae.init(MLP_CFG, jax.random.key(0))
    x = _data(cfg, 4)
    out1 = vae.make_loss_fn(cfg)(params, ms, {"x": x}, jax.random.key(3))
    out3 = vae.make_loss_fn(dataclasses.replace(cfg, beta=3.0))(params, ms, {"x": x}, jax.random.key(3))
    m = out1.metrics
    np.testing.assert_allclose(out3.loss, -(m["log_px_z"] - 3.0 * m["kl"]), rtol=1e-5)
    np.testing.assert_allclose(out3.metrics["elbo"], m["elbo"], rtol=1e-6)


def test_log_weight_at_k1_equals_mc_elbo(model):
    """log w at K = 1 with the same key is the single-sample ELBO with the MC KL (same draw)."""
    cfg, params, ms = model
    x = _data(cfg, 5)
    key = jax.random.key(11)
    lw = vae.make_log_weight_fn(cfg, params, ms)(key, x, 1)
    elbo = vae.make_eval_fn(dataclasses.replace(cfg, kl="mc"))(params, ms, {"x": x}, key)["elbo"]
    np.testing.assert_allclose(lw[0], elbo, rtol=1e-5, atol=1e-3)


@pytest.mark.statistical
def test_log_weight_mean_equals_analytic_elbo():
    """E_q[log w] = ELBO (analytic KL): the mean of 4000 K=1 draws lies within 5 se of it."""
    cfg, (params, ms) = MLP_CFG, vae.init(MLP_CFG, jax.random.key(0))
    x = _data(cfg, 3)
    lw = jax.jit(vae.make_log_weight_fn(cfg, params, ms), static_argnums=2)(jax.random.key(1), x, 4000)
    # Analytic-KL ELBO averaged over the same number of draws of its reconstruction term.
    ev = vae.make_eval_fn(cfg)
    keys = jax.random.split(jax.random.key(2), 1000)
    elbos = jax.jit(jax.vmap(lambda k: ev(params, ms, {"x": x}, k)["elbo"]))(keys)  # independent draws
    lw_np = np.asarray(lw, np.float64)
    el_np = np.asarray(elbos, np.float64)
    diff_mean = lw_np.mean(0) - el_np.mean(0)
    se = np.sqrt(lw_np.var(0, ddof=1) / lw_np.shape[0] + el_np.var(0, ddof=1) / el_np.shape[0])
    stats.assert_close_clt(diff_mean, 0.0, se, what="E[log w] - ELBO")


def test_overfit_small_batch():
    """A few dozen Adam steps on one fixed batch clearly lower the loss (overfit smoke test)."""
    cfg = MLP_CFG
    params, ms = vae.init(cfg, jax.random.key(0))
    x = _data(cfg, 32)
    loss_fn = vae.make_loss_fn(cfg)
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        (loss, _), g = jax.value_and_grad(
            lambda p: (lambda o: (o.loss, o))(loss_fn(p, ms, {"x": x}, key)), has_aux=True
        )(params)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for t in range(40):
        params, opt_state, loss = step(params, opt_state, jax.random.key(t))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    initial, final = losses[0], float(np.mean(losses[-5:]))
    # Random init sits near 784 log 2 = 543 nats; a working gradient path removes >= 25% of that in
    # 40 steps (the pixel marginals alone are learnable); a broken one leaves the loss flat.
    assert final < 0.75 * initial, (initial, final)


def test_bad_inputs_raise(model):
    cfg, params, ms = model
    loss_fn = vae.make_loss_fn(cfg)
    lw_fn = vae.make_log_weight_fn(cfg, params, ms)
    x = _data(cfg, 2)
    wrong = jnp.zeros((2, 10))
    with pytest.raises(ValueError, match=r"`x`.*shape.*" + str(cfg.x_shape[0])):
        loss_fn(params, ms, {"x": wrong}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"`x`.*shape"):
        jax.jit(lw_fn, static_argnums=2)(jax.random.key(0), wrong, 3)
    with pytest.raises(ValueError, match=r"`x`.*shape"):
        lw_fn(jax.random.key(0), x[0], 3)  # missing batch axis
    with pytest.raises(ValueError, match=r"`x`.*dtype"):
        loss_fn(params, ms, {"x": x.astype(jnp.uint8)}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"`x`.*dtype"):
        jax.jit(vae.make_eval_fn(cfg))(params, ms, {"x": x.astype(jnp.int32)}, jax.random.key(0))
    with pytest.raises(ValueError, match="`x`"):
        loss_fn(params, ms, {"x": x.at[0].set(jnp.nan)}, jax.random.key(0))
    with pytest.raises(ValueError, match="`x`"):
        loss_fn(params, ms, {"x": 255.0 * x}, jax.random.key(0))
    with pytest.raises(ValueError, match="batch"):
        loss_fn(params, ms, {"image": x}, jax.random.key(0))
    with pytest.raises(ValueError, match="num_samples"):
        lw_fn(jax.random.key(0), x, 0)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="x_shape"):
        vae.Config(arch="conv")  # the flat (784,) default is not an image
    with pytest.raises(ValueError, match="kl"):
        vae.Config(kl="exact")
    with pytest.raises(ValueError, match="arch"):
        vae.Config(arch="resnet")
    with pytest.raises(ValueError, match="activation"):
        vae.Config(activation="tahn")
    with pytest.raises(ValueError, match="beta"):
        vae.Config(beta=-1.0)
    assert hash(vae.Config(hidden=[10, 10])) == hash(vae.Config(hidden=(10, 10)))


def test_objective_terms_are_per_example_and_the_loss_reduces_them():
    params, ms = vae.init(MLP_CFG, 0)  # an int seed is a key
    x = _data(MLP_CFG, 6)
    terms, ms_out = vae.objective_terms(MLP_CFG, params, ms, {"x": x}, jax.random.key(1))
    assert isinstance(terms, vae.Terms) and ms_out == ms
    for v in terms:
        assert v.shape == (6,)
    np.testing.assert_allclose(terms.elbo, terms.log_px_z - terms.kl, rtol=1e-6)
    out = vae.make_loss_fn(dataclasses.replace(MLP_CFG, beta=0.5))(params, ms, {"x": x}, jax.random.key(1))
    np.testing.assert_allclose(out.loss, -jnp.mean(terms.log_px_z - 0.5 * terms.kl), rtol=1e-6)
    np.testing.assert_allclose(out.metrics["elbo"], jnp.mean(terms.elbo), rtol=1e-6)


def test_init_takes_an_int_seed_and_refuses_other_keys():
    a, _ = vae.init(MLP_CFG, 3)
    b, _ = vae.init(MLP_CFG, jax.random.key(3))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    with pytest.raises(ValueError, match="`key` must be a PRNG key"):
        vae.init(MLP_CFG, 3.0)


def test_kl_warmup_follows_the_step_the_engine_passes():
    from jaxvae.train.steps import create_train_state, make_train_step

    cfg = dataclasses.replace(MLP_CFG, beta=2.0, kl_warmup_steps=4)
    assert [float(vae.kl_weight(cfg, t)) for t in (0, 1, 4, 10)] == [0.0, 0.5, 2.0, 2.0]
    params, ms = vae.init(cfg, 0)
    x, key = _data(cfg, 8), jax.random.key(1)
    terms, _ = vae.objective_terms(cfg, params, ms, {"x": x}, key)
    for t, w in ((0, 0.0), (2, 1.0)):
        out = vae.make_loss_fn(cfg)(params, ms, {"x": x}, key, step=t)
        np.testing.assert_allclose(out.loss, -jnp.mean(terms.log_px_z - w * terms.kl), rtol=1e-6)
    # in the engine (learning rate 0: the parameters stay): the loss of step t weighs the KL by 2 t / 4
    tx = optax.sgd(0.0)
    step, state = make_train_step(vae.make_loss_fn(cfg), tx), create_train_state(key, params, ms, tx)
    for t in range(3):
        state, m = step(state, {"x": x})
        np.testing.assert_allclose(m["loss"], -(m["log_px_z"] - 2.0 * min(1.0, t / 4) * m["kl"]), rtol=1e-5)
    with pytest.raises(ValueError, match="`kl_warmup_steps`"):
        vae.Config(kl_warmup_steps=-1)

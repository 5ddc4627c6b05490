"""The Xiao et al. experiment's own pieces: augmented losses, the per-member curve evaluation, the claim test,
the width sweep's job and summary."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.synthetic_generalization import evaluate as xevaluate
from experiments.synthetic_generalization import main as xmain
from experiments.synthetic_generalization import summarize, summarize_width, width_main
from experiments.synthetic_generalization.configs import GapEval, GapsExperimentConfig, Subset, WidthSweepConfig
from experiments.synthetic_generalization.data import AddChannel
from jaxvae.models import vae, xiao

MODEL = vae.Config(latent_dim=2, hidden=(8,), activation="relu", x_shape=(8, 8, 1))
CFG = GapsExperimentConfig(model=MODEL, seeds=(0, 1))


def _x(n=6, seed=0):
    return (np.random.default_rng(seed).random((n, 8, 8, 1)) < 0.3).astype(np.float32)


def test_config_needs_pool_for_dmaapx():
    with pytest.raises(ValueError, match="pool_dir"):
        dataclasses.replace(CFG, method="dmaapx")
    with pytest.raises(ValueError, match="method"):
        dataclasses.replace(CFG, method="mixup")


def test_augmented_loss_sees_augmented_images():
    params, ms = vae.init(MODEL, 0)
    x, key = _x(), jax.random.key(3)
    plain = xmain.make_loss_fn(CFG)(params, ms, {"x": x}, key)
    naive = xmain.make_loss_fn(dataclasses.replace(CFG, method="aug_naive", aug_probability=1.0))
    out = naive(params, ms, {"x": x}, key)
    # the augmented loss equals the plain loss on the augmented batch with the second half of the key
    from jaxvae.data.augment import AUG_NAIVE, augment

    k_aug, k_elbo = jax.random.split(key)
    want = vae.make_loss_fn(MODEL)(params, ms, {"x": augment(k_aug, x, AUG_NAIVE.with_probability(1.0))}, k_elbo)
    np.testing.assert_allclose(out.loss, want.loss, rtol=1e-6)
    assert not np.isclose(out.loss, plain.loss)


def test_curve_eval_fn_splits_train_and_test_per_member():
    states = [vae.init(MODEL, s) for s in (0, 1)]
    params = jax.tree.map(lambda *a: jnp.stack(a), *[p for p, _ in states])
    x = _x(6)
    t = np.array([1, 1, 1, 1, 0, 0], np.float32)
    key = jax.random.key(4)
    out = xevaluate.curve_eval_fn(CFG)(params, {}, {"x": x, "is_train": t}, key)
    keys = jax.random.split(key, 2)
    for i, (p, ms) in enumerate(states):
        elbo = vae.make_eval_fn(MODEL)(p, ms, {"x": x}, keys[i])["elbo"]
        np.testing.assert_allclose(out[f"train_elbo_{i}"], elbo * t, rtol=1e-6)
        np.testing.assert_allclose(out[f"test_elbo_{i}"], elbo * (1 - t), rtol=1e-6)


def test_claim_is_decided_by_paired_differences():
    normal = {"G_g": {0: 25.0, 1: 26.0, 2: 24.0}, "G_a": {0: 20.0, 1: 21.0, 2: 19.0}}
    good = {"G_g": {0: 1.0, 1: 0.8, 2: 1.1}, "G_a": {0: 7.0, 1: 7.5, 2: 6.8}}
    c = summarize.claim(normal, good)
    assert c["G_g_holds"] and c["G_a_holds"]
    bad = {"G_g": {0: 6.0, 1: 4.0, 2: 5.5}, "G_a": {0: 21.0, 1: 19.0, 2: 20.5}}
    c = summarize.claim(normal, bad)
    assert not c["G_g_holds"] and not c["G_a_holds"]


@pytest.mark.slow
def test_dmaapx_run_end_to_end(tmp_path):
    """A tiny DMaaPx run on a fake pool: trains, writes the curve and every gap per seed, resumes as done."""
    from jaxvae.data.synthetic import write_pool

    write_pool(
        tmp_path / "pool",
        lambda idx: np.random.default_rng(int(idx[0])).random((len(idx), 32, 32)),
        num_samples=40,
        chunk_size=20,
        image_shape=(32, 32),
    )
    cfg = GapsExperimentConfig(
        model=vae.Config(latent_dim=2, hidden=(16,), activation="relu", x_shape=(32, 32, 1)),
        train=dataclasses.replace(CFG.train, batch_size=10, progress=False, checkpoint_every=4),
        data=Subset(train_examples=20, test_examples=20),
        eval=GapEval(
            elbo_samples=2,
            amortization_examples=4,
            amortization_steps=4,
            record_every=2,
            robust_examples=3,
            robust_seeds=2,
            attack_steps=2,
            curve_every=1,
        ),
        method="dmaapx",
        seeds=(0, 1),
        epochs=2,
        pool_dir=str(tmp_path / "pool"),
    )
    res = xmain.run(cfg, str(tmp_path / "run"))
    assert res["step"] == 4 and len(res["members"]) == 2 and len(res["curve"]) == 2
    for m in res["members"]:
        assert np.isfinite(m["generalization"]["gap"]) and m["amortization"]["gap"] > -1.0
        assert len(m["amortization"]["trajectory_mean_elbo"]) == 3
    curve = json.load(open(tmp_path / "run" / "curve.json"))
    assert [p["epoch"] for p in curve] == [1, 2]


def test_add_channel_appends_the_channel_only_when_missing():
    batches = [{"x": np.zeros((2, 4, 4))}, {"x": np.zeros((2, 4, 4, 1))}]
    assert [b["x"].shape for b in AddChannel(iter(batches), ndim=4)] == [(2, 4, 4, 1), (2, 4, 4, 1)]
    stacked = [{"x": np.zeros((3, 2, 4, 4))}]
    assert next(AddChannel(iter(stacked)))["x"].shape == (3, 2, 4, 4, 1)


def test_width_config_validation():
    with pytest.raises(ValueError, match="method"):
        WidthSweepConfig(method="aug_naive")
    with pytest.raises(ValueError, match="pool_dir"):
        WidthSweepConfig(method="dmaapx")
    with pytest.raises(ValueError, match="seeds"):
        WidthSweepConfig(seeds=())


def _width_result(method, m_z, n_c, params, gaps, test_elbos):
    members = [
        {"seed": s, "generalization": {"gap": g, "test_elbo": t, "train_elbo": t + g}}
        for s, (g, t) in enumerate(zip(gaps, test_elbos))
    ]
    return {
        "method": method,
        "m_z": m_z,
        "n_c": n_c,
        "params": params,
        "params_theta_z": 1,
        "params_theta_not_z": params - 1,
        "effective_epochs": 5,
        "members": members,
    }


def test_width_summary_series_and_trend(tmp_path):
    """Widest minus narrowest per seed: a clear ELBO gain and G_g drop are flagged; noise is not."""
    pts = {  # (m_z, n_c): (params, G_g per seed, test ELBO per seed)
        (1, 4): (100, [10.0, 11.0, 9.0], [-150.0, -151.0, -149.0]),
        (1, 8): (300, [8.0, 9.0, 7.5], [-140.0, -141.0, -139.5]),
        (1, 16): (1000, [5.0, 5.5, 4.0], [-130.0, -131.0, -129.0]),
        (2, 8): (350, [8.5, 8.0, 9.0], [-140.5, -139.0, -141.0]),
    }
    for (mz, nc), (n, g, t) in pts.items():
        json.dump(_width_result("normal", mz, nc, n, g, t), open(tmp_path / f"width_normal_mz{mz}_nc{nc}.json", "w"))
    half = _width_result("dmaapx", 1, 8, 300, [v / 2 for v in pts[(1, 8)][1]], pts[(1, 8)][2])
    json.dump(half, open(tmp_path / "width_dmaapx_mz1_nc8.json", "w"))
    out = summarize_width.main(str(tmp_path), str(tmp_path / "width.png"))
    trends = out["methods"]["normal"]["trends"]
    assert trends["n_c"]["points"] == [[1, 4], [1, 8], [1, 16]] and trends["m_z"]["points"] == [[1, 8], [2, 8]]
    assert trends["n_c"]["test_elbo_improves"] and trends["n_c"]["G_g_shrinks"]
    np.testing.assert_allclose(trends["n_c"]["test_elbo_widest_minus_narrowest"]["mean"], 20.0)
    assert not trends["m_z"]["test_elbo_improves"] and not trends["m_z"]["G_g_shrinks"]
    np.testing.assert_allclose(out["normal_minus_dmaapx"]["mz1_nc8"]["gap"]["mean"], np.mean(pts[(1, 8)][1]) / 2)
    assert list(out["normal_minus_dmaapx"]) == ["mz1_nc8"]
    assert (tmp_path / "width.png").exists()
    assert json.load(open(tmp_path / "width_summary.json"))["methods"]["normal"]["points"][0]["params"] == 100


@pytest.mark.slow  # 20-25 s each (70-90 s on the loaded machine): two seeds of a tiny conv VAE
@pytest.mark.parametrize("method", ["normal", "dmaapx"])
def test_width_run_end_to_end_and_resumes_per_seed(tmp_path, method):
    """The width job trains seeds in sequence, reports G_g and the parameter split, and reuses finished seeds."""
    from jaxvae.data.synthetic import write_pool

    pool = ""
    if method == "dmaapx":
        pool = str(tmp_path / "pool")
        write_pool(
            pool,
            lambda idx: np.random.default_rng(int(idx[0])).random((len(idx), 32, 32)),
            num_samples=20,
            chunk_size=10,
            image_shape=(32, 32),
        )
    cfg = WidthSweepConfig(
        model=xiao.Config(m_z=1, n_c=2, zero_init_posterior=True),
        train=dataclasses.replace(CFG.train, batch_size=10, progress=False, checkpoint_every=2),
        data=Subset(train_examples=20, test_examples=20),
        method=method,
        seeds=(0,),
        epochs=1,
        elbo_samples=2,
        pool_dir=pool,
    )
    work = str(tmp_path / "run")
    one = width_main.run(cfg, work)
    two = width_main.run(dataclasses.replace(cfg, seeds=(0, 1)), work)
    assert one["step"] == 2 and [m["seed"] for m in two["members"]] == [0, 1]
    assert two["members"][0] == one["members"][0]  # seed 0 not retrained nor re-evaluated
    theta_z, rest = xiao.parameter_split(xiao.init(cfg.model, 0)[0])
    assert (two["params_theta_z"], two["params_theta_not_z"], two["params"]) == (theta_z, rest, theta_z + rest)
    for m in two["members"]:
        g = m["generalization"]
        np.testing.assert_allclose(g["gap"], g["train_elbo"] - g["test_elbo"], rtol=1e-9)
        assert np.isfinite(g["gap_se"]) and g["test_elbo"] < 0

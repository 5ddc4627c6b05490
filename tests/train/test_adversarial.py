"""The two-player step: gradients equal two separate ``jax.grad`` calls, alternating equals the steps by
hand, per-player non-finite skip, several seeds in one program, 8 devices equal 1, exact resume in ``fit``.

A toy GAN-like pair: the generator maps ``x`` to ``x_hat = x W_g + 0.1 eps`` (noise from the step
key), the discriminator scores with ``tanh(x W_1) w_2``; both keep a running-mean "batch statistic"
in ``model_state[player]``. The 8-device scenario runs in a subprocess
(``python -m tests.train.test_adversarial OUT``), since the device count is fixed before jax loads;
the worker fetches the loss every step (environment.md §1.6).

Tolerances: simultaneous / alternating / multi-member against the reference run the same float32
operations in a possibly different fusion order, so we allow rtol 1e-5 (~100 eps) on parameters of
scale ~1. Sharded vs one device: 8 partial sums per mean in another order, amplified over 6 Adam
steps; as in ``test_sharding.py`` rtol 1e-4, atol 1e-6. A real bug (a player updated with the other's
loss, a missing stop, a shard dropped) changes the parameters at the 1e-2 level.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
B, D, H = 16, 4, 8
N_DEV = 8


def init_params(seed: int = 0):
    import jax

    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "vae": {"w": np.eye(D, dtype=np.float32) + 0.3 * jax.random.normal(k1, (D, D))},
        "disc": {"w1": jax.random.normal(k2, (D, H)) / 2.0, "w2": jax.random.normal(k3, (H,)) / 3.0},
    }


def init_model_state():
    import jax.numpy as jnp

    return {"vae": {"mean": jnp.zeros((D,))}, "disc": {"mean": jnp.zeros(())}}


def toy_loss(params, model_state, batch, key):
    import jax
    import jax.numpy as jnp

    from jaxvae.train.adversarial import AdversarialLossOutput

    x = batch["x"]
    x_hat = x @ params["vae"]["w"] + 0.1 * jax.random.normal(key, x.shape)

    def disc(v):
        return jnp.tanh(v @ params["disc"]["w1"]) @ params["disc"]["w2"]

    real, fake = disc(x), disc(x_hat)
    bad = batch.get("bad", 0.0)  # 1.0 makes the discriminator's loss NaN (the skip test)
    d_loss = jnp.mean(jax.nn.softplus(-real) + jax.nn.softplus(fake)) + jnp.where(bad > 0, jnp.nan, 0.0)
    g_loss = jnp.mean(jnp.sum((x - x_hat) ** 2, -1)) + jnp.mean(jax.nn.softplus(-fake))
    ms = {
        "vae": {"mean": 0.9 * model_state["vae"]["mean"] + 0.1 * jnp.mean(x_hat, 0)},
        "disc": {"mean": 0.9 * model_state["disc"]["mean"] + 0.1 * jnp.mean(fake)},
    }
    return AdversarialLossOutput(g_loss, d_loss, {"real": jnp.mean(real), "fake": jnp.mean(fake)}, ms)


def make_data(seed: int, n: int = B) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, D)).astype(np.float32)}


def optimizers():
    import optax

    return {"vae": optax.adam(0.05, b1=0.5), "disc": optax.sgd(0.1, momentum=0.9)}


def fresh_state(seed: int = 0):
    import jax

    from jaxvae.train.adversarial import create_adversarial_state

    return create_adversarial_state(jax.random.key(seed + 1), init_params(seed), init_model_state(), optimizers())


def to_host(tree):
    import jax

    return jax.tree.map(np.asarray, tree)


def close(a, b, rtol=1e-5, atol=1e-7):
    import jax

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _update(tx, params, opt_state, grads):
    import optax

    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


# ------------------------------------------------------------------------------------------------
# In-process tests (one device)


def test_simultaneous_step_equals_two_separate_grads():
    import jax

    from jaxvae.train.adversarial import make_adversarial_step

    txs = optimizers()
    state = fresh_state()
    ref_p, ref_ms = to_host(state.params), to_host(state.model_state)
    ref_opt = {p: txs[p].init(ref_p[p]) for p in ("vae", "disc")}
    step = make_adversarial_step(toy_loss, txs)
    for t in range(3):
        batch = make_data(t)
        key = jax.random.fold_in(state.key, t)
        g_vae = jax.grad(lambda p: toy_loss(p, ref_ms, batch, key).gen_loss)(ref_p)["vae"]
        g_disc = jax.grad(lambda p: toy_loss(p, ref_ms, batch, key).disc_loss)(ref_p)["disc"]
        ref_ms = toy_loss(ref_p, ref_ms, batch, key).model_state
        new_vae, ref_opt["vae"] = _update(txs["vae"], ref_p["vae"], ref_opt["vae"], g_vae)
        new_disc, ref_opt["disc"] = _update(txs["disc"], ref_p["disc"], ref_opt["disc"], g_disc)
        ref_p = {"vae": new_vae, "disc": new_disc}
        state, m = step(state, batch)
        assert float(m["grad_norm_vae"]) > 0 and float(m["grad_norm_disc"]) > 0
    close(state.params, ref_p)
    close(state.model_state, ref_ms)
    close(state.opt_state.inner, ref_opt)
    assert int(state.step) == 3 and int(state.skipped) == 0
    # the discriminator's gradient is not the generator's (a swapped or summed loss fails above)
    assert not np.allclose(np.asarray(g_disc["w2"]), 0.0)


@pytest.mark.parametrize("n_critic", [1, 2])
def test_alternating_equals_the_steps_by_hand(n_critic):
    import jax

    from jaxvae.train.adversarial import make_adversarial_step

    txs = optimizers()
    state = fresh_state()
    p, ms = to_host(state.params), to_host(state.model_state)
    opt = {q: txs[q].init(p[q]) for q in ("vae", "disc")}
    step = make_adversarial_step(toy_loss, txs, mode="alternating", n_critic=n_critic)
    for t in range(2):
        batch = make_data(t)
        key = jax.random.fold_in(state.key, t)
        for i in range(n_critic):  # discriminator first, on the current parameters
            k = jax.random.fold_in(key, i)
            g = jax.grad(lambda q: toy_loss(q, ms, batch, k).disc_loss)(p)["disc"]
            ms = {**ms, "disc": toy_loss(p, ms, batch, k).model_state["disc"]}  # only the trained player's stats
            new_disc, opt["disc"] = _update(txs["disc"], p["disc"], opt["disc"], g)
            p = {**p, "disc": new_disc}
        k = jax.random.fold_in(key, n_critic)  # then the generator, against the updated discriminator
        g = jax.grad(lambda q: toy_loss(q, ms, batch, k).gen_loss)(p)["vae"]
        ms = {**ms, "vae": toy_loss(p, ms, batch, k).model_state["vae"]}
        new_vae, opt["vae"] = _update(txs["vae"], p["vae"], opt["vae"], g)
        p = {**p, "vae": new_vae}
        state, _ = step(state, batch)
    close(state.params, p)
    close(state.model_state, ms)


@pytest.mark.slow
def test_alternating_differs_from_simultaneous():
    from jaxvae.train.adversarial import make_adversarial_step

    a, b = fresh_state(), fresh_state()
    sim, alt = (
        make_adversarial_step(toy_loss, optimizers()),
        make_adversarial_step(toy_loss, optimizers(), mode="alternating"),
    )
    for t in range(2):  # Adam's first step is ~lr * sign(g), blind to the discriminator's small change
        a, _ = sim(a, make_data(t))
        b, _ = alt(b, make_data(t))
    assert not np.allclose(np.asarray(a.params["vae"]["w"]), np.asarray(b.params["vae"]["w"]))


@pytest.mark.parametrize("mode", ["simultaneous", "alternating"])
def test_non_finite_discriminator_loss_skips_only_the_discriminator(mode):
    from jaxvae.train.adversarial import make_adversarial_step

    step = make_adversarial_step(toy_loss, optimizers(), mode=mode, donate=False)
    state = fresh_state()
    batch = {**make_data(0), "bad": np.float32(1.0)}
    new, m = step(state, batch)
    for a, b in zip(jaxleaves(new.params["disc"]), jaxleaves(state.params["disc"])):
        np.testing.assert_array_equal(a, b)  # bit for bit
    for a, b in zip(jaxleaves(new.opt_state.inner["disc"]), jaxleaves(state.opt_state.inner["disc"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(new.model_state["disc"]["mean"], state.model_state["disc"]["mean"])
    assert not np.allclose(np.asarray(new.params["vae"]["w"]), np.asarray(state.params["vae"]["w"]))
    assert int(m["skipped_disc"]) == 1 and int(m["skipped_vae"]) == 0 and int(m["skipped"]) == 1
    assert int(new.skipped) == 1 and np.isfinite(np.asarray(new.params["vae"]["w"])).all()


def jaxleaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_bad_arguments_raise_clear_errors():
    import optax

    from jaxvae.train.adversarial import create_adversarial_state, make_adversarial_step

    with pytest.raises(ValueError, match="`mode`"):
        make_adversarial_step(toy_loss, optimizers(), mode="both")
    with pytest.raises(ValueError, match="`n_critic`"):
        make_adversarial_step(toy_loss, optimizers(), mode="alternating", n_critic=0)
    with pytest.raises(ValueError, match="alternating"):
        make_adversarial_step(toy_loss, optimizers(), n_critic=2)
    with pytest.raises(ValueError, match="one optax optimizer per player"):
        make_adversarial_step(toy_loss, {"vae": optax.sgd(0.1)})
    import jax

    with pytest.raises(ValueError, match="`params`"):
        create_adversarial_state(jax.random.key(0), {"gen": {}, "disc": {}}, {}, optimizers())


def test_several_seeds_in_one_program_equal_each_seed_alone():
    import jax

    from jaxvae.train.adversarial import adversarial_step_body, make_adversarial_step
    from jaxvae.train.multi import make_multi_step, member_state, stack_states

    txs = optimizers()

    def body(s, batch):
        return adversarial_step_body(toy_loss, txs, s, batch, jax.random.fold_in(s.key, s.step))

    multi = make_multi_step(body)
    single = make_adversarial_step(toy_loss, txs)
    stacked = stack_states([fresh_state(0), fresh_state(1)])
    alone = [fresh_state(0), fresh_state(1)]
    for t in range(3):
        batch = make_data(t)
        stacked, m = multi(stacked, batch)
        alone = [single(s, batch)[0] for s in alone]
    for i in range(2):
        close(member_state(stacked, i).params, alone[i].params)
    assert multi.count_examples(make_data(0)) == 2 * B


def test_fit_resumes_exactly(tmp_path):
    from jaxvae.data.loader import BatchIterator
    from jaxvae.train.adversarial import make_adversarial_step
    from jaxvae.train.loop import TrainConfig, fit

    step = make_adversarial_step(toy_loss, optimizers())
    data = make_data(5, n=64)

    def run(workdir, num_steps, stop_at=None):
        it = BatchIterator(data, 8, seed=0)
        train = TrainConfig(num_steps=num_steps, batch_size=8, checkpoint_every=3, log_every=2, progress=False)
        return fit(fresh_state(), step, it, train, workdir=str(workdir))

    ref, _ = run(tmp_path / "ref", 8)
    run(tmp_path / "b", 5)  # stops at step 5 (a checkpoint there), as a preempted run would
    state, hist = run(tmp_path / "b", 8)
    assert hist["start_step"] == 5 and int(state.step) == 8
    keep = lambda s: (s.params, s.model_state, s.opt_state, s.skipped)  # noqa: E731
    for a, b in zip(jaxleaves(keep(state)), jaxleaves(keep(ref)), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit, optimizer states and per-player counters included
    assert "train/gen_loss" in hist["train"][-1] and "train/disc_loss" in hist["train"][-1]


@functools.cache
def _sharded_results(tmp: str) -> dict:
    import pickle

    out = Path(tmp) / "adv8.pkl"
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={N_DEV}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.train.test_adversarial", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if proc.returncode != 0:
        pytest.fail(f"worker failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    with open(out, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("mode", ["simultaneous", pytest.param("alternating", marks=pytest.mark.slow)])
def test_eight_devices_equal_one_device(tmp_path_factory, mode):
    res = _sharded_results(str(tmp_path_factory.getbasetemp()))
    assert res["n_devices"] == N_DEV
    r = res[mode]
    np.testing.assert_allclose(r["loss_8"], r["loss_1"], rtol=1e-4, atol=1e-6)
    close(r["params_8"], r["params_1"], rtol=1e-4, atol=1e-6)
    close(r["model_state_8"], r["model_state_1"], rtol=1e-4, atol=1e-6)
    assert r["replicated"]
    close(res["pmap_params"], res["pmap_ref_params"], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Worker (8 devices)


def _worker(out: str) -> None:
    import pickle

    import jax

    from jaxvae.train.adversarial import make_adversarial_step, make_pmap_adversarial_step
    from jaxvae.train.sharding import make_data_mesh, replicate, shard_batch
    from jaxvae.train.steps import replicate_for_pmap, unreplicate

    assert jax.device_count() == N_DEV, jax.devices()
    mesh = make_data_mesh()
    res: dict = {"n_devices": jax.device_count()}
    n = 6
    for mode in ("simultaneous", "alternating"):
        r: dict = {}
        for tag, st, put, kw in (
            ("1", fresh_state(), lambda b: b, {}),
            ("8", replicate(fresh_state(), mesh), lambda b: shard_batch(b, mesh), {"mesh": mesh}),
        ):
            step = make_adversarial_step(toy_loss, optimizers(), mode=mode, **kw)
            losses = []
            for t in range(n):
                st, m = step(st, put(make_data(100 + t)))
                losses.append(float(m["gen_loss"]))  # fetch every step (virtual-device pitfall)
            r[f"loss_{tag}"] = np.array(losses)
            r[f"params_{tag}"] = to_host(st.params)
            r[f"model_state_{tag}"] = to_host(st.model_state)
            if tag == "8":
                r["replicated"] = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(st.params))
        res[mode] = r

    # pmap: with a key-free loss (noise off) it equals one device on the concatenated batch.
    def keyless(params, model_state, batch, key):
        return toy_loss(params, model_state, batch, jax.random.key(0))

    pstep = make_pmap_adversarial_step(keyless, optimizers())
    sstep = make_adversarial_step(_mean_of_shards(keyless), optimizers())
    ps, ss = replicate_for_pmap(fresh_state()), fresh_state()
    for t in range(4):
        b = make_data(200 + t, n=N_DEV * 2)
        ps, m = pstep(ps, {"x": b["x"].reshape(N_DEV, 2, D)})
        float(m["gen_loss"][0])
        ss, _ = sstep(ss, b)
    res["pmap_params"] = to_host(unreplicate(ps).params)
    res["pmap_ref_params"] = to_host(ss.params)
    with open(out, "wb") as f:
        pickle.dump(res, f)


def _mean_of_shards(loss_fn):
    """Reference for the pmap step: the mean of the per-shard outputs (so gradients are averaged too)."""
    import jax

    from jaxvae.train.adversarial import AdversarialLossOutput

    def mean_loss(params, model_state, b, key):
        outs = [loss_fn(params, model_state, {"x": b["x"][2 * i : 2 * i + 2]}, key) for i in range(N_DEV)]
        avg = jax.tree.map(lambda *v: sum(v) / N_DEV, *outs)
        return AdversarialLossOutput(*avg)

    return mean_loss


if __name__ == "__main__":
    _worker(sys.argv[1])

"""Data parallelism over a Mesh of 8 virtual CPU devices: the sharded step reproduces the one-device
trajectory, outputs stay replicated, bad batches get clear errors.

The 8-device scenarios run in a subprocess (``python -m tests.train.test_sharding OUT``) because
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before jax is imported; the
pytest process keeps one device. The worker fetches the loss every step (environment.md §1.6: queued
collective steps on virtual devices abort the process).

Tolerance for sharded vs one device: the sharded program computes the same float32 maths, but the
batch means and the gradient all-reduce sum per-shard partial sums, in a different order than one
device. Each reordered reduction of n terms changes the result by at most ~n·eps relative (eps =
2^-23 = 1.2e-7, here n = 64 examples); Adam's update is smooth in the gradient away from g = 0, and
8 steps do not amplify this by more than an order of magnitude, so we allow rtol = 64·eps·10 ≈ 1e-4
and atol 1e-6 for the parameters (whose scale is ~0.1-1). A real sharding bug (a shard dropped, the
mean over one shard, the noise reused across shards) changes the loss at the 1e-2 level and fails
these bounds.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
N_DEV = 8
B, D, H, Z = 64, 8, 16, 2
N_STEPS = 8
RTOL, ATOL = 1e-4, 1e-6


def run_worker(module: str, out: Path, *, n_devices: int = N_DEV, timeout: float = 240) -> dict:
    """Run ``python -m module out`` with ``n_devices`` virtual CPU devices and load its results."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", module, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(f"{module} worker failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    with open(out, "rb") as f:
        return pickle.load(f)


# ------------------------------------------------------------------------------------------------
# Shared toy model (also used by test_pmap, test_multihost): a tiny Gaussian-latent autoencoder
# whose loss draws reparameterisation noise from the step key over the whole batch, plus a
# batch-statistics collection.


def init_params(seed: int = 0):
    import jax
    import jax.numpy as jnp

    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "enc": jax.random.normal(k1, (D, H)) / jnp.sqrt(D),
        "head": jax.random.normal(k2, (H, 2 * Z)) / jnp.sqrt(H),
        "dec": jax.random.normal(k3, (Z, D)) / jnp.sqrt(Z),
    }


def init_model_state():
    import jax.numpy as jnp

    return {"mean_x": jnp.zeros((D,))}


def make_data(seed: int, n: int = B) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, D)).astype(np.float32)}


def toy_loss(params, model_state, batch, key, *, use_key: bool = True):
    import jax
    import jax.numpy as jnp

    from jaxvae.train.state import LossOutput

    x = batch["x"]
    h = jnp.tanh(x @ params["enc"])
    stats = h @ params["head"]
    mu, log_var = stats[:, :Z], stats[:, Z:]
    eps = jax.random.normal(key, mu.shape) if use_key else jnp.zeros_like(mu)
    z = mu + jnp.exp(0.5 * log_var) * eps
    rec = jnp.sum((z @ params["dec"] - x) ** 2, axis=-1)
    kl = 0.5 * jnp.sum(jnp.exp(log_var) + mu**2 - 1.0 - log_var, axis=-1)
    loss = jnp.mean(rec + kl)
    new_ms = {"mean_x": 0.9 * model_state["mean_x"] + 0.1 * jnp.mean(x, axis=0)}
    return LossOutput(loss, {"rec": jnp.mean(rec), "kl": jnp.mean(kl)}, new_ms)


def toy_eval(params, model_state, batch, key):
    import jax
    import jax.numpy as jnp

    x = batch["x"]
    stats = jnp.tanh(x @ params["enc"]) @ params["head"]
    eps = jax.random.normal(key, (x.shape[0], Z))
    z = stats[:, :Z] + jnp.exp(0.5 * stats[:, Z:]) * eps
    return {"rec": jnp.sum((z @ params["dec"] - x) ** 2, axis=-1)}


def to_host(tree):
    import jax

    return jax.tree.map(np.asarray, tree)


# ------------------------------------------------------------------------------------------------
# Worker (8 devices)


def _worker(out: str) -> None:
    import logging
    import warnings

    import jax

    from jaxvae.train.optim import OptimizerConfig, make_optimizer
    from jaxvae.train.sharding import (
        global_batch_from_process_local,
        make_data_mesh,
        replicate,
        shard_batch,
    )
    from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.device_count() == N_DEV, jax.devices()
    res: dict = {}
    opt = make_optimizer(OptimizerConfig(learning_rate=0.01, clip_global_norm=5.0))
    mesh = make_data_mesh()
    res["axis_names"] = tuple(mesh.axis_names)
    res["axis_types"] = str(mesh.axis_types)

    def run(step, state, put):
        losses, metrics = [], []
        for t in range(N_STEPS):
            state, m = step(state, put(make_data(100 + t)))
            losses.append(float(m["loss"]))  # fetch every step (see module docstring)
            metrics.append({k: float(v) for k, v in m.items()})
        return state, np.array(losses), metrics

    def fresh():
        return create_train_state(jax.random.key(1), init_params(), init_model_state(), opt)

    single_step = make_train_step(toy_loss, opt)
    st1, res["loss_single"], res["metrics_single"] = run(single_step, fresh(), lambda b: b)
    res["params_single"] = to_host(st1.params)
    res["model_state_single"] = to_host(st1.model_state)

    records: list = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("jax").addHandler(handler)
    with warnings.catch_warnings(record=True) as caught, jax.log_compiles(True):
        warnings.simplefilter("always")
        sharded_step = make_train_step(toy_loss, opt, mesh=mesh)
        st8, res["loss_sharded"], res["metrics_sharded"] = run(
            sharded_step, replicate(fresh(), mesh), lambda b: shard_batch(b, mesh)
        )
    logging.getLogger("jax").removeHandler(handler)
    res["compile_logs"] = [
        r.getMessage()[:80] for r in records if r.getMessage().startswith("Compiling jit(train_step)")
    ]
    res["warnings"] = [str(w.message) for w in caught]
    res["params_sharded"] = to_host(st8.params)
    res["model_state_sharded"] = to_host(st8.model_state)
    leaves = jax.tree.leaves(st8.params)
    res["params_replicated"] = all(x.sharding.is_fully_replicated for x in leaves)
    res["params_n_devices"] = [len(x.sharding.device_set) for x in jax.tree.leaves(st8.params)]
    res["compile_count"] = sharded_step.compile_count()
    compiled = sharded_step.lower(st8, shard_batch(make_data(0), mesh)).compile()
    in_sh = compiled.input_shardings[0]
    res["compiled_batch_spec"] = tuple(in_sh[1]["x"].spec)
    res["compiled_state_specs"] = {tuple(x.spec) for x in jax.tree.leaves(in_sh[0])}
    res["step"] = int(st8.step)

    # Host numpy batches go straight into the sharded step (jit splits them).
    np_step = make_train_step(toy_loss, opt, mesh=mesh)
    st_np, res["loss_sharded_numpy"], _ = run(np_step, fresh(), lambda b: b)

    # Eval: per-example outputs, sharded over the batch.
    ev1, ev8 = make_eval_step(toy_eval), make_eval_step(toy_eval, mesh=mesh)
    batch = make_data(7)
    res["eval_single"] = np.asarray(ev1(st1, batch, jax.random.key(3))["rec"])
    e8 = ev8(st8, shard_batch(batch, mesh), jax.random.key(3))["rec"]
    res["eval_sharded_same_state"] = np.asarray(ev8(replicate(st1, mesh), batch, jax.random.key(3))["rec"])
    res["eval_sharded_spec"] = tuple(e8.sharding.spec)

    # Single-process global_batch_from_process_local == shard_batch.
    g = global_batch_from_process_local(batch, mesh)
    s = shard_batch(batch, mesh)
    res["global_equals_shard"] = bool(np.array_equal(np.asarray(g["x"]), np.asarray(s["x"])))
    res["global_sharding_equal"] = g["x"].sharding == s["x"].sharding

    # Bad input.
    errors = {}
    bad = make_data(9, n=60)
    for name, fn in [
        ("shard_batch", lambda: shard_batch(bad, mesh)),
        ("train_step", lambda: make_train_step(toy_loss, opt, mesh=mesh)(fresh(), bad)),
        ("eval_step", lambda: make_eval_step(toy_eval, mesh=mesh)(st8, bad, jax.random.key(0))),
        ("global_local", lambda: global_batch_from_process_local({"img": bad["x"][:7]}, mesh)),
        ("mismatch", lambda: sharded_step(st8, shard_batch(make_data(1, n=32), mesh))),
    ]:
        try:
            fn()
            errors[name] = None
        except ValueError as e:
            errors[name] = str(e)
    res["errors"] = errors
    with open(out, "wb") as f:
        pickle.dump(res, f)


# ------------------------------------------------------------------------------------------------
# Tests (1-device pytest process)


def _check_mesh_is_1d_auto(results):
    assert results["axis_names"] == ("data",)
    assert "Auto" in results["axis_types"]


def _check_sharded_trajectory_matches_single_device(results):
    l1, l8 = results["loss_single"], results["loss_sharded"]
    assert np.all(np.isfinite(l1)) and l1[-1] < l1[0]  # it trains
    np.testing.assert_allclose(l8, l1, rtol=RTOL)
    np.testing.assert_allclose(results["loss_sharded_numpy"], l1, rtol=RTOL)
    for m1, m8 in zip(results["metrics_single"], results["metrics_sharded"]):
        assert set(m1) == set(m8) == {"loss", "rec", "kl", "grad_norm", "skipped"}
        for k in m1:
            np.testing.assert_allclose(m8[k], m1[k], rtol=RTOL, err_msg=k)
    for k, v in results["params_single"].items():
        np.testing.assert_allclose(results["params_sharded"][k], v, rtol=RTOL, atol=ATOL, err_msg=k)
    np.testing.assert_allclose(
        results["model_state_sharded"]["mean_x"], results["model_state_single"]["mean_x"], rtol=RTOL, atol=ATOL
    )


def _check_sharded_state_replicated_and_compiled_once(results):
    assert results["params_replicated"]
    assert results["compiled_batch_spec"] == ("data",)  # the program really splits the batch
    assert results["compiled_state_specs"] == {()}  # and replicates the state
    assert results["params_n_devices"] == [N_DEV] * len(results["params_n_devices"])
    assert results["compile_count"] == 1
    assert len(results["compile_logs"]) == 1, results["compile_logs"]
    assert results["step"] == N_STEPS
    donation = [w for w in results["warnings"] if "donat" in w.lower()]
    assert donation == [], donation  # the replicated state's buffers were reused


def _check_sharded_eval(results):
    assert results["eval_sharded_spec"] == ("data",)
    # Same state, same key: per-example values (no cross-example reduction) agree to float32
    # rounding.
    np.testing.assert_allclose(results["eval_sharded_same_state"], results["eval_single"], rtol=1e-5, atol=1e-6)
    assert results["global_equals_shard"] and results["global_sharding_equal"]


def _check_indivisible_batch_errors(results):
    err = results["errors"]
    for name in ("shard_batch", "train_step", "eval_step"):
        msg = err[name]
        assert msg is not None, f"{name} accepted a batch of 60 on 8 devices"
        for part in ("['x']", "60", "8 devices", "divisible by 8"):
            assert part in msg, msg
    assert "['img']" in err["global_local"] and "7" in err["global_local"]
    assert "does not match" in err["mismatch"] and "[32, 8]" in err["mismatch"]


@pytest.mark.multidevice
def test_data_parallel_on_8_devices(tmp_path):
    """One worker run, then every check (one test, so pytest-xdist never starts the worker twice)."""
    results = run_worker("tests.train.test_sharding", tmp_path / "res.pkl")
    _check_mesh_is_1d_auto(results)
    _check_sharded_trajectory_matches_single_device(results)
    _check_sharded_state_replicated_and_compiled_once(results)
    _check_sharded_eval(results)
    _check_indivisible_batch_errors(results)


if __name__ == "__main__":
    _worker(sys.argv[1])

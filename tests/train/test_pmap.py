"""The same step under ``jax.pmap`` on 8 virtual CPU devices: pmean of gradients/metrics/model state
reproduces the one-device trajectory, per-device keys are fold_in(fold_in(key, step), device), a NaN
on one device skips the step on every replica.

Runs in a subprocess (see ``test_sharding.py``). The trajectory comparison uses a loss that ignores
its key (``use_key=False``): under pmap each device draws its own noise, so stochastic losses agree
only in distribution. Tolerance as in ``test_sharding.py`` (float32 reduction order: 8 per-device
means averaged by pmean instead of one mean over 64 examples): rtol 1e-4, atol 1e-6.
"""

from __future__ import annotations

import functools
import pickle
import sys

import numpy as np
import pytest

from tests.train.test_sharding import (
    ATOL,
    N_DEV,
    RTOL,
    B,
    init_model_state,
    init_params,
    make_data,
    run_worker,
    to_host,
    toy_loss,
)

N_STEPS = 6


def _worker(out: str) -> None:
    import jax
    import jax.numpy as jnp

    from jaxvae.train.optim import OptimizerConfig, make_optimizer
    from jaxvae.train.state import LossOutput
    from jaxvae.train.steps import (
        create_train_state,
        make_pmap_train_step,
        make_train_step,
        replicate_for_pmap,
        unreplicate,
    )

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.local_device_count() == N_DEV
    res: dict = {}
    opt = make_optimizer(OptimizerConfig(learning_rate=0.01))
    det_loss = functools.partial(toy_loss, use_key=False)

    def fresh(seed=1):
        return create_train_state(jax.random.key(seed), init_params(), init_model_state(), opt)

    def per_device(batch):
        return jax.tree.map(lambda x: x.reshape((N_DEV, x.shape[0] // N_DEV) + x.shape[1:]), batch)

    # One device, global batch of B.
    single = make_train_step(det_loss, opt)
    st, losses = fresh(), []
    for t in range(N_STEPS):
        st, m = single(st, make_data(200 + t))
        losses.append(float(m["loss"]))
    res["loss_single"], res["params_single"] = np.array(losses), to_host(st.params)
    res["model_state_single"] = to_host(st.model_state)

    # pmap, 8 devices x B/8.
    pstep = make_pmap_train_step(det_loss, opt, axis_name="batch")
    rst, losses, replicas_equal = replicate_for_pmap(fresh()), [], True
    for t in range(N_STEPS):
        rst, m = pstep(rst, per_device(make_data(200 + t)))
        loss = np.asarray(m["loss"])  # [N_DEV], identical after pmean
        replicas_equal &= bool(np.all(loss == loss[0]))
        losses.append(float(loss[0]))
    hp = to_host(rst.params)
    replicas_equal &= all(np.all(x == x[:1]) for x in jax.tree.leaves(hp))
    res["loss_pmap"], res["params_pmap"] = np.array(losses), to_host(unreplicate(rst).params)
    res["model_state_pmap"] = to_host(unreplicate(rst).model_state)
    res["replicas_equal"] = replicas_equal
    res["pmap_step"] = int(unreplicate(rst).step)
    res["compile_count"] = pstep.compile_count()

    # Per-device keys: each device reports uniform(key); metrics are pmean'ed, so the step's metric
    # is the average over devices of uniform(fold_in(fold_in(key, t), i)).
    def key_probe_loss(params, model_state, batch, key):
        out = det_loss(params, model_state, batch, key)
        return LossOutput(out.loss, {"u": jax.random.uniform(key)}, out.model_state)

    kstep = make_pmap_train_step(key_probe_loss, opt)
    rst = replicate_for_pmap(fresh(seed=5))
    got, expect = [], []
    for t in range(3):
        rst, m = kstep(rst, per_device(make_data(t)))
        got.append(float(np.asarray(m["u"])[0]))
        kt = jax.random.fold_in(jax.random.key(5), t)
        us = [float(jax.random.uniform(jax.random.fold_in(kt, i))) for i in range(N_DEV)]
        expect.append(float(np.mean(np.float32(us))))
        res.setdefault("u_per_device_distinct", []).append(len(set(us)) == N_DEV)
    res["u_got"], res["u_expect"] = np.array(got), np.array(expect)

    # A NaN in one device's shard skips the step on every replica.
    def poison_loss(params, model_state, batch, key):
        out = det_loss(params, model_state, batch, key)
        return out._replace(loss=jnp.where(jnp.any(batch["flag"] > 0), jnp.nan, out.loss))

    nstep = make_pmap_train_step(poison_loss, opt)
    rst = replicate_for_pmap(fresh())
    good = {**make_data(0), "flag": np.zeros(B, np.int32)}
    flag = np.zeros(B, np.int32)
    flag[3 * (B // N_DEV)] = 1  # first example of device 3
    bad = {**make_data(0), "flag": flag}
    rst, _ = nstep(rst, per_device(good))
    before = to_host(rst.params)
    rst, m = nstep(rst, per_device(bad))
    after = to_host(rst.params)
    res["nan_params_unchanged"] = all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after))
    )
    res["nan_skipped"] = np.asarray(rst.skipped).tolist()
    res["nan_step"] = np.asarray(rst.step).tolist()

    # Bad leading axis.
    try:
        make_pmap_train_step(det_loss, opt)(replicate_for_pmap(fresh()), make_data(0))
        res["leading_error"] = None
    except ValueError as e:
        res["leading_error"] = str(e)
    with open(out, "wb") as f:
        pickle.dump(res, f)


def _check_pmap_matches_single_device(results):
    l1, lp = results["loss_single"], results["loss_pmap"]
    assert l1[-1] < l1[0]
    np.testing.assert_allclose(lp, l1, rtol=RTOL)
    for k, v in results["params_single"].items():
        np.testing.assert_allclose(results["params_pmap"][k], v, rtol=RTOL, atol=ATOL, err_msg=k)
    np.testing.assert_allclose(
        results["model_state_pmap"]["mean_x"], results["model_state_single"]["mean_x"], rtol=RTOL, atol=ATOL
    )
    assert results["replicas_equal"]
    assert results["pmap_step"] == N_STEPS
    assert results["compile_count"] == 1


def _check_pmap_keys_fold_in_device_index(results):
    assert all(results["u_per_device_distinct"])
    np.testing.assert_allclose(results["u_got"], results["u_expect"], rtol=1e-6)
    assert len(set(results["u_got"].tolist())) == 3  # and differ per step


def _check_pmap_nan_on_one_device_skips_everywhere(results):
    assert results["nan_params_unchanged"]
    assert results["nan_skipped"] == [1] * N_DEV
    assert results["nan_step"] == [2] * N_DEV


def _check_pmap_leading_axis_error(results):
    msg = results["leading_error"]
    assert msg is not None and "['x']" in msg and f"{N_DEV} devices" in msg and "reshape" in msg


@pytest.mark.multidevice
def test_pmap_on_8_devices(tmp_path):
    """One worker run, then every check (one test, so pytest-xdist never starts the worker twice)."""
    results = run_worker("tests.train.test_pmap", tmp_path / "res.pkl")
    _check_pmap_matches_single_device(results)
    _check_pmap_keys_fold_in_device_index(results)
    _check_pmap_nan_on_one_device_skips_everywhere(results)
    _check_pmap_leading_axis_error(results)


if __name__ == "__main__":
    _worker(sys.argv[1])

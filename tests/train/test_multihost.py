"""Multi-host data parallelism, for real: two processes on localhost, two CPU devices each, joined
by ``initialize_distributed`` (cross-process collectives over Gloo/TCP). Each process feeds only its
own half of every batch (``global_batch_from_process_local``); after a few steps both must hold
bitwise-identical parameters, and the trajectory must match a one-device run on the full batches
(tolerance as in ``test_sharding.py``: float32 reduction order, rtol 1e-4, atol 1e-6).

A hang (a process that never joins) fails the test through timeouts instead of blocking CI: the
coordinator waits at most ``INIT_TIMEOUT`` s for the processes to connect and the test kills both
workers after ``WALL_TIMEOUT`` s.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.train.test_sharding import (
    ATOL,
    REPO,
    RTOL,
    B,
    init_model_state,
    init_params,
    make_data,
    toy_loss,
)

N_PROC, LOCAL_DEV, N_STEPS = 2, 2, 5
INIT_TIMEOUT, WALL_TIMEOUT = 60, 240


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batches():
    return [make_data(300 + t) for t in range(N_STEPS)]


def _optimizer():
    from jaxvae.train.optim import OptimizerConfig, make_optimizer

    return make_optimizer(OptimizerConfig(learning_rate=0.01, clip_global_norm=5.0))


def _worker(port: int, pid: int, out: str) -> None:
    from jaxvae.train.distributed import initialize_distributed

    initialize_distributed(f"127.0.0.1:{port}", N_PROC, pid, initialization_timeout=INIT_TIMEOUT)
    initialize_distributed(f"127.0.0.1:{port}", N_PROC, pid)  # a second call is a no-op

    import jax

    from jaxvae.train.sharding import global_batch_from_process_local, make_data_mesh, replicate
    from jaxvae.train.steps import create_train_state, make_train_step

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.process_count() == N_PROC and jax.process_index() == pid
    assert jax.device_count() == N_PROC * LOCAL_DEV and jax.local_device_count() == LOCAL_DEV
    opt = _optimizer()
    mesh = make_data_mesh()
    state = replicate(create_train_state(jax.random.key(1), init_params(), init_model_state(), opt), mesh)
    step = make_train_step(toy_loss, opt, mesh=mesh)
    per = B // N_PROC
    losses = []
    for batch in _batches():
        local = {"x": batch["x"][pid * per : (pid + 1) * per]}  # this process's rows only
        state, m = step(state, global_batch_from_process_local(local, mesh))
        losses.append(float(np.asarray(m["loss"].addressable_data(0))))  # sync every step
    params = {k: np.asarray(v.addressable_data(0)) for k, v in state.params.items()}
    np.savez(
        out,
        losses=np.array(losses),
        step=int(np.asarray(state.step.addressable_data(0))),
        compile_count=step.compile_count(),
        **{f"p_{k}": v for k, v in params.items()},
    )
    jax.distributed.shutdown()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(coordinator_address="localhost", num_processes=2, process_id=0), "host:port"),
        (dict(coordinator_address="localhost:1", num_processes=0, process_id=0), "num_processes"),
        (dict(coordinator_address="localhost:1", num_processes=2, process_id=2), "process_id"),
        (dict(coordinator_address="localhost:1", num_processes=2, process_id=-1), "process_id"),
    ],
)
def test_initialize_distributed_validates_arguments(kwargs, match):
    from jaxvae.train.distributed import initialize_distributed

    with pytest.raises(ValueError, match=match):
        initialize_distributed(**kwargs)


def run_processes(module: str, args: list[list[str]], tmp_path) -> None:
    """Run ``python -m module *args[i]`` for each process on localhost with LOCAL_DEV CPU devices each;
    kill them all after WALL_TIMEOUT s (a hang fails the test instead of blocking CI); assert each
    exited 0, showing the end of its log otherwise."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={LOCAL_DEV}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    logs = [open(tmp_path / f"proc{i}.log", "w+") for i in range(len(args))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module, *a], cwd=REPO, env=env, stdout=logs[i], stderr=subprocess.STDOUT
        )
        for i, a in enumerate(args)
    ]
    deadline = time.monotonic() + WALL_TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = []
    for f in logs:
        f.seek(0)
        texts.append(f.read()[-3000:])
        f.close()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i} failed (rc={p.returncode}):\n{texts[i]}"


@pytest.mark.multidevice
@pytest.mark.slow
def test_two_processes_hold_identical_params(tmp_path):
    port = _free_port()
    outs = [tmp_path / f"proc{i}.npz" for i in range(N_PROC)]
    run_processes("tests.train.test_multihost", [[str(port), str(i), str(outs[i])] for i in range(N_PROC)], tmp_path)

    res = [np.load(o) for o in outs]
    names = sorted(k for k in res[0].files if k.startswith("p_"))
    for k in names:  # identical parameters on both hosts, bit for bit
        np.testing.assert_array_equal(res[0][k], res[1][k], err_msg=k)
    np.testing.assert_array_equal(res[0]["losses"], res[1]["losses"])
    assert int(res[0]["step"]) == N_STEPS and int(res[0]["compile_count"]) == 1

    # Same trajectory as one device seeing the full batches: each host really fed its own half.
    import jax

    from jaxvae.train.steps import create_train_state, make_train_step

    opt = _optimizer()
    state = create_train_state(jax.random.key(1), init_params(), init_model_state(), opt)
    step = make_train_step(toy_loss, opt)
    losses = []
    for batch in _batches():
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(res[0]["losses"], losses, rtol=RTOL)
    for k in names:
        np.testing.assert_allclose(res[0][k], np.asarray(state.params[k[2:]]), rtol=RTOL, atol=ATOL, err_msg=k)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

"""Exact resume across real process deaths: SIGKILL mid-run and SIGTERM, in subprocesses.

A tiny model trains in a child process. One child runs uninterrupted; another is killed (SIGKILL,
after at least one checkpoint, mid-run) or stopped (SIGTERM) and then re-run on the same work dir.
The final parameters must be bitwise identical to the uninterrupted run's.

Marked ``slow``: five child processes (imports + compile each; about 2 minutes on the shared
2-core machine). The default tier covers the same properties in-process in ``test_loop.py``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 40
CKPT_EVERY = 5

SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from tests.train.test_loop import Interrupt, toy_setup
    from jaxvae.train.loop import TrainConfig, fit

    workdir, out = sys.argv[2], sys.argv[3]
    num_steps, ckpt_every, sleep = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    state, step, it = toy_setup()

    class Slow(Interrupt):  # sleeps before each batch so a parent can kill it mid-run
        def __next__(self):
            time.sleep(sleep)
            return next(self.it)

    train = TrainConfig(num_steps=num_steps, batch_size=8, log_every=5, checkpoint_every=ckpt_every, progress=False)
    state, hist = fit(state, step, Slow(it, 0, None), train, workdir=workdir, config={"model": {"toy": 1}})
    np.savez(out, **{k: np.asarray(v) for k, v in state.params.items()}, step=np.asarray(state.step),
             start=hist["start_step"])
    sys.exit(143 if hist["preempted"] else 0)
    """
)


def _env(tmp_path_factory):
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    # one compilation shared by the children (a persistent cache keyed by the program)
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
    return env


def _start(script, workdir, out, env, *, sleep=0.0):
    return subprocess.Popen(
        [sys.executable, str(script), REPO, str(workdir), str(out), str(NUM_STEPS), str(CKPT_EVERY), str(sleep)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _complete_steps(workdir):
    d = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(
        int(s) for s in os.listdir(d) if s.isdigit() and os.path.exists(os.path.join(d, s, "_CHECKPOINT_METADATA"))
    )


def _wait_for_checkpoint(proc, workdir, min_step, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"child exited early ({proc.returncode}):\n{proc.stdout.read()}")
        if any(s >= min_step for s in _complete_steps(workdir)):
            return
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared in time")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    script = base / "train_toy.py"
    script.write_text(SCRIPT)
    env = _env(tmp_path_factory)
    rc, log = _finish(_start(script, base / "ref", base / "ref.npz", env))
    assert rc == 0, log
    ref = dict(np.load(base / "ref.npz"))
    assert int(ref["step"]) == NUM_STEPS
    return base, script, env, ref


def _assert_bitwise(a, b):
    for k in ("w", "b"):
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bitwise_identical(harness):
    base, script, env, ref = harness
    work = base / "killed"
    proc = _start(script, work, base / "killed.npz", env, sleep=0.1)
    _wait_for_checkpoint(proc, work, CKPT_EVERY)
    time.sleep(0.25)  # land somewhere between checkpoints
    proc.send_signal(signal.SIGKILL)
    rc, _ = _finish(proc)
    assert rc == -signal.SIGKILL
    done = _complete_steps(work)
    assert done and max(done) < NUM_STEPS, done  # it really died mid-run
    assert not os.path.exists(base / "killed.npz")
    rc, log = _finish(_start(script, work, base / "resumed.npz", env))
    assert rc == 0, log
    got = dict(np.load(base / "resumed.npz"))
    assert int(got["start"]) == max(done) and int(got["step"]) == NUM_STEPS
    _assert_bitwise(got, ref)


@pytest.mark.slow
def test_sigterm_checkpoints_exits_then_resumes_bitwise(harness):
    base, script, env, ref = harness
    work = base / "termed"
    proc = _start(script, work, base / "termed.npz", env, sleep=0.1)
    _wait_for_checkpoint(proc, work, CKPT_EVERY)
    proc.send_signal(signal.SIGTERM)
    rc, log = _finish(proc)
    assert rc == 143, log  # the loop returned with history["preempted"]
    stopped = dict(np.load(base / "termed.npz"))
    stop_step = int(stopped["step"])
    assert CKPT_EVERY <= stop_step < NUM_STEPS
    assert max(_complete_steps(work)) == stop_step  # a checkpoint at the exact stop step
    rc, log = _finish(_start(script, work, base / "termed2.npz", env))
    assert rc == 0, log
    got = dict(np.load(base / "termed2.npz"))
    assert int(got["start"]) == stop_step
    _assert_bitwise(got, ref)

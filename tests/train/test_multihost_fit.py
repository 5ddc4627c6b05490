"""``fit`` on two hosts, end to end: two processes on localhost (two CPU devices each) joined by
``initialize_distributed`` train a toy model with a per-process ``BatchIterator``, checkpoint to one
shared work directory, and resume.

SIGTERM reaches **process 0 only** (as when one VM of a pod is preempted first). Both processes must
stop at the same step and save one checkpoint together (Orbax's save is collective: had only one
process tried, both would hang); a re-run resumes both and ends with bitwise-identical parameters on
the two hosts, equal (float32 tolerance) to one device trained on the same global batches without
interruption. Only process 0 writes logs.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest

from tests.train.test_multihost import INIT_TIMEOUT, N_PROC, _free_port, run_processes
from tests.train.test_sharding import ATOL, RTOL, B, init_model_state, init_params, make_data, toy_loss

N_STEPS, TERM_AT = 8, 4  # SIGTERM while batch 4 is fetched: both must stop after step 4


def _optimizer():
    from jaxvae.train.optim import OptimizerConfig, make_optimizer

    return make_optimizer(OptimizerConfig(learning_rate=0.01))


class _TermAt:
    """Iterator wrapper: sends SIGTERM to this process when batch ``at`` is requested."""

    def __init__(self, it, at):
        self.it, self.at, self.n = it, at, 0

    def __next__(self):
        self.n += 1
        if self.n == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return next(self.it)

    def get_state(self):
        return self.it.get_state()

    def set_state(self, s):
        self.it.set_state(s)


def _worker(port: int, pid: int, workdir: str, out: str) -> None:
    from jaxvae.train.distributed import initialize_distributed

    initialize_distributed(f"127.0.0.1:{port}", N_PROC, pid, initialization_timeout=INIT_TIMEOUT)
    import jax

    from jaxvae.data.loader import BatchIterator
    from jaxvae.train.loop import TrainConfig, fit
    from jaxvae.train.sharding import make_data_mesh, replicate
    from jaxvae.train.steps import create_train_state, make_train_step

    opt = _optimizer()
    mesh = make_data_mesh()
    step = make_train_step(toy_loss, opt, mesh=mesh)
    data = make_data(11, n=4 * B)

    def run(wrap):
        state = replicate(create_train_state(jax.random.key(1), init_params(), init_model_state(), opt), mesh)
        it = BatchIterator(data, B, seed=0, process_index=pid, process_count=N_PROC)
        train = TrainConfig(num_steps=N_STEPS, batch_size=8, checkpoint_every=100, log_every=2, progress=False)
        return fit(state, step, wrap(it), train, workdir=workdir, config={"model": {"toy": 1}}, mesh=mesh)

    _, first = run(lambda it: _TermAt(it, TERM_AT) if pid == 0 else it)
    state, second = run(lambda it: it)
    params = {k: np.asarray(v.addressable_data(0)) for k, v in state.params.items()}
    np.savez(
        out,
        preempted=first["preempted"],
        stop_step=first["end_step"],
        resumed_from=second["start_step"],
        end=second["end_step"],
        **{f"p_{k}": v for k, v in params.items()},
    )
    jax.distributed.shutdown()


@pytest.mark.multidevice
@pytest.mark.slow
def test_sigterm_on_one_host_stops_both_and_resume_is_exact(tmp_path):
    port = _free_port()
    workdir = tmp_path / "run"
    outs = [tmp_path / f"proc{i}.npz" for i in range(N_PROC)]
    run_processes(
        "tests.train.test_multihost_fit",
        [[str(port), str(i), str(workdir), str(outs[i])] for i in range(N_PROC)],
        tmp_path,
    )

    res = [dict(np.load(o)) for o in outs]
    for r in res:  # both stopped at the same step, though only process 0 was signalled
        assert bool(r["preempted"]) and int(r["stop_step"]) == TERM_AT
        assert int(r["resumed_from"]) == TERM_AT and int(r["end"]) == N_STEPS
    names = sorted(k for k in res[0] if k.startswith("p_"))
    for k in names:
        np.testing.assert_array_equal(res[0][k], res[1][k], err_msg=k)
    # process 0 alone wrote the log: one record per logged step, no duplicates
    steps = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")]
    assert steps == [2, 4, 6, 8]

    # The same as one device on the same global batches, uninterrupted.
    import jax

    from jaxvae.data.loader import BatchIterator
    from jaxvae.train.steps import create_train_state, make_train_step

    opt = _optimizer()
    state = create_train_state(jax.random.key(1), init_params(), init_model_state(), opt)
    step = make_train_step(toy_loss, opt)
    it = BatchIterator(make_data(11, n=4 * B), B, seed=0)
    for _ in range(N_STEPS):
        state, _ = step(state, next(it))
    for k in names:
        np.testing.assert_allclose(res[0][k], np.asarray(state.params[k[2:]]), rtol=RTOL, atol=ATOL, err_msg=k)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])

"""fit: training to num_steps, logging, exact-once evaluation, resume, preemption, data checks."""

import dataclasses
import functools
import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.data.loader import BatchIterator
from jaxvae.train.loop import TrainConfig, evaluate, fit
from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.state import LossOutput
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step

D = 6


def toy_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    y = (x @ rng.normal(size=(D,)) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return {"x": x, "y": y}


def toy_loss(params, model_state, batch, key):
    # input noise makes the trajectory depend on the per-step key
    x = batch["x"] + 0.1 * jax.random.normal(key, batch["x"].shape)
    err = x @ params["w"] + params["b"] - batch["y"]
    loss = jnp.mean(err**2)
    return LossOutput(loss, {"mse": loss}, model_state)


def toy_eval(params, model_state, batch, key):
    del key
    err = batch["x"] @ params["w"] + params["b"] - batch["y"]
    return {"sq_err": err**2, "y": batch["y"]}


@functools.cache
def toy_step():
    """One optimizer and one jitted step shared by the tests (compiled once per process)."""
    tx = make_optimizer(OptimizerConfig(learning_rate=0.05))
    return tx, make_train_step(toy_loss, tx)


@functools.cache
def toy_eval_step(batch_shape):
    """One eval step per batch shape (a step function refuses a batch unlike its first)."""
    del batch_shape
    return make_eval_step(toy_eval)


def toy_setup(seed=0, n=64, batch_size=8):
    params = {"w": jnp.zeros((D,)), "b": jnp.zeros(())}
    tx, step = toy_step()
    state = create_train_state(jax.random.key(seed), params, {}, tx)
    it = BatchIterator(toy_data(n), batch_size, seed=seed)
    return state, step, it


TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def train_config(num_steps, **kw):
    """The loop settings of these tests: checkpoints every 3 steps, logs every 2, no progress bar."""
    kw = {"checkpoint_every": 3, "log_every": 2, "progress": False, "batch_size": 8, **kw}
    return TrainConfig(num_steps=num_steps, **kw)


def run(workdir, num_steps, *, iter_wrapper=None, **kw):
    """``fit`` on the toy problem; ``kw`` holds TrainConfig fields and fit's own keywords."""
    state, step, it = toy_setup()
    train = train_config(num_steps, **{k: v for k, v in kw.items() if k in TRAIN_FIELDS})
    rest = {k: v for k, v in kw.items() if k not in TRAIN_FIELDS}
    return fit(
        state,
        step,
        iter_wrapper(it) if iter_wrapper else it,
        train,
        workdir=workdir,
        config={"model": {"d": D}},
        **rest,
    )


def params_bits(state):
    return {k: np.asarray(v).tobytes() for k, v in state.params.items()}


class Interrupt:
    """Wraps an iterator; calls ``action`` when batch number ``at`` (1-based) is requested."""

    def __init__(self, it, at, action):
        self.it, self.at, self.action, self.n = it, at, action, 0

    def __next__(self):
        self.n += 1
        if self.n == self.at:
            self.action()
        return next(self.it)

    def get_state(self):
        return self.it.get_state()

    def set_state(self, s):
        self.it.set_state(s)


class Crash(Exception):
    pass


def _raise():
    raise Crash


def test_examples_per_sec_counts_what_the_step_says_one_call_consumes(tmp_path):
    """A plain step's batch [8, D] is 8 examples; a step that trains several members on it counts each
    member's (``count_examples``), e.g. 3 seeds in one program consume 24 examples per call."""

    class ThreeMembers:
        def __init__(self, step):
            self.step = step

        def __call__(self, state, batch):
            return self.step(state, batch)

        def count_examples(self, batch):
            return 3 * len(batch["x"])

    for sub, wrap, per_step in (("plain", None, 8), ("members", ThreeMembers, 24)):
        state, step, it = toy_setup()
        _, hist = fit(state, wrap(step) if wrap else step, it, train_config(6), workdir=tmp_path / sub)
        timed = [r for r in hist["train"] if "steps_per_sec" in r]
        assert timed, hist["train"]
        for r in timed:
            assert r["examples_per_sec"] == pytest.approx(per_step * r["steps_per_sec"], rel=1e-9)


def test_fit_trains_logs_evaluates_and_checkpoints(tmp_path):
    ev = toy_eval_step(16)
    data = toy_data(37, seed=1)
    images = lambda st, key: {"noise": jax.random.uniform(key, (4, 5, 5))}  # noqa: E731
    state, hist = run(tmp_path, 10, eval_step=ev, eval_data=data, eval_every=5, image_fn=images, eval_batch_size=16)
    assert int(state.step) == 10 and hist["end_step"] == 10 and not hist["preempted"]
    recs = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_steps = [r["step"] for r in recs if "train/loss" in r]
    assert train_steps == [2, 4, 6, 8, 10]
    assert all(r["examples_per_sec"] > 0 for r in recs if "train/loss" in r and r["step"] > 2)
    evals = [r for r in recs if "eval/sq_err" in r]
    assert [r["step"] for r in evals] == [5, 10]
    # each of the 37 eval examples counted exactly once (37 = 2 * 16 + 5: last batch padded)
    assert evals[0]["eval/num_examples"] == 37
    np.testing.assert_allclose(evals[0]["eval/y"], np.mean(data["y"], dtype=np.float64), rtol=1e-6)
    assert json.load(open(tmp_path / "config.json")) == {"model": {"d": D}}
    assert sorted(os.listdir(tmp_path / "images")) == ["noise_00000005.png", "noise_00000010.png"]
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == [9, 10]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))
    # the loss went down from its first logged value
    losses = [r["train/loss"] for r in recs if "train/loss" in r]
    assert losses[-1] < losses[0]


def test_evaluate_counts_each_example_once():
    # eval values are the example indices: the mean is exact only if each is seen once
    n = 23
    data = {"i": np.arange(n, dtype=np.float32)}
    step = lambda st, b, k: {"i": jnp.asarray(b["i"]), "sq": jnp.asarray(b["i"]) ** 2}  # noqa: E731
    for bs in (1, 4, 23, 50):
        out = evaluate(step, None, data, jax.random.key(0), batch_size=bs)
        assert out["num_examples"] == n
        assert out["i"] == pytest.approx(np.mean(np.arange(n)), abs=0)
        assert out["sq"] == pytest.approx(np.mean(np.arange(n) ** 2.0), abs=0)


def test_resume_after_crash_is_bitwise_identical(tmp_path):
    ref, _ = run(tmp_path / "ref", 10)
    with pytest.raises(Crash):  # dies while fetching batch 8: last checkpoint is step 6
        run(tmp_path / "b", 10, iter_wrapper=lambda it: Interrupt(it, 8, _raise))
    assert sorted(int(s) for s in os.listdir(tmp_path / "b" / "checkpoints") if s.isdigit()) == [3, 6]
    state, hist = run(tmp_path / "b", 10)
    assert hist["start_step"] == 6 and int(state.step) == 10
    assert params_bits(state) == params_bits(ref)
    # metrics.jsonl holds one record per logged step despite the replay of steps 7..
    steps = [json.loads(line)["step"] for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert steps == [2, 4, 6, 8, 10]


def test_rerun_of_finished_run_takes_no_step(tmp_path):
    run(tmp_path, 4)
    before = open(tmp_path / "metrics.jsonl").read()
    state, hist = run(tmp_path, 4, eval_step=toy_eval_step(8), eval_data=toy_data(8))
    assert int(state.step) == 4 and hist["train"] == [] and hist["start_step"] == 4
    assert [e["step"] for e in hist["eval"]] == [4]
    assert open(tmp_path / "metrics.jsonl").read() == before


def test_sigterm_saves_then_returns_and_resumes_exactly(tmp_path):
    ref, _ = run(tmp_path / "ref", 10)
    term = lambda: os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    state, hist = run(tmp_path / "b", 10, iter_wrapper=lambda it: Interrupt(it, 5, term))
    assert hist["preempted"] and int(state.step) == 5  # saved at the step boundary after batch 5
    assert sorted(int(s) for s in os.listdir(tmp_path / "b" / "checkpoints") if s.isdigit()) == [3, 5]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    state, hist = run(tmp_path / "b", 10)
    assert hist["start_step"] == 5 and params_bits(state) == params_bits(ref)


@pytest.mark.parametrize("sync_every", [4, 100])
def test_sync_every_gives_the_same_run_and_the_same_logs(tmp_path, sync_every):
    ref, ref_hist = run(tmp_path / "ref", 10, eval_step=toy_eval_step(8), eval_data=toy_data(8))
    state, hist = run(tmp_path / "b", 10, eval_step=toy_eval_step(8), eval_data=toy_data(8), sync_every=sync_every)
    assert params_bits(state) == params_bits(ref)
    # every logged window is still averaged over its own steps
    key = ["step", "train/loss", "train/mse"]
    assert [{k: r[k] for k in key} for r in hist["train"]] == [{k: r[k] for k in key} for r in ref_hist["train"]]
    assert hist["eval"] == ref_hist["eval"]
    assert sorted(int(s) for s in os.listdir(tmp_path / "b" / "checkpoints") if s.isdigit()) == [9, 10]


def test_sync_every_still_sees_sigterm_and_resumes_exactly(tmp_path):
    ref, _ = run(tmp_path / "ref", 12)
    term = lambda: os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    state, hist = run(
        tmp_path / "b",
        12,
        iter_wrapper=lambda it: Interrupt(it, 5, term),
        sync_every=4,
        checkpoint_every=100,
        log_every=100,
    )
    # the signal arrives while batch 5 is fetched; the next sync is after step 8
    assert hist["preempted"] and int(state.step) == 8
    state, hist = run(tmp_path / "b", 12)
    assert hist["start_step"] == 8 and params_bits(state) == params_bits(ref)


def test_time_limit_stops_evaluates_saves_and_resumes_exactly(tmp_path, monkeypatch):
    import jaxvae.train.loop as loop

    ref, _ = run(tmp_path / "ref", 10)
    clock = {"t": 0.0}

    def fake_clock():  # each reading (one at the start, one per sync) advances one "second"
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(loop, "_clock", fake_clock)
    state, hist = run(
        tmp_path / "b", 10, eval_step=toy_eval_step(8), eval_data=toy_data(8), time_limit_s=3.5, checkpoint_every=100
    )
    monkeypatch.undo()
    stopped = int(state.step)
    # readings 2, 3, 4, 5 follow steps 1-4 (sync_every=1): 5 - 1 > 3.5 first after step 4
    assert hist["time_limited"] and not hist["preempted"] and stopped == 4
    assert [e["step"] for e in hist["eval"]] == [stopped]  # evaluated where it stopped
    assert hist["train"][-1]["step"] == stopped  # the partial window is logged
    assert sorted(int(s) for s in os.listdir(tmp_path / "b" / "checkpoints") if s.isdigit()) == [stopped]
    state, hist = run(tmp_path / "b", 10)
    assert hist["start_step"] == stopped and not hist["time_limited"]
    assert params_bits(state) == params_bits(ref)


def test_nan_in_first_batch_names_the_key(tmp_path):
    state, step, _ = toy_setup()

    def poison(batch, rng):  # a transform that produces NaN (the arrays themselves are checked by the loader)
        return {**batch, "x": np.where(batch["x"] > 1.0, np.nan, batch["x"])}

    it = BatchIterator(toy_data(), 64, seed=0, transform=poison)
    with pytest.raises(ValueError, match=r"\['x'\].*non-finite"):
        fit(state, step, it, train_config(2), workdir=tmp_path, config={})
    assert not os.path.exists(tmp_path / "checkpoints" / "1")


def test_nan_in_eval_data_names_the_key(tmp_path):
    state, step, it = toy_setup()
    bad = toy_data(8)
    bad["y"][0] = np.inf
    with pytest.raises(ValueError, match=r"eval_data\['y'\]"):
        fit(state, step, it, train_config(2), workdir=tmp_path, config={}, eval_step=toy_eval_step(8), eval_data=bad)


def test_wrong_model_in_workdir(tmp_path):
    run(tmp_path, 3)
    params = {"w": jnp.zeros((D + 1,)), "b": jnp.zeros(())}
    tx = make_optimizer(OptimizerConfig())
    state = create_train_state(jax.random.key(0), params, {}, tx)
    it = BatchIterator(toy_data(), 8, seed=0)
    with pytest.raises(ValueError, match=r"different run(.|\n)*\['w'\](.|\n)*fresh workdir"):
        fit(state, make_train_step(toy_loss, tx), it, train_config(5), workdir=tmp_path, config={"model": {"d": D + 1}})


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_steps": -1}, "num_steps"),
        ({"log_every": 0}, "log_every"),
        ({"sync_every": 0}, "sync_every"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
        ({"keep_checkpoints": 0}, "keep_checkpoints"),
        ({"time_limit_s": 0}, "time_limit_s"),
        ({"time_limit_s": "1h"}, "time_limit_s"),
        ({"time_limit_s": True}, "time_limit_s"),
        ({"time_limit_s": float("nan")}, "time_limit_s"),
    ],
)
def test_bad_train_config(kw, match):
    with pytest.raises(ValueError, match=f"`{match}`"):
        TrainConfig(**kw)


def test_bad_fit_arguments(tmp_path):
    state, step, it = toy_setup()
    with pytest.raises(ValueError, match="together"):
        fit(state, step, it, train_config(2), workdir=tmp_path, eval_data={"x": np.ones(3)})
    with pytest.raises(ValueError, match="`train` must be a jaxvae.train.loop.TrainConfig"):
        fit(state, step, it, {"num_steps": 2}, workdir=tmp_path)


def test_iterator_without_state_is_refused(tmp_path):
    state, step, it = toy_setup()
    with pytest.raises(ValueError, match="get_state"):
        fit(state, step, iter([{"x": 1}]), train_config(2), workdir=tmp_path, config={})


def test_fit_on_a_mesh_matches_plain_run(tmp_path):
    from jaxvae.train.sharding import make_data_mesh, replicate

    ref, _ = run(tmp_path / "ref", 6)
    mesh = make_data_mesh()
    state, _, it = toy_setup()
    tx = make_optimizer(OptimizerConfig(learning_rate=0.05))
    out, hist = fit(
        replicate(state, mesh),
        make_train_step(toy_loss, tx, mesh=mesh),
        it,
        train_config(6),
        workdir=tmp_path / "mesh",
        config={"model": {"d": D}},
        eval_step=make_eval_step(toy_eval, mesh=mesh),
        eval_data=toy_data(11),
        mesh=mesh,
    )
    assert hist["eval"][-1]["num_examples"] == 11
    for k in ("w", "b"):  # same maths, possibly another reduction order: float32 rounding only
        np.testing.assert_allclose(np.asarray(out.params[k]), np.asarray(ref.params[k]), rtol=1e-5, atol=1e-6)


MULTIDEVICE_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
sys.path.insert(0, sys.argv[1])
import jax, numpy as np
from tests.train.test_loop import toy_setup, toy_loss, toy_eval, toy_data
from jaxvae.train.loop import TrainConfig, fit
from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.sharding import make_data_mesh, replicate
from jaxvae.train.steps import make_train_step, make_eval_step
assert jax.device_count() == 8
mesh = make_data_mesh()
state, _, it = toy_setup()
tx = make_optimizer(OptimizerConfig(learning_rate=0.05))
# 120 steps: far past the ~20-50 queued collective steps that abort an unsynced loop (environment.md 1.6)
train = TrainConfig(num_steps=120, batch_size=8, eval_every=60, checkpoint_every=60, log_every=20, progress=False)
out, hist = fit(replicate(state, mesh), make_train_step(toy_loss, tx, mesh=mesh), it, train, workdir=sys.argv[2],
                config={}, eval_step=make_eval_step(toy_eval, mesh=mesh), eval_data=toy_data(13), mesh=mesh)
assert int(out.step) == 120 and hist["eval"][-1]["num_examples"] == 13, hist
# resume onto the mesh: the restored state keeps the replicated sharding and trains on
state, _, it = toy_setup()
train = TrainConfig(num_steps=125, batch_size=8, checkpoint_every=60, log_every=5, progress=False)
out, hist = fit(replicate(state, mesh), make_train_step(toy_loss, tx, mesh=mesh), it, train, workdir=sys.argv[2],
                config={}, mesh=mesh)
assert hist["start_step"] == 120 and int(out.step) == 125, hist
assert out.params["w"].sharding.is_fully_replicated
print("OK")
"""


@pytest.mark.slow
@pytest.mark.multidevice
def test_fit_on_eight_virtual_devices_does_not_abort(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = tmp_path / "md.py"
    script.write_text(MULTIDEVICE_SCRIPT)
    p = subprocess.run(
        [sys.executable, str(script), repo, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]


# ------------------------------------------------------------------ notebooks: memory, plain iterables, resume policy


def test_in_memory_run_takes_any_iterable_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state, step, _ = toy_setup()
    batches = [toy_data(8, seed=i) for i in range(5)]  # a list: no get_state, no workdir
    out, hist = fit(
        state, step, batches, train_config(5, log_every=1), eval_step=toy_eval_step(8), eval_data=toy_data(8)
    )
    assert int(out.step) == 5 and len(hist["train"]) == 5 and hist["eval"][-1]["step"] == 5
    assert os.listdir(tmp_path) == []
    gen = (toy_data(8, seed=i) for i in range(3))  # a generator, and no config
    out, _ = fit(toy_setup()[0], step, gen, train_config(3))
    assert int(out.step) == 3


def test_plain_iterable_needs_resume_never_with_a_workdir(tmp_path):
    state, step, _ = toy_setup()
    plain = [toy_data(8, seed=i) for i in range(4)]
    with pytest.raises(ValueError, match="get_state.*resume='never'"):
        fit(state, step, plain, train_config(4), workdir=tmp_path)
    out, _ = fit(state, step, plain, train_config(4), workdir=tmp_path, resume="never")
    assert int(out.step) == 4 and os.path.isdir(tmp_path / "checkpoints" / "3")
    # its checkpoints hold no data order: a later resume says so instead of drifting
    state2, _, it = toy_setup()
    with pytest.raises(ValueError, match="holds no data order"):
        fit(state2, step, it, train_config(6), workdir=tmp_path)


def test_resume_policies(tmp_path, capsys):
    run(tmp_path / "a", 3)
    state, step, it = toy_setup()
    with pytest.raises(ValueError, match="holds checkpoints up to step 3.*resume='never'"):
        fit(state, step, it, train_config(6), workdir=tmp_path / "a", config={"model": {"d": D}}, resume="never")
    with pytest.raises(ValueError, match="holds no checkpoint"):
        fit(state, step, it, train_config(6), workdir=tmp_path / "b", resume="must")
    with pytest.raises(ValueError, match="needs a `workdir`"):
        fit(state, step, it, train_config(6), resume="must")
    with pytest.raises(ValueError, match="`resume` must be one of"):
        fit(state, step, it, train_config(6), resume="sometimes")
    capsys.readouterr()
    out, hist = fit(state, step, it, train_config(6), workdir=tmp_path / "a", config={"model": {"d": D}}, resume="must")
    assert hist["start_step"] == 3 and int(out.step) == 6
    assert f"resuming from step 3 of {tmp_path / 'a'}" in capsys.readouterr().out


def test_a_changed_setting_refuses_the_resume_naming_it_and_the_step_budget_does_not(tmp_path):
    cfg = {"model": {"d": D}, "optim": {"learning_rate": 0.05}, "train": train_config(3)}
    state, step, it = toy_setup()
    fit(state, step, it, train_config(3), workdir=tmp_path, config=cfg)
    state, step, it = toy_setup()
    changed = {**cfg, "optim": {"learning_rate": 0.01}}
    with pytest.raises(ValueError, match=r"config optim.learning_rate: checkpoint has 0.05, this run has 0.01"):
        fit(state, step, it, train_config(6), workdir=tmp_path, config=changed)
    longer = {**cfg, "train": train_config(6, log_every=3)}  # more steps, another log cadence: a resume
    out, hist = fit(state, step, it, train_config(6, log_every=3), workdir=tmp_path, config=longer)
    assert hist["start_step"] == 3 and int(out.step) == 6


# ------------------------------------------------------------------ damaged checkpoints (nothing lost, nothing silent)


def _checkpoint_files(step_dir):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs if f not in ("commit_success.txt",))


def _flip(path, offset_fraction=0.5, n=8):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if not data:
            return False
        at = min(int(len(data) * offset_fraction), max(0, len(data) - n))
        for i in range(at, min(at + n, len(data))):
            data[i] ^= 0xFF
        f.seek(0)
        f.write(data)
    return True


def test_a_flipped_byte_anywhere_in_the_latest_checkpoint_never_costs_the_older_one(tmp_path, capsys):
    """Every file of the newest checkpoint, 8 bytes flipped in turn: the resume either sees it (reports it by
    path, sets it aside, restores the older intact checkpoint) or it was a file the restore does not read;
    either way the run ends bitwise where an uninterrupted run ends."""
    ref, _ = run(tmp_path / "ref", 9)
    first = tmp_path / "first"
    run(first, 6)  # checkpoints at 3 and 6
    files = _checkpoint_files(first / "checkpoints" / "6")
    assert len(files) >= 8
    detected = []
    for i, name in enumerate(files):
        work = tmp_path / f"case{i}"
        shutil.copytree(first, work)
        for frac in (0.0, 0.5, 0.95):
            _flip(work / os.path.relpath(name, first), frac)
        capsys.readouterr()
        out, hist = run(work, 9)
        printed = capsys.readouterr().out
        rel = os.path.relpath(name, first / "checkpoints" / "6")
        assert params_bits(out) == params_bits(ref), rel
        if hist["start_step"] == 3:
            assert "checkpoints/6 is damaged" in printed and "newest intact checkpoint" in printed, (rel, printed)
            assert os.listdir(work / "checkpoints_damaged")
            detected.append(rel)
        else:
            assert hist["start_step"] == 6, rel
    # the array data, its manifest and every JSON item are among what is caught
    for must in (f"state{os.sep}d{os.sep}", "state/manifest.ocdbt", "meta/metadata", "config/metadata"):
        assert any(r.startswith(must.replace("/", os.sep)) for r in detected), (must, detected)


def test_an_incomplete_step_directory_is_set_aside_not_a_crash_loop(tmp_path, capsys):
    ref, _ = run(tmp_path / "ref", 6)
    work = tmp_path / "work"
    run(work, 3)
    os.makedirs(work / "checkpoints" / "6")  # an empty step directory, e.g. a save cut by a full disk
    out, hist = run(work, 6)  # reaches step 6 and saves it
    assert "checkpoints/6 is damaged (incomplete" in capsys.readouterr().out
    assert int(out.step) == 6 and params_bits(out) == params_bits(ref)
    out, hist = run(work, 6)  # and again: no "checkpoint for step 6 already exists"
    assert hist["start_step"] == 6


def test_a_diverged_run_stops_with_what_happened_and_the_last_good_checkpoint(tmp_path, capsys):
    """SGD with a huge learning rate: the first steps blow up, every later update is refused; fit says so
    as it happens and stops after max_consecutive_skips, naming the last good checkpoint."""
    from jaxvae.train.loop import TrainingDiverged

    state, _, it = toy_setup()
    tx = make_optimizer(OptimizerConfig(name="sgd", learning_rate=1e30))
    step = make_train_step(toy_loss, tx)
    train = train_config(200, max_consecutive_skips=5, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match=r"5 consecutive steps \(\d+-\d+\) were skipped(.|\n)*checkpoints/\d+"):
        fit(state, step, it, train, workdir=tmp_path, config={"model": {"d": D}})
    out = capsys.readouterr().out
    assert "warning: step(s)" in out and "skipped" in out
    ckpt_steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
    assert ckpt_steps and ckpt_steps[-1] < 200  # stopped long before the budget
    with pytest.raises(ValueError, match="`max_consecutive_skips`"):
        TrainConfig(max_consecutive_skips=-1)


def test_ctrl_c_checkpoints_and_returns_like_sigterm(tmp_path):
    """SIGINT at a step boundary: the loop saves and returns (preempted), a re-run resumes exactly."""
    ref, _ = run(tmp_path / "ref", 9)
    calls = {"n": 0}

    class Interrupt:
        def __init__(self, it):
            self.it = it

        def __next__(self):
            calls["n"] += 1
            if calls["n"] == 5:
                os.kill(os.getpid(), signal.SIGINT)
            return next(self.it)

        def get_state(self):
            return self.it.get_state()

        def set_state(self, s):
            self.it.set_state(s)

    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in some test-runner workers
    out, hist = run(tmp_path / "w", 9, iter_wrapper=Interrupt)
    assert hist["preempted"] and hist["end_step"] < 9
    assert signal.getsignal(signal.SIGINT) is before  # restored after fit
    out, hist = run(tmp_path / "w", 9)
    assert params_bits(out) == params_bits(ref)

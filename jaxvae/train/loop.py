"""The one training loop: ``fit``.

``fit`` drives any ``step(state, batch) -> (state, metrics)`` built by
:func:`jaxvae.train.steps.make_train_step` over a resumable batch iterator and takes care of
everything around it:

- **Resume.** If ``workdir/checkpoints`` holds a checkpoint, the state and the iterator state are
  restored and training continues from its step; re-running the same command resumes. Because the
  step key is ``fold_in(state.key, state.step)`` and the iterator state is saved with each checkpoint,
  a run killed at any point (even SIGKILL) and resumed ends with bitwise the same parameters as an
  uninterrupted run. A checkpoint of a different run (other shapes, or other settings than the
  loop's bookkeeping) is refused with an error saying what differs. ``resume`` sets the policy
  ("auto", "never", "must"); ``workdir=None`` trains in memory and writes nothing.
- **Preemption.** SIGTERM sets a flag; at the next sync the loop saves a checkpoint, closes the
  writers and returns with ``history["preempted"] = True`` (and ``history["signal"]``); Ctrl-C (SIGINT)
  does the same. On several hosts the processes agree at
  every sync (a tiny all-gather of the stop and time-limit flags), so a signal that reaches only one
  host still stops all of them at the same step; Orbax's save is collective and would otherwise hang.
- **Evaluation** every ``eval_every`` steps and at the end over the whole ``eval_data``, each example
  exactly once (the last partial batch is padded to the batch size and the padding dropped on the
  host); per-example values are reduced to means on the host in float64.
- **Logging**: a tqdm bar with examples/s, ``metrics.jsonl``, TensorBoard events, PNG grids from
  ``image_fn`` at each evaluation, and ``config.json`` beside the run.
- **Sync.** The step's metrics are fetched to the host every ``sync_every`` steps (and at every log,
  evaluation, checkpoint and the last step). ``sync_every=1`` (the default) bounds the async queue,
  which avoids the abort of long queues of collective steps on virtual devices and, on 2 CPU cores,
  is also faster than running ahead (measured on the project's 2-core CPU). On a GPU/TPU a small model's step
  is shorter than the host's dispatch and fetch; ``sync_every`` of 10-50 lets the host enqueue the
  next steps while the device works. The results are identical for every ``sync_every`` (same keys,
  same data order); only the logged ``examples_per_sec`` then measures wall time between syncs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from jaxvae.config import check_one_of, check_positive, check_positive_int, config_to_dict
from jaxvae.typing import PRNGKey, PyTree

RESUME_POLICIES = ("auto", "never", "must")

_EVAL_SALT = 0x5EED  # eval keys: fold_in(fold_in(state.key, _EVAL_SALT), step); disjoint use from train
_IMAGE_SALT = 0x1A6E
_clock = time.monotonic  # the time limit's clock (a test replaces it)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training-loop settings: what :func:`fit` does (and the ``train`` section of an experiment config).

    Attributes:
      num_steps: total optimizer steps (a resumed run stops at the same total); 0 trains nothing.
      batch_size: global training batch size (read by the code that builds the batch iterator).
      eval_every: evaluate every this many steps (and at the end); 0 evaluates only at the end.
      log_every: write averaged training metrics every this many steps (and at the end).
      checkpoint_every: save a checkpoint every this many steps (and at the end, and on SIGTERM).
      seed: seed of the run's PRNG key and of the data order (read by the code that builds them).
      eval_batch_size: batch size of the evaluation passes; ``None``: the training batch size.
      keep_checkpoints: number of most recent checkpoints kept.
      progress: show a tqdm progress bar.
      sync_every: fetch the step metrics to the host every this many steps (1: every step; see
        the module docstring). A SIGTERM is seen at the next sync. Any value gives bitwise the same
        parameters.
      time_limit_s: stop training (with a checkpoint) at the first sync after this many seconds of
        this invocation; ``None``: no limit. For time-boxed jobs (a lent accelerator, a notebook).
      max_consecutive_skips: stop with :class:`TrainingDiverged` when this many steps in a row were
        skipped (non-finite loss, gradient or update: the run has diverged and every further step would
        be skipped too); 0: never stop for that. Any skip is reported when it happens.
    """

    num_steps: int = 10_000
    batch_size: int = 128
    eval_every: int = 2_000
    log_every: int = 100
    checkpoint_every: int = 2_000
    seed: int = 0
    eval_batch_size: int | None = 1_000
    keep_checkpoints: int = 2
    progress: bool = True
    sync_every: int = 1
    time_limit_s: float | None = None
    max_consecutive_skips: int = 100

    def __post_init__(self):
        for name in ("num_steps", "eval_every", "max_consecutive_skips"):
            check_positive_int(name, getattr(self, name), allow_zero=True)
        for name in ("batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "sync_every"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("seed", self.seed, allow_zero=True)
        if self.eval_batch_size is not None:
            check_positive_int("eval_batch_size", self.eval_batch_size)
        if self.time_limit_s is not None:
            check_positive("time_limit_s", self.time_limit_s)


class TrainingDiverged(RuntimeError):
    """``fit`` stopped: too many consecutive steps were skipped (their loss, gradient or update was not
    finite). The message says which steps, and which checkpoint holds the last good state."""


class _StopFlag:
    """Set by SIGTERM or SIGINT (Ctrl-C); read by the loop at step boundaries. A second Ctrl-C acts at once."""

    def __init__(self):
        self.set = False
        self.signum: int | None = None

    def __call__(self, signum, frame):
        del frame
        self.set = True
        self.signum = signum
        if signum == signal.SIGINT:  # the next Ctrl-C interrupts immediately, as usual
            signal.signal(signal.SIGINT, signal.default_int_handler)


def check_finite_batch(batch: Mapping[str, Any], *, where: str = "batch") -> None:
    """Raise ``ValueError`` naming the key if a floating array of ``batch`` holds NaN or inf."""
    for k, v in batch.items():
        a = np.asarray(v)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise ValueError(
                f"{where}[{k!r}] holds {bad} non-finite value(s) (NaN or inf) of {a.size}; clean the "
                "data (or its transform) before training."
            )


def _put(batch: Mapping[str, Any], mesh) -> Any:
    if mesh is None:
        return dict(batch)
    from jaxvae.train import sharding

    if jax.process_count() > 1:
        return sharding.global_batch_from_process_local(dict(batch), mesh)
    return sharding.shard_batch(dict(batch), mesh)


def _leading_dim(batch: Mapping[str, Any]) -> int:
    sizes = {k: np.shape(v)[0] for k, v in batch.items() if np.ndim(v) > 0}
    if not sizes:
        raise ValueError("batches must hold at least one array with a leading batch axis.")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batch arrays disagree on the leading (batch) dimension: {sizes}.")
    return next(iter(sizes.values()))


def _to_host(tree: PyTree) -> PyTree:
    """Fetch per-example outputs; on several hosts, gather the shards other processes hold first."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


class _SilentWriter:
    """The writer of processes other than 0 on several hosts: process 0 alone writes the logs."""

    def write_scalars(self, step, scalars):
        pass

    def write_images(self, step, images):
        return {}

    def write_hparams(self, hparams):
        pass

    def close(self):
        pass


class _PrintWriter(_SilentWriter):
    """The writer of an in-memory run (``workdir=None``): prints each record, writes no file."""

    def __init__(self, print_fn):
        self._print = print_fn

    def write_scalars(self, step, scalars):
        body = "  ".join(f"{k}={float(v):.5g}" for k, v in scalars.items())
        self._print(f"[step {int(step)}] {body}")


def _ranges(steps: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``'3-5, 9'``."""
    out, lo = [], steps[0]
    for a, b in zip(steps, steps[1:] + [None]):
        if b != a + 1:
            out.append(f"{lo}-{a}" if a != lo else f"{a}")
            lo = b
    return ", ".join(out)


def _fetch_replicated(tree: PyTree) -> PyTree:
    """Host copies of replicated values (metrics, the step counter); on several hosts each process
    reads its own replica, since a global array cannot be fetched whole."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return x

    return jax.device_get(jax.tree.map(one, tree))


def evaluate(
    eval_step: Callable,
    state: PyTree,
    eval_data: Mapping[str, Any],
    key: PRNGKey,
    *,
    batch_size: int,
    mesh=None,
) -> dict[str, float]:
    """Evaluate every example of ``eval_data`` exactly once; return host means of each value.

    Args:
      eval_step: ``eval_step(state, batch, key) -> dict[str, Array[B]]`` (per-example values).
      state: the train state.
      eval_data: dict of host arrays ``[N, ...]``.
      key: eval key; batch ``i`` gets ``fold_in(key, i)``.
      batch_size: eval batch size; a last partial batch is padded (by repeating its rows) to this
        size so one compiled program serves every batch, and padded rows are dropped on the host.
      mesh: optional device mesh; batches are sharded over its data axis.

    Returns:
      ``{name: mean over the N examples}`` (float64 accumulation) plus ``'num_examples'``.
    """
    n = _leading_dim(eval_data)
    if n == 0:
        raise ValueError("`eval_data` must hold at least one example.")
    bs = int(batch_size)
    if bs < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size!r}.")
    if mesh is None:
        bs = min(bs, n)
    else:
        ndev = mesh.devices.size
        bs = -(-min(bs, n) // ndev) * ndev  # a multiple of the device count
    sums: dict[str, float] = {}
    seen = 0
    for i, lo in enumerate(range(0, n, bs)):
        m = min(bs, n - lo)
        idx = np.arange(lo, lo + bs)
        idx = np.where(idx < lo + m, idx, lo + (idx - lo) % m)  # pad by repeating real rows
        chunk = {k: np.asarray(v)[idx] for k, v in eval_data.items()}
        out = _to_host(eval_step(state, _put(chunk, mesh), jax.random.fold_in(key, i)))
        for name, val in out.items():
            val = np.asarray(val)
            if val.shape != (bs,):
                raise ValueError(
                    f"eval_step must return per-example values of shape [{bs}]; {name!r} has shape {val.shape}."
                )
            sums[name] = sums.get(name, 0.0) + float(np.sum(val[:m], dtype=np.float64))
        seen += m
    assert seen == n
    means = {k: v / n for k, v in sums.items()}
    means["num_examples"] = n
    return means


def _agree(flags: tuple[bool, ...]) -> tuple[bool, ...]:
    """Each flag OR-ed over all processes (one host all-gather); the flags themselves on one host."""
    if jax.process_count() == 1:
        return flags
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.asarray(flags, dtype=np.int32))
    return tuple(bool(v) for v in np.asarray(gathered).reshape(-1, len(flags)).any(axis=0))


def _write_json_atomic(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def fit(
    state: PyTree,
    train_step: Callable,
    train_iter: Iterator,
    train: TrainConfig,
    *,
    workdir: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    resume: str = "auto",
    eval_step: Callable | None = None,
    eval_data: Mapping[str, Any] | None = None,
    image_fn: Callable | None = None,
    mesh=None,
) -> tuple[PyTree, dict]:
    """Train ``state`` to ``train.num_steps`` steps, resuming from ``workdir`` when it holds a checkpoint.

    In a notebook: ``fit(state, step, batches, TrainConfig(num_steps=500))`` trains in memory (no
    ``workdir``: nothing is written, any iterable of batches will do); with a ``workdir`` it
    checkpoints and logs there, and re-running the cell resumes (``resume="auto"``), says so, and
    refuses when the run's settings changed in anything but the loop's bookkeeping.

    Args:
      state: initial ``TrainState`` (ignored apart from its structure when a checkpoint exists).
      train_step: ``step(state, batch) -> (state, metrics)``; metrics are scalars. When it has a
        ``count_examples(batch)`` method (the steps of :mod:`jaxvae.train.steps` and
        :mod:`jaxvae.train.multi` do), the logged ``examples_per_sec`` counts with it (e.g. every
        member's examples for several seeds in one program); else the batch's leading dimension.
      train_iter: iterable of host batches (dicts of arrays). To checkpoint the data order it must
        provide ``get_state()`` / ``set_state()`` (e.g. :class:`jaxvae.data.loader.BatchIterator`;
        its state goes into every checkpoint, so a resumed run sees exactly the batches it would have
        seen); a plain iterable (a list, a generator) is accepted when nothing is resumed
        (``workdir=None`` or ``resume="never"``).
      train: the loop's settings (:class:`TrainConfig`: steps, evaluation, logging, checkpoints,
        sync, time limit).
      workdir: run directory: ``checkpoints/``, ``metrics.jsonl``, TensorBoard events, ``images/``,
        ``config.json``. ``None``: in memory: no checkpoint, log or image is written (records are
        printed and returned in ``history``; SIGTERM stops the loop without saving).
      config: JSON-serialisable dict (or dataclass) of the settings that define the run (model,
        optimizer, data, ...), written to ``config.json`` and into every checkpoint. Resuming
        compares it with the checkpoint's and refuses, naming the fields, when they differ anywhere
        but in the ``train`` fields that do not change the trajectory (the step budget and the
        evaluation, logging, checkpoint, sync and time-limit settings). ``None``: ``{"train": train}``.
      resume: with a ``workdir``: ``"auto"`` resumes from its newest checkpoint when there is one
        (and prints ``resuming from step N of DIR``), ``"never"`` refuses a ``workdir`` that holds
        checkpoints (two runs would mix there), ``"must"`` refuses one that holds none.
      eval_step: ``eval_step(state, batch, key) -> dict[str, Array[B]]``.
      eval_data: dict of host arrays ``[N, ...]`` evaluated exactly once per example.
      image_fn: ``image_fn(state, key) -> {name: [N, H, W(, C)] in [0, 1]}``, written as PNG grids
        at each evaluation.
      mesh: optional ``jax.sharding.Mesh``; batches are sharded over its data axis (the caller
        places ``state``, e.g. with ``jaxvae.train.sharding.replicate``).

    Returns:
      ``(state, history)`` with ``history = {"train": [records], "eval": [records],
      "start_step": int, "end_step": int, "preempted": bool, "time_limited": bool}``. A time-limited
      run is evaluated at the step it stopped, as at the end. When the checkpoint is already at
      ``num_steps`` no step is taken, nothing is written, and ``history["eval"]`` holds one
      evaluation of the restored state (when ``eval_step`` is given).

    Raises:
      ValueError: bad arguments; non-finite values in the first batch or in ``eval_data`` (the
        message names the key); a checkpoint of a different run in ``workdir``; a resume policy
        that the ``workdir`` contradicts.
    """
    check_one_of("resume", resume, RESUME_POLICIES)
    if not isinstance(train, TrainConfig):
        raise ValueError(f"`train` must be a jaxvae.train.loop.TrainConfig; got {type(train).__name__}.")
    num_steps, eval_every, log_every = train.num_steps, train.eval_every, train.log_every
    checkpoint_every, sync_every, time_limit_s = train.checkpoint_every, train.sync_every, train.time_limit_s
    progress = train.progress
    t_call = _clock()
    stateful = hasattr(train_iter, "get_state") and hasattr(train_iter, "set_state")
    resumable = workdir is not None and resume != "never"
    if resumable and not stateful:
        raise ValueError(
            "`train_iter` must provide get_state() and set_state() so that a checkpoint can resume the data "
            f"order exactly (e.g. jaxvae.data.loader.BatchIterator); got {type(train_iter).__name__}. A plain "
            "iterable works in memory (workdir=None) or with resume='never'."
        )
    if workdir is None and resume == "must":
        raise ValueError("resume='must' needs a `workdir` holding a checkpoint; got workdir=None.")
    if not hasattr(train_iter, "__next__"):
        train_iter = iter(train_iter)
    if (eval_data is None) != (eval_step is None):
        raise ValueError("`eval_step` and `eval_data` must be given together.")
    if eval_data is not None:
        _leading_dim(eval_data)
        check_finite_batch(eval_data, where="eval_data")
    try:
        config_json = config_to_dict({"train": train} if config is None else config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`config` must be a JSON-serialisable dict or a dataclass; {e}") from None

    ckpt = restored = None
    if workdir is not None:
        from jaxvae.train.checkpoint import CheckpointManager

        workdir = os.fspath(workdir)
        os.makedirs(workdir, exist_ok=True)
        ckpt = CheckpointManager(os.path.join(workdir, "checkpoints"), keep=train.keep_checkpoints)
        latest = ckpt.latest_step()
        if resume == "never" and latest is not None:
            ckpt.close()
            raise ValueError(
                f"{workdir} holds checkpoints up to step {latest}, and resume='never' would mix two runs there: "
                "use another workdir, delete its checkpoints directory, or resume with resume='auto'."
            )
        if resume == "must" and latest is None:
            ckpt.close()
            raise ValueError(f"resume='must', but {workdir} holds no checkpoint to resume.")
        if latest is not None:
            restored = ckpt.restore_latest(state, expected_config=config_json)
    if restored is not None:
        state, data_state, _ = restored
        if data_state is None:
            ckpt.close()
            raise ValueError(
                f"the checkpoint in {workdir} holds no data order (it was written with resume='never' and a "
                "plain iterable), so it cannot be resumed exactly: use another workdir."
            )
        train_iter.set_state(data_state)
    start = int(_fetch_replicated(state.step))
    if restored is not None and jax.process_index() == 0:
        print(f"resuming from step {start} of {workdir}", flush=True)
    history: dict[str, Any] = {
        "train": [],
        "eval": [],
        "start_step": start,
        "end_step": start,
        "preempted": False,
        "time_limited": False,
    }

    def eval_key(st, t):
        return jax.random.fold_in(jax.random.fold_in(st.key, _EVAL_SALT), t)

    if start >= num_steps:
        if eval_step is not None:
            ev = evaluate(
                eval_step,
                state,
                eval_data,
                eval_key(state, start),
                batch_size=train.eval_batch_size or train.batch_size,
                mesh=mesh,
            )
            history["eval"].append({"step": start, **ev})
        if ckpt is not None:
            ckpt.close()
        return state, history

    lead = jax.process_index() == 0  # on several hosts, process 0 alone writes logs and images
    if lead and workdir is not None:
        _write_json_atomic(os.path.join(workdir, "config.json"), config_json)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=num_steps,
        initial=start,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=not (progress and lead),
    )
    if not lead:
        writer = _SilentWriter()
    elif workdir is None:
        writer = _PrintWriter(bar.write if progress else print)
    else:
        from jaxvae.train.writers import MetricWriter

        resume_step = start if restored is not None else None
        writer = MetricWriter(workdir, resume_step=resume_step, print_fn=bar.write if progress else None)
    if restored is None:
        writer.write_hparams(config_json)

    stop = _StopFlag()
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    skipped_so_far, consecutive_skips, skip_start, skip_end = None, 0, None, None

    try:
        batch = next(train_iter)
        check_finite_batch(batch, where="first training batch")
        count = getattr(train_step, "count_examples", None)
        # each host feeds its own slice of every batch
        examples_per_step = (count(batch) if count is not None else _leading_dim(batch)) * jax.process_count()
        eval_bs = train.eval_batch_size or train.batch_size
        window: dict[str, float] = {}
        window_steps, window_time = 0, 0.0
        pending: list = []  # device metrics of steps not yet fetched
        t = start
        for t in range(start + 1, num_steps + 1):
            if t > start + 1:
                batch = next(train_iter)
            if t == start + 1:
                tic = time.perf_counter()
            state, metrics = train_step(state, _put(batch, mesh))
            pending.append(metrics)
            log_now = t % log_every == 0 or t == num_steps
            eval_now = eval_step is not None and ((eval_every and t % eval_every == 0) or t == num_steps)
            ckpt_now = t % checkpoint_every == 0 or t == num_steps
            if not (t == start + 1 or t % sync_every == 0 or log_now or eval_now or ckpt_now):
                continue
            fetched = _fetch_replicated(pending)  # the sync (see module docstring)
            pending = []
            toc = time.perf_counter()
            if t == start + 1:
                first_step_s = toc - tic  # includes compilation; kept out of the throughput
            else:
                window_time += toc - tic
            tic = toc
            over_time = time_limit_s is not None and t < num_steps and _clock() - t_call > time_limit_s
            # agreed across hosts; a signal arriving after this line is acted on at the next sync
            stop_now, over_time = _agree((stop.set, over_time))
            if over_time:
                history["time_limited"] = True
                # log the partial window, evaluate as at the end of training, save, then stop below
                log_now = ckpt_now = True
                eval_now = eval_step is not None
            skips_here = []
            for i, m in enumerate(fetched):
                for k, v in m.items():
                    window[k] = window.get(k, 0.0) + float(np.asarray(v))
                if "skipped" in m:  # a cumulative count: compare with the step before
                    now = int(np.asarray(m["skipped"]))
                    step_t = t - len(fetched) + 1 + i
                    if skipped_so_far is not None and now > skipped_so_far:
                        skips_here.append(step_t)
                        consecutive_skips, skip_start, skip_end = consecutive_skips + 1, skip_start or step_t, step_t
                    elif skipped_so_far is not None:
                        consecutive_skips, skip_start = 0, None
                    skipped_so_far = now
            if skips_here:
                bar.write(
                    f"warning: step(s) {_ranges(skips_here)} skipped: a non-finite loss, gradient or update was not "
                    f"applied ({skipped_so_far} skipped in all)."
                )
            limit = train.max_consecutive_skips
            if limit and consecutive_skips >= limit:
                good = ckpt.last_good_step() if ckpt is not None else None
                where = f"{ckpt.directory}/{good}" if good is not None else "none (no checkpoint was written)"
                raise TrainingDiverged(
                    f"{consecutive_skips} consecutive steps ({skip_start}-{skip_end}) "
                    "were skipped: their loss, gradient or update was not finite, so the run has diverged and every "
                    f"further step would be skipped too. The parameters are those before step {skip_start}; the last "
                    f"checkpoint known good: {where}. Lower the learning rate or clip the gradients, or raise "
                    "train.max_consecutive_skips."
                )
            window_steps += len(fetched)
            metrics = fetched[-1]
            bar.update(len(fetched))

            if log_now:
                rec = {f"train/{k}": v / window_steps for k, v in window.items()}
                if "skipped" in metrics:
                    rec["train/skipped"] = int(np.asarray(metrics["skipped"]))
                timed_steps = window_steps - (1 if t - window_steps == start else 0)
                if timed_steps > 0 and window_time > 0:
                    rec["examples_per_sec"] = examples_per_step * timed_steps / window_time
                    rec["steps_per_sec"] = timed_steps / window_time
                if t - window_steps == start:
                    rec["first_step_sec"] = first_step_s
                writer.write_scalars(t, rec)
                history["train"].append({"step": t, **rec})
                bar.set_postfix(
                    loss=f"{rec.get('train/loss', float('nan')):.4g}",
                    ex_per_s=f"{rec.get('examples_per_sec', 0.0):.4g}",
                )
                window, window_steps, window_time = {}, 0, 0.0

            if eval_now:
                ev = evaluate(eval_step, state, eval_data, eval_key(state, t), batch_size=eval_bs, mesh=mesh)
                writer.write_scalars(t, {f"eval/{k}": v for k, v in ev.items()})
                history["eval"].append({"step": t, **ev})
                if image_fn is not None:
                    imgs = _fetch_replicated(image_fn(state, jax.random.fold_in(eval_key(state, t), _IMAGE_SALT)))
                    writer.write_images(t, imgs)

            if (ckpt_now or stop_now) and ckpt is not None:
                data_state = train_iter.get_state() if stateful else None
                ckpt.save(t, state, data_state=data_state, config=config_json)
            if eval_now or ckpt_now or stop_now:
                tic = time.perf_counter()  # evaluation and saving stay out of the throughput
            if stop_now:
                history["preempted"] = True
                history["signal"] = stop.signum
                why = f"signal {stop.signum} received" if stop.signum else "stop signal received by another process"
                saved = "checkpoint saved" if ckpt is not None else "in memory, nothing saved"
                bar.write(f"{why}: stopped at step {t} ({saved}); re-run the same command to resume.")
                break
            if history["time_limited"]:
                bar.write(f"time limit of {time_limit_s} s reached: stopped at step {t} of {num_steps}.")
                break
        history["end_step"] = t
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        writer.close()
        bar.close()
        if ckpt is not None:
            ckpt.close()
    return state, history

"""Atomic, resumable checkpoints of a ``TrainState`` plus the data-iterator state and the config.

A thin wrapper over ``orbax.checkpoint.CheckpointManager``. Each checkpoint is one step directory
``<workdir>/<step>/`` with four items:

- ``state``: the ``TrainState`` pytree (PRNG key arrays are stored as their raw ``uint32`` data and
  re-wrapped on restore);
- ``data``: the data iterator's ``get_state()`` dict (JSON);
- ``config``: the run's config dict (JSON);
- ``meta``: a fingerprint of the state's tree structure, shapes and dtypes, used to refuse a
  checkpoint of a different run with an error that says what differs and what to do; a SHA-256
  checksum of the state's bytes and whether every value was finite.

Integrity: a restored state is verified against its checksum and must be finite. A checkpoint that
fails (damaged bytes, unreadable files, a step directory without Orbax's metadata) is reported by path,
moved aside to ``<workdir>_damaged/`` (so that training can write that step again), and the newest
intact older checkpoint is restored instead. Rotation keeps the ``keep`` newest checkpoints and, if none
of them was finite when saved, also the newest one that was.

Atomicity: Orbax writes into ``<step>.orbax-checkpoint-tmp-*`` and renames the directory when the
write is complete, so a process killed during a save leaves the previous checkpoint intact; the
temporary directory is ignored on restore.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvae.config import to_json_value
from jaxvae.typing import PyTree

_METADATA_FILE = "_CHECKPOINT_METADATA"
_ITEMS = ("state", "data", "config", "meta")


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _strip_keys(tree: PyTree) -> PyTree:
    """Replace typed PRNG key arrays by their raw ``uint32`` data (Orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    """Shape/dtype/sharding target for Orbax; typed keys become their ``uint32`` data layout."""
    if _is_key(x):
        x = jax.eval_shape(jax.random.key_data, x) if isinstance(x, jax.ShapeDtypeStruct) else (jax.random.key_data(x))
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)


def _rewrap_keys(restored: PyTree, like: PyTree) -> PyTree:
    def f(r, ref):
        if _is_key(ref):
            return jax.random.wrap_key_data(r, impl=jax.random.key_impl(ref))
        return r

    return jax.tree.map(f, restored, like)


def tree_fingerprint(tree: PyTree) -> dict[str, list]:
    """``{path: [shape, dtype]}`` for every leaf of ``tree`` (arrays or ``ShapeDtypeStruct``)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = getattr(leaf, "dtype", np.asarray(leaf).dtype)
        out[jax.tree_util.keystr(path)] = [list(np.shape(leaf)), str(dtype)]
    return out


def state_checksum(state: PyTree) -> tuple[str, bool]:
    """``(SHA-256 of the bytes of every leaf in tree order, whether every floating leaf is finite)``.

    PRNG keys count by their raw data. On several hosts each process reads its own replica of a
    replicated state, so every process computes the same checksum.
    """
    h = hashlib.sha256()
    finite = True
    for x in jax.tree.leaves(_strip_keys(state)):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        a = np.ascontiguousarray(np.asarray(x))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            finite = False
    return h.hexdigest(), finite


def json_checksum(obj: Any) -> str:
    """SHA-256 of a JSON value written canonically (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _digest(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def describe_mismatch(saved: dict, current: dict, *, limit: int = 5) -> list[str]:
    """Human-readable differences between two ``tree_fingerprint`` dicts (at most ``limit``)."""
    lines = []
    for k in sorted(set(saved) - set(current)):
        lines.append(f"{k} is in the checkpoint but not in this model")
    for k in sorted(set(current) - set(saved)):
        lines.append(f"{k} is in this model but not in the checkpoint")
    for k in sorted(set(saved) & set(current)):
        if saved[k] != current[k]:
            (s1, d1), (s2, d2) = saved[k], current[k]
            lines.append(f"{k}: checkpoint has shape {tuple(s1)} {d1}, this model {tuple(s2)} {d2}")
    lines.sort(key=lambda line: not line.startswith(".params"))  # parameters first: most telling
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


#: ``train`` settings a resumed run may change: they do not change the trajectory (the step budget, and
#: when the loop evaluates, logs, saves, syncs or stops).
RESUMABLE_TRAIN_FIELDS = (
    "num_steps",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "eval_batch_size",
    "keep_checkpoints",
    "progress",
    "sync_every",
    "time_limit_s",
    "max_consecutive_skips",
)


def config_differences(saved: Any, current: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted path, saved value, current value)`` where two JSON configs differ, leaving out the
    :data:`RESUMABLE_TRAIN_FIELDS` of their ``train`` section."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(saved) | set(current)):
            sub_path = f"{path}.{k}" if path else str(k)
            if path == "train" and k in RESUMABLE_TRAIN_FIELDS:
                continue
            a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
            if isinstance(a, dict) and b == "<absent>" or isinstance(b, dict) and a == "<absent>":
                # a section absent on one side: compare its fields (those a resume may change are left out)
                a, b = (a if isinstance(a, dict) else {}), (b if isinstance(b, dict) else {})
            out.extend(config_differences(a, b, sub_path))
        return out
    return [] if saved == current else [(path, saved, current)]


class CheckpointManager:
    """Keeps the latest ``keep`` checkpoints of a run in ``workdir``.

    Args:
      workdir: directory of the checkpoints (created if missing); one sub-directory per step.
      keep: number of most recent checkpoints kept (older ones are deleted after a save).

    Example::

        ckpt = CheckpointManager(os.path.join(run_dir, "checkpoints"))
        restored = ckpt.restore_latest(state)
        if restored is not None:
            state, data_state, config = restored
        ...
        ckpt.save(int(state.step), state, data_state=it.get_state(), config=config)
    """

    def __init__(self, workdir: str | os.PathLike, keep: int = 2, *, print_fn=None):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"`keep` must be an int >= 1; got {keep!r}.")
        self.keep = keep
        self.directory = os.path.abspath(os.fspath(workdir))
        self.damaged_directory = self.directory.rstrip(os.sep) + "_damaged"
        self._print = print_fn or (lambda s: print(s, flush=True))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"the checkpoint directory {self.directory} is a file; move it or choose another workdir.")
        options = ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=False, create=True)
        self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    # ------------------------------------------------------------------ save
    def save(self, step: int, state: PyTree, data_state: dict, config: dict) -> None:
        """Write checkpoint ``step`` (blocking; atomic by directory rename).

        Args:
          step: the step number (usually ``int(state.step)``).
          state: the ``TrainState`` (or any pytree of arrays).
          data_state: JSON-serialisable dict (the data iterator's ``get_state()``).
          config: JSON-serialisable dict of the run's config.
        """
        fp = tree_fingerprint(jax.tree.map(_abstract, state))
        checksum, finite = state_checksum(state)
        data_state, config = to_json_value(data_state), to_json_value(config)
        meta = {
            "fingerprint": _digest(fp),
            "leaves": fp,
            "checksum": checksum,
            "finite": finite,
            "data_checksum": json_checksum(data_state),
            "config_checksum": json_checksum(config),
        }
        meta["meta_checksum"] = json_checksum(meta)
        self._mgr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_strip_keys(state)),
                data=ocp.args.JsonSave(data_state),
                config=ocp.args.JsonSave(config),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        self._mgr.wait_until_finished()
        self._rotate()

    def _rotate(self) -> None:
        """Delete all but the ``keep`` newest checkpoints, keeping also the newest finite one when none of
        those is finite (a run that turned non-finite keeps its last good state)."""
        steps = self.all_steps()
        kept = steps[-self.keep :]
        if not any(self._finite(s) for s in kept):
            good = [s for s in steps[: -self.keep] if self._finite(s)]
            kept = kept + good[-1:]
        if jax.process_index() != 0:
            return
        for s in steps:
            if s not in kept:
                self._mgr.delete(s)

    def _finite(self, step: int) -> bool:
        try:
            return bool(self.read_json(step, "meta").get("finite", True))
        except Exception:  # unreadable meta: not known good
            return False

    def last_good_step(self) -> int | None:
        """The newest checkpoint that was finite when saved (its checksum is verified when restored)."""
        good = [s for s in self.all_steps() if self._finite(s)]
        return good[-1] if good else None

    # --------------------------------------------------------------- restore
    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (step directories without Orbax's metadata, which
        is written last, excluded)."""
        self._mgr.reload()
        steps = [int(s) for s in self._mgr.all_steps()]
        return sorted(s for s in steps if os.path.exists(os.path.join(self.directory, str(s), _METADATA_FILE)))

    def _step_dirs(self) -> list[int]:
        """Every step-named directory (complete or not), ascending."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())

    def _set_aside(self, step: int, why: str) -> None:
        """Report a damaged checkpoint by path and move it to the damaged directory (process 0)."""
        path = os.path.join(self.directory, str(step))
        dest = os.path.join(self.damaged_directory, f"{step}-{time.strftime('%Y%m%dT%H%M%S')}")
        if jax.process_index() == 0 and os.path.exists(path):
            os.makedirs(self.damaged_directory, exist_ok=True)
            shutil.move(path, dest)
        self._print(f"checkpoint {path} is damaged ({why}); moved to {dest}.")
        self._mgr.reload()

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None``."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def read_json(self, step: int, item: str) -> dict:
        """Read one JSON item (``'data'``, ``'config'`` or ``'meta'``) of checkpoint ``step``."""
        if item not in ("data", "config", "meta"):
            raise ValueError(f"`item` must be one of 'data', 'config', 'meta'; got {item!r}.")
        out = self._mgr.restore(int(step), args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))
        return out[item]

    def restore_latest(
        self, abstract_state: PyTree, *, expected_config: dict | None = None
    ) -> tuple[PyTree, dict, dict] | None:
        """Restore the newest complete checkpoint, or return ``None`` when there is none.

        Args:
          abstract_state: a pytree with the target structure: concrete arrays or
            ``jax.ShapeDtypeStruct`` s (their shardings are used for placement).
          expected_config: optional config dict of the current run; when given, it must equal the
            checkpoint's except for the :data:`RESUMABLE_TRAIN_FIELDS` of its ``train`` section.

        Returns:
          ``(state, data_state, config)``.

        Raises:
          ValueError: the checkpoint holds a different run (tree structure, shapes, dtypes or the
            config differ); the message lists the differences and what to do.
        """
        complete = set(self.all_steps())
        for step in self._step_dirs():  # a directory without metadata would block a save of that step
            if step not in complete:
                self._set_aside(step, "incomplete: no checkpoint metadata")
        target = jax.tree.map(_abstract, abstract_state)
        current = tree_fingerprint(target)
        damaged = []
        for step in sorted(complete, reverse=True):
            try:
                meta = self.read_json(step, "meta")
                saved_config = self.read_json(step, "config")
            except Exception as e:
                damaged.append(step)
                self._set_aside(step, f"its metadata cannot be read: {type(e).__name__}")
                continue
            if "meta_checksum" in meta and json_checksum(
                {k: v for k, v in meta.items() if k != "meta_checksum"}
            ) != meta.get("meta_checksum"):
                damaged.append(step)
                self._set_aside(step, "its metadata does not match the checksum written with it")
                continue
            if "config_checksum" in meta and json_checksum(saved_config) != meta["config_checksum"]:
                damaged.append(step)
                self._set_aside(step, "its config does not match the checksum written with it")
                continue
            problems = []
            if meta.get("leaves") != current:
                problems += describe_mismatch(meta.get("leaves", {}), current)
            if expected_config is not None:
                for path, have, want in config_differences(saved_config, to_json_value(expected_config)):
                    problems.append(f"config {path}: checkpoint has {have!r}, this run has {want!r}")
            if problems:
                raise ValueError(
                    f"The checkpoint at {self.directory}/{step} belongs to a different run than this one:\n  - "
                    + "\n  - ".join(problems)
                    + "\nUse a fresh workdir for the new settings, or delete the old checkpoints directory to "
                    "start over, or run with the config that wrote the checkpoint to resume it."
                )
            try:
                out = self._mgr.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(target),
                        data=ocp.args.JsonRestore(),
                        config=ocp.args.JsonRestore(),
                    ),
                )
                checksum, finite = state_checksum(out["state"])
            except Exception as e:
                damaged.append(step)
                self._set_aside(step, f"its arrays cannot be read: {type(e).__name__}: {str(e)[:200]}")
                continue
            if "checksum" in meta and checksum != meta["checksum"]:
                damaged.append(step)
                self._set_aside(step, "its arrays do not match the checksum written with them")
                continue
            if "data_checksum" in meta and json_checksum(out["data"]) != meta["data_checksum"]:
                damaged.append(step)
                self._set_aside(step, "its data-iterator state does not match the checksum written with it")
                continue
            if not finite:
                damaged.append(step)
                self._set_aside(step, "it holds non-finite values")
                continue
            if damaged:
                self._print(f"resuming from the newest intact checkpoint, {self.directory}/{step}.")
            state = _rewrap_keys(out["state"], abstract_state)
            return state, out["data"], out["config"]
        if damaged:
            raise ValueError(
                f"no intact checkpoint in {self.directory}: steps {sorted(damaged)} were damaged and moved to "
                f"{self.damaged_directory}. Re-run to start from step 0, or restore a copy of the checkpoints."
            )
        return None

    def close(self) -> None:
        """Wait for pending writes and release Orbax resources."""
        self._mgr.wait_until_finished()
        self._mgr.close()

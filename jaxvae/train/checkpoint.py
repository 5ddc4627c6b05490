"""Atomic, resumable checkpoints of a ``TrainState`` plus the data-iterator state and the config.

A thin wrapper over ``orbax.checkpoint.CheckpointManager``. Each checkpoint is one step directory
``<workdir>/<step>/`` with four items:

- ``state``: the ``TrainState`` pytree (PRNG key arrays are stored as their raw ``uint32`` data and
  re-wrapped on restore);
- ``data``: the data iterator's ``get_state()`` dict (JSON);
- ``config``: the run's config dict (JSON);
- ``meta``: a fingerprint of the state's tree structure, shapes and dtypes, used to refuse a
  checkpoint of a different run with an error that says what differs and what to do.

Atomicity: Orbax writes into ``<step>.orbax-checkpoint-tmp-*`` and renames the directory when the
write is complete, so a process killed during a save leaves the previous checkpoint intact; the
temporary directory is ignored on restore. Step directories lacking Orbax's metadata file (which
is written last) are skipped as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvae.config import to_json_value
from jaxvae.typing import PyTree

_METADATA_FILE = "_CHECKPOINT_METADATA"
_ITEMS = ("state", "data", "config", "meta")

log = logging.getLogger(__name__)


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

    def __init__(self, workdir: str | os.PathLike, keep: int = 2):
        if int(keep) < 1:
            raise ValueError(f"`keep` must be >= 1; got {keep!r}.")
        self.directory = os.path.abspath(os.fspath(workdir))
        options = ocp.CheckpointManagerOptions(max_to_keep=int(keep), enable_async_checkpointing=False, create=True)
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
        meta = {"fingerprint": _digest(fp), "leaves": fp}
        self._mgr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_strip_keys(state)),
                data=ocp.args.JsonSave(to_json_value(data_state)),
                config=ocp.args.JsonSave(to_json_value(config)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        self._mgr.wait_until_finished()

    # --------------------------------------------------------------- restore
    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (partial writes excluded)."""
        self._mgr.reload()
        steps = []
        for s in self._mgr.all_steps():
            if os.path.exists(os.path.join(self.directory, str(s), _METADATA_FILE)):
                steps.append(int(s))
            else:
                log.warning("skipping incomplete checkpoint %s/%s", self.directory, s)
        return sorted(steps)

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
        step = self.latest_step()
        if step is None:
            return None
        meta = self.read_json(step, "meta")
        saved_config = self.read_json(step, "config")
        target = jax.tree.map(_abstract, abstract_state)
        current = tree_fingerprint(target)
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
                + "\nUse a fresh workdir for the new settings, or delete the old checkpoints directory to start "
                "over, or run with the config that wrote the checkpoint to resume it."
            )
        out = self._mgr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        state = _rewrap_keys(out["state"], abstract_state)
        return state, out["data"], out["config"]

    def close(self) -> None:
        """Wait for pending writes and release Orbax resources."""
        self._mgr.wait_until_finished()
        self._mgr.close()

"""Several models in one compiled program: seeds (or configs) as a leading *member* axis of the state.

A member is one independent model: its own parameters, model state, optimizer state, PRNG key and
skip counter. :func:`stack_states` stacks ``S`` ordinary :class:`~jaxvae.train.state.TrainState` s on
a leading axis ``[S, ...]`` (the step counter stays one shared scalar), and
:func:`make_multi_train_step` runs the engine's train step under ``jax.vmap`` over that axis: one
compiled program updates all ``S`` members per call, each exactly as
:func:`~jaxvae.train.steps.make_train_step` would update it alone on its batch (same key
``fold_in(member.key, step)``, same non-finite skip, same update; ``tests/train/test_multi.py``).
On a CPU or an accelerator that a single small model does not fill, ``S`` members cost much less
than ``S`` runs; paired comparisons across seeds (:mod:`jaxvae.metrics.paired`) use it.

Batches, by ``batch_axes``:

- ``None``: every member sees the same batch (seeds differ in initialisation and in all noise);
- ``0``: every entry carries the member axis, ``[S, B, ...]``; member ``i`` trains on entry ``[i]``
  (e.g. each seed on its own data, :class:`jaxvae.data.loader.StackedIterator`);
- a dict ``{entry: 0 or None}``: per entry (e.g. a per-member hyperparameter ``{"beta": 0}`` next
  to shared images ``{"x": None}``; the loss reads ``batch["beta"]``, a scalar for each member).

Usage::

    states = [create_train_state(jax.random.key(100 + s), *vae.init(cfg, s), tx) for s in seeds]
    step = make_multi_train_step(vae.make_loss_fn(cfg), tx)
    state, history = fit(stack_states(states), step, BatchIterator(data, 128, seed=0), train, workdir=...)
    params_of_seed_2 = member_state(state, 2).params
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvae.train.state import LossFn, TrainState
from jaxvae.train.steps import StepFunction, check_compiler_options, train_step_body
from jaxvae.typing import PyTree

__all__ = ["make_multi_step", "make_multi_train_step", "member_state", "num_members", "stack_states"]


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """One state whose leaves carry a leading member axis ``[S, ...]``; ``step`` stays one shared scalar.

    Raises:
      ValueError: if ``states`` is empty, the members' trees differ, or their steps differ.
    """
    states = list(states)
    if not states:
        raise ValueError("`states` must hold at least one TrainState (one per member).")
    trees = {jax.tree.structure(s) for s in states}
    if len(trees) != 1:
        raise ValueError("every member's TrainState must have the same tree structure (same model and optimizer).")
    steps = {int(np.asarray(s.step)) for s in states}
    if len(steps) != 1:
        raise ValueError(f"every member must be at the same step; got steps {sorted(steps)}.")
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
    return stacked._replace(step=jnp.asarray(states[0].step))


def num_members(state: TrainState) -> int:
    """``S``, the number of members of a stacked state."""
    return int(np.shape(state.skipped)[0]) if np.ndim(state.skipped) == 1 else 0


def member_state(state: TrainState, i: int) -> TrainState:
    """Member ``i`` of a stacked state as a plain :class:`TrainState` (a view on its slices)."""
    n = num_members(state)
    if not 0 <= i < n:
        raise ValueError(f"`i` must lie in [0, {n}) (the state's members); got {i!r}.")
    return jax.tree.map(lambda a: a[i], state._replace(step=jnp.broadcast_to(state.step, (n,))))


def _axes_of(batch_axes: Any, batch: Mapping[str, Any]) -> Any:
    if batch_axes is None or batch_axes == 0:
        return batch_axes
    return {k: batch_axes.get(k) for k in batch}


class MultiStepFunction(StepFunction):
    """The step of :func:`make_multi_train_step`: ``step(state, batch)``; checks as :class:`StepFunction`."""

    def __init__(self, body, transform, batch_axes, tables, first_check):
        super().__init__(body, transform, "multi_train_step", 1, first_check)
        self._batch_axes = batch_axes
        self._tables = tables

    def __call__(self, state, batch):
        self.members = num_members(state)
        if self.members < 1:
            raise ValueError(
                "multi_train_step: `state` has no member axis; build it with jaxvae.train.multi.stack_states."
            )
        if isinstance(batch, Mapping):
            axes = _axes_of(self._batch_axes, batch)
            for k, v in batch.items():
                ax = axes.get(k) if isinstance(axes, dict) else axes
                if ax == 0 and (np.ndim(v) < 1 or np.shape(v)[0] != self.members):
                    raise ValueError(
                        f"multi_train_step: batch[{k!r}] has shape {np.shape(v)}; an entry with member axis 0 "
                        f"needs [S={self.members}, ...]."
                    )
        return super().__call__(state, batch, self._tables)

    def count_examples(self, batch: Any) -> int:
        """Examples one call consumes over all members: ``S * B`` for a shared batch ``[B, ...]`` and
        for per-member batches ``[S, B, ...]``; entries that carry only the member axis (a per-member
        setting) are not examples."""
        axes = _axes_of(self._batch_axes, batch) if isinstance(batch, Mapping) else self._batch_axes
        for k, x in batch.items() if isinstance(batch, Mapping) else enumerate(jax.tree.leaves(batch)):
            ax = axes.get(k) if isinstance(axes, dict) else axes
            shape = np.shape(x)
            if ax is None and len(shape) >= 1:
                return max(self.members, 1) * shape[0]
            if ax == 0 and len(shape) >= 2:
                return shape[0] * shape[1]
        raise ValueError("multi_train_step: the batch holds no entry with an example axis.")


def make_multi_step(
    step_body: Callable[[TrainState, Any], tuple[TrainState, dict]],
    *,
    batch_axes: int | Mapping[str, int | None] | None = None,
    donate: bool = True,
    jit: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
    tables: PyTree | None = None,
    gather: Callable[[Any, PyTree], Any] | None = None,
) -> MultiStepFunction:
    """``step(stacked_state, batch)`` running ``step_body`` once per member under ``jax.vmap``.

    ``step_body(member_state, batch) -> (member_state, metrics)`` is one member's whole update, traced
    (not jitted), with ``member_state.step`` a scalar; it derives its own keys from the state (e.g.
    :func:`~jaxvae.train.steps.train_step_body` with ``fold_in(state.key, state.step)``, or an
    adversarial step's body). :func:`make_multi_train_step` is this with the engine's ELBO-style body.
    The arguments are those of :func:`make_multi_train_step`; the metrics are the means over members,
    ``'loss_max_over_members'`` (when the body reports ``'loss'``) and ``'skipped'`` summed.
    """
    if not callable(step_body):
        raise ValueError(f"`step_body` must be callable; got {type(step_body).__name__}.")
    if not (batch_axes is None or batch_axes == 0 or isinstance(batch_axes, Mapping)):
        raise ValueError(f"`batch_axes` must be None, 0 or a dict of entry -> 0/None; got {batch_axes!r}.")
    if isinstance(batch_axes, Mapping) and any(v not in (0, None) for v in batch_axes.values()):
        raise ValueError(f"`batch_axes` values must be 0 or None; got {dict(batch_axes)!r}.")
    if (tables is None) != (gather is None):
        raise ValueError("`tables` and `gather` must be given together.")

    def body(state: TrainState, batch, tables_arg):
        if gather is not None:
            batch = gather(batch, tables_arg)
        n = state.skipped.shape[0]
        members = state._replace(step=jnp.broadcast_to(state.step, (n,)))
        new, m = jax.vmap(step_body, in_axes=(0, _axes_of(batch_axes, batch)))(members, batch)
        metrics = {k: jnp.mean(v) for k, v in m.items() if k != "skipped"}
        if "loss" in m:
            metrics["loss_max_over_members"] = jnp.max(m["loss"])
        metrics["skipped"] = jnp.sum(new.skipped)
        return new._replace(step=new.step[0]), metrics

    transform = None
    if jit:
        transform = functools.partial(
            jax.jit, donate_argnums=(0,) if donate else (), compiler_options=check_compiler_options(compiler_options)
        )
    return MultiStepFunction(body, transform, batch_axes, tables, None)


def make_multi_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    batch_axes: int | Mapping[str, int | None] | None = None,
    donate: bool = True,
    jit: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
    tables: PyTree | None = None,
    gather: Callable[[Any, PyTree], Any] | None = None,
) -> MultiStepFunction:
    """Build ``step(stacked_state, batch) -> (stacked_state, metrics)`` for ``S`` members at once.

    Args:
      loss_fn: ``loss_fn(params, model_state, batch, key) -> LossOutput``, as for ``make_train_step``
        (it sees one member's parameters and batch).
      optimizer: an ``optax.GradientTransformation`` (each member has its own state of it).
      batch_axes: ``None`` (a batch shared by every member), ``0`` (every entry ``[S, B, ...]``) or a
        dict ``{entry: 0 or None}`` (see the module docstring).
      donate, jit, compiler_options: as for :func:`~jaxvae.train.steps.make_train_step`.
      tables: arrays kept on the device and passed to every call (not baked into the program), e.g.
        the training set, so that a batch can carry row indices instead of rows.
      gather: ``gather(batch, tables) -> batch``, run inside the compiled step before the members'
        update (e.g. ``{"x": tables["x"][batch["idx"]]}``); with ``tables`` only.

    Returns:
      A step whose metrics are the means over members of ``loss_fn``'s metrics, ``'loss'`` and
      ``'grad_norm'``, plus ``'loss_max_over_members'`` and ``'skipped'`` (skipped updates summed over
      members). Member ``i``'s own state: :func:`member_state`.
    """
    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}.")

    def one(member: TrainState, batch):
        key = jax.random.fold_in(member.key, member.step)
        return train_step_body(loss_fn, optimizer, member, batch, key)

    return make_multi_step(
        one,
        batch_axes=batch_axes,
        donate=donate,
        jit=jit,
        compiler_options=compiler_options,
        tables=tables,
        gather=gather,
    )

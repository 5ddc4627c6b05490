"""Compiled train and eval steps, generic over any ``loss_fn`` / ``eval_fn`` (see ``state.py``).

One step, for state ``s`` and batch ``x``::

    k_t              = fold_in(s.key, s.step)                      # per-step key
    (L, aux), g      = value_and_grad(loss_fn)(s.params, s.model_state, x, k_t)
    ok               = isfinite(L) and isfinite(||g||_2)      # ||g||_2 is logged as 'grad_norm'
    if ok:  u, opt_state' = optimizer.update(g, s.opt_state, s.params);  params' = s.params + u
    ok'              = ok and params', opt_state', model_state' all finite
    s' = (step + 1, params' if ok' else params, model_state' if ok' else model_state,
          opt_state' if ok' else opt_state, key, skipped + (0 if ok' else 1))

A step whose loss, gradient or applied values are not finite is never applied: parameters,
optimizer state and model state keep their values bit for bit, and ``skipped`` counts it
(:func:`jaxvae.train.loop.fit` stops a run after too many in a row). The state argument is donated
(its buffers are reused for the output), so the state passed in must not be used again; the returned
one replaces it.

Data parallelism: with ``mesh`` the batch is split over the mesh's (first) axis and the state is
replicated; XLA inserts the gradient all-reduce. The step key is the same as on one device and the
random draws are laid out over the *global* batch, so a sharded run reproduces the one-device
trajectory up to float32 reduction order. Under :func:`make_pmap_train_step` each device folds its
index into the step key (independent noise per shard), gradients, loss and metrics are averaged with
``pmean``.

The returned step functions check every batch against the first one (pytree structure, shapes,
dtypes) and raise ``ValueError`` on a mismatch instead of silently compiling a new program.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvae.train.state import EvalFn, LossFn, LossOutput, TrainState
from jaxvae.typing import PRNGKey, PyTree

__all__ = [
    "create_train_state",
    "make_train_step",
    "make_eval_step",
    "make_pmap_train_step",
    "replicate_for_pmap",
    "unreplicate",
    "StepFunction",
    "batch_size_of",
    "check_compiler_options",
    "takes_step",
    "train_step_body",
]


# ------------------------------------------------------------------------------------------------
# State


def _is_key(x: Any) -> bool:
    if not hasattr(x, "dtype"):
        return False
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return True
    return x.dtype == jnp.uint32 and np.ndim(x) == 1 and np.shape(x)[0] == 2


def create_train_state(
    key: PRNGKey, params: PyTree, model_state: PyTree, optimizer: optax.GradientTransformation
) -> TrainState:
    """A fresh :class:`TrainState` at step 0.

    The leaves of ``params`` and ``model_state`` are copied, so the caller's arrays stay valid after
    the train step donates the state's buffers.

    Args:
      key: the run's PRNG key (``jax.random.key(seed)`` or a legacy ``uint32[2]`` key); step ``t``
        uses ``fold_in(key, t)``.
      params: model parameters (pytree of float arrays).
      model_state: non-parameter collections (``{}`` or ``None`` when the model has none).
      optimizer: an ``optax.GradientTransformation`` (e.g. from ``make_optimizer``).

    Returns:
      ``TrainState(step=0, params, model_state, opt_state=optimizer.init(params), key, skipped=0)``.

    Raises:
      ValueError: if ``key`` is not a single PRNG key or ``optimizer`` is not a gradient
        transformation.
    """
    if not _is_key(key) or (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape != ()):
        raise ValueError(
            "`key` must be one PRNG key (jax.random.key(seed) or a uint32[2] key); got "
            f"{getattr(key, 'dtype', type(key).__name__)} with shape {np.shape(key)}."
        )
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"`optimizer` must be an optax.GradientTransformation; got {type(optimizer).__name__}.")
    model_state = {} if model_state is None else model_state
    params = jax.tree.map(jnp.array, params)  # jnp.array copies: the state owns its buffers
    model_state = jax.tree.map(jnp.array, model_state)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=optimizer.init(params),
        key=jnp.array(key),
        skipped=jnp.zeros((), jnp.int32),
    )


# ------------------------------------------------------------------------------------------------
# Batch checking wrapper


def _batch_spec(batch: Any) -> tuple:
    """(treedef, ((shape, dtype), ...)): cheap enough to compute on every call."""
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple((tuple(np.shape(x)), _dtype(x)) for x in leaves)


def _dtype(x: Any) -> Any:
    dt = getattr(x, "dtype", None)  # never np.asarray a device array here: that would sync the host
    return dt if dt is not None else np.asarray(x).dtype


def _describe(spec: tuple) -> str:
    treedef, leaves = spec
    names = [jax.tree_util.keystr(p) or "batch" for p in _leaf_paths(treedef)]
    return ", ".join(f"{n}: {dt}{list(shape)}" for n, (shape, dt) in zip(names, leaves))


def _leaf_paths(treedef) -> list:
    dummy = jax.tree.unflatten(treedef, [0] * treedef.num_leaves)
    return [p for p, _ in jax.tree_util.tree_flatten_with_path(dummy)[0]]


def batch_size_of(batch: Any) -> int:
    """The leading (batch) dimension of the batch's arrays; entries without one (a scalar setting such as
    a temperature) do not count.

    Raises:
      ValueError: if no entry has a leading axis.
    """
    for x in jax.tree.leaves(batch):
        if np.ndim(x) >= 1:
            return int(np.shape(x)[0])
    raise ValueError("`batch` holds no array with a leading batch axis.")


def check_batch_divisible(batch: Any, n: int, what: str, *, axis: int = 0) -> None:
    """Raise ``ValueError`` if any batch leaf's ``axis`` size is not divisible by ``n``.

    Args:
      batch: pytree of arrays.
      n: the number of shards.
      what: describes the shards in the message, e.g. ``"8 devices on mesh axis 'data'"``.
      axis: the batch axis.
    """
    leaves = jax.tree_util.tree_flatten_with_path(batch)[0]
    if not leaves:
        raise ValueError("`batch` holds no arrays.")
    for path, x in leaves:
        name = jax.tree_util.keystr(path) or "batch"
        shape = np.shape(x)
        if len(shape) <= axis:
            raise ValueError(f"batch entry {name} has shape {shape}; every batch entry needs a batch axis {axis}.")
        if shape[axis] % n:
            lo, hi = (shape[axis] // n) * n, (shape[axis] // n + 1) * n
            raise ValueError(
                f"batch entry {name} has {shape[axis]} examples (shape {shape}), which does not "
                f"split evenly over {what}. Use a batch size divisible by {n} (e.g. {lo or n} or "
                f"{hi}), or drop the remainder batch (drop_remainder=True)."
            )


class StepFunction:
    """A (jitted) step that checks each batch against the first one it saw.

    Calling it runs the step. The first call fixes the expected batch structure, shapes and dtypes
    (and, for sharded or pmapped steps, checks that the batch splits evenly over the devices); a
    later batch that differs raises ``ValueError`` instead of silently compiling a second program.

    Attributes:
      fn: the underlying (jitted or pmapped) function.
      name: ``'train_step'``, ``'eval_step'`` or ``'pmap_train_step'`` (also the compiled name).
      trace_count: number of traces so far (see :meth:`compile_count`).
      batch_spec: ``None`` before the first call, then the (treedef, ((shape, dtype), ...))
        seen.
      example_axes: how many leading axes of a batch entry count examples (1 for a plain step,
        2 for ``[devices, per-device batch, ...]`` or ``[members, batch, ...]``); see
        :meth:`count_examples`.
      members: how many models the step trains on each example (several seeds in one program share
        a batch); see :meth:`count_examples`.
    """

    def __init__(
        self,
        body: Callable,
        transform: Callable[[Callable], Callable] | None,
        name: str,
        batch_argnum: int,
        first_check: Callable[[Any], None] | None = None,
        *,
        example_axes: int = 1,
        members: int = 1,
    ):
        self.name = name
        self.trace_count = 0
        self.example_axes = example_axes
        self.members = members

        @functools.wraps(body)
        def counted(*args):
            self.trace_count += 1  # runs once per trace, i.e. once per compiled program
            return body(*args)

        counted.__name__ = counted.__qualname__ = name
        self.fn = transform(counted) if transform is not None else body
        self._batch_argnum = batch_argnum
        self._first_check = first_check
        self.batch_spec = None

    def _check(self, batch: Any) -> tuple | None:
        """The batch's spec when this call would fix it (the first successful call), else None."""
        spec = _batch_spec(batch)
        if self.batch_spec is None:
            self._check_not_empty(batch)
            if self._first_check is not None:
                self._first_check(batch)
            return spec
        if spec != self.batch_spec:
            raise ValueError(
                f"{self.name}: batch does not match the batch this step was compiled for.\n"
                f"  expected: {_describe(self.batch_spec)}\n  got:      {_describe(spec)}\n"
                "Every call must get the same keys, shapes and dtypes (use drop_remainder=True for "
                "the last partial batch, cast to the same dtype), or build a separate step for the "
                "new shape."
            )

    def _check_not_empty(self, batch: Any) -> None:
        """An entry with no examples (a zero among its first ``example_axes`` axes) would average over
        nothing: a NaN loss, not an error. Refuse it, naming the entry."""
        for path, x in jax.tree_util.tree_flatten_with_path(batch)[0]:
            shape = np.shape(x)
            if 0 in shape[: self.example_axes]:
                name = jax.tree_util.keystr(path) or "batch"
                raise ValueError(f"{self.name}: batch entry {name} has shape {shape}: no examples (an empty batch).")

    def __call__(self, *args):
        first = self._check(args[self._batch_argnum])
        step = getattr(args[0], "step", None)
        if isinstance(step, jax.Array) and step.is_deleted():
            raise ValueError(
                f"{self.name}: the state passed in was donated to an earlier call (its buffers are "
                "gone). Use the state returned by the previous step: `state, metrics = step(state, "
                "batch)`; pass donate=False to make_train_step to keep old states alive."
            )
        out = self.fn(*args)
        if first is not None:  # recorded only once a call succeeded: a refused first batch fixes nothing
            self.batch_spec = first
        return out

    def count_examples(self, batch: Any) -> int:
        """Training examples one call consumes: ``members`` times the product of the first
        ``example_axes`` axes of the batch's arrays (arrays of lower rank, e.g. a scalar setting, are
        not examples). :func:`jaxvae.train.loop.fit` logs ``examples_per_sec`` with it."""
        shapes = [np.shape(x) for x in jax.tree.leaves(batch) if np.ndim(x) >= self.example_axes]
        if not shapes:
            raise ValueError(f"{self.name}: the batch holds no array with {self.example_axes} example axes.")
        return self.members * math.prod(shapes[0][: self.example_axes])

    def compile_count(self) -> int:
        """Number of times the step was traced (= programs compiled); 1 after any number of calls
        with well-formed batches. 0 for ``jit=False``."""
        return self.trace_count

    def lower(self, *args):
        """``jax.jit(...).lower`` of the underlying function (for AOT inspection)."""
        return self.fn.lower(*args)


def check_compiler_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``options`` as a dict of XLA option names to values (``None`` stays ``None``); else ``ValueError``."""
    if options is None:
        return None
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"`compiler_options` must be a mapping of XLA option names to values; got {options!r}.")
    return dict(options)


# ------------------------------------------------------------------------------------------------
# Step bodies


def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.array(True)
    return jnp.stack(leaves).all()


def _call_loss(loss_fn: LossFn, params, model_state, batch, key) -> tuple[jax.Array, LossOutput]:
    out = loss_fn(params, model_state, batch, key)
    if not (isinstance(out, tuple) and len(out) == 3):
        raise ValueError(f"`loss_fn` must return LossOutput(loss, metrics, model_state); got {type(out).__name__}.")
    out = LossOutput(*out)
    if jnp.shape(out.loss) != ():
        raise ValueError(f"`loss_fn` must return a scalar loss (the batch mean); got shape {jnp.shape(out.loss)}.")
    if not isinstance(out.metrics, dict):
        raise ValueError(f"`loss_fn` metrics must be a dict; got {type(out.metrics).__name__}.")
    for name, v in out.metrics.items():
        if jnp.shape(v) != ():
            raise ValueError(f"`loss_fn` metric {name!r} must be a scalar (batch mean); got shape {jnp.shape(v)}.")
    return out.loss, out


def _pmean_floats(tree: PyTree, axis_name: str) -> PyTree:
    """``pmean`` of the floating leaves; other leaves (counters) are already equal on every device.

    Args:
      tree: per-device values.
      axis_name: the mapped axis.
    """
    return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name) if jnp.issubdtype(x.dtype, jnp.inexact) else x, tree)


def takes_step(loss_fn: Callable) -> bool:
    """Whether ``loss_fn`` accepts the keyword ``step`` (see :mod:`jaxvae.train.state`)."""
    try:
        params = inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no step
        return False
    p = params.get("step")
    if p is not None:
        return p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(q.kind is inspect.Parameter.VAR_KEYWORD for q in params.values())


def _loss_and_grads(
    loss_fn: LossFn, params, model_state, batch, key, microbatch: int | None, microbatch_mode: str = "scan"
):
    """``(loss, metrics, new_model_state, grads)`` of the batch, in one pass or in micro-batches.

    With ``microbatch = m < B`` the batch is cut into ``n = B / m`` consecutive slices of ``m``
    examples; slice ``i`` draws with key ``fold_in(key, i)`` and ``model_state`` is threaded from
    slice to slice. Loss, metrics and gradients are the means over the slices: for a batch-mean loss
    this is the full-batch loss and gradient of the same draws. ``microbatch_mode``:

    - ``'scan'``: a ``lax.scan`` over the slices, each with its own ``value_and_grad``; one
      slice's activations are alive at a time (the memory-saving form).
    - ``'branches'``: one ``value_and_grad`` of ``(1/n) sum_i loss_i``, the ``n`` slices traced as
      independent branches (no loop): their forward and backward passes share only the parameters,
      so XLA's runtime may run them concurrently on different cores. All slices' activations are
      alive at once. Same draws as ``'scan'``; sums in a different order (float rounding only).
    """

    def one(ms, b, k):
        (loss, out), grads = jax.value_and_grad(lambda p: _call_loss(loss_fn, p, ms, b, k), has_aux=True)(params)
        return loss, dict(out.metrics), out.model_state, grads

    size = batch_size_of(batch)
    if microbatch is None or microbatch == size:
        return one(model_state, batch, key)
    if size % microbatch:
        raise ValueError(f"`microbatch`={microbatch} must divide the batch size {size}.")
    n = size // microbatch
    if microbatch_mode == "branches":
        return _branches_loss_and_grads(loss_fn, params, model_state, batch, key, n, microbatch)
    # entries without a batch axis (a scalar setting) go to every slice whole
    split, whole = _split_examples(batch)
    chunks = jax.tree.map(lambda x: x.reshape((n, microbatch) + x.shape[1:]), split)

    def body(carry, xs):
        ms, acc = carry
        i, chunk = xs
        loss, metrics, ms, grads = one(ms, {**whole, **chunk}, jax.random.fold_in(key, i))
        acc = jax.tree.map(lambda a, v: a + v.astype(a.dtype), acc, (loss, metrics, grads))
        return (ms, acc), None

    first = jax.eval_shape(lambda: one(model_state, {**whole, **jax.tree.map(lambda c: c[0], chunks)}, key))
    zeros = jax.tree.map(
        lambda a: jnp.zeros(a.shape, jnp.result_type(a.dtype, jnp.float32)), (first[0], first[1], first[3])
    )
    (new_ms, (loss, metrics, grads)), _ = jax.lax.scan(body, (model_state, zeros), (jnp.arange(n), chunks))
    loss, metrics, grads = jax.tree.map(lambda a: a / n, (loss, metrics, grads))
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    return loss, metrics, new_ms, grads


def _split_examples(batch: Any) -> tuple[dict, dict]:
    """``(entries with a batch axis, entries without)`` of a dict batch."""
    if not isinstance(batch, Mapping):
        return batch, {}
    split = {k: v for k, v in batch.items() if jnp.ndim(v) >= 1}
    return split, {k: v for k, v in batch.items() if k not in split}


def _branches_loss_and_grads(loss_fn: LossFn, params, model_state, batch, key, n: int, m: int):
    """``microbatch_mode='branches'`` of :func:`_loss_and_grads`: ``n`` slices of ``m``, no loop."""

    def total(p):
        ms, losses, metrics = model_state, [], []
        for i in range(n):
            piece = jax.tree.map(lambda x: x[i * m : (i + 1) * m] if jnp.ndim(x) >= 1 else x, batch)
            loss, out = _call_loss(loss_fn, p, ms, piece, jax.random.fold_in(key, i))
            ms = out.model_state
            losses.append(loss.astype(jnp.result_type(loss.dtype, jnp.float32)))
            metrics.append(dict(out.metrics))
        mean = jax.tree.map(lambda *v: sum(a.astype(jnp.result_type(a.dtype, jnp.float32)) for a in v) / n, *metrics)
        return sum(losses) / n, (mean, ms)

    (loss, (metrics, new_ms)), grads = jax.value_and_grad(total, has_aux=True)(params)
    return loss, metrics, new_ms, grads


def train_step_body(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    state: TrainState,
    batch: Any,
    key: PRNGKey,
    axis_name: str | None = None,
    microbatch: int | None = None,
    microbatch_mode: str = "scan",
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One update of ``state`` on ``batch`` with step key ``key``, traced (no jit): the body of every
    train step builder (see the module docstring for the skip gate). ``axis_name``: ``pmean`` the
    gradients, loss, metrics and model state over that mapped axis first. A ``loss_fn`` that takes the
    keyword ``step`` gets ``state.step`` (the number of steps taken before this one)."""
    if takes_step(loss_fn):
        loss_fn = functools.partial(loss_fn, step=state.step)
    loss, metrics, new_model_state, grads = _loss_and_grads(
        loss_fn, state.params, state.model_state, batch, key, microbatch, microbatch_mode
    )
    if axis_name is not None:
        grads, loss, metrics, new_model_state = _pmean_floats((grads, loss, metrics, new_model_state), axis_name)
    grad_norm = optax.tree.norm(grads)
    # Two gates. The first is decided before the update, so a step with a non-finite loss or gradient
    # costs nothing (the update runs inside one branch of a conditional). The second checks the applied
    # values (new parameters, optimizer state and model state: one reduction over them) and selects the
    # old ones if any is non-finite, e.g. an overflow from a huge learning rate or a corrupted state. An
    # elementwise select fuses with the update; a conditional here measured slower (it copies the state).
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    old = (state.params, state.opt_state, state.model_state)

    def apply(_):
        updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = (optax.apply_updates(state.params, updates), new_opt_state, new_model_state)
        ok_new = _all_finite(new)
        return jax.tree.map(lambda n, o: jnp.where(ok_new, n, o), new, old) + (ok_new,)

    def skip(_):
        return old + (jnp.array(False),)

    params, opt_state, model_state, applied = jax.lax.cond(ok, apply, skip, None)
    skipped = state.skipped + jnp.where(applied, 0, 1).astype(state.skipped.dtype)
    new_state = TrainState(
        step=state.step + 1,
        params=params,
        model_state=model_state,
        opt_state=opt_state,
        key=state.key,
        skipped=skipped,
    )
    metrics.update(loss=loss, grad_norm=grad_norm, skipped=skipped)
    return new_state, metrics


def _data_axis(mesh: Mesh) -> str:
    if not isinstance(mesh, Mesh):
        raise ValueError(f"`mesh` must be a jax.sharding.Mesh or None; got {type(mesh).__name__}.")
    return mesh.axis_names[0]


def _mesh_check(mesh: Mesh | None) -> Callable[[Any], None] | None:
    if mesh is None:
        return None
    axis = _data_axis(mesh)
    n = int(mesh.shape[axis])
    if n == 1:
        return None
    return lambda batch: check_batch_divisible(batch, n, f"{n} devices on mesh axis {axis!r}")


# ------------------------------------------------------------------------------------------------
# Public builders


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    mesh: Mesh | None = None,
    donate: bool = True,
    jit: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
    microbatch: int | None = None,
    microbatch_mode: str = "scan",
) -> StepFunction:
    """Build ``step(state, batch) -> (state, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, model_state, batch, key) -> LossOutput`` (scalar loss, scalar
      metrics).
      optimizer: an ``optax.GradientTransformation``.
      mesh: if given, the batch is split over the mesh's first axis (each leaf's leading axis) and
        the state is replicated over the mesh; outputs are replicated.
      donate: donate the state argument (its buffers are reused; do not touch the old state
      afterwards).
      jit: compile with ``jax.jit`` (``False`` runs eagerly, for debugging).
      compiler_options: XLA options for this program only (``jax.jit(compiler_options=...)``), e.g.
        ``{"xla_cpu_experimental_ynn_fusion_type": ""}``, which on jaxlib 0.10's XLA:CPU sends the
        matmuls to XLA's own dot emitter instead of YNNPACK (on the project's 2-core CPU: faster
        for the MLP VAE's evaluation at batch 128-8192, slower for its batch-128 train step;
        ``benchmarks/README.md``). Unknown names raise at the first call.
      microbatch: gradient accumulation inside the one compiled step: the batch is processed in
        consecutive slices of this many examples (a ``lax.scan``; slice ``i`` draws its noise from
        ``fold_in(key, i)``, so a run differs from an unsplit one in its random draws only), and
        loss, metrics and gradients are averaged over the slices, which for a batch-mean loss is
        the full-batch gradient. ``model_state`` passes from slice to slice (batch statistics are
        then per slice). Must divide the batch; not combined with ``mesh`` yet (a contiguous slice
        would sit on a few devices). ``None``: one pass.
      microbatch_mode: how the slices of ``microbatch`` run (same draws, same means either way):
        ``'scan'`` (default) loops over them, one slice's activations alive at a time (saves memory);
        ``'branches'`` traces them as independent branches of one gradient, all alive at once, so
        XLA may run them on different cores at the same time (for speed, not memory). On the
        project's 2-core CPU neither form made the MLP VAE's train step reliably faster than one
        pass (``benchmarks/README.md``): use them for memory.

    Returns:
      A :class:`StepFunction` ``step(state, batch) -> (new_state, metrics)``; ``metrics`` is a dict
      of scalars: the ``loss_fn`` metrics plus ``'loss'``, ``'grad_norm'`` (global L2 norm of the
      gradient before clipping) and ``'skipped'`` (cumulative count of skipped non-finite steps).

    Raises:
      ValueError: (at call time) if the batch's leading axis does not split evenly over the mesh, or
        a batch differs in structure, shape or dtype from the first batch.
    """
    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}.")
    if microbatch is not None and (isinstance(microbatch, bool) or not isinstance(microbatch, int) or microbatch < 1):
        raise ValueError(f"`microbatch` must be a positive int or None; got {microbatch!r}.")
    if microbatch is not None and mesh is not None:
        raise ValueError("`microbatch` cannot be combined with `mesh` yet; use one or the other.")
    if microbatch_mode not in ("scan", "branches"):
        raise ValueError(f"`microbatch_mode` must be 'scan' or 'branches'; got {microbatch_mode!r}.")

    def step(state: TrainState, batch: Any):
        key = jax.random.fold_in(state.key, state.step)
        return train_step_body(
            loss_fn,
            optimizer,
            state,
            batch,
            key,
            microbatch=microbatch,
            microbatch_mode=microbatch_mode,
        )

    first_check = _mesh_check(mesh)
    if jit:
        kw: dict[str, Any] = {
            "donate_argnums": (0,) if donate else (),
            "compiler_options": check_compiler_options(compiler_options),
        }
        if mesh is not None:
            rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(_data_axis(mesh)))
            kw.update(in_shardings=(rep, data), out_shardings=(rep, rep))
        transform = functools.partial(jax.jit, **kw)
    else:
        transform = None
    return StepFunction(step, transform, "train_step", 1, first_check)


def make_eval_step(
    eval_fn: EvalFn,
    *,
    mesh: Mesh | None = None,
    jit: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
) -> StepFunction:
    """Build ``eval_step(state, batch, key) -> dict[str, Array[B]]`` (per-example values).

    Args:
      eval_fn: ``eval_fn(params, model_state, batch, key) -> dict[str, Array[B]]``.
      mesh: if given, the batch and the per-example outputs are split over the mesh's first axis.
      jit: compile with ``jax.jit``.
      compiler_options: XLA options for this program only; see :func:`make_train_step`.

    Returns:
      A :class:`StepFunction`; the state is not donated.

    Raises:
      ValueError: if an output is not a ``[B]`` array, or (at call time) the batch does not split
        over the mesh or differs from the first batch.
    """
    if not callable(eval_fn):
        raise ValueError(f"`eval_fn` must be callable; got {type(eval_fn).__name__}.")

    def step(state: TrainState, batch: Any, key: PRNGKey):
        out = eval_fn(state.params, state.model_state, batch, key)
        if not isinstance(out, dict):
            raise ValueError(f"`eval_fn` must return a dict of [B] arrays; got {type(out).__name__}.")
        b = batch_size_of(batch)
        for name, v in out.items():
            if jnp.shape(v) != (b,):
                raise ValueError(
                    f"`eval_fn` output {name!r} must be per-example with shape ({b},); got {jnp.shape(v)}."
                )
        return out

    first_check = _mesh_check(mesh)
    if jit:
        kw: dict[str, Any] = {"compiler_options": check_compiler_options(compiler_options)}
        if mesh is not None:
            rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(_data_axis(mesh)))
            kw.update(in_shardings=(rep, data, rep), out_shardings=data)
        transform = functools.partial(jax.jit, **kw)
    else:
        transform = None
    return StepFunction(step, transform, "eval_step", 1, first_check)


def make_pmap_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    axis_name: str = "batch",
    donate: bool = True,
    devices: list | None = None,
) -> StepFunction:
    """Build the ``jax.pmap`` form: ``step(replicated_state, batch[n_dev, b, ...])``.

    Each device computes the loss and gradient of its ``b`` examples with key
    ``fold_in(fold_in(state.key, state.step), axis_index)``; gradients, loss, metrics and the
    updated model state are averaged over ``axis_name`` (``pmean``) before the (identical) update,
    so every replica stays equal. With a loss that does not use its key the trajectory equals the
    one-device run on the concatenated batch of ``n_dev * b`` examples, up to float32 reduction
    order.

    Args:
      loss_fn: as for :func:`make_train_step`.
      optimizer: an ``optax.GradientTransformation``.
      axis_name: name of the mapped axis used by the collectives.
      donate: donate the replicated state.
      devices: devices to map over (default: all local devices).

    Returns:
      A :class:`StepFunction`; state and metrics come back with a leading device axis (use
      :func:`replicate_for_pmap` / :func:`unreplicate`).

    Raises:
      ValueError: (at call time) if the batch's leading axis is not the local device count, or a
        batch differs from the first batch.
    """
    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}.")

    def step(state: TrainState, batch: Any):
        key = jax.random.fold_in(state.key, state.step)
        key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        return train_step_body(loss_fn, optimizer, state, batch, key, axis_name=axis_name)

    n_dev = len(devices) if devices is not None else jax.local_device_count()
    transform = functools.partial(jax.pmap, axis_name=axis_name, donate_argnums=(0,) if donate else (), devices=devices)

    def check_leading(batch):
        for path, x in jax.tree_util.tree_flatten_with_path(batch)[0]:
            shape = np.shape(x)
            if len(shape) < 2 or shape[0] != n_dev:
                name = jax.tree_util.keystr(path) or "batch"
                raise ValueError(
                    f"batch entry {name} has shape {shape}; the pmap step needs "
                    f"[{n_dev} devices, per-device batch, ...]. Reshape a global batch of B "
                    f"examples with x.reshape({n_dev}, B // {n_dev}, ...) (B divisible by {n_dev})."
                )

    return StepFunction(step, transform, "pmap_train_step", 1, check_leading, example_axes=2)


def replicate_for_pmap(tree: PyTree, devices: list | None = None, *, axis_name: str = "batch") -> PyTree:
    """Copy ``tree`` onto each local device, stacked on a new leading axis (the pmap layout).

    Pass the step's ``axis_name``: the result is laid out exactly like the step's outputs (a
    ``NamedSharding`` over a mesh axis of that name), so the first and later calls share one
    program.
    """
    devices = list(devices) if devices is not None else jax.local_devices()
    n = len(devices)
    sharding = NamedSharding(Mesh(np.asarray(devices), (axis_name,)), P(axis_name))
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x[None], (n,) + jnp.shape(x)), tree)
    return jax.device_put(stacked, sharding)


def unreplicate(tree: PyTree) -> PyTree:
    """The first replica of a pmap-layout tree (leading device axis dropped)."""
    return jax.tree.map(lambda x: x[0], tree)

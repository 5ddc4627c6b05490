"""XLA:CPU tuning of the MLP VAE step against its PyTorch twin: compiler flags and micro-batching.

Issue 4 asks, on this project's 2-core CPU, for the JAX train step at batch 128 to run >= 1.3x the
PyTorch reference and for eval and train at batch 1024 and 8192 to run >= 1.0x. This script
measures candidate fixes *inside one process*, every variant interleaved loop by loop with the
PyTorch step and with the untuned JAX step (``default``), so that a noisy neighbour slows all of them
alike. Per variant it reports ``jax_over_torch_pairwise_median`` (as ``elbo_throughput.py`` does) and
``over_default_pairwise_median`` (the speed-up over untuned JAX, measured the same way), plus a
numerics check against ``default``.

Variants are ``FLAGSET[+FLAGSET...][+mbN|+splitK][+fastbern]``:

- ``FLAGSET`` names a set of XLA:CPU debug options (:data:`FLAGSETS`) applied to this one compiled
  program through ``jax.jit(...).lower(...).compile(compiler_options)``, which accepts the same
  options as the ``XLA_FLAGS`` environment variable (enum lists as comma-separated full names,
  e.g. ``LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE``; ``""`` empties a list). The
  ``XLA_FLAGS`` spelling of each set is in :data:`XLA_FLAGS_SPELLING`. Further flag sets after the
  first are merged into it (``ynn_off+eigen_1thread``). Options this jaxlib refuses are listed in
  :data:`UNACCEPTED_FLAGSETS`.
- ``+mbN`` splits the batch into ``B / N`` micro-batches of ``N`` examples inside the one jitted
  step. Eval: ``lax.map`` of the eval function over the micro-batches, per-example outputs
  concatenated in order. Train: a ``lax.scan`` over micro-batches of ``value_and_grad`` of the loss
  (each micro-batch's forward and backward run back to back, so its activations stay in cache), loss,
  metrics and gradient averaged over micro-batches; for a batch-mean loss with equal micro-batches
  and no batch statistics this *is* the full-batch loss and gradient of the same draws. Micro-batch
  ``i`` uses the key ``fold_in(key, i)`` (so the noise differs from the unsplit step's; the
  numerics check compares against the unsplit loss evaluated with those same per-micro-batch keys).
  It plugs into the unchanged ``make_train_step`` as a ``loss_fn`` with a custom VJP.
- ``+splitK`` computes the step on ``K`` equal slices of the batch as ``K`` independent, unrolled
  branches (no scan, no custom VJP): train, the mean of ``K`` losses, so ``value_and_grad`` gives
  ``K`` independent forward/backward chains (each with its own weight-gradient matmuls) whose
  gradients are summed at the end; eval, the per-example outputs concatenated. XLA's thunk executor
  can run independent thunks at the same time, so the two cores can each take a branch. Keys as for
  ``+mbN`` (branch ``i`` uses ``fold_in(key, i)``), and the same numerics reference.
- ``+fastbern`` traces the VAE with :func:`fast_bernoulli_log_prob` (``x*l - softplus(l)``, softplus
  written as ``max(l, 0) + log1p(exp(-|l|))``) in place of the library's ``bernoulli_log_prob`` as it
  was when this script was written (two ``log_sigmoid``, each a guarded ``logaddexp``): the same
  function, about 4.6x cheaper per element on this CPU (8.1 ms -> 1.8 ms for a [1024, 784]
  log-likelihood). The library has since adopted that form (with the ``max`` written as
  ``(l + |l|) / 2``, whose gradient at ``l = 0`` is right), so ``default`` now includes it and
  ``+fastbern`` no longer changes the program.

Findings on this machine (jax 0.10.2): the jaxlib sends every dot to YNNPACK by default
(``xla_cpu_experimental_ynn_fusion_type`` = ``individual_dot``); emptying that list
(``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_dot``, variant ``ynn_off``) returns
the dots to XLA's own Eigen-based emitter, which is faster here for the MLP VAE's [B, 784|512] x
[784|512, 512|784] shapes at batch >= 1024. XNNPACK and xnn graph fusions compile to the same dots as
``ynn_off`` here; fusing elementwise ops into YNNPACK (``ynn_eltwise``) slows the train step; fast math
changes the loss gradient by ~1e-2 (rejected); oneDNN fusions crash the train step on this CPU.

Second round (2026-11-26 17:30-17:50 UTC, results/cpu_4.jsonl; the machine's other jobs had ended,
load 0.6 before the first run, 1.2-2.1 during them, this process included; both JAX and PyTorch ran
slower than in the first round, and single pair ratios spread from 0.4 to 1.4, so read medians).
Options: ``sched_conc``, ``sched_conc_flag``, ``eigen_1thread`` (with YNNPACK dots),
``codegen_split1``, ``tiling_prop`` and ``fast_runtime`` compile to the same HLO as ``default``
(the default scheduler already picks the concurrency-optimized schedule) and time within noise of it;
``sched_mem`` is 0.84x default; ``no_fusion_emitters`` is no better; the three
:data:`UNACCEPTED_FLAGSETS` are refused. No option changes how much of the two cores the step uses
(``cores_busy_median`` ~1.6 of 2 for JAX against ~1.9 for PyTorch). What does: ``+splitK``, the
step as K independent branches: cores busy 1.8-1.9, train step 1.2x (batch 1024, K=4) to 1.44x
(batch 8192, K=8, ``ynn_off``) the untuned step. JAX/PyTorch pairwise medians: batch 1024
``ynn_off+split4`` 1.01 (``default`` 0.81), batch 8192 ``ynn_off+split8`` 0.91 (``default`` 0.63);
eval at 8192: ``ynn_off+split4`` 1.05, ``ynn_off`` 1.01, ``default`` 0.94. All passed the numerics
check (gradients within 1.3e-4 relative L2 of the reference at 8192, 2e-7 at 1024).

Every timed record also carries ``cores_busy_median`` (process CPU time over wall time per loop:
how many of the cores the step kept busy, a spinning idle worker counting as busy; the PyTorch twin's
as ``torch_cores_busy_median``), the load average before and after, and facts of the compiled
program (``hlo_sha1``, ``hlo_dots``, ``hlo_fusions``). ``--screen`` times nothing: it compiles each
variant in its own process (an option may abort the compiler or the process), runs the numerics
check, and records the error of those that fail; ``numerics_ok`` is false beyond ``NUMERICS_TOL``.

Usage (one JSON line per variant x mode x batch size; ``--help`` for options)::

    python benchmarks/cpu_tuning.py                                 # the recommended variants
    python benchmarks/cpu_tuning.py --batch-sizes 1024 --no-torch --variants default ynn_eltwise eigen xnn fast_math
    python benchmarks/cpu_tuning.py --batch-sizes 8192 --variants default ynn_off+fastbern+mb1024 default+mb512
    python benchmarks/cpu_tuning.py --screen --batch-sizes 1024 --modes train --variants sched_mem ynn_off+split2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402
from elbo_throughput import _binary_batch  # noqa: E402

from jaxvae.models import vae  # noqa: E402
from jaxvae.train.optim import OptimizerConfig, make_optimizer  # noqa: E402
from jaxvae.train.state import LossOutput  # noqa: E402
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step  # noqa: E402

CONFIG = vae.Config(arch="mlp", latent_dim=32, hidden=(512, 512), activation="relu")  # = mlp_vae_512x2_z32
MODEL_NAME = "mlp_vae_512x2_z32"

_DOT, _ELT, _RED = "LIBRARY_FUSION_TYPE_DOT", "LIBRARY_FUSION_TYPE_ELTWISE", "LIBRARY_FUSION_TYPE_REDUCE"

# name -> compiler options (the DebugOptions fields XLA_FLAGS sets). In this jaxlib (0.10.2) the
# default sends each dot to YNNPACK on its own (ynn fusion type INDIVIDUAL_DOT) and emits the
# elementwise work as XLA loop fusions.
FLAGSETS: dict[str, dict] = {
    "default": {},
    # dots back to XLA's own (Eigen) dot emitter: the one flag that mattered in these measurements
    "ynn_off": {"xla_cpu_experimental_ynn_fusion_type": ""},
    # dot + its elementwise neighbours (bias, ReLU, ...) in one YNNPACK fusion
    "ynn_eltwise": {"xla_cpu_experimental_ynn_fusion_type": f"{_DOT},{_ELT}"},
    "ynn_eltwise_reduce": {"xla_cpu_experimental_ynn_fusion_type": f"{_DOT},{_ELT},{_RED}"},
    # no YNNPACK, no XNNPACK (same compiled dots as ynn_off)
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_use_xnnpack": False},
    # XNNPACK fusions instead of YNNPACK
    "xnn": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_experimental_xnn_fusion_type": f"{_DOT},{_ELT}"},
    "xnn_graph": {
        "xla_cpu_experimental_ynn_fusion_type": "",
        "xla_cpu_experimental_xnn_graph_fusion_mode": "XNN_GRAPH_FUSION_MODE_GREEDY",
    },
    # oneDNN fusions (dot + eltwise) instead of YNNPACK. Eval compiles and runs; the train step dies
    # with "partition compile failed" then SIGILL on this machine (2-core Xeon VM): not for use.
    "onednn": {
        "xla_cpu_experimental_ynn_fusion_type": "",
        "xla_cpu_use_onednn": True,
        "xla_cpu_experimental_onednn_fusion_type": f"{_DOT},{_ELT}",
    },
    "fast_math": {"xla_cpu_enable_fast_math": True},
    "vec512": {"xla_cpu_prefer_vector_width": 512},
    # --- thread use and code generation (second round, issue 4's large-batch train step) ---
    # The thunk executor runs independent thunks concurrently; the HLO schedule decides how much
    # independence survives buffer assignment. DEFAULT picks CONCURRENCY_OPTIMIZED when its extra
    # memory is affordable (XLA's cpu_compiler_test says so for small graphs), else MEMORY_OPTIMIZED.
    "sched_conc": {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"},
    "sched_mem": {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"},
    # the older spelling of sched_conc ("[Deprecated, do not use]" in this jaxlib's --help)
    "sched_conc_flag": {"xla_cpu_enable_concurrency_optimized_scheduler": True},
    # Eigen dots (only reached with ynn_off) single-threaded, leaving the cores to concurrent thunks
    "eigen_1thread": {"xla_cpu_multi_thread_eigen": False},
    # LLVM module split for parallel codegen (default 32): mostly compile time, maybe code layout
    "codegen_split1": {"xla_cpu_parallel_codegen_split_count": 1},
    # XLA's legacy elemental IR emitters for loop fusions instead of the (MLIR) fusion emitters
    "no_fusion_emitters": {"xla_cpu_use_fusion_emitters": False},
    "tiling_prop": {"xla_cpu_experimental_enable_tiling_propagation": True},
    "fast_runtime": {"xla_cpu_opt_preset": "CPU_OPT_PRESET_FAST_RUNTIME"},
}

# Options named in this jaxlib's protobuf descriptor but refused by ``compile(compiler_options)`` with
# "INVALID_ARGUMENT: No such compile option" (and absent from ``XLA_FLAGS=--help``): leftovers of the
# removed MLIR/XLA-runtime CPU pipeline. Kept so that ``--screen`` can show the refusal again.
UNACCEPTED_FLAGSETS: dict[str, dict] = {
    "custom_matmul_tiling": {
        "xla_cpu_enable_custom_matmul_tiling": True,
        "xla_cpu_matmul_tiling_m_dim": 16,
        "xla_cpu_matmul_tiling_n_dim": 16,
        "xla_cpu_matmul_tiling_k_dim": 16,
    },
    "multi_output_fusion": {"xla_cpu_use_multi_output_fusion": True},
    "mlir_tiling_and_fusion": {"xla_cpu_enable_mlir_tiling_and_fusion": True},
}

# Numerics check, relative to the reference (same keys, XLA defaults). Gradients: the relative L2
# difference of each leaf. Two exact float32 matmul libraries already differ by 5e-5 (1.6e-4 for the
# worst element relative to its leaf's largest) at batch 8192 here (``ynn_off`` against YNNPACK;
# 2e-7 at 1024): a batch-mean gradient sums 8192 terms that largely cancel, so the accumulation
# order shows. Fast math moved gradients by ~1e-2. Loss and per-example eval outputs: float32
# rounding only.
NUMERICS_TOL = {"grads_l2": 1e-3, "other": 1e-5}


def RECOMMENDED(batch_size: int) -> list[str]:
    """What the report compares: untuned, each fix alone, and the combination."""
    v = ["default", "ynn_off", "default+fastbern", "ynn_off+fastbern"]
    if batch_size > 1024:
        v += ["default+fastbern+mb512", "ynn_off+fastbern+mb1024"]
    return v


def xla_flags_spelling(opts: dict) -> str:
    """The ``XLA_FLAGS`` string equivalent to a compiler-options dict."""
    out = []
    for k, v in opts.items():
        if isinstance(v, bool):
            v = str(v).lower()
        elif isinstance(v, str) and "LIBRARY_FUSION_TYPE_" in v:
            v = ",".join(s.replace("LIBRARY_FUSION_TYPE_", "").lower() for s in v.split(","))
        out.append(f"--{k}={v}" if v != "" else f"--{k}=")
    return " ".join(out)


XLA_FLAGS_SPELLING = {k: xla_flags_spelling(v) for k, v in FLAGSETS.items()}


class Variant(NamedTuple):
    """A parsed variant spec (see :func:`parse_variant`)."""

    flagsets: tuple[str, ...]
    compiler_options: dict
    microbatch: int | None
    fast_bernoulli: bool
    split: int | None

    def microbatch_for(self, batch_size: int) -> int | None:
        """Examples per piece for the numerics reference (scan micro-batches or split branches)."""
        if self.split:
            return batch_size // self.split
        return self.microbatch

    def fits(self, batch_size: int) -> bool:
        n = self.split or self.microbatch
        return not n or batch_size % n == 0


def parse_variant(spec: str) -> Variant:
    """``FLAGSET[+FLAGSET...][+mbN][+splitK][+fastbern]`` -> :class:`Variant`.

    Flag sets after the first are merged into it (later ones win), e.g. ``ynn_off+eigen_1thread``.
    """
    name, *mods = spec.split("+")
    known = {**FLAGSETS, **UNACCEPTED_FLAGSETS}
    if name not in known:
        raise SystemExit(f"unknown flag set {name!r}; choose from {sorted(known)}")
    names, opts = [name], dict(known[name])
    mb, fast, split = None, False, None
    for m in mods:
        if m.startswith("mb") and m[2:].isdigit():
            mb = int(m[2:])
        elif m.startswith("split") and m[5:].isdigit():
            split = int(m[5:])
        elif m == "fastbern":
            fast = True
        elif m in known:
            names.append(m)
            opts.update(known[m])
        else:
            raise SystemExit(f"unknown variant modifier {m!r} in {spec!r} (FLAGSET, mbN, splitK, fastbern)")
    if mb and split:
        raise SystemExit(f"{spec!r}: choose micro-batches (mbN) or split branches (splitK), not both")
    return Variant(tuple(names), opts, mb, fast, split)


def fast_bernoulli_log_prob(x, logits):
    """``x * l - softplus(l)`` with ``softplus(l) = max(l, 0) + log1p(exp(-|l|))``.

    The same function as ``jaxvae.distributions.bernoulli.bernoulli_log_prob`` (``x log sigmoid(l) +
    (1 - x) log sigmoid(-l)``; equal since ``log sigmoid(l) = l - softplus(l)`` and ``log sigmoid(-l)
    = -softplus(l)``), exact for large ``|l|`` as well, with one exp and one log1p per element instead
    of two ``log_sigmoid`` (each a ``logaddexp`` with its inf/nan guards). Its autodiff gradient is
    ``x - sigmoid(l)`` everywhere, including ``l = 0`` (``max`` splits the tie, ``|l|'(0) = 0``).
    """
    x = jnp.asarray(x)
    logits = jnp.asarray(logits)
    dtype = jnp.result_type(logits, float)
    x, logits = jnp.broadcast_arrays(x.astype(dtype), logits)
    return x * logits - (jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits))))


@contextlib.contextmanager
def _bernoulli_form(fast: bool):
    """Trace the VAE with the fast Bernoulli form (patches the name ``vae`` imported; restored after)."""
    if not fast:
        yield
        return
    orig = vae.bernoulli_log_prob
    vae.bernoulli_log_prob = fast_bernoulli_log_prob
    try:
        yield
    finally:
        vae.bernoulli_log_prob = orig


# --------------------------------------------------------------------------------------------------
# Micro-batching wrappers (drop-in eval_fn / loss_fn for the unchanged step builders)


def _split(batch, n: int):
    return jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), batch)


def _n_micro(batch, microbatch: int) -> int:
    b = jax.tree.leaves(batch)[0].shape[0]
    if b % microbatch:
        raise ValueError(f"batch of {b} examples does not split into micro-batches of {microbatch}")
    return b // microbatch


def microbatched_eval_fn(eval_fn: Callable, microbatch: int) -> Callable:
    """``eval_fn`` over micro-batches (``lax.map``), per-example outputs concatenated in order."""

    def fn(params, model_state, batch, key):
        n = _n_micro(batch, microbatch)
        if n == 1:
            return eval_fn(params, model_state, batch, key)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
        out = jax.lax.map(lambda a: eval_fn(params, model_state, a[0], a[1]), (_split(batch, n), keys))
        return jax.tree.map(lambda y: y.reshape((-1,) + y.shape[2:]), out)

    return fn


def microbatched_loss_fn(loss_fn: Callable, microbatch: int) -> Callable:
    """A ``loss_fn`` whose value and gradient are the mean over micro-batches, computed in a scan.

    Forward pass: ``lax.scan`` over micro-batches, each step one ``value_and_grad`` of ``loss_fn``
    (key ``fold_in(key, i)``); the summed gradient is kept as the residual and the custom VJP
    returns it scaled by the incoming cotangent. Model state must be stateless (``{}``): batch
    statistics would change meaning under micro-batching.
    """

    @jax.custom_vjp
    def value(params, model_state, batch, key_data):
        return _fwd(params, model_state, batch, key_data)[0]

    def _fwd(params, model_state, batch, key_data):
        key = jax.random.wrap_key_data(key_data)
        n = _n_micro(batch, microbatch)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))

        def one(p, xb, k):
            out = LossOutput(*loss_fn(p, model_state, xb, k))
            return out.loss, out.metrics

        vg = jax.value_and_grad(one, has_aux=True)

        def body(carry, a):
            (loss, metrics), g = vg(params, a[0], a[1])
            return jax.tree.map(jnp.add, carry, (loss, metrics, g)), None

        zero = jax.tree.map(
            jnp.zeros_like, jax.eval_shape(lambda: vg(params, jax.tree.map(lambda x: x[0], _split(batch, n)), keys[0]))
        )
        zero = (zero[0][0], zero[0][1], zero[1])
        (loss, metrics, grads), _ = jax.lax.scan(body, zero, (_split(batch, n), keys))
        loss, metrics, grads = jax.tree.map(lambda x: x / n, (loss, metrics, grads))
        return (loss, metrics), grads

    def fwd(params, model_state, batch, key_data):
        out, grads = _fwd(params, model_state, batch, key_data)
        return out, (grads, model_state, batch, key_data)

    def bwd(res, ct):
        grads, model_state, batch, key_data = res
        g_loss = ct[0]
        return (
            jax.tree.map(lambda g: g * g_loss, grads),
            jax.tree.map(jnp.zeros_like, model_state),
            jax.tree.map(jnp.zeros_like, batch),
            np.zeros(key_data.shape, jax.dtypes.float0),
        )

    value.defvjp(fwd, bwd)

    def fn(params, model_state, batch, key):
        if model_state:
            raise ValueError("micro-batching here supports models without model state (batch statistics)")
        if _n_micro(batch, microbatch) == 1:
            return loss_fn(params, model_state, batch, key)
        loss, metrics = value(params, model_state, batch, jax.random.key_data(key))
        return LossOutput(loss=loss, metrics=metrics, model_state=model_state)

    return fn


def _pieces(batch, k: int) -> list:
    b = jax.tree.leaves(batch)[0].shape[0]
    if b % k:
        raise ValueError(f"batch of {b} examples does not split into {k} equal branches")
    m = b // k
    return [jax.tree.map(lambda x: x[i * m : (i + 1) * m], batch) for i in range(k)]


def split_eval_fn(eval_fn: Callable, k: int) -> Callable:
    """``eval_fn`` on ``k`` slices of the batch as ``k`` independent (unrolled) branches, outputs
    concatenated in order; branch ``i`` uses ``fold_in(key, i)`` like micro-batch ``i`` of
    :func:`microbatched_eval_fn`."""

    def fn(params, model_state, batch, key):
        outs = [eval_fn(params, model_state, b, jax.random.fold_in(key, i)) for i, b in enumerate(_pieces(batch, k))]
        return jax.tree.map(lambda *ys: jnp.concatenate(ys), *outs)

    return fn


def split_loss_fn(loss_fn: Callable, k: int) -> Callable:
    """The batch-mean loss as the mean of ``k`` independent branches, one per slice of the batch.

    No scan and no custom VJP: the branches (forward and, under ``value_and_grad``, backward,
    including each branch's weight-gradient matmuls) share only the parameters, so XLA's thunk
    executor may run them at the same time on different cores; the per-branch gradients are summed
    at the end. Branch ``i`` uses the key ``fold_in(key, i)`` (as micro-batch ``i`` does), so the
    numerics reference is the micro-batched one with ``B / k`` examples per piece.
    """

    def fn(params, model_state, batch, key):
        if model_state:
            raise ValueError("split branches here support models without model state (batch statistics)")
        outs = [
            LossOutput(*loss_fn(params, model_state, b, jax.random.fold_in(key, i)))
            for i, b in enumerate(_pieces(batch, k))
        ]
        loss = sum(o.loss for o in outs) / k
        metrics = jax.tree.map(lambda *ms: sum(ms) / k, *[o.metrics for o in outs])
        return LossOutput(loss=loss, metrics=metrics, model_state=model_state)

    return fn


# --------------------------------------------------------------------------------------------------
# Building and timing


def build_variant(spec: str, batch_np: np.ndarray, mode: str):
    """Compile one variant; return (zero-arg timed callable, compile seconds, check callable)."""
    v = parse_variant(spec)
    with _bernoulli_form(v.fast_bernoulli):
        run, compile_s, check, compiled = _build_variant(v.compiler_options, v.microbatch, batch_np, mode, v.split)

    def checked():
        with _bernoulli_form(v.fast_bernoulli):  # the train check traces again
            return check()

    checked.compiled = compiled  # the timed executable (its optimized HLO: compiled.as_text())
    return run, compile_s, checked


def _build_variant(opts: dict, mb: int | None, batch_np: np.ndarray, mode: str, split: int | None = None):
    key = jax.random.key(0)
    params, model_state = vae.init(CONFIG, key)
    batch = {"x": jnp.asarray(batch_np)}
    if mode == "eval":
        eval_fn = vae.make_eval_fn(CONFIG)
        if mb:
            eval_fn = microbatched_eval_fn(eval_fn, mb)
        if split:
            eval_fn = split_eval_fn(eval_fn, split)
        step = make_eval_step(eval_fn)
        state = create_train_state(key, params, model_state, make_optimizer(OptimizerConfig(name="adam")))
        ekey = jax.random.key(1)
        t0 = time.perf_counter()
        compiled = step.lower(state, batch, ekey).compile(opts)
        compile_s = time.perf_counter() - t0

        def run():
            jax.block_until_ready(compiled(state, batch, ekey))

        def check():
            return {k: np.asarray(v) for k, v in compiled(state, batch, ekey).items()}

        return run, compile_s, check, compiled
    opt = make_optimizer(OptimizerConfig(name="adam", learning_rate=1e-3))
    loss_fn = vae.make_loss_fn(CONFIG)
    if mb:
        loss_fn = microbatched_loss_fn(loss_fn, mb)
    if split:
        loss_fn = split_loss_fn(loss_fn, split)
    step = make_train_step(loss_fn, opt)
    holder = {"state": create_train_state(key, params, model_state, opt)}
    t0 = time.perf_counter()
    compiled = step.lower(holder["state"], batch).compile(opts)
    compile_s = time.perf_counter() - t0

    def run():
        holder["state"], m = compiled(holder["state"], batch)
        m["loss"].block_until_ready()

    def check():  # loss and gradient at the first step's key, compiled with the same options
        st = create_train_state(key, params, model_state, opt)
        step_key = jax.random.fold_in(st.key, st.step)
        vg = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, model_state, batch, step_key).loss))
        loss, grads = vg.lower(st.params).compile(opts)(st.params)
        return _loss_grads_record(loss, grads)

    return run, compile_s, check, compiled


def reference_check(spec: str, batch_np: np.ndarray, mode: str):
    """What a variant must reproduce: the default-compiled unsplit computation with the same keys."""
    mb = parse_variant(spec).microbatch_for(batch_np.shape[0])
    if not mb or batch_np.shape[0] == mb:
        return build_variant("default", batch_np, mode)[2]()
    # micro-batched: same per-micro-batch keys, computed unsplit and without scan (Python loop)
    n = batch_np.shape[0] // mb
    key = jax.random.key(0)
    params, model_state = vae.init(CONFIG, key)
    xs = jnp.asarray(batch_np).reshape(n, mb, -1)
    if mode == "eval":
        f = jax.jit(vae.make_eval_fn(CONFIG))
        k = jax.random.key(1)
        outs = [f(params, model_state, {"x": xs[i]}, jax.random.fold_in(k, i)) for i in range(n)]
        return {name: np.concatenate([np.asarray(o[name]) for o in outs]) for name in outs[0]}
    opt = make_optimizer(OptimizerConfig(name="adam", learning_rate=1e-3))
    loss_fn = vae.make_loss_fn(CONFIG)
    st = create_train_state(key, params, model_state, opt)
    step_key = jax.random.fold_in(st.key, st.step)

    def mean_loss(p):
        losses = [loss_fn(p, model_state, {"x": xs[i]}, jax.random.fold_in(step_key, i)).loss for i in range(n)]
        return sum(losses) / n

    loss, grads = jax.jit(jax.value_and_grad(mean_loss))(st.params)
    return _loss_grads_record(loss, grads)


def _loss_grads_record(loss, grads) -> dict:
    return {
        "loss": np.asarray(loss),
        **{"grad" + jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(grads)[0]},
    }


def max_rel_diff(a: dict, b: dict) -> dict:
    """Max |a - b| / max |b| and ||a - b|| / ||b|| (``_l2``) per entry (per-example outputs; loss;
    each gradient leaf, reported as the worst leaf under ``grads``)."""
    out: dict[str, float] = {}
    for k in a:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        d = float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30))
        d2 = float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))
        group = "grads" if k.startswith("grad[") else k
        out[group] = max(out.get(group, 0.0), d)
        out[group + "_l2"] = max(out.get(group + "_l2", 0.0), d2)
    return out


def numerics_ok(diff: dict) -> bool:
    """Within float32 noise of the reference (``NUMERICS_TOL``; the worst single gradient element,
    ``grads``, is reported but not judged: it is relative to its leaf's largest element)."""
    judged = {k: v for k, v in diff.items() if k != "grads"}
    return bool(judged) and all(v <= NUMERICS_TOL.get(k, NUMERICS_TOL["other"]) for k, v in judged.items())


def time_loops_cpu(fns, *, steps: int, repeats: int, warmup: int = 3):
    """``_timing.time_loops`` (interleaved loops, per-call seconds per loop) that also returns, per
    loop, the process CPU time over the wall time: how many of the cores the step kept busy on
    average (all threads of this process; a spinning idle worker counts as busy)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    busy: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                fn()
            wall = time.perf_counter() - t0
            times[i].append(wall / steps)
            busy[i].append((time.process_time() - c0) / wall)
    return times, busy


def program_text(compiled) -> str:
    """The optimized, scheduled HLO without source metadata (file/line tables, ``metadata={...}``),
    which changes with where the function was traced from, not with the program."""
    lines = [
        ln
        for ln in compiled.as_text().splitlines()
        if not re.match(r"(\d+ |FileNames|FunctionNames|FileLocations|StackFrames)", ln)
    ]
    return re.sub(r", metadata=\{[^{}]*\}", "", "\n".join(lines))


def _hlo_facts(compiled) -> dict:
    text = program_text(compiled)
    return {
        "hlo_sha1": hashlib.sha1(text.encode()).hexdigest()[:12],
        "hlo_dots": len(re.findall(r"\bdot\(", text)),
        "hlo_fusions": len(re.findall(r"\bfusion\(", text)),
    }


def check_only(spec: str, batch_size: int, mode: str) -> dict:
    """Compile one variant and compare its numbers with the reference; no timing."""
    v = parse_variant(spec)
    batch_np = _binary_batch(batch_size, CONFIG.x_shape)
    _, compile_s, check = build_variant(spec, batch_np, mode)
    rec = dict(
        variant=spec,
        mode=mode,
        batch_size=batch_size,
        compiler_options=v.compiler_options,
        compiled=True,
        compile_s=compile_s,
        **_hlo_facts(check.compiled),
    )
    if spec != "default":
        diff = max_rel_diff(check(), reference_check(spec, batch_np, mode))
        rec.update(numerics_max_rel_diff=diff, numerics_ok=numerics_ok(diff))
        default_text = program_text(build_variant("default", batch_np, mode)[2].compiled)
        rec["same_hlo_as_default"] = program_text(check.compiled) == default_text
    return rec


def screen(specs, batch_sizes, modes, emit, env, timeout_s: int = 600) -> list[dict]:
    """Compile and check each variant in its own process (an option may abort or SIGILL the
    compiler); one record per variant x batch size x mode, with the error when it failed."""
    out = []
    for batch_size in batch_sizes:
        for mode in modes:
            for spec in ["default"] + [s for s in specs if s != "default"]:
                v = parse_variant(spec)
                if not v.fits(batch_size):
                    continue
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--check-only",
                    "--variants",
                    spec,
                    "--batch-sizes",
                    str(batch_size),
                    "--modes",
                    mode,
                ]
                t0 = time.perf_counter()
                try:
                    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
                    rc, stdout, stderr = r.returncode, r.stdout, r.stderr
                except subprocess.TimeoutExpired as e:
                    rc, stdout, stderr = "timeout", e.stdout or "", e.stderr or ""
                lines = [ln for ln in (stdout or "").splitlines() if ln.startswith("{")]
                if rc == 0 and lines:
                    rec = json.loads(lines[-1])
                else:
                    err = [ln for ln in (stderr or "").splitlines() if ln.strip()]
                    rec = dict(
                        variant=spec,
                        mode=mode,
                        batch_size=batch_size,
                        compiler_options=v.compiler_options,
                        compiled=False,
                        returncode=rc,
                        error=" | ".join(err[-3:])[-600:],
                    )
                rec = dict(
                    env,
                    bench="cpu_tuning_screen",
                    model=MODEL_NAME,
                    xla_flags=xla_flags_spelling(v.compiler_options),
                    screen_wall_s=time.perf_counter() - t0,
                    **rec,
                )
                emit(rec)
                out.append(rec)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", nargs="*", type=int, default=[128, 1024, 8192])
    p.add_argument("--modes", nargs="*", default=["eval", "train"], choices=["eval", "train"])
    p.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help="FLAGSET[+FLAGSET][+mbN|+splitK][+fastbern] (default: the recommended set, see RECOMMENDED)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--target-examples", type=int, default=8192, help="examples per timed loop")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument(
        "--screen",
        action="store_true",
        help="no timing: compile and check each variant in a subprocess, record failures",
    )
    p.add_argument("--check-only", action="store_true", help=argparse.SUPPRESS)  # one variant, for --screen
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    if args.check_only:
        for b in args.batch_sizes:
            for m in args.modes:
                for spec in args.variants or ["default"]:
                    print(json.dumps(check_only(spec, b, m), sort_keys=True, default=float), flush=True)
        return

    emit, close_out = _timing.json_lines_sink(args.out)
    env = dict(
        _timing.environment(),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        loadavg_start=os.getloadavg()[0],
        xla_flags_env=os.environ.get("XLA_FLAGS", ""),
    )
    if args.screen:
        specs = args.variants or ["ynn_off"] + [k for k in {**FLAGSETS, **UNACCEPTED_FLAGSETS} if k != "default"]
        screen(specs, args.batch_sizes, args.modes, emit, env)
        close_out()
        return

    torch_mod = None
    if not args.no_torch:
        import torch_reference as torch_mod
    if torch_mod is not None:
        env.update(torch_mod.torch_info())
    for batch_size in args.batch_sizes:
        batch_np = _binary_batch(batch_size, CONFIG.x_shape)
        variants = args.variants or RECOMMENDED(batch_size)
        variants = [v for v in variants if parse_variant(v).fits(batch_size)]
        if "default" not in variants:
            variants = ["default"] + variants
        for mode in args.modes:
            built = {v: build_variant(v, batch_np, mode) for v in variants}
            fns = [built[v][0] for v in variants]
            if torch_mod is not None:
                t_train, t_eval = torch_mod.make_torch_fns(batch_np)
                fns.append(t_train if mode == "train" else t_eval)
            steps = max(2, args.target_examples // batch_size)
            load0, t_start = os.getloadavg()[0], time.strftime("%H:%M:%S", time.gmtime())
            times, busy = time_loops_cpu(fns, steps=steps, repeats=args.repeats)
            load1, t_end = os.getloadavg()[0], time.strftime("%H:%M:%S", time.gmtime())
            i_def = variants.index("default")
            for i, v in enumerate(variants):
                pv = parse_variant(v)
                rec = dict(
                    env,
                    bench="cpu_tuning",
                    model=MODEL_NAME,
                    mode=mode,
                    batch_size=batch_size,
                    variant=v,
                    compiler_options=pv.compiler_options,
                    xla_flags=xla_flags_spelling(pv.compiler_options),
                    microbatch=pv.microbatch,
                    split=pv.split,
                    fast_bernoulli=pv.fast_bernoulli,
                    examples_per_sec=batch_size / _timing.median(times[i]),
                    median_step_s=_timing.median(times[i]),
                    compile_s=built[v][1],
                    repeats=args.repeats,
                    steps_per_repeat=steps,
                    loadavg_1min=[load0, load1],
                    utc=[t_start, t_end],
                    cores_busy_median=_timing.median(busy[i]),
                    over_default_pairwise_median=_timing.median([d / j for j, d in zip(times[i], times[i_def])]),
                    **_hlo_facts(built[v][2].compiled),
                )
                if torch_mod is not None:
                    rec.update(
                        torch_examples_per_sec=batch_size / _timing.median(times[-1]),
                        torch_cores_busy_median=_timing.median(busy[-1]),
                        jax_over_torch_pairwise_median=_timing.median([t / j for j, t in zip(times[i], times[-1])]),
                        jax_over_torch_pairs=[t / j for j, t in zip(times[i], times[-1])],
                    )
                if v != "default":
                    diff = max_rel_diff(built[v][2](), reference_check(v, batch_np, mode))
                    rec.update(numerics_max_rel_diff=diff, numerics_ok=numerics_ok(diff))
                emit(rec)
    close_out()


if __name__ == "__main__":
    main()

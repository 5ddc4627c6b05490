"""Re-check of ``cpu_tuning.py``'s split-branch train step against the library's own options, in one process.

The MLP VAE's train step (784-512-512-2x32, Adam, XLA's own dots: ``xla_cpu_experimental_ynn_fusion_type=""``)
at batch ``B``, four ways, timed interleaved (median of repeats, compile apart): one pass; the library's
micro-batches (``make_train_step(microbatch=B/K)``, a ``lax.scan``); the library's micro-batches as ``K``
independent branches (``microbatch_mode='branches'``); and ``cpu_tuning.split_loss_fn``'s ``K`` branches,
the benchmark-side form it was first measured in. Prints examples/s and each one's speed relative to one
pass. Usage::

    python benchmarks/split_check.py 8192 8 [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402
import cpu_tuning  # noqa: E402

from jaxvae.models import vae  # noqa: E402
from jaxvae.train.optim import OptimizerConfig, make_optimizer  # noqa: E402
from jaxvae.train.steps import create_train_state, make_train_step  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("batch_size", type=int)
    p.add_argument("pieces", type=int, help="K: micro-batches / branches per step (must divide the batch)")
    p.add_argument("--repeats", type=int, default=9)
    a = p.parse_args(argv)
    if a.batch_size < 1 or a.pieces < 2 or a.batch_size % a.pieces:
        raise SystemExit(f"need batch_size >= 1 and pieces >= 2 dividing it; got {a.batch_size}, {a.pieces}")
    opts = {"xla_cpu_experimental_ynn_fusion_type": ""}
    cfg = vae.Config(arch="mlp", latent_dim=32, hidden=(512, 512), activation="relu")
    params, model_state = vae.init(cfg, jax.random.key(0))
    opt = make_optimizer(OptimizerConfig(name="adam", learning_rate=1e-3))
    loss = vae.make_loss_fn(cfg)
    x = jnp.asarray((np.random.default_rng(0).random((a.batch_size, 784)) < 0.3).astype(np.float32))
    steps = {
        "one_pass": make_train_step(loss, opt, compiler_options=opts),
        "microbatch_scan": make_train_step(loss, opt, compiler_options=opts, microbatch=a.batch_size // a.pieces),
        "microbatch_branches": make_train_step(
            loss, opt, compiler_options=opts, microbatch=a.batch_size // a.pieces, microbatch_mode="branches"
        ),
        "split_branches": make_train_step(cpu_tuning.split_loss_fn(loss, a.pieces), opt, compiler_options=opts),
    }
    fns = []
    for step in steps.values():
        holder = {"s": create_train_state(jax.random.key(0), params, model_state, opt)}

        def run(step=step, holder=holder):
            holder["s"], m = step(holder["s"], {"x": x})
            jax.block_until_ready(m)

        run()  # compile
        fns.append(run)
    times = _timing.time_loops(fns, steps=2, repeats=a.repeats)
    base = _timing.median(times[0])
    for name, t in zip(steps, times):
        print(
            f"{name:16s} batch {a.batch_size} K {a.pieces}: {a.batch_size / _timing.median(t):8.0f} ex/s "
            f"{base / _timing.median(t):.3f}x one pass"
        )


if __name__ == "__main__":
    main()

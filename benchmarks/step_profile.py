"""Where the MLP VAE's train step spends its time: its matmuls against the rest, JAX and PyTorch side by side.

Issue 4 asks, for a target that cannot be reached, for the profile that says why. This script splits
one train step of the benchmark MLP VAE (784-512-512-2x32 / 32-512-512-784, ReLU, Bernoulli, Adam) at
batch ``B`` into

- its **17 matrix products**: per dense layer the forward product, the weight gradient and (except the
  first layer, whose input ``x`` needs no gradient) the input gradient, each with the operand layout
  that framework's autodiff issues (JAX/Flax: kernel ``[in, out]``, ``dW = a^T dY``; PyTorch: weight
  ``[out, in]``, ``dW = dY^T a``), each timed alone as one compiled JAX call (under XLA's own dot
  emitter and under this jaxlib's default YNNPACK dots) and one ``torch.mm`` call;
- the **whole step** (the library's ``make_train_step`` under both dot back-ends; the same step traced
  with the library's MLP as it was before it flattened leading axes, ``xla_dots_unflattened``, so the
  effect of that change is measured in the same run; PyTorch's eager ``zero_grad / backward / Adam.step``);
- and the **rest** = whole step - sum of the 17 products (bias adds, ReLUs and their gradients, the
  Bernoulli and KL terms, reductions, Adam; plus, for the step, any time the products lose to each other).

Everything is timed interleaved in one process (median over ``--repeats`` loops after warm-up, compile
apart, every call synchronised), so each row's JAX/PyTorch ratio is measured side by side; for the
steps the ratio is the median of the per-repeat ratios (pairwise). One JSON line per product and per
step, then a summary table on stdout. The products and the steps are timed in different windows, so on
a noisy machine their difference ("rest") is only as good as the machine is quiet. Usage::

    python benchmarks/step_profile.py [--batch-size 8192] [--repeats 7] [--steps-only] [--out FILE] [--label TEXT]

Needs the ``bench`` extra (PyTorch).
"""

from __future__ import annotations

import argparse
import os
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402

from jaxvae.models import vae  # noqa: E402
from jaxvae.nets.mlp import MLP, get_activation  # noqa: E402
from jaxvae.train.optim import OptimizerConfig, make_optimizer  # noqa: E402
from jaxvae.train.steps import create_train_state, make_train_step  # noqa: E402

XLA_DOTS = {"xla_cpu_experimental_ynn_fusion_type": ""}
BACKENDS = {"xla_dots": XLA_DOTS, "default": {}}


def layer_dims(x_dim: int = 784, hidden: int = 512, z_dim: int = 32) -> list[tuple[str, int, int]]:
    """``(name, in, out)`` of the six dense layers, encoder then decoder."""
    return [
        ("enc0", x_dim, hidden),
        ("enc1", hidden, hidden),
        ("enc2", hidden, 2 * z_dim),
        ("dec0", z_dim, hidden),
        ("dec1", hidden, hidden),
        ("dec2", hidden, x_dim),
    ]


def products(batch: int, **dims) -> list[dict]:
    """The matrix products of one train step: name, role, (m, k, n) and FLOPs ``2 m k n``.

    Roles: ``fwd`` = ``a[B, in] @ W``; ``dx`` = the input gradient ``dY[B, out] @ W^T`` (not for
    ``enc0``); ``dw`` = the weight gradient, a contraction over the batch (``k = B``).
    """
    out = []
    for name, d_in, d_out in layer_dims(**dims):
        out.append({"layer": name, "role": "fwd", "mkn": (batch, d_in, d_out)})
        if name != "enc0":
            out.append({"layer": name, "role": "dx", "mkn": (batch, d_out, d_in)})
        out.append({"layer": name, "role": "dw", "mkn": (d_in, batch, d_out)})
    for p in out:
        m, k, n = p["mkn"]
        p["flops"] = 2.0 * m * k * n
    return out


def _jax_product(p: dict, options: dict, rng: np.random.Generator):
    """A zero-argument synchronised call of product ``p`` in JAX, in Flax's autodiff layout."""
    m, k, n = p["mkn"]
    if p["role"] == "fwd":  # a[B, in] @ kernel[in, out]
        a, b, f = (m, k), (k, n), lambda a, b: a @ b
    elif p["role"] == "dx":  # dY[B, out] @ kernel[in, out]^T
        a, b, f = (m, k), (n, k), lambda a, b: a @ b.T
    else:  # a[B, in]^T @ dY[B, out]
        a, b, f = (k, m), (k, n), lambda a, b: a.T @ b
    A = jnp.asarray(rng.standard_normal(a), jnp.float32)
    B = jnp.asarray(rng.standard_normal(b), jnp.float32)
    compiled = jax.jit(f).lower(A, B).compile(options or None)
    return lambda: compiled(A, B).block_until_ready()


def _torch_product(p: dict, rng: np.random.Generator):
    """The same product in PyTorch, in ``nn.Linear``'s autodiff layout (weight ``[out, in]``)."""
    import torch

    m, k, n = p["mkn"]
    t = lambda s: torch.from_numpy(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    if p["role"] == "fwd":  # a[B, in] @ weight[out, in]^T
        A, B = t((m, k)), t((n, k)).t()
    elif p["role"] == "dx":  # dY[B, out] @ weight[out, in]
        A, B = t((m, k)), t((k, n))
    else:  # dY[B, out]^T @ a[B, in]: the weight gradient [out, in]
        A, B = t((k, n)).t(), t((k, m))
    return lambda: torch.mm(A, B)


class _UnflattenedMLP(MLP):
    """The library's MLP before it flattened leading axes: ``Dense`` applied to ``[K, B, D]`` as it is."""

    @nn.compact
    def __call__(self, x):
        act = get_activation(self.activation)
        for i, width in enumerate(self.features):
            x = nn.Dense(int(width), name=f"dense_{i}")(x)
            if i < len(self.features) - 1 or self.activate_final:
                x = act(x)
        return x


def _jax_step(batch: int, options: dict, *, flatten: bool = True):
    """The library's train step on a fixed batch; ``flatten=False`` traces it with :class:`_UnflattenedMLP`
    (same parameters and maths; the decoder then sees the sample axis ``[1, B, 32]``)."""
    cfg = vae.Config(arch="mlp", latent_dim=32, hidden=(512, 512), activation="relu")
    params, model_state = vae.init(cfg, jax.random.key(0))
    opt = make_optimizer(OptimizerConfig(name="adam", learning_rate=1e-3))
    step = make_train_step(vae.make_loss_fn(cfg), opt, compiler_options=options or None)
    x = jnp.asarray((np.random.default_rng(0).random((batch, 784)) < 0.3).astype(np.float32))
    holder = {"s": create_train_state(jax.random.key(0), params, model_state, opt)}

    def run():
        holder["s"], m = step(holder["s"], {"x": x})
        jax.block_until_ready(m)

    with mock.patch.object(vae, "MLP", MLP if flatten else _UnflattenedMLP):
        run()  # traces (VAE.setup picks the MLP class now) and compiles
    return run


def _torch_step(batch: int):
    from torch_reference import make_torch_fns

    x = (np.random.default_rng(0).random((batch, 784)) < 0.3).astype(np.float32)
    train, _ = make_torch_fns(x, seed=0, device="cpu")
    return train


STEPS = {"xla_dots": (XLA_DOTS, True), "default": ({}, True), "xla_dots_unflattened": (XLA_DOTS, False)}


def profile(
    batch: int, *, repeats: int, steps: int = 2, emit=_timing.emit, label: str = "", with_products: bool = True
) -> dict:
    """Time the products (unless ``with_products=False``) and the steps; emit one record each.

    Returns per implementation ``{"step_s", "products_s" (or None), "pairwise"}``, where ``pairwise`` is
    the median over repeats of PyTorch's step time over this implementation's in the same repeat (the
    JAX/PyTorch rate ratio, > 1 = JAX faster).
    """
    import torch

    env = dict(
        _timing.environment(),
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
        batch_size=batch,
        repeats=repeats,
        label=label,
    )
    rng = np.random.default_rng(0)
    impls = list(STEPS) + ["torch"]
    totals = {i: {"products_s": None, "step_s": None, "pairwise": None} for i in impls}
    if with_products:
        prod_impls = list(BACKENDS) + ["torch"]
        for i in prod_impls:
            totals[i]["products_s"] = 0.0
        for p in products(batch):
            fns = [_jax_product(p, BACKENDS[b], rng) for b in BACKENDS] + [_torch_product(p, rng)]
            times = _timing.time_loops(fns, steps=steps, repeats=repeats)
            rec = dict(
                env,
                kind="product",
                layer=p["layer"],
                role=p["role"],
                m=p["mkn"][0],
                k=p["mkn"][1],
                n=p["mkn"][2],
                flops=p["flops"],
            )
            for impl, t in zip(prod_impls, times):
                sec = _timing.median(t)
                totals[impl]["products_s"] += sec
                rec[f"{impl}_ms"] = 1e3 * sec
                rec[f"{impl}_gflops"] = p["flops"] / sec / 1e9
            rec["jax_xla_dots_over_torch_time"] = rec["xla_dots_ms"] / rec["torch_ms"]
            emit(rec)
    fns = [_jax_step(batch, o, flatten=f) for o, f in STEPS.values()] + [_torch_step(batch)]
    times = _timing.time_loops(fns, steps=steps, repeats=repeats)
    total_flops = sum(p["flops"] for p in products(batch))
    for impl, t in zip(impls, times):
        sec = _timing.median(t)
        tot = totals[impl]
        tot["step_s"] = sec
        tot["pairwise"] = _timing.median([tt / tj for tt, tj in zip(times[-1], t)])
        rec = dict(
            env,
            kind="step",
            impl=impl,
            step_ms=1e3 * sec,
            examples_per_s=batch / sec,
            over_torch_pairwise_median=tot["pairwise"],
            step_ms_per_repeat=[1e3 * x for x in t],
        )
        if tot["products_s"] is not None:
            rec.update(
                products_ms=1e3 * tot["products_s"],
                rest_ms=1e3 * (sec - tot["products_s"]),
                products_gflops=total_flops / tot["products_s"] / 1e9,
                product_flops=total_flops,
            )
        emit(rec)
    return totals


def summary(totals: dict, batch: int) -> str:
    """The table the README quotes: per implementation, ms per step (and its products, the rest) and the
    pairwise JAX/PyTorch rate ratio."""
    lines = [
        f"batch {batch}: ms per train step (median over repeats)",
        f"{'impl':22s} {'step':>8s} {'products':>9s} {'rest':>8s} {'ex/s':>8s} {'x PyTorch (pairwise)':>21s}",
    ]
    for impl, t in totals.items():
        prod = t["products_s"]
        cols = f"{1e3 * prod:9.1f} {1e3 * (t['step_s'] - prod):8.1f}" if prod is not None else f"{'-':>9s} {'-':>8s}"
        lines.append(f"{impl:22s} {1e3 * t['step_s']:8.1f} {cols} {batch / t['step_s']:8.0f} {t['pairwise']:21.3f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=2, help="calls per timed loop")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--label", default="", help="a tag stored in every record (e.g. what the tree holds)")
    p.add_argument("--steps-only", action="store_true", help="time the whole steps only, not the 17 products")
    a = p.parse_args(argv)
    if a.batch_size < 1 or a.repeats < 1 or a.steps < 1:
        raise SystemExit(
            f"--batch-size, --repeats and --steps must be >= 1; got {a.batch_size}, {a.repeats}, {a.steps}"
        )
    emit, close = _timing.json_lines_sink(a.out)
    try:
        totals = profile(
            a.batch_size, repeats=a.repeats, steps=a.steps, emit=emit, label=a.label, with_products=not a.steps_only
        )
    finally:
        close()
    print(summary(totals, a.batch_size))


if __name__ == "__main__":
    main()

"""ELBO throughput of jaxvae models, side by side with a PyTorch reference, against the machine's limit.

For each model x batch size x mode (``eval``: one-sample ELBO evaluation; ``train``: a full train step
with Adam), it reports examples/s as the median over repeats after warm-up, with every call
synchronised and compile time measured apart. For the MLP VAE (784-512-512-2x32 / 32-512-512-784,
ReLU, Bernoulli) the PyTorch reference of the same shapes and optimizer runs in the same invocation,
interleaved loop by loop with the JAX step, so each JAX/PyTorch ratio is measured pair by pair.

The machine's limit: FLOPs per example come from XLA's cost analysis of the compiled step; the dense
float32 matmul rate is measured in the same run; ``fraction_of_matmul_peak`` is the achieved FLOP rate
over that.

IW-NLL speed: examples/s of ``jaxvae.metrics.iw_log_likelihood`` at k=5000 against a per-example
Python loop of the pythae kind (one example at a time, its k samples in chunks of 100), same model,
same run.

One JSON line per measurement on stdout (and ``--out FILE``). Usage::

    python benchmarks/elbo_throughput.py --quick              # < 1 minute
    python benchmarks/elbo_throughput.py --out benchmarks/results/cpu.jsonl
    python benchmarks/plot.py benchmarks/results/cpu.jsonl benchmarks/results/throughput_cpu.png

Convolutional models (issue 19): ``conv_vae_64x64_dsprites`` (encoder 4 x Conv k4 s2 32-32-64-64,
Dense 256, latent 10, Bernoulli; decoder mirrored with ConvTranspose) and ``resnet_v2_vae_32x32``
(the CPU-sized ResNetV2 encoder/decoder of :mod:`jaxvae.nets.resnet`, latent 32, Bernoulli) and
``vaegan_32x32_adversarial``, Rivera's full simultaneous G+D step (ResNetV2 VAE + PatchGAN), each with a
PyTorch twin; ``stcvae_64x64``, Chen et al.'s β-STCVAE step on the code's net (JAX only).
``--conv-impl fast xla`` times the JAX step once per convolution form of :mod:`jaxvae.nets.conv_ops`
(``auto``: the platform's default), interleaved with PyTorch in one loop. ``--conv-layers`` adds the
per-layer section: forward, weight gradient and input gradient of each convolution of the 64x64 conv VAE,
JAX per form and PyTorch, interleaved::

    python benchmarks/elbo_throughput.py --models conv_vae_64x64_dsprites --batch-sizes 64 256 \
        --modes train --conv-impl fast xla --conv-layers --no-iw --torch-threads 2

Runs unchanged on GPU/TPU (``--no-torch`` where PyTorch is absent).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402

from jaxvae.metrics import iw_nll  # noqa: E402
from jaxvae.models import vae  # noqa: E402
from jaxvae.nets import conv_ops  # noqa: E402
from jaxvae.train.optim import OptimizerConfig, make_optimizer  # noqa: E402
from jaxvae.train.steps import create_train_state, make_eval_step, make_train_step  # noqa: E402


@dataclasses.dataclass
class Built:
    """One model at one batch size, ready to time."""

    state: object
    train_step: Callable
    eval_step: Callable
    batch: dict
    key: jax.Array
    eval_batch: dict | None = None  # when evaluation takes another batch layout than training


# XLA options for every benchmarked step program (``--compiler-option``); None: XLA's defaults.
COMPILER_OPTIONS: dict | None = None
# Train-step micro-batch (``--microbatch``): used for batches it divides and is smaller than.
MICROBATCH: int | None = None
# How the micro-batches run (``--microbatch-mode``): make_train_step(microbatch_mode=...).
MICROBATCH_MODE: str = "scan"


def _microbatch(batch_size: int) -> int | None:
    if MICROBATCH is None or batch_size <= MICROBATCH or batch_size % MICROBATCH:
        return None
    return MICROBATCH


def _binary_batch(batch_size: int, x_shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((batch_size,) + tuple(x_shape)) < 0.13).astype(np.float32)


def vae_builder(config: vae.Config) -> Callable[[int], Built]:
    def build(batch_size: int) -> Built:
        key = jax.random.key(0)
        params, model_state = vae.init(config, key)
        opt = make_optimizer(OptimizerConfig(name="adam", learning_rate=1e-3))
        state = create_train_state(key, params, model_state, opt)
        return Built(
            state=state,
            train_step=make_train_step(
                vae.make_loss_fn(config),
                opt,
                compiler_options=COMPILER_OPTIONS,
                microbatch=_microbatch(batch_size),
                microbatch_mode=MICROBATCH_MODE,
            ),
            eval_step=make_eval_step(vae.make_eval_fn(config), compiler_options=COMPILER_OPTIONS),
            batch={"x": jnp.asarray(_binary_batch(batch_size, config.x_shape))},
            key=jax.random.key(1),
        )

    return build


MODELS: dict[str, tuple[Callable[[int], Built], bool]] = {
    # name: (builder, has a PyTorch twin of the same name in torch_reference.TORCH_MODELS)
    "mlp_vae_512x2_z32": (
        vae_builder(vae.Config(arch="mlp", latent_dim=32, hidden=(512, 512), activation="relu")),
        True,
    ),
    "baseline_vae_500x2_z50": (vae_builder(vae.Config()), False),
    "conv_vae_28x28": (vae_builder(vae.Config(arch="conv", x_shape=(28, 28, 1), hidden=(512,))), False),
}


def _engine_builder(init, loss_fn, eval_fn, make_batch, make_eval_batch, opt_cfg) -> Callable[[int], Built]:
    def build(batch_size: int) -> Built:
        key = jax.random.key(0)
        params, model_state = init(key)
        opt = make_optimizer(opt_cfg)
        return Built(
            state=create_train_state(key, params, model_state, opt),
            train_step=make_train_step(
                loss_fn,
                opt,
                compiler_options=COMPILER_OPTIONS,
                microbatch=_microbatch(batch_size),
                microbatch_mode=MICROBATCH_MODE,
            ),
            eval_step=make_eval_step(eval_fn, compiler_options=COMPILER_OPTIONS),
            batch=jax.tree.map(jnp.asarray, make_batch(batch_size)),
            key=jax.random.key(1),
            eval_batch=jax.tree.map(jnp.asarray, make_eval_batch(batch_size)),
        )

    return build


def rectified_hvae_builder() -> Callable[[int], Built]:
    """Salimans' 4-layer rectified-Gaussian hierarchy (300-200-100-50), BatchNorm, Adamax (issue 5)."""
    from jaxvae.models import rectified_hvae as rh

    cfg = rh.Config()

    def batch(b):
        return {"x": _binary_batch(b, (cfg.x_dim,))}

    return _engine_builder(
        lambda k: rh.init(cfg, k),
        rh.make_loss_fn(cfg),
        rh.make_eval_fn(cfg),
        batch,
        batch,
        OptimizerConfig(name="adamax", learning_rate=2e-3),
    )


def inverted_ssvae_builder() -> Callable[[int], Built]:
    """Gemp et al.'s untapped model; one example = one row of each of the three streams (issue 6)."""
    from jaxvae.models import inverted_ssvae as iv

    cfg = iv.Config()

    def batch(b):
        rng = np.random.default_rng(0)
        corners = iv.corner_labels(cfg.num_classes)
        return {
            "x_l": _binary_batch(b, (cfg.x_dim,)),
            "y_l": rng.integers(0, cfg.num_classes, b).astype(np.int32),
            "x_u": _binary_batch(b, (cfg.x_dim,), seed=1),
            "y_u": corners[rng.integers(0, cfg.num_classes, b)],
            "z_u": rng.uniform(cfg.z_low + 1e-3, cfg.z_high - 1e-3, (b, cfg.z_dim)).astype(np.float32),
        }

    def eval_batch(b):
        rng = np.random.default_rng(0)
        return {"x": _binary_batch(b, (cfg.x_dim,)), "y": rng.integers(0, cfg.num_classes, b).astype(np.int32)}

    return _engine_builder(
        lambda k: iv.init(cfg, k),
        iv.make_loss_fn(cfg),
        iv.make_eval_fn(cfg),
        batch,
        eval_batch,
        OptimizerConfig(name="adam", learning_rate=1e-2, eps=1e-4, clip_value=1.0, clip_global_norm=5.0),
    )


MODELS["rectified_hvae"] = (rectified_hvae_builder(), False)
MODELS["inverted_ssvae"] = (inverted_ssvae_builder(), False)

DSPRITES_CONV = vae.Config(
    arch="conv", x_shape=(64, 64, 1), conv_channels=(32, 32, 64, 64), hidden=(256,), latent_dim=10, activation="relu"
)
MODELS["conv_vae_64x64_dsprites"] = (vae_builder(DSPRITES_CONV), True)


def resnet_vae_builder(size: int = 32, latent: int = 32, widths=(32, 32, 32, 32), bottleneck: int = 8):
    """Bernoulli VAE on the CPU-sized ResNetV2 encoder/decoder (BatchNorm state in ``model_state``)."""
    import flax.linen as nn

    from jaxvae.models.common import loss_output
    from jaxvae.nets import ResNetV2Decoder, ResNetV2Encoder

    shape = (size, size, 1)

    class _ResNetVAE(nn.Module):
        @nn.compact
        def __call__(self, x, key, *, train):
            kw = dict(image_shape=shape, widths=widths, blocks_per_stage=1, bottleneck_channels=bottleneck)
            loc, log_var = ResNetV2Encoder(latent_dim=latent, name="encoder", **kw)(x, train=train)
            z = loc + jnp.exp(0.5 * log_var) * jax.random.normal(key, loc.shape)
            logits = ResNetV2Decoder(name="decoder", **kw)(z, train=train)
            log_px_z = -jnp.sum(
                jnp.logaddexp(0.0, logits) - x * logits, axis=(-3, -2, -1)
            )  # Bernoulli, log-sigmoid form
            kl = 0.5 * jnp.sum(jnp.exp(log_var) + loc**2 - 1.0 - log_var, axis=-1)
            return log_px_z, kl

    model = _ResNetVAE()

    class Terms(NamedTuple):
        log_px_z: jax.Array
        kl: jax.Array

    def init(key):
        vs = model.init(key, jnp.zeros((2,) + shape), key, train=False)
        return vs["params"], {"batch_stats": vs["batch_stats"]}

    def loss_fn(params, model_state, batch, key, *, step=0):
        (lp, kl), new_state = model.apply(
            {"params": params, **model_state}, batch["x"], key, train=True, mutable=["batch_stats"]
        )
        return loss_output(lp - kl, Terms(lp, kl), dict(new_state))

    def eval_fn(params, model_state, batch, key):
        lp, kl = model.apply({"params": params, **model_state}, batch["x"], key, train=False)
        return {"log_px_z": lp, "kl": kl, "elbo": lp - kl}

    def batch(b):
        return {"x": _binary_batch(b, shape)}

    return _engine_builder(init, loss_fn, eval_fn, batch, batch, OptimizerConfig(name="adam", learning_rate=1e-3))


MODELS["resnet_v2_vae_32x32"] = (resnet_vae_builder(), True)


def vaegan_builder() -> Callable[[int], Built]:
    """Rivera's VAE-GAN at the CPU scale of ``experiments/mog_vaegan`` (ResNetV2 VAE on 32x32 inputs in
    [-1, 1], PatchGAN, 5000 MAE + population KL + variance regularizer + 100 BCE): ``train`` is the full
    simultaneous G+D step of :func:`jaxvae.train.adversarial.make_adversarial_step` (one forward, two
    gradients, two Adam updates); ``eval`` the model's per-example evaluation."""
    from jaxvae.models import mog_vaegan
    from jaxvae.train.adversarial import create_adversarial_state, make_adversarial_step

    cfg = mog_vaegan.Config(
        x_shape=(32, 32, 1),
        latent_dim=16,
        enc_widths=(16, 16, 16, 16),
        dec_widths=(16, 16, 16, 16),
        enc_blocks=0,
        dec_blocks=0,
        bottleneck_channels=4,
        disc_features=(16, 16, 1),
        disc_strides=(2, 2, 1),
    )

    def build(batch_size: int) -> Built:
        key = jax.random.key(0)
        params, model_state = mog_vaegan.init(cfg, key)
        tx = mog_vaegan.make_optimizers(cfg)
        return Built(
            state=create_adversarial_state(key, params, model_state, tx),
            train_step=make_adversarial_step(
                mog_vaegan.make_adversarial_loss_fn(cfg), tx, compiler_options=COMPILER_OPTIONS
            ),
            eval_step=make_eval_step(mog_vaegan.make_eval_fn(cfg), compiler_options=COMPILER_OPTIONS),
            batch=jax.tree.map(jnp.asarray, mog_vaegan.random_batch(cfg, batch_size)),
            key=jax.random.key(1),
        )

    return build


MODELS["vaegan_32x32_adversarial"] = (vaegan_builder(), True)


def stcvae_builder() -> Callable[[int], Built]:
    """Chen et al.'s β-STCVAE (s = 2, β = 10, MWS over the batch) on the code's 64x64 conv-MLP net
    (:mod:`jaxvae.models.stcvae` defaults): the conv VAE step plus the O(B^2 D) total-correlation terms."""
    from jaxvae.models import stcvae

    cfg = stcvae.Config()

    def batch(b):
        return {"x": _binary_batch(b, cfg.x_shape)}

    return _engine_builder(
        lambda k: stcvae.init(cfg, k),
        stcvae.make_loss_fn(cfg),
        stcvae.make_eval_fn(cfg),
        batch,
        batch,
        OptimizerConfig(name="adam", learning_rate=1e-3),
    )


MODELS["stcvae_64x64"] = (stcvae_builder(), False)

# The convolutions of conv_vae_64x64_dsprites (per-layer section): input size, channels, kernel, stride,
# padding, transposed (torch's output_padding for a transposed one).
DSPRITES_CONV_LAYERS = [
    dict(name=f"enc_{i}", size=64 >> i, cin=ci, cout=co, k=4, stride=2, padding=1, transposed=False)
    for i, (ci, co) in enumerate(zip((1, 32, 32, 64), (32, 32, 64, 64)))
] + [
    dict(name=f"dec_{i}", size=4 << i, cin=ci, cout=co, k=4, stride=2, padding=1, transposed=True)
    for i, (ci, co) in enumerate(zip((64, 64, 32, 32), (64, 32, 32, 1)))
]


# --------------------------------------------------------------------------------------------------
# Measurements


def matmul_rate(sizes=(1024, 2048), repeats: int = 5) -> dict:
    """Best measured float32 dense matmul rate (FLOP/s) over square sizes, in this process.

    Uses the process's ``jax_default_matmul_precision`` (on a GPU, 'default' may use TF32).
    """
    loop_flops = 2e10 if jax.devices()[0].platform == "cpu" else 2e12
    best = 0.0
    detail = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        f = jax.jit(jnp.matmul)
        f(a, b).block_until_ready()
        steps = max(1, int(loop_flops // (2 * n**3)))
        (times,) = _timing.time_loops([lambda: f(a, b).block_until_ready()], steps=steps, repeats=repeats)
        rate = 2 * n**3 / _timing.median(times)
        detail[str(n)] = rate
        best = max(best, rate)
    return {"matmul_flops_per_s": best, "matmul_by_size": detail}


def _jax_callables(built: Built):
    holder = {"state": built.state}

    def train():
        holder["state"], m = built.train_step(holder["state"], built.batch)
        m["loss"].block_until_ready()

    eval_batch = built.batch if built.eval_batch is None else built.eval_batch

    def evaluate():
        out = built.eval_step(holder["state"], eval_batch, built.key)
        jax.block_until_ready(out)

    return holder, train, evaluate, eval_batch


def _compile_time(step, *args) -> tuple[float, float | None]:
    compiled, seconds = _timing.compile_seconds(step, *args)
    return seconds, _timing.flops_of(compiled)


def bench_model(
    name: str,
    builder,
    with_torch: bool,
    batch_sizes,
    modes,
    *,
    repeats,
    target_examples,
    peak,
    env,
    torch_mod,
    emit,
    conv_impls=("auto",),
) -> None:
    """One record per (batch size, mode, convolution form), plus PyTorch's when ``with_torch``.

    Every JAX form and PyTorch are timed in one interleaved loop, so their ratios are pair by pair.
    Each form is traced inside ``conv_ops.use_impl`` (compile, then a first call that fills jit's cache).
    """
    for batch_size in batch_sizes:
        builts = [builder(batch_size) for _ in conv_impls]
        callables = [_jax_callables(built) for built in builts]  # one state per form, across modes
        steps = max(2, int(target_examples // batch_size))
        for mode in modes:
            fns, infos = [], []
            for impl, built, (holder, train, evaluate, eval_batch) in zip(conv_impls, builts, callables):
                with conv_ops.use_impl(impl):
                    if mode == "train":
                        compile_s, flops = _compile_time(built.train_step, holder["state"], built.batch)
                        if _microbatch(batch_size) and MICROBATCH_MODE == "scan":
                            flops = None  # XLA's cost analysis counts a while loop's body once, not per slice
                        fn = train
                    else:
                        compile_s, flops = _compile_time(built.eval_step, holder["state"], eval_batch, built.key)
                        fn = evaluate
                    fn()  # traced here, under this form
                fns.append(fn)
                infos.append((impl, compile_s, flops))
            n_jax = len(fns)
            if with_torch and torch_mod is not None:
                t_train, t_eval = torch_mod.make_torch_fns(np.asarray(builts[0].batch["x"]), model=name)
                fns.append(t_train if mode == "train" else t_eval)
            times = _timing.time_loops(fns, steps=steps, repeats=repeats)
            torch_t = times[n_jax] if len(fns) > n_jax else None
            if torch_t is not None:
                emit(
                    dict(
                        env,
                        **torch_mod.torch_info(),
                        bench="elbo_throughput",
                        impl="torch",
                        model=name,
                        mode=mode,
                        batch_size=batch_size,
                        dtype="float32",
                        examples_per_sec=batch_size / _timing.median(torch_t),
                        median_step_s=_timing.median(torch_t),
                        repeats=repeats,
                        steps_per_repeat=steps,
                    )
                )
            for (impl, compile_s, flops), jt in zip(infos, times):
                jax_eps = batch_size / _timing.median(jt)
                rec = dict(
                    env,
                    bench="elbo_throughput",
                    impl="jax",
                    conv_impl=impl,
                    model=name,
                    mode=mode,
                    batch_size=batch_size,
                    microbatch=_microbatch(batch_size) if mode == "train" else None,
                    microbatch_mode=MICROBATCH_MODE if mode == "train" and _microbatch(batch_size) else None,
                    dtype="float32",
                    examples_per_sec=jax_eps,
                    median_step_s=_timing.median(jt),
                    repeats=repeats,
                    steps_per_repeat=steps,
                    compile_s=compile_s,
                )
                if flops is not None:
                    rec["flops_per_example"] = flops / batch_size
                    # XLA's GPU cost analysis leaves out matmuls lowered to cuBLAS calls (measured on an
                    # H100: 2.81 MFLOP/example at batch 128, 0.12 at 8192 for one program), so no rate there
                    if env.get("platform") != "gpu":
                        rec["achieved_flops_per_s"] = jax_eps * flops / batch_size
                        rec["fraction_of_matmul_peak"] = rec["achieved_flops_per_s"] / peak
                if torch_t is not None:
                    torch_eps = batch_size / _timing.median(torch_t)
                    ratios = [t / j for j, t in zip(jt, torch_t)]  # per interleaved pair
                    rec.update(
                        torch_examples_per_sec=torch_eps,
                        jax_over_torch=jax_eps / torch_eps,
                        jax_over_torch_pairwise_median=_timing.median(ratios),
                    )
                emit(rec)


def _jax_layer_fns(spec: dict, batch_size: int, impl: str) -> dict:
    """Jitted forward / weight gradient / input gradient of one ``spec`` layer under ``impl``."""
    k, s, t = spec["k"], spec["stride"], spec["transposed"]
    x = jax.random.normal(jax.random.key(0), (batch_size, spec["size"], spec["size"], spec["cin"]))
    w = 0.1 * jax.random.normal(jax.random.key(1), (k, k, spec["cin"], spec["cout"]))
    if t:  # flax ConvTranspose 'SAME' (what the decoder uses): lhs-dilated conv with lax.conv_transpose's pads
        pads = (conv_ops.transpose_padding(k, s, "SAME"),) * 2

        def op(x, w):
            return conv_ops.conv_general_dilated(
                x, w, (1, 1), pads, lhs_dilation=(s, s), dimension_numbers=conv_ops.NHWC, impl=impl
            )
    else:
        p = spec["padding"]

        def op(x, w):
            return conv_ops.conv_general_dilated(
                x, w, (s, s), ((p, p), (p, p)), dimension_numbers=conv_ops.NHWC, impl=impl
            )

    dy = jax.random.normal(jax.random.key(2), jax.eval_shape(op, x, w).shape)
    fwd = jax.jit(op)
    dw = jax.jit(lambda x, w, dy: jax.vjp(lambda v: op(x, v), w)[1](dy)[0])
    dx = jax.jit(lambda x, w, dy: jax.vjp(lambda u: op(u, w), x)[1](dy)[0])
    return {
        "fwd": lambda: fwd(x, w).block_until_ready(),
        "dw": lambda: dw(x, w, dy).block_until_ready(),
        "dx": lambda: dx(x, w, dy).block_until_ready(),
    }


def bench_conv_layers(layers, batch_sizes, *, conv_impls, repeats, steps, env, torch_mod, emit) -> None:
    """Per-layer section: forward, weight gradient, input gradient of each layer, each JAX form and PyTorch.

    One record per (layer, batch size, op) with the median ms of each, timed interleaved.
    """
    impls = [i for i in dict.fromkeys(conv_impls) if i != "auto"] or ["fast"]
    for batch_size in batch_sizes:
        for spec in layers:
            jfns = {impl: _jax_layer_fns(spec, batch_size, impl) for impl in impls}
            tfns = torch_mod.conv_layer_fns(spec, batch_size) if torch_mod is not None else None
            for op in ("fwd", "dw", "dx"):
                fns = [jfns[i][op] for i in impls] + ([tfns[op]] if tfns else [])
                times = _timing.time_loops(fns, steps=steps, repeats=repeats, warmup=2)
                rec = dict(
                    env,
                    bench="conv_layer",
                    layer=spec["name"],
                    spec={k: v for k, v in spec.items() if k != "name"},
                    batch_size=batch_size,
                    op=op,
                    repeats=repeats,
                    steps_per_repeat=steps,
                )
                for i, impl in enumerate(impls):
                    rec[f"jax_{impl}_ms"] = 1e3 * _timing.median(times[i])
                if tfns:
                    rec.update(torch_mod.torch_info())
                    rec["torch_ms"] = 1e3 * _timing.median(times[-1])
                    for i, impl in enumerate(impls):
                        rec[f"jax_{impl}_over_torch_time"] = _timing.median(
                            [j / t for j, t in zip(times[i], times[-1])]
                        )
                emit(rec)


def bench_iw_nll(*, num_samples: int, num_examples: int, loop_examples: int, loop_chunk: int, env, emit) -> None:
    """Vectorised, chunked ``iw_log_likelihood`` against a per-example loop, same model and k.

    The loop is the pattern of pythae's ``get_nll`` (its VAE model), compiled with ``jax.jit``: one example
    at a time; its k samples in chunks of ``loop_chunk`` (pythae's default ``batch_size=100``), each
    chunk encoding the example repeated ``loop_chunk`` times, sampling, decoding; then a logsumexp.
    """
    config = vae.Config()
    params, model_state = vae.init(config, jax.random.key(0))
    log_w = vae.make_log_weight_fn(config, params, model_state)
    x = _binary_batch(num_examples, config.x_shape, seed=1)
    key = jax.random.key(2)

    estimate = iw_nll.make_iw_log_likelihood(log_w, num_samples=num_samples)
    t0 = time.perf_counter()
    np.asarray(estimate(x[: estimate.batch_size], key))  # compile + one batch
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    vec = np.asarray(estimate(x, key))
    vec_s = time.perf_counter() - t0

    @jax.jit
    def chunk_log_w(k, xi):  # encode the repeated example, as the per-example loop does
        x_rep = jnp.broadcast_to(xi, (loop_chunk,) + xi.shape)
        return jax.vmap(lambda kk, xx: log_w(kk, xx[None], 1)[0, 0])(jax.random.split(k, loop_chunk), x_rep)

    chunk_log_w(key, jnp.asarray(x[0])).block_until_ready()
    n_chunks = -(-num_samples // loop_chunk)
    t0 = time.perf_counter()
    loop = []
    for i in range(loop_examples):
        xi = jnp.asarray(x[i])
        lw = np.concatenate(
            [np.asarray(chunk_log_w(jax.random.fold_in(key, i * n_chunks + j), xi)) for j in range(n_chunks)]
        )[:num_samples]
        loop.append(float(np.logaddexp.reduce(lw.astype(np.float64)) - math.log(num_samples)))
    loop_s = time.perf_counter() - t0
    vec_eps, loop_eps = num_examples / vec_s, loop_examples / loop_s
    emit(
        dict(
            env,
            bench="iw_nll",
            model="baseline_vae_500x2_z50",
            num_samples=num_samples,
            examples=num_examples,
            loop_examples=loop_examples,
            loop_chunk=loop_chunk,
            vectorized_examples_per_sec=vec_eps,
            loop_examples_per_sec=loop_eps,
            speedup=vec_eps / loop_eps,
            vectorized_first_batch_s=first,
            sample_chunk=estimate.sample_chunk,
            batch_size=estimate.batch_size,
            mean_log_px_vectorized=float(vec.mean()),
            mean_log_px_loop=float(np.mean(loop)),
        )
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute")
    p.add_argument("--models", nargs="*", default=None, help="subset of model names")
    p.add_argument("--batch-sizes", nargs="*", type=int, default=None)
    p.add_argument("--modes", nargs="*", default=["eval", "train"], choices=["eval", "train"])
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-iw", action="store_true")
    p.add_argument("--iw-only", action="store_true", help="only the matmul rate and the IW-NLL comparison")
    p.add_argument(
        "--iw-examples",
        type=int,
        default=None,
        help="test images for the vectorised IW-NLL (default 200; 20 with --quick)",
    )
    p.add_argument(
        "--iw-loop-examples",
        type=int,
        default=None,
        help="test images for the per-example loop (default 20; 4 with --quick)",
    )
    p.add_argument("--out", default=None, help="also append JSON lines to this file")
    p.add_argument(
        "--matmul-precision",
        default="default",
        choices=["default", "high", "highest"],
        help="jax_default_matmul_precision (GPU: 'default'/'high' allow TF32); PyTorch is matched",
    )
    p.add_argument(
        "--compiler-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="XLA option for the step programs (repeatable), e.g. "
        "xla_cpu_experimental_ynn_fusion_type= (XLA:CPU dots instead of YNNPACK)",
    )
    p.add_argument(
        "--microbatch",
        type=int,
        default=None,
        help="train step in micro-batches of this size (make_train_step(microbatch=...)) "
        "at the batch sizes it divides and is smaller than",
    )
    p.add_argument(
        "--microbatch-mode",
        default="scan",
        choices=["scan", "branches"],
        help="'scan' loops over the micro-batches (memory); 'branches' traces them side by side "
        "(make_train_step(microbatch_mode=...))",
    )
    p.add_argument(
        "--conv-impl",
        nargs="+",
        default=["auto"],
        choices=list(conv_ops.IMPLS),
        help="convolution form(s) of jaxvae.nets.conv_ops for the JAX steps, each timed (interleaved) "
        "in the same loop: 'auto' (the platform's default), 'fast', 'xla'",
    )
    p.add_argument(
        "--conv-layers",
        action="store_true",
        help="add the per-layer section (forward / weight grad / input grad of the 64x64 conv VAE's layers)",
    )
    p.add_argument(
        "--target-examples", type=int, default=None, help="examples per timed repeat (default 16384; 4096 quick)"
    )
    p.add_argument("--layers-only", action="store_true", help="only the matmul rate and the per-layer section")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    args = p.parse_args(argv)
    if args.iw_only and args.no_iw:
        raise SystemExit("--iw-only and --no-iw exclude each other")
    for flag in ("iw_examples", "iw_loop_examples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1; got {getattr(args, flag)}")
    global COMPILER_OPTIONS, MICROBATCH, MICROBATCH_MODE
    MICROBATCH, MICROBATCH_MODE = args.microbatch, args.microbatch_mode
    bad = [o for o in args.compiler_option if "=" not in o]
    if bad:
        raise SystemExit(f"--compiler-option takes NAME=VALUE; got {bad}")
    COMPILER_OPTIONS = dict(o.split("=", 1) for o in args.compiler_option) or None
    if args.matmul_precision != "default":
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)

    torch_mod = None
    if not args.no_torch:
        try:
            import torch_reference as torch_mod  # noqa: F811

            torch_mod.match_precision(args.matmul_precision)
            if args.torch_threads is not None:
                torch_mod.torch.set_num_threads(args.torch_threads)
        except ImportError:
            print("# torch not installed: PyTorch reference skipped (pip install -e '.[bench]')", file=sys.stderr)
    emit, close_out = _timing.json_lines_sink(args.out)

    env = dict(
        _timing.environment(),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        quick=bool(args.quick),
        compiler_options=COMPILER_OPTIONS or {},
        load_average_1min=os.getloadavg()[0],
    )
    if args.quick:
        batch_sizes = args.batch_sizes or [128, 1024]
        models = args.models or ["mlp_vae_512x2_z32"]
        repeats, target = args.repeats or 3, args.target_examples or 4096
        peak = matmul_rate(sizes=(1024,), repeats=3)
    else:
        batch_sizes = args.batch_sizes or [128, 1024, 8192]
        models = args.models or list(MODELS)
        repeats, target = args.repeats or 7, args.target_examples or 16384
        sizes = (1024, 2048) if jax.devices()[0].platform == "cpu" else (2048, 4096, 8192)
        peak = matmul_rate(sizes=sizes, repeats=5)
    emit(dict(env, bench="matmul_peak", **peak))
    for name in [] if args.iw_only or args.layers_only else models:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {sorted(MODELS)}")
        builder, has_torch = MODELS[name]
        bench_model(
            name,
            builder,
            has_torch,
            batch_sizes,
            args.modes,
            repeats=repeats,
            target_examples=target,
            peak=peak["matmul_flops_per_s"],
            env=env,
            torch_mod=torch_mod,
            emit=emit,
            conv_impls=args.conv_impl,
        )
    if args.conv_layers or args.layers_only:
        bench_conv_layers(
            DSPRITES_CONV_LAYERS[:2] if args.quick else DSPRITES_CONV_LAYERS,
            batch_sizes,
            conv_impls=args.conv_impl,
            repeats=repeats,
            steps=2 if args.quick else 5,
            env=env,
            torch_mod=torch_mod,
            emit=emit,
        )
    if not args.no_iw and not args.layers_only:
        bench_iw_nll(
            num_samples=5000,
            num_examples=args.iw_examples or (20 if args.quick else 200),
            loop_examples=args.iw_loop_examples or (4 if args.quick else 20),
            loop_chunk=100,
            env=env,
            emit=emit,
        )
    close_out()


if __name__ == "__main__":
    main()

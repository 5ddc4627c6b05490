"""Keep the benchmark script from rotting: one tiny measurement of each kind, fields and sanity checked.

The benchmark is a script that reports figures; this test asserts only that it runs and that what it
reports is well formed and internally consistent (no timing thresholds).
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import elbo_throughput as bench  # noqa: E402

from jaxvae.models import vae  # noqa: E402


def test_bench_model_reports_consistent_records():
    records = []
    builder = bench.vae_builder(vae.Config(arch="mlp", latent_dim=4, hidden=(16,), activation="relu"))
    env = bench._timing.environment()
    bench.bench_model(
        "tiny",
        builder,
        False,
        [8],
        ["eval", "train"],
        repeats=2,
        target_examples=16,
        peak=1e9,
        env=env,
        torch_mod=None,
        emit=records.append,
    )
    assert [r["mode"] for r in records] == ["eval", "train"]
    for r in records:
        assert r["impl"] == "jax" and r["batch_size"] == 8 and r["jax_version"]
        assert r["examples_per_sec"] == pytest.approx(8 / r["median_step_s"])
        assert r["compile_s"] > 0
        # XLA's cost analysis: a train step does at least the forward's work
        assert r["flops_per_example"] > 0
    assert records[1]["flops_per_example"] > records[0]["flops_per_example"]


def test_matmul_rate_is_positive_and_reported_per_size():
    out = bench.matmul_rate(sizes=(64,), repeats=1)
    assert out["matmul_flops_per_s"] > 0 and set(out["matmul_by_size"]) == {"64"}


def test_torch_twin_runs_when_installed():
    torch_reference = pytest.importorskip("torch_reference", reason="torch is a bench extra")
    import numpy as np

    train, evaluate = torch_reference.make_torch_fns(np.zeros((4, 784), np.float32))
    assert np.isfinite(train()) and np.isfinite(evaluate())


def test_compiler_option_flag_reaches_the_steps_and_the_records(monkeypatch, tmp_path):
    tiny = bench.vae_builder(vae.Config(arch="mlp", latent_dim=4, hidden=(16,), activation="relu"))
    monkeypatch.setitem(bench.MODELS, "tiny", (tiny, False))
    monkeypatch.setattr(bench, "COMPILER_OPTIONS", None)
    out = tmp_path / "r.jsonl"
    bench.main(
        [
            "--quick",
            "--models",
            "tiny",
            "--batch-sizes",
            "8",
            "--modes",
            "eval",
            "--no-torch",
            "--no-iw",
            "--repeats",
            "1",
            "--compiler-option",
            "xla_cpu_experimental_ynn_fusion_type=",
            "--out",
            str(out),
        ]
    )
    import json

    recs = [json.loads(line) for line in open(out)]
    assert {r["bench"] for r in recs} == {"matmul_peak", "elbo_throughput"}
    assert all(r["compiler_options"] == {"xla_cpu_experimental_ynn_fusion_type": ""} for r in recs)
    assert bench.COMPILER_OPTIONS == {"xla_cpu_experimental_ynn_fusion_type": ""}
    monkeypatch.setattr(bench, "MICROBATCH", None)
    bench.main(
        [
            "--quick",
            "--models",
            "tiny",
            "--batch-sizes",
            "8",
            "16",
            "--modes",
            "train",
            "--no-torch",
            "--no-iw",
            "--repeats",
            "1",
            "--microbatch",
            "8",
            "--out",
            str(out),
        ]
    )
    recs = [json.loads(line) for line in open(out) if '"train"' in line]
    assert [(r["batch_size"], r["microbatch"]) for r in recs] == [(8, None), (16, 8)]
    assert [r["microbatch_mode"] for r in recs] == [None, "scan"]
    # no FLOP rate for the scan (its cost analysis counts the loop body once); the one-pass step has one
    assert "fraction_of_matmul_peak" in recs[0] and "fraction_of_matmul_peak" not in recs[1]
    monkeypatch.setattr(bench, "MICROBATCH_MODE", "scan")
    bench.main(
        [
            "--quick",
            "--models",
            "tiny",
            "--batch-sizes",
            "16",
            "--modes",
            "train",
            "--no-torch",
            "--no-iw",
            "--repeats",
            "1",
            "--microbatch",
            "8",
            "--microbatch-mode",
            "branches",
            "--out",
            str(out),
        ]
    )
    recs = [json.loads(line) for line in open(out) if '"train"' in line]
    assert (recs[-1]["microbatch"], recs[-1]["microbatch_mode"]) == (8, "branches")
    assert "fraction_of_matmul_peak" in recs[-1]  # no loop in the branches program: its cost is whole
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        bench.main(["--quick", "--compiler-option", "xla_cpu_use_xnnpack"])


def test_iw_only_runs_just_the_iw_comparison_at_the_sizes_asked(tmp_path):
    import json

    out = tmp_path / "iw.jsonl"
    bench.main(
        ["--quick", "--iw-only", "--iw-examples", "2", "--iw-loop-examples", "1", "--no-torch", "--out", str(out)]
    )
    recs = [json.loads(line) for line in open(out)]
    assert [r["bench"] for r in recs] == ["matmul_peak", "iw_nll"]
    iw = recs[1]
    assert iw["examples"] == 2 and iw["loop_examples"] == 1 and iw["num_samples"] == 5000
    assert iw["speedup"] == pytest.approx(iw["vectorized_examples_per_sec"] / iw["loop_examples_per_sec"])
    # the two estimators agree on the first example's log-likelihood scale (same model, k=5000)
    assert abs(iw["mean_log_px_vectorized"] - iw["mean_log_px_loop"]) < 20.0


@pytest.mark.parametrize("argv", [["--iw-only", "--no-iw"], ["--iw-examples", "0"]])
def test_iw_flags_refuse_contradictions(argv):
    with pytest.raises(SystemExit, match="iw"):
        bench.main(argv)


@pytest.mark.slow  # ~12 small programs compiled (two forms x two layers x three ops, two train steps)
def test_conv_forms_are_timed_side_by_side_and_the_layer_section_reports_each_op(monkeypatch, tmp_path):
    """--conv-impl fast xla: one record per form; --conv-layers: fwd/dw/dx per layer, per form and torch."""
    import json

    tiny = bench.vae_builder(
        vae.Config(arch="conv", x_shape=(8, 8, 1), conv_channels=(2,), hidden=(4,), latent_dim=2, activation="relu")
    )
    monkeypatch.setitem(bench.MODELS, "tiny_conv", (tiny, False))
    tiny_layers = [dict(name="l0", size=8, cin=1, cout=2, k=4, stride=2, padding=1, transposed=False)]
    tiny_layers.append(dict(name="l1", size=4, cin=2, cout=1, k=4, stride=2, padding=1, transposed=True))
    monkeypatch.setattr(bench, "DSPRITES_CONV_LAYERS", tiny_layers)
    out = tmp_path / "c.jsonl"
    argv = ["--quick", "--models", "tiny_conv", "--batch-sizes", "4", "--modes", "train", "--no-iw", "--repeats", "1"]
    argv += ["--target-examples", "4", "--conv-impl", "fast", "xla", "--conv-layers", "--out", str(out)]
    try:
        import torch_reference  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
        argv.append("--no-torch")
    bench.main(argv)
    recs = [json.loads(line) for line in open(out)]
    models = [r for r in recs if r["bench"] == "elbo_throughput" and r["impl"] == "jax"]
    assert [r["conv_impl"] for r in models] == ["fast", "xla"]
    assert all(r["flops_per_example"] > 0 and r["compile_s"] > 0 for r in models)
    layers = [r for r in recs if r["bench"] == "conv_layer"]
    assert [(r["layer"], r["op"]) for r in layers] == [(n, op) for n in ("l0", "l1") for op in ("fwd", "dw", "dx")]
    for r in layers:
        assert r["jax_fast_ms"] > 0 and r["jax_xla_ms"] > 0
        assert ("torch_ms" in r) == has_torch
    assert all("load_average_1min" in r for r in recs)


@pytest.mark.parametrize(
    "name,x_shape",
    [
        ("conv_vae_64x64_dsprites", (64, 64, 1)),
        ("resnet_v2_vae_32x32", (32, 32, 1)),
        ("vaegan_32x32_adversarial", (32, 32, 1)),  # VAE + PatchGAN, both players' parameters
    ],
)
def test_torch_conv_twins_have_the_jax_models_parameter_count(name, x_shape):
    torch_reference = pytest.importorskip("torch_reference", reason="torch is a bench extra")
    import jax
    import numpy as np

    from jaxvae.nets import count_parameters

    built = jax.eval_shape(lambda: bench.MODELS[name][0](2).state)
    # random images: a constant batch gives the population KL a zero batch variance (log 0)
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (2,) + x_shape).astype(np.float32)
    train, evaluate = torch_reference.make_torch_fns(x, model=name)
    assert np.isfinite(train()) and np.isfinite(evaluate())
    net = torch_reference.TORCH_MODELS[name](x.shape[1:])
    n_torch = sum(p.numel() for p in net.parameters())
    assert count_parameters({"params": built.params}, ("params",)) == n_torch


@pytest.mark.slow  # compiles a conv paper model's step (the G+D step of ResNetV2 + PatchGAN: ~1 min)
@pytest.mark.parametrize("model", ["vaegan_32x32_adversarial", "stcvae_64x64"])
def test_the_paper_models_steps_are_timed_with_their_flops(tmp_path, model):
    out = tmp_path / "r.jsonl"
    argv = ["--quick", "--models", model, "--batch-sizes", "4", "--modes", "train", "eval"]
    bench.main(argv + ["--no-torch", "--no-iw", "--repeats", "1", "--out", str(out)])
    recs = [json.loads(line) for line in open(out) if '"elbo_throughput"' in line]
    assert sorted(r["mode"] for r in recs) == ["eval", "train"]
    train = next(r for r in recs if r["mode"] == "train")
    assert train["model"] == model and train["examples_per_sec"] > 0
    assert train["flops_per_example"] > 0 and train["compile_s"] > 0

"""Keep the benchmark script from rotting: one tiny measurement of each kind, fields and sanity checked.

The benchmark is a script that reports figures; this test asserts only that it runs and that what it
reports is well formed and internally consistent (no timing thresholds).
"""

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


def test_split_check_reports_the_three_steps_and_refuses_bad_sizes(capsys):
    import split_check

    split_check.main(["8", "2", "--repeats", "1"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "ex/s" in ln]
    assert [ln.split()[0] for ln in lines] == ["one_pass", "microbatch_scan", "microbatch_branches", "split_branches"]
    assert lines[0].rstrip().endswith("1.000x one pass")
    for argv in (["8", "3"], ["8", "1"], ["0", "2"]):
        with pytest.raises(SystemExit, match="pieces"):
            split_check.main(argv)


def test_step_profile_products_are_the_train_steps_matmuls():
    """The 17 products account for the train step's FLOPs as XLA counts them (the rest is elementwise).

    Counted at batch 1024, where the optimizer's per-step FLOPs (~1.4 M parameters) are a small share.
    """
    import _timing
    import jax
    import jax.numpy as jnp
    import numpy as np
    import step_profile

    from jaxvae.train.optim import OptimizerConfig, make_optimizer
    from jaxvae.train.steps import create_train_state, make_train_step

    batch = 1024
    prods = step_profile.products(batch)
    assert len(prods) == 17 and sum(p["role"] == "dx" for p in prods) == 5
    cfg = vae.Config(arch="mlp", latent_dim=32, hidden=(512, 512), activation="relu")
    params, model_state = vae.init(cfg, jax.random.key(0))
    opt = make_optimizer(OptimizerConfig(name="adam", learning_rate=1e-3))
    state = create_train_state(jax.random.key(0), params, model_state, opt)
    step = make_train_step(vae.make_loss_fn(cfg), opt)
    compiled = step.lower(state, {"x": jnp.zeros((batch, 784))}).compile()
    xla_flops = _timing.flops_of(compiled)
    ours = sum(p["flops"] for p in prods)
    assert 0.95 * xla_flops <= ours <= xla_flops
    # Each product has the output shape its framework's autodiff needs.
    rng = np.random.default_rng(0)
    for p in step_profile.products(16):  # Flax's layouts: [B, out], [B, in] and the kernel's [in, out]
        m, k, n = p["mkn"]
        assert step_profile._jax_product(p, {}, rng)().shape == (m, n)


def test_step_profile_runs_side_by_side_with_torch(capsys, tmp_path):
    pytest.importorskip("torch", reason="torch is a bench extra")
    import json

    import step_profile

    out = tmp_path / "p.jsonl"
    step_profile.main(["--batch-size", "8", "--repeats", "1", "--steps", "1", "--out", str(out)])
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    prods = [r for r in recs if r["kind"] == "product"]
    steps = {r["impl"]: r for r in recs if r["kind"] == "step"}
    assert len(prods) == 17 and set(steps) == {"xla_dots", "default", "xla_dots_unflattened", "torch"}
    for impl in ("xla_dots", "default", "torch"):
        r = steps[impl]
        assert r["products_ms"] == pytest.approx(sum(p[f"{impl}_ms"] for p in prods))
        assert r["rest_ms"] == pytest.approx(r["step_ms"] - r["products_ms"])
    assert "products_ms" not in steps["xla_dots_unflattened"]
    assert steps["torch"]["over_torch_pairwise_median"] == 1.0
    table = capsys.readouterr().out
    assert "x PyTorch (pairwise)" in table and "xla_dots_unflattened" in table
    out2 = tmp_path / "steps_only.jsonl"
    step_profile.main(["--batch-size", "8", "--repeats", "1", "--steps", "1", "--steps-only", "--out", str(out2)])
    assert {json.loads(ln)["kind"] for ln in out2.read_text().splitlines()} == {"step"}
    with pytest.raises(SystemExit, match="--batch-size"):
        step_profile.main(["--batch-size", "0"])


def test_step_profile_unflattened_mlp_is_the_old_layout_and_is_not_left_patched(key):
    """The benchmark's 'before' line really feeds [1, B, D] to Dense (its gradient has the transposed copy)."""
    import jax
    import jax.numpy as jnp
    import step_profile

    from jaxvae.nets.mlp import MLP

    model = step_profile._UnflattenedMLP((32, 40), "relu")
    x = jax.random.normal(key, (1, 96, 24))
    params = model.init(key, x)
    hlo = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))).lower(params).compile().as_text()
    assert "f32[40,96]" in hlo
    step_profile._jax_step(8, {}, flatten=False)
    assert vae.MLP is MLP


def test_step_profile_torch_products_have_nn_linear_layouts():
    pytest.importorskip("torch", reason="torch is a bench extra")
    import numpy as np
    import step_profile

    rng = np.random.default_rng(0)
    for p in step_profile.products(8):
        m, k, n = p["mkn"]
        got = tuple(step_profile._torch_product(p, rng)().shape)
        # nn.Linear's weight gradient is [out, in] = [n, m]; the activations' products are [B, .].
        assert got == ((n, m) if p["role"] == "dw" else (m, n))

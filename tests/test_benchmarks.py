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
    bench.bench_model("tiny", builder, False, [8], ["eval", "train"], repeats=2, target_examples=16, peak=1e9,
                      env=env, torch_mod=None, emit=records.append)
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

"""Keep benchmarks/cpu_tuning.py from rotting: variant parsing, the split-branch loss, the refused
options, and one tiny timed run (fields only; no timing thresholds)."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import cpu_tuning as ct  # noqa: E402

from jaxvae.models import vae  # noqa: E402


def test_parse_variant_merges_flag_sets_and_modifiers():
    v = ct.parse_variant("ynn_off+eigen_1thread+split2")
    assert v.flagsets == ("ynn_off", "eigen_1thread") and v.split == 2 and v.microbatch is None
    assert v.compiler_options == {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_multi_thread_eigen": False}
    assert v.microbatch_for(1024) == 512 and v.fits(1024) and not v.fits(1023)
    assert ct.parse_variant("default+mb256").microbatch_for(1024) == 256
    with pytest.raises(SystemExit):
        ct.parse_variant("default+mb256+split2")
    with pytest.raises(SystemExit):
        ct.parse_variant("no_such_set")


def test_split_loss_is_the_mean_of_the_branches_with_folded_keys():
    cfg = vae.Config(arch="mlp", latent_dim=3, hidden=(8,), activation="relu", x_shape=(6,))
    params, state = vae.init(cfg, jax.random.key(0))
    x = (np.random.default_rng(0).random((8, 6)) < 0.3).astype(np.float32)
    loss_fn = vae.make_loss_fn(cfg)
    key = jax.random.key(3)

    def split(p):
        return ct.split_loss_fn(loss_fn, 2)(p, state, {"x": x}, key).loss

    def loop(p):
        return (
            sum(loss_fn(p, state, {"x": x[4 * i : 4 * i + 4]}, jax.random.fold_in(key, i)).loss for i in range(2)) / 2
        )

    (a, ga), (b, gb) = jax.jit(jax.value_and_grad(split))(params), jax.jit(jax.value_and_grad(loop))(params)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    jax.tree.map(lambda u, w: np.testing.assert_allclose(u, w, rtol=1e-5, atol=1e-7), ga, gb)
    out = ct.split_eval_fn(vae.make_eval_fn(cfg), 2)(params, state, {"x": x}, key)
    assert out["elbo"].shape == (8,)


@pytest.mark.parametrize("name", sorted(ct.UNACCEPTED_FLAGSETS))
def test_unaccepted_options_are_refused_by_this_jaxlib(name):
    lowered = jax.jit(lambda a: a @ a).lower(jnp.ones((4, 4)))
    with pytest.raises(Exception, match="No such compile option"):
        lowered.compile(ct.UNACCEPTED_FLAGSETS[name])


def test_accepted_flag_sets_compile():
    lowered = jax.jit(lambda a: jnp.tanh(a @ a)).lower(jnp.ones((4, 4)))
    for name, opts in ct.FLAGSETS.items():
        if name != "onednn":  # compiles, but is known to crash train steps on some CPUs
            lowered.compile(opts)


def test_tiny_timed_run_writes_well_formed_records(tmp_path):
    out = tmp_path / "r.jsonl"
    ct.main(
        [
            "--batch-sizes",
            "8",
            "--modes",
            "train",
            "--variants",
            "default",
            "sched_conc+split2",
            "--repeats",
            "1",
            "--target-examples",
            "16",
            "--no-torch",
            "--out",
            str(out),
        ]
    )
    recs = [json.loads(line) for line in open(out)]
    assert [r["variant"] for r in recs] == ["default", "sched_conc+split2"]
    for r in recs:
        assert r["examples_per_sec"] > 0 and r["cores_busy_median"] > 0 and len(r["loadavg_1min"]) == 2
    assert recs[1]["split"] == 2 and recs[1]["numerics_ok"] and recs[1]["hlo_dots"] == 2 * recs[0]["hlo_dots"]

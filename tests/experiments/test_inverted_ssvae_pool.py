"""Pooling the seeds of several Gemp ``untapped`` runs (experiments/inverted_ssvae/pool.py)."""

import json

import numpy as np
import pytest

from experiments.inverted_ssvae import main as E
from experiments.inverted_ssvae import pool as P


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
    assert c["paired"]["untapped_better"] == 3 and c["paired"]["n"] == 5
    assert c["se"] == pytest.approx(np.sqrt(np.var(un, ddof=1) / 5 + np.var(m2, ddof=1) / 5))
    assert out["variants"]["M2"]["summary"]["ce_59"]["mean"] == pytest.approx(np.mean(m2))
    assert out["variants"]["untapped"]["summary"]["ce_59"]["std"] == pytest.approx(np.std(un, ddof=1))
    assert "paired" in out["untapped_minus_m2_ce_59_authors"]


def test_pairing_is_by_seed_not_by_position():
    a = _run((0, 1, 2), [2.0, 2.5, 1.0], [1.9, 2.4, 0.9])
    a["variants"]["untapped"]["per_seed"].reverse()  # same pairs, other order
    c = E.compare_ce(a["variants"]["untapped"]["per_seed"], a["variants"]["M2"]["per_seed"])
    assert c["paired"]["mean"] == pytest.approx(-0.1) and c["paired"]["untapped_better"] == 3


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
    assert json.loads(out.read_text())["seeds"] == [0, 1, 2, 3]
    assert "untapped better in 2 of 4" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="pool: .*seed 0 is also in"):
        P.main([paths[0], paths[0]])


def test_compare_refuses_an_empty_side_instead_of_returning_nan():
    with pytest.raises(ValueError, match="at least one seed"):
        E.compare_ce([], [{"seed": 0, "ce_59": 2.0}])


@pytest.mark.parametrize(
    "d, p_flip, p_sign",
    [
        # sums of (+-3, +-1, +-1): {5, 3, 3, 1, -1, -3, -3, -5}; T = -3 -> 3 of 8 at or below; 2 of 3 negative
        ([-3.0, -1.0, 1.0], 3 / 8, 4 / 8),
        ([-0.2, -0.1, -0.3], 1 / 8, 1 / 8),  # every seed below: only the observed pattern
        ([0.2, 0.1, 0.3], 8 / 8, 1.0),  # every seed above: every pattern is at or below
        # sums of (+-1, +-2, +-4, +-8) are the odd numbers -15..15; T = 1 -> 9 of 16; 3 of 4 below -> 5 of 16
        ([-1.0, -2.0, -4.0, 8.0], 9 / 16, 5 / 16),  # most seeds below, yet the sum is positive
    ],
)
def test_paired_p_values_match_hand_enumeration(d, p_flip, p_sign):
    p = E.paired_p_values(d)
    assert p["p_sign_flip"] == pytest.approx(p_flip) and p["p_sign_flip_exact"]
    assert p["p_sign_test"] == pytest.approx(p_sign)


def test_paired_p_values_sampled_beyond_max_exact_agree_with_exact():
    d = np.random.default_rng(3).normal(-0.1, 0.2, size=12)
    exact = E.paired_p_values(d)
    sampled = E.paired_p_values(d, max_exact=8)
    assert exact["p_sign_flip_exact"] and not sampled["p_sign_flip_exact"]
    assert sampled["p_sign_flip"] == pytest.approx(exact["p_sign_flip"], abs=0.005)
    assert sampled["p_sign_test"] == exact["p_sign_test"]


def test_paired_p_values_refuse_nan_and_empty():
    with pytest.raises(ValueError, match="non-empty finite"):
        E.paired_p_values([])
    with pytest.raises(ValueError, match="non-empty finite"):
        E.paired_p_values([-0.1, float("nan")])
    with pytest.raises(ValueError, match="max_exact"):
        E.paired_p_values([-0.1, 0.2], max_exact=40)


def test_compare_ce_carries_the_p_values():
    c = E.compare_ce(
        [{"seed": 0, "ce_59": 1.0}, {"seed": 1, "ce_59": 1.5}], [{"seed": 0, "ce_59": 2.0}, {"seed": 1, "ce_59": 2.0}]
    )
    assert c["paired"]["p_sign_flip"] == pytest.approx(1 / 4) and c["paired"]["p_sign_test"] == pytest.approx(1 / 4)


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

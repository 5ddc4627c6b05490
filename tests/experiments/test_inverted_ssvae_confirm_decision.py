"""The Gemp confirmatory test's decision (experiments/inverted_ssvae/analysis/confirm_decision.py)."""

import copy
import glob
import json
import os
import re
import subprocess

import numpy as np
import pytest

from experiments._common import config_to_dict
from experiments.inverted_ssvae.analysis import confirm_decision as C
from experiments.inverted_ssvae.configs.untapped_full_confirm import get_config
from jaxvae.metrics.paired import paired_p_values

RESULTS = os.path.join(os.path.dirname(os.path.dirname(C.__file__)), "results")
H200 = sorted(glob.glob(os.path.join(RESULTS, "confirm_h200", "*.json")))
CPU = os.path.join(RESULTS, "confirm_cpu_seeds10-25.json")


def _gpu_run(seeds, m2, un):
    cfg = config_to_dict(get_config())
    cfg["run"].update(seeds=list(seeds), device_data=True, checkpoint_every=600)

    def variant(ces):
        return {
            "per_seed": [{"seed": s, "data_seed": s, "ce_59": c, "ce_59_authors": c} for s, c in zip(seeds, ces)],
            "steps_done": 600,
            "time_limited": False,
        }

    return {"config": cfg, "variants": {"M2": variant(m2), "untapped": variant(un)}}


def _cpu(rng):
    seeds = tuple(range(10, 26))
    return {"seeds": seeds, "M2": tuple(rng.uniform(1.8, 2.5, 16)), "untapped": tuple(rng.uniform(1.5, 2.5, 16))}


def test_primary_takes_cpu_seeds_from_cpu_and_the_rest_from_gpu():
    rng = np.random.default_rng(1)
    g_m2, g_un = rng.uniform(1.8, 2.6, 40), rng.uniform(1.5, 2.6, 40)
    runs = [_gpu_run(range(10, 26), g_m2[:16], g_un[:16]), _gpu_run(range(26, 50), g_m2[16:], g_un[16:])]
    cpu = _cpu(rng)
    out = C.decide(runs, ["a", "b"], cpu=cpu)
    m2 = np.concatenate([cpu["M2"], g_m2[16:]])
    un = np.concatenate([cpu["untapped"], g_un[16:]])
    d = un - m2
    p = out["primary"]
    assert p["n"] == 40 and p["paired_mean"] == pytest.approx(d.mean())
    assert p["paired_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(40))
    assert p["untapped_better"] == int(np.sum(d < 0))
    assert p["p_sign_flip"] == pytest.approx(paired_p_values(d)["p_sign_flip"])
    assert out["met"] == (p["p_sign_flip"] < 0.05)
    s = out["sensitivity_all_gpu"]
    assert s["paired_mean"] == pytest.approx((g_un - g_m2).mean())
    assert out["cpu_vs_gpu_same_seeds"]["seeds"] == list(range(10, 26))


def test_decision_follows_the_primary_p_value():
    rng = np.random.default_rng(2)
    m2 = rng.uniform(1.9, 2.3, 40)
    better = [_gpu_run(range(10, 50), m2, m2 - 0.3 + rng.normal(0, 0.05, 40))]
    worse = [_gpu_run(range(10, 50), m2, m2 + 0.3 + rng.normal(0, 0.05, 40))]
    cpu_b = {"seeds": tuple(range(10, 26)), "M2": tuple(m2[:16]), "untapped": tuple(m2[:16] - 0.3)}
    cpu_w = {"seeds": tuple(range(10, 26)), "M2": tuple(m2[:16]), "untapped": tuple(m2[:16] + 0.3)}
    assert C.decide(better, cpu=cpu_b)["met"] is True
    assert C.decide(worse, cpu=cpu_w)["met"] is False


def test_refuses_missing_seeds_and_other_settings():
    rng = np.random.default_rng(3)
    cpu = _cpu(rng)
    short = [_gpu_run(range(10, 49), rng.uniform(2, 2.2, 39), rng.uniform(2, 2.2, 39))]
    with pytest.raises(ValueError, match="exactly once"):
        C.decide(short, cpu=cpu)
    other = _gpu_run(range(10, 50), rng.uniform(2, 2.2, 40), rng.uniform(2, 2.2, 40))
    other["config"]["data"]["batch_unlabeled"] = 500
    with pytest.raises(ValueError, match="untapped_full_confirm.py at 'data.batch_unlabeled'"):
        C.decide([other], cpu=cpu)
    with pytest.raises(ValueError, match="one length"):
        C.paired_summary([1.0, 2.0], [1.0])


def _values_of_rows(rows):
    m2, un = [], []
    for row in rows:
        groups = re.findall(r"\(([0-9., ]+)\)", row)
        m2 += [float(x) for x in groups[0].split(",")]
        un += [float(x) for x in groups[1].split(",")]
    return m2, un


def test_recorded_cpu_values_are_the_readme_rows_they_name():
    """The CPU seeds' values (their results.json files are lost) are the ones the README's interim table
    recorded: the JSON keeps those rows verbatim, and the values parse from them."""
    rec = json.load(open(CPU))
    rows = rec["source"]["rows"]
    assert [r.split("|")[1].strip() for r in rows] == [f"{lo}-{lo + 3} (interim)" for lo in (10, 14, 18, 22)]
    m2, un = _values_of_rows(rows)
    assert rec["seeds"] == list(range(10, 26)) and rec["M2"] == m2 and rec["untapped"] == un
    cpu = C.load_cpu_values(CPU)
    assert cpu["M2"] == tuple(m2) and cpu["source"] == CPU


def test_recorded_cpu_rows_are_in_the_readme_at_the_commit_they_name():
    rec = json.load(open(CPU))["source"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(RESULTS)))
    show = subprocess.run(
        ["git", "show", f"{rec['table_at_commit']}:{rec['file']}"], cwd=root, capture_output=True, text=True
    )
    if show.returncode != 0:  # a copy without the history (an sdist, a shallow clone): nothing to compare with
        pytest.skip(f"git history with commit {rec['table_at_commit'][:7]} not available: {show.stderr.strip()}")
    readme = show.stdout.splitlines()
    for row in rec["rows"]:
        assert row in readme


def test_kept_gpu_results_are_the_confirm_config_and_cover_every_seed():
    paths = H200
    assert paths, "results/confirm_h200 holds the H200 groups"
    runs = [json.load(open(p)) for p in paths]
    C.check_confirm_config(runs, paths)
    seeds = sorted(int(p["seed"]) for r in runs for p in r["variants"]["M2"]["per_seed"])
    assert seeds == list(range(10, 50))
    tampered = copy.deepcopy(runs[0])
    tampered["config"]["run"]["num_steps"] = 525
    with pytest.raises(ValueError, match="run.num_steps"):
        C.check_confirm_config([tampered], ["t"])


def test_command_line_prints_the_decision_writes_json_and_names_itself_on_refusal(tmp_path, capsys):
    out = tmp_path / "decision.json"
    got = C.main(H200 + ["--cpu", CPU, "--out", str(out)])
    printed = capsys.readouterr().out
    assert "decision (primary, p < 0.05)" in printed and "sensitivity (all 40 on the GPU)" in printed
    written = json.loads(out.read_text())
    assert written["met"] == got["met"] and written["provenance"]["seeds"] == list(range(10, 50))
    with pytest.raises(SystemExit, match="confirm_decision: decide: the GPU groups hold seeds"):
        C.main(H200[:1] + ["--cpu", CPU])


def test_the_kept_decision_is_what_the_script_computes_from_the_kept_files():
    """results/confirm_decision.json (quoted by the README) is the script's output on the files beside it."""
    kept = json.load(open(os.path.join(RESULTS, "confirm_decision.json")))
    got = C.decide([json.load(open(p)) for p in H200], H200, cpu=C.load_cpu_values(CPU))
    for key in ("primary", "sensitivity_all_gpu", "cpu_vs_gpu_same_seeds"):
        for k, v in got[key].items():
            assert kept[key][k] == (v if isinstance(v, bool) else pytest.approx(v, rel=1e-12)), (key, k)
    assert kept["met"] is got["met"] is True


def test_cpu_seeds_must_be_distinct_confirm_seeds_and_all_gpu_skips_the_platform_comparison():
    rng = np.random.default_rng(4)
    runs = [_gpu_run(range(10, 50), rng.uniform(2, 2.2, 40), rng.uniform(1.9, 2.1, 40))]
    with pytest.raises(ValueError, match="distinct seeds of 10-49"):
        C.decide(runs, cpu={"seeds": (5, 10), "M2": (2.0, 2.0), "untapped": (1.9, 1.9)})
    with pytest.raises(ValueError, match="distinct seeds of 10-49"):
        C.decide(runs, cpu={"seeds": (10, 10), "M2": (2.0, 2.0), "untapped": (1.9, 1.9)})
    out = C.decide(runs)  # no seed run elsewhere: the primary analysis is the all-GPU one
    assert out["cpu_vs_gpu_same_seeds"] is None
    assert out["primary"]["paired_mean"] == pytest.approx(out["sensitivity_all_gpu"]["paired_mean"])
    assert "primary (all GPU)" in C.report(out) and "on both" not in C.report(out)

"""The decision of the Gemp confirmatory test, taken once at 40 seeds.

    python -m experiments.inverted_ssvae.analysis.confirm_decision \\
        experiments/inverted_ssvae/results/confirm_h200/*.json \\
        --cpu experiments/inverted_ssvae/results/confirm_cpu_seeds10-25.json \\
        --out experiments/inverted_ssvae/results/confirm_decision.json

The test was fixed before any of its seeds was trained: seeds 10-49, each on its own data, config
``configs/untapped_full_confirm.py``; the per-seed differences ``d_s = ce_59(untapped) - ce_59(M2)``;
**met** when the one-sided sign-flip p (:func:`jaxvae.metrics.paired.paired_p_values`; for n = 40 from
2^20 sign patterns drawn with ``default_rng(0)``) is below 0.05 over these 40 seeds and only these.

Where the seeds ran: 10-25 first on a 2-core CPU (their results files are lost; the recorded values and
where they come from: ``results/confirm_cpu_seeds10-25.json``), 26-49 and, as a check, 10-25 again on an
H200 (``results/confirm_h200/*.json``, the runs' own files). **Primary analysis**: each seed's first run
(10-25 from the CPU, 26-49 from the H200). **Sensitivity analysis**: all 40 from the H200 (one platform).
Both are reported; the primary one decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments._common import config_to_dict
from experiments.inverted_ssvae.analysis import pool as pool_lib
from jaxvae.metrics.paired import mean_std, paired_comparison

CONFIRM_SEEDS = tuple(range(10, 50))
ALPHA = 0.05


def paired_summary(m2: Sequence[float], untapped: Sequence[float]) -> dict:
    """Paired statistics of ``untapped - m2`` (both ``[n]``, in the same seed order): the two means and
    standard deviations, the paired mean, sd, standard error, z, 95 % interval and effect size (mean / sd),
    ``untapped_better`` (seeds with a negative difference) and the one-sided p-values."""
    m2, un = np.asarray(m2, np.float64), np.asarray(untapped, np.float64)
    if m2.shape != un.shape or m2.ndim != 1 or len(m2) < 2:
        raise ValueError(f"`m2` and `untapped` must be 1-D of one length >= 2; got {m2.shape}, {un.shape}")
    p = paired_comparison(dict(enumerate(un)), dict(enumerate(m2)))["paired"]
    a, b = mean_std(m2), mean_std(un)
    return {
        "n": p["n"],
        "m2_mean": a["mean"],
        "m2_std": a["std"],
        "untapped_mean": b["mean"],
        "untapped_std": b["std"],
        "paired_mean": p["mean"],
        "paired_std": p["std"],
        "paired_se": p["se"],
        "z": p["z"],
        "ci95": [p["mean"] - 1.96 * p["se"], p["mean"] + 1.96 * p["se"]],
        "effect_size": p["mean"] / p["std"],
        "untapped_better": p["a_lower"],
        **{k: p[k] for k in ("p_sign_flip", "p_sign_flip_exact", "p_sign_test")},
    }


def load_cpu_values(path: str) -> dict:
    """The recorded CPU values (``results/confirm_cpu_seeds10-25.json``): ``{"seeds", "M2", "untapped"}``."""
    with open(path) as f:
        d = json.load(f)
    return {"seeds": tuple(d["seeds"]), "M2": tuple(d["M2"]), "untapped": tuple(d["untapped"]), "source": path}


def check_confirm_config(results: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    """Refuse a run whose settings differ from ``configs/untapped_full_confirm.py`` (bookkeeping aside)."""
    from experiments.inverted_ssvae.configs.untapped_full_confirm import get_config

    ref = pool_lib.comparable(config_to_dict(get_config()))
    for res, name in zip(results, names):
        diff = pool_lib.first_difference(ref, pool_lib.comparable(res["config"]))
        if diff:
            raise ValueError(f"{name}: configuration differs from configs/untapped_full_confirm.py at {diff!r}")


def _by_seed(pooled: Mapping[str, Any], variant: str) -> dict[int, float]:
    return {int(p["seed"]): float(p["ce_59"]) for p in pooled["variants"][variant]["per_seed"]}


def decide(
    gpu_results: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None, *, cpu: Mapping | None = None
) -> dict:
    """Both analyses and the decision. ``gpu_results``: parsed ``results.json`` of the H200 groups, which
    together must hold every seed of 10-49 exactly once; ``cpu``: :func:`load_cpu_values`' dict (seeds
    first run elsewhere, taken in the primary analysis in place of their GPU values), None for none."""
    names = list(names or [f"run {i}" for i in range(len(gpu_results))])
    cpu = {"seeds": (), "M2": (), "untapped": ()} if cpu is None else cpu
    check_confirm_config(gpu_results, names)
    pooled = pool_lib.pool(gpu_results, names)
    if tuple(pooled["seeds"]) != CONFIRM_SEEDS:
        raise ValueError(
            f"decide: the GPU groups hold seeds {pooled['seeds']}; the test needs each of "
            f"{CONFIRM_SEEDS[0]}-{CONFIRM_SEEDS[-1]} exactly once"
        )
    g_m2, g_un = _by_seed(pooled, "M2"), _by_seed(pooled, "untapped")
    cpu_seeds = tuple(int(s) for s in cpu["seeds"])
    if len(cpu["M2"]) != len(cpu_seeds) or len(cpu["untapped"]) != len(cpu_seeds):
        raise ValueError("decide: `cpu` needs one M2 and one untapped value per seed")
    if len(set(cpu_seeds)) != len(cpu_seeds) or not set(cpu_seeds) <= set(CONFIRM_SEEDS):
        raise ValueError(
            f"decide: `cpu['seeds']` must be distinct seeds of {CONFIRM_SEEDS[0]}-{CONFIRM_SEEDS[-1]}; got {cpu_seeds}"
        )
    c_m2, c_un = dict(zip(cpu_seeds, cpu["M2"])), dict(zip(cpu_seeds, cpu["untapped"]))
    primary = paired_summary(
        [c_m2.get(s, g_m2[s]) for s in CONFIRM_SEEDS], [c_un.get(s, g_un[s]) for s in CONFIRM_SEEDS]
    )
    out = {
        "seeds": list(CONFIRM_SEEDS),
        "alpha": ALPHA,
        "gpu_sources": names,
        "cpu_source": cpu.get("source"),
        "primary": {"cpu_seeds": list(cpu_seeds), **primary},
        "sensitivity_all_gpu": paired_summary([g_m2[s] for s in CONFIRM_SEEDS], [g_un[s] for s in CONFIRM_SEEDS]),
        "cpu_vs_gpu_same_seeds": None,
        "met": bool(primary["p_sign_flip"] < ALPHA),
    }
    both = [s for s in cpu_seeds if s in g_m2]  # every CPU seed: the GPU groups hold all 40
    if len(both) < 2:  # no spread, no correlation
        return out
    agreement: dict[str, Any] = {"seeds": both}
    for v, c, g in (("M2", c_m2, g_m2), ("untapped", c_un, g_un)):
        a, b = np.array([c[s] for s in both]), np.array([g[s] for s in both])
        agreement[v] = {
            "median_abs_diff": float(np.median(np.abs(b - a))),
            "max_abs_diff": float(np.max(np.abs(b - a))),
            "corr": float(np.corrcoef(a, b)[0, 1]),
        }
    d_cpu = np.array([c_un[s] - c_m2[s] for s in both])
    d_gpu = np.array([g_un[s] - g_m2[s] for s in both])
    agreement["paired_difference_same_sign"] = int(np.sum((d_cpu < 0) == (d_gpu < 0)))
    out["cpu_vs_gpu_same_seeds"] = agreement
    return out


def report(out: Mapping[str, Any]) -> str:
    """Both analyses, the platform comparison and the decision, in a few lines."""
    lines = []
    cs = out["primary"]["cpu_seeds"]
    primary_title = f"primary (seeds {cs[0]}-{cs[-1]} CPU, the rest GPU)" if cs else "primary (all GPU)"
    for key, title in (("primary", primary_title), ("sensitivity_all_gpu", "sensitivity (all 40 on the GPU)")):
        r = out[key]
        lines.append(
            f"{title}: M2 {r['m2_mean']:.3f} +- {r['m2_std']:.3f}, untapped {r['untapped_mean']:.3f} +- "
            f"{r['untapped_std']:.3f}; untapped - M2 paired {r['paired_mean']:+.3f} +- {r['paired_se']:.3f} "
            f"(z = {r['z']:.2f}, 95% interval [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}], per-seed sd "
            f"{r['paired_std']:.3f}, effect size {r['effect_size']:+.2f}); untapped better in "
            f"{r['untapped_better']} of {r['n']}; one-sided sign-flip p {r['p_sign_flip']:.4f}"
            f"{'' if r['p_sign_flip_exact'] else ' (2^20 sampled patterns)'}, sign test {r['p_sign_test']:.4f}"
        )
    a = out["cpu_vs_gpu_same_seeds"]
    if a is not None:
        lines.append(
            f"seeds {a['seeds'][0]}-{a['seeds'][-1]} on both: |GPU - CPU| median / max: M2 "
            f"{a['M2']['median_abs_diff']:.3f} / {a['M2']['max_abs_diff']:.3f} (corr {a['M2']['corr']:.2f}), "
            f"untapped {a['untapped']['median_abs_diff']:.3f} / {a['untapped']['max_abs_diff']:.3f} "
            f"(corr {a['untapped']['corr']:.2f}); paired difference of the same sign in "
            f"{a['paired_difference_same_sign']} of {len(a['seeds'])}"
        )
    lines.append(f"decision (primary, p < {out['alpha']}): {'MET' if out['met'] else 'NOT MET'}")
    return "\n".join(lines)


def _add_arguments(ap) -> None:
    ap.add_argument(
        "--cpu", default=None, help="values of seeds first run elsewhere (results/confirm_cpu_seeds10-25.json)"
    )


def _compute(loaded, paths, *, cpu: str | None) -> dict:
    return decide(loaded, paths, cpu=None if cpu is None else load_cpu_values(cpu))


def main(argv: Sequence[str] | None = None) -> dict:
    doc = __doc__.split("\n\n")[0]
    return pool_lib.run_cli(argv, doc, _compute, report, "confirm_decision", add_arguments=_add_arguments)


if __name__ == "__main__":
    main()

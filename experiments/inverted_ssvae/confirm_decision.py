"""The decision of the Gemp confirmatory test (README: "The confirmatory test"), taken once at 40 seeds.

The test was fixed before any of its seeds was trained: seeds 10-49, each on its own data, config
``configs/untapped_full_confirm.py``; the per-seed differences ``d_s = ce_59(untapped) - ce_59(M2)``;
**met** when the one-sided sign-flip p (:func:`experiments.inverted_ssvae.main.paired_p_values`) is below
0.05 over these 40 seeds and only these.

Where the 40 seeds ran:

- seeds 10-25 on the project's 2-core CPU (jax 0.10.2), four groups of four, 2026-11-27 04:19-12:40 UTC.
  Their ``results.json`` files were lost with that machine's ``runs/`` folder; their per-seed ``ce_59``
  survive as the README's interim table records them (three decimals): :data:`CPU_SEEDS_10_25`.
- seeds 26-49 (and, as a check, 10-25 again) on a lent NVIDIA H200 (jax 0.11.2), 2026-11-27 13:31-13:39
  UTC, with ``gpu_confirm.sh``; their ``results.json`` are kept in ``results/confirm_h200/``.

**Primary analysis** (the seeds as first run): seeds 10-25 from the CPU, 26-49 from the H200.
**Sensitivity analysis**: all 40 from the H200 (one platform; seeds 10-25 there are a second run of
the same seeds, whose per-seed values differ from the CPU's, since 600 steps of training amplify
float differences between platforms). Both are reported; the primary one decides.

    python -m experiments.inverted_ssvae.confirm_decision experiments/inverted_ssvae/results/confirm_h200/*.json
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.inverted_ssvae import pool as pool_lib
from experiments.inverted_ssvae.main import _to_dict, paired_p_values

CONFIRM_SEEDS = tuple(range(10, 50))
ALPHA = 0.05

#: ``ce_59`` of seeds 10-25 as run on the 2-core CPU, in seed order, as the README's interim table
#: records them (groups 10-13, 14-17, 18-21, 22-25), rounded to three decimals.
CPU_SEEDS_10_25 = {
    "seeds": tuple(range(10, 26)),
    "M2": (
        2.009,
        2.715,
        2.404,
        1.881,
        2.036,
        2.073,
        1.952,
        2.075,
        2.567,
        2.538,
        2.436,
        1.872,
        2.210,
        1.938,
        1.902,
        1.955,
    ),
    "untapped": (
        1.863,
        2.579,
        2.261,
        2.394,
        1.479,
        1.881,
        1.717,
        1.398,
        1.637,
        1.380,
        1.486,
        1.889,
        2.531,
        2.003,
        1.663,
        2.300,
    ),
}


def paired_summary(m2: Sequence[float], untapped: Sequence[float]) -> dict:
    """Paired statistics of ``untapped - m2`` (both ``[n]``, in the same seed order)."""
    m2, un = np.asarray(m2, np.float64), np.asarray(untapped, np.float64)
    if m2.shape != un.shape or m2.ndim != 1 or len(m2) < 2:
        raise ValueError(
            f"paired_summary: `m2` and `untapped` must be 1-D of one length >= 2; got {m2.shape}, {un.shape}"
        )
    d = un - m2
    sd = float(d.std(ddof=1))
    se = sd / np.sqrt(len(d))
    mean = float(d.mean())
    return {
        "n": int(len(d)),
        "m2_mean": float(m2.mean()),
        "m2_std": float(m2.std(ddof=1)),
        "untapped_mean": float(un.mean()),
        "untapped_std": float(un.std(ddof=1)),
        "paired_mean": mean,
        "paired_std": sd,
        "paired_se": se,
        "z": mean / se,
        "ci95": [mean - 1.96 * se, mean + 1.96 * se],
        "effect_size": mean / sd,
        "untapped_better": int(np.sum(d < 0)),
        **paired_p_values(d),
    }


def _by_seed(pooled: Mapping[str, Any], variant: str) -> dict[int, float]:
    return {int(p["seed"]): float(p["ce_59"]) for p in pooled["variants"][variant]["per_seed"]}


def check_confirm_config(results: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    """Refuse a run whose settings differ from ``configs/untapped_full_confirm.py`` (bookkeeping aside)."""
    from experiments.inverted_ssvae.configs.untapped_full_confirm import get_config

    ref = pool_lib._comparable(_to_dict(get_config()))
    for res, name in zip(results, names):
        diff = pool_lib._first_difference(ref, pool_lib._comparable(res["config"]))
        if diff:
            raise ValueError(f"{name}: configuration differs from configs/untapped_full_confirm.py at {diff!r}")


def decide(
    gpu_results: Sequence[Mapping[str, Any]],
    names: Sequence[str] | None = None,
    cpu: Mapping[str, Sequence] = CPU_SEEDS_10_25,
) -> dict:
    """Both analyses and the decision. ``gpu_results``: parsed ``results.json`` of the H200 groups, which
    together must hold every seed of 10-49 exactly once (``pool.pool`` checks the groups agree)."""
    names = list(names or [f"run {i}" for i in range(len(gpu_results))])
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
    primary_m2 = [c_m2[s] if s in c_m2 else g_m2[s] for s in CONFIRM_SEEDS]
    primary_un = [c_un[s] if s in c_un else g_un[s] for s in CONFIRM_SEEDS]
    primary = paired_summary(primary_m2, primary_un)
    sensitivity = paired_summary([g_m2[s] for s in CONFIRM_SEEDS], [g_un[s] for s in CONFIRM_SEEDS])
    # the seeds run on both platforms (every CPU seed: the GPU groups hold all 40): how far one seed's
    # result moves between them; None with fewer than two such seeds (no spread, no correlation)
    both = [s for s in cpu_seeds if s in g_m2]
    out = {
        "seeds": list(CONFIRM_SEEDS),
        "alpha": ALPHA,
        "gpu_sources": names,
        "primary": {"cpu_seeds": list(cpu_seeds), **primary},
        "sensitivity_all_gpu": sensitivity,
        "cpu_vs_gpu_same_seeds": None,
        "met": bool(primary["p_sign_flip"] < ALPHA),
    }
    if len(both) < 2:
        return out
    agreement = {}
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
    agreement["seeds"] = both
    out["cpu_vs_gpu_same_seeds"] = agreement
    return out


def report(out: Mapping[str, Any]) -> str:
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
            f"{'' if r['p_sign_flip_exact'] else ' (2^20 sampled patterns)'}, "
            f"sign test {r['p_sign_test']:.4f}"
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


def main(argv=None) -> dict:
    return pool_lib.run_cli(argv, __doc__.split("\n\n")[0], decide, report, "confirm_decision")


if __name__ == "__main__":
    main()

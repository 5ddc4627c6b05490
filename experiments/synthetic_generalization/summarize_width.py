"""Experiment (b)'s table and figure: test ELBO and G_g of the residual conv VAE against its parameter count.

    python -m experiments.synthetic_generalization.summarize_width

Reads ``results/width_<method>_mz<m_z>_nc<n_c>.json`` (copies of each width point's ``results.json``);
writes ``results/width_summary.json`` (per method and point: parameter counts, mean and standard
deviation over seeds of G_g, test and train ELBO; per method and series the paired comparison of the
widest against the narrowest point) and ``figures/width.png``.

The two series (Sec. 4, Method B): ``n_c`` at the smallest ``m_z`` (both Theta_z and Theta_not_z
grow) and ``m_z`` at the ``n_c`` of the ``m_z`` series (only Theta_z grows). The paper's claim for width:
a wider model has a better test ELBO and, with DMaaPx, a smaller G_g; here it is checked as
``d_s = widest_s - narrowest_s`` per seed (test ELBO: widest better when ``d > 0``; G_g: widest
smaller when ``d < 0``), decided at two standard errors of the mean of ``d``. Per point, Normal minus
DMaaPx (G_g and test ELBO), paired by seed.
"""

from __future__ import annotations

import glob
import json
import os
import re

from experiments._common import write_results
from jaxvae.metrics.paired import mean_std, paired_comparison

HERE = os.path.dirname(__file__)
METHODS = ("normal", "dmaapx")
NAMES = {"normal": "Normal Training", "dmaapx": "DMaaPx (k = 1)"}
KEYS = ("gap", "test_elbo", "train_elbo")


def load(results_dir: str) -> dict[str, dict[tuple[int, int], dict]]:
    """``{method: {(m_z, n_c): results}}`` from ``width_<method>_mz<m>_nc<n>.json`` files."""
    out: dict[str, dict[tuple[int, int], dict]] = {}
    for p in sorted(glob.glob(os.path.join(results_dir, "width_*_mz*_nc*.json"))):
        m = re.fullmatch(r"width_(\w+?)_mz(\d+)_nc(\d+)\.json", os.path.basename(p))
        if m:
            out.setdefault(m.group(1), {})[(int(m.group(2)), int(m.group(3)))] = json.load(open(p))
    return out


def point_stats(res: dict) -> dict:
    """Parameter counts and, per quantity, ``{"per_seed": {seed: v}, "mean", "std", "n"}``."""
    out = {k: res[k] for k in ("m_z", "n_c", "params", "params_theta_z", "params_theta_not_z", "effective_epochs")}
    for k in KEYS:
        per = {m["seed"]: m["generalization"][k] for m in res["members"]}
        out[k] = {"per_seed": per, **mean_std(list(per.values()))}
    return out


def series(points: dict[tuple[int, int], dict]) -> dict[str, list[tuple[int, int]]]:
    """The ``n_c`` series at the smallest ``m_z`` and the ``m_z`` series at the ``n_c`` of its points."""
    mz0 = min(mz for mz, _ in points)
    nc_series = sorted(p for p in points if p[0] == mz0)
    others = [p for p in points if p[0] != mz0]
    out = {"n_c": nc_series}
    if others:
        nc0 = min(nc for _, nc in others)
        out["m_z"] = sorted(p for p in points if p[1] == nc0)
    return out


def width_trend(stats: dict[tuple[int, int], dict], pts: list[tuple[int, int]]) -> dict:
    """Widest minus narrowest point of a series, paired by seed, for the test ELBO and G_g."""
    lo, hi = min(pts, key=lambda p: stats[p]["params"]), max(pts, key=lambda p: stats[p]["params"])
    elbo = paired_comparison(stats[hi]["test_elbo"]["per_seed"], stats[lo]["test_elbo"]["per_seed"])["paired"]
    gap = paired_comparison(stats[hi]["gap"]["per_seed"], stats[lo]["gap"]["per_seed"])["paired"]
    return {
        "points": [list(p) for p in pts],
        "narrowest": list(lo),
        "widest": list(hi),
        "test_elbo_widest_minus_narrowest": elbo,
        "G_g_widest_minus_narrowest": gap,
        "test_elbo_improves": bool(elbo["n"] > 1 and elbo["mean"] > 2 * elbo["se"]),
        "G_g_shrinks": bool(gap["n"] > 1 and -gap["mean"] > 2 * gap["se"]),
    }


def figure(stats: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, method in enumerate(m for m in METHODS if m in stats):
        st = stats[method]
        for name, pts in series(st).items():
            ls, mk = ("-", "o") if name == "n_c" else ("--", "s")
            x = [st[p]["params"] for p in pts]
            for ax, key in zip(axes, ("test_elbo", "gap")):
                ax.errorbar(
                    x,
                    [st[p][key]["mean"] for p in pts],
                    yerr=[st[p][key]["std"] for p in pts],
                    fmt=ls + mk,
                    color=f"C{i}",
                    capsize=3,
                    label=f"{NAMES[method]}, {name} varied",
                )
                for p in pts:
                    ax.annotate(f"({p[0]},{p[1]})", (st[p]["params"], st[p][key]["mean"]), fontsize=7, alpha=0.6)
    axes[0].set(xscale="log", xlabel="parameters", ylabel="test ELBO (nats)", title="test ELBO (higher is better)")
    axes[1].set(xscale="log", xlabel="parameters", ylabel="G_g (nats)", title="generalization gap (m_z, n_c)")
    ticks = sorted({p["params"] for st in stats.values() for p in st.values()})
    for ax in axes:
        ax.minorticks_off()
        ax.set_xticks(ticks, [f"{t / 1000:.1f}k" for t in ticks], fontsize=7)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


def main(results_dir: str | None = None, figure_path: str | None = None) -> dict:
    results_dir = results_dir or os.path.join(HERE, "results")
    runs = load(results_dir)
    if not runs:
        raise ValueError(f"no width_<method>_mz<m>_nc<n>.json in {results_dir!r}")
    stats = {m: {p: point_stats(r) for p, r in pts.items()} for m, pts in runs.items()}
    summary: dict = {"methods": {}}
    print("| method | m_z | n_c | params | G_g | test ELBO | train ELBO | seeds |")
    print("|---|---|---|---|---|---|---|---|")
    for method, st in stats.items():
        for p in sorted(st, key=lambda q: st[q]["params"]):
            s = st[p]
            cells = " | ".join(f"{s[k]['mean']:.2f} ± {s[k]['std']:.2f}" for k in KEYS)
            print(f"| {NAMES.get(method, method)} | {p[0]} | {p[1]} | {s['params']:,} | {cells} | {s['gap']['n']} |")
        summary["methods"][method] = {
            "points": [st[p] for p in sorted(st)],
            "trends": {name: width_trend(st, pts) for name, pts in series(st).items() if len(pts) > 1},
        }
        print(
            method,
            json.dumps(
                {
                    k: {kk: v[kk] for kk in ("test_elbo_improves", "G_g_shrinks")}
                    for k, v in summary["methods"][method]["trends"].items()
                }
            ),
        )
    if "normal" in stats and "dmaapx" in stats:
        summary["normal_minus_dmaapx"] = {
            f"mz{p[0]}_nc{p[1]}": {
                k: paired_comparison(stats["normal"][p][k]["per_seed"], stats["dmaapx"][p][k]["per_seed"])["paired"]
                for k in ("gap", "test_elbo")
            }
            for p in sorted(set(stats["normal"]) & set(stats["dmaapx"]))
        }
    figure(stats, figure_path or os.path.join(HERE, "figures", "width.png"))
    seeds = sorted({s for st in stats.values() for p in st.values() for s in p["gap"]["per_seed"]})
    return write_results(os.path.join(results_dir, "width_summary.json"), summary, seeds=seeds)


if __name__ == "__main__":
    main()

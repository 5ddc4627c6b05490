"""Table 7 (BinaryMNIST row) and the training-curve figure from the stored results.

    python -m experiments.synthetic_generalization.summarize

Reads ``results/table7_<method>.json`` (copies of each run's ``results.json``) and
``results/diffusion.json``; writes ``results/table7_summary.json`` (per-method means, standard
deviations over seeds and the paired tests of the claim) and ``figures/curves.png``
(G_g and test ELBO against effective epochs, mean and the individual seeds; the amortization gap's
convergence: the mean ELBO gain of the per-datapoint optimisation against its steps, one line per seed).

The claim (issue 22): at equal effective epochs, ``G_g(DMaaPx) <= G_g(Normal) / 5`` and
``G_a(DMaaPx) < G_a(Normal)``, each with the paired seed differences
``d_s = G_g(Normal)_s / 5 - G_g(DMaaPx)_s`` (resp. ``G_a(Normal)_s - G_a(DMaaPx)_s``) above zero by
more than two standard errors of their mean.
"""

from __future__ import annotations

import json
import os

import numpy as np

from experiments._common import write_results
from jaxvae.metrics.paired import mean_std, paired_comparison

HERE = os.path.dirname(__file__)
METHODS = ("normal", "dmaapx", "aug_tuned", "aug_naive")
NAMES = {"normal": "Normal Training", "dmaapx": "DMaaPx", "aug_tuned": "Aug.Tuned", "aug_naive": "Aug.Naive"}
PAPER = {
    "normal": (25.76, 20.32, 0.49),
    "dmaapx": (0.78, 7.01, 0.50),
    "aug_tuned": (8.16, 9.34, 0.79),
    "aug_naive": (6.38, 8.16, 0.74),
}


def per_seed(res: dict) -> dict[str, dict[int, float]]:
    out = {"G_g": {}, "G_a": {}, "G_r": {}, "test_elbo": {}, "train_elbo": {}}
    for m in res["members"]:
        s = m["seed"]
        out["G_g"][s] = m["generalization"]["gap"]
        out["G_a"][s] = m["amortization"]["gap"]
        out["G_r"][s] = m["robustness"]["gap"]
        out["test_elbo"][s] = m["generalization"]["test_elbo"]
        out["train_elbo"][s] = m["generalization"]["train_elbo"]
    return out


def claim(normal: dict, dmaapx: dict) -> dict:
    g = paired_comparison({s: v / 5 for s, v in normal["G_g"].items()}, dmaapx["G_g"])["paired"]
    a = paired_comparison(normal["G_a"], dmaapx["G_a"])["paired"]
    return {
        "G_g_normal_over_5_minus_dmaapx": g,
        "G_a_normal_minus_dmaapx": a,
        "G_g_holds": bool(g["mean"] > 2 * g["se"]),
        "G_a_holds": bool(a["mean"] > 2 * a["se"]),
    }


def figure(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for i, method in enumerate(m for m in METHODS if m in results):
        curve = results[method]["curve"]
        ep = np.array([p["epoch"] for p in curve])
        for ax, key in zip(axes, ("gap", "test_elbo")):
            v = np.array([[mm[key] for mm in p["members"]] for p in curve])
            ax.plot(ep, v.mean(axis=1), "-o", color=f"C{i}", label=NAMES[method])
            ax.plot(ep, v, ":", color=f"C{i}", alpha=0.5)
        for j, m in enumerate(results[method]["members"]):
            a = m["amortization"]
            gain = np.array(a["trajectory_mean_elbo"]) - a["trajectory_mean_elbo"][0]
            axes[2].plot(a["trajectory_steps"], gain, color=f"C{i}", label=NAMES[method] if j == 0 else None)
    axes[0].set(xlabel="effective epochs", ylabel="G_g (nats)", title="generalization gap")
    axes[1].set(xlabel="effective epochs", ylabel="test ELBO (nats)", title="test ELBO")
    axes[2].set(xlabel="optimisation steps", ylabel="ELBO - ELBO(encoder) (nats)", title="G_a: per-datapoint q")
    axes[0].legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> dict:
    results = {}
    for m in METHODS:
        p = os.path.join(HERE, "results", f"table7_{m}.json")
        if os.path.exists(p):
            results[m] = json.load(open(p))
    summary = {"methods": {}}
    seeds = {m: per_seed(r) for m, r in results.items()}
    print("| method | G_g | G_a | G_r | test ELBO | paper G_g / G_a / G_r |")
    print("|---|---|---|---|---|---|")
    for m, s in seeds.items():
        stats = {k: mean_std(list(v.values())) for k, v in s.items()}
        summary["methods"][m] = {"per_seed": s, **stats, "effective_epochs": results[m]["effective_epochs"]}
        cell = "  ".join(
            f"{stats[k]['mean']:.2f} ± {stats[k]['std']:.2f} |" for k in ("G_g", "G_a", "G_r", "test_elbo")
        )
        print(f"| {NAMES[m]} | {cell} {' / '.join(map(str, PAPER[m]))} |")
    if "normal" in seeds and "dmaapx" in seeds:
        summary["claim"] = claim(seeds["normal"], seeds["dmaapx"])
        print(json.dumps(summary["claim"], indent=1))
    figure(results, os.path.join(HERE, "figures", "curves.png"))
    return write_results(os.path.join(HERE, "results", "table7_summary.json"), summary, seeds=[0, 1, 2])


if __name__ == "__main__":
    main()

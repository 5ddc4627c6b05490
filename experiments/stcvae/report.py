"""Tables, figures and claim checks from a sweep's ``sweep.json`` (and its ``traversals_s<k>.npz``).

    python -m experiments.stcvae.report --sweep runs/stcvae-cpu/sweep.json --out experiments/stcvae/results --tag cpu

Writes into ``--out``: ``sweep_<tag>.json`` (the sweep's cells, copied), ``summary_<tag>.json`` (cell means
and standard errors over seeds, the optimal-ELBO trajectories and the claim checks), ``table_<tag>.md``,
``elbo_surface_<tag>.png``, ``optimal_elbo_<tag>.png`` and ``traversals_<tag>.png``.

Claim checks (all on the **test** ELBO, means over seeds, standard errors ``std / sqrt(n)``):

* optimal-ELBO trajectory along β: for every β the best group size ``s*(β) = argmax_s ELBO(β, s)`` and
  the best ELBO ``max_s ELBO(β, s)``; along s: ``max_β ELBO(β, s)``. A sequence is called **V-shaped** when
  its extreme value (minimum of ``s*``; for the ELBO curves the maximum or the minimum) lies strictly
  inside the range and both ends differ from it by more than two standard errors (for ``s*``: by at least
  one grid step).
* group MIG: for every β and every s > 1, the paired (same seed) difference of group MIG from s = 1 at the
  same β; "higher" when the mean difference exceeds two standard errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from typing import Any

import numpy as np

METRICS = ("elbo", "mig", "group_mig", "sap", "factor_vae")


def _value(cell: dict, metric: str, split: str = "test") -> float:
    return float(cell[split][metric]) if metric in cell.get(split, {}) else float(cell[metric])


def cell_stats(cells: list[dict]) -> dict[str, Any]:
    """``{metric: {"mean": [nb, ns], "se": [nb, ns]}}`` over seeds, with the β and s axes."""
    betas = sorted({c["beta"] for c in cells})
    sizes = sorted({c["group_size"] for c in cells})
    out: dict[str, Any] = {"betas": betas, "group_sizes": sizes}
    keys = [("test_elbo", "elbo", "test"), ("train_elbo", "elbo", "train")]
    keys += [(f"test_{p}", p, "test") for p in ("mi", "tc_between", "tc_within", "dwkl", "log_px_z")]
    keys += [(m, m, None) for m in METRICS[1:]]
    for name, metric, split in keys:
        mean, se, n = (np.full((len(betas), len(sizes)), np.nan) for _ in range(3))
        for i, b in enumerate(betas):
            for j, s in enumerate(sizes):
                v = [
                    _value(c, metric, split) if split else float(c[metric])
                    for c in cells
                    if c["beta"] == b and c["group_size"] == s
                ]
                v = np.asarray(v, float)
                v = v[np.isfinite(v)]
                n[i, j] = len(v)
                if len(v):
                    mean[i, j] = v.mean()
                    se[i, j] = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
        out[name] = {"mean": mean.tolist(), "se": se.tolist(), "n": n.tolist()}
    return out


def v_shape(values, se=None, *, kind: str = "min", min_step: float = 0.0) -> dict[str, Any]:
    """Whether ``values`` has its ``kind`` extreme strictly inside with both ends clearly away from it.

    "Clearly": by more than ``2 * sqrt(se_end^2 + se_ext^2)`` when ``se`` is given, else by more than ``min_step``.
    """
    v = np.asarray(values, float)
    k = int(np.argmin(v) if kind == "min" else np.argmax(v))
    sign = 1.0 if kind == "min" else -1.0
    if se is not None:
        e = np.nan_to_num(np.asarray(se, float))
        margin = [2 * np.hypot(e[0], e[k]), 2 * np.hypot(e[-1], e[k])]
    else:
        margin = [min_step, min_step]
    left, right = sign * (v[0] - v[k]), sign * (v[-1] - v[k])
    inside = 0 < k < len(v) - 1
    return {
        "extreme_index": k,
        "interior": bool(inside),
        "left_rise": float(left),
        "right_rise": float(right),
        "margins": [float(m) for m in margin],
        "v_shaped": bool(inside and left > margin[0] and right > margin[1]),
    }


def trajectories(stats: dict, cells: list[dict]) -> dict[str, Any]:
    """The optimal-ELBO trajectories over the grid and their V-shape checks."""
    betas, sizes = stats["betas"], stats["group_sizes"]
    mean, se = np.asarray(stats["test_elbo"]["mean"]), np.asarray(stats["test_elbo"]["se"])
    best_j = np.nanargmax(mean, axis=1)
    best_s = [sizes[j] for j in best_j]
    best_elbo = mean[np.arange(len(betas)), best_j]
    best_se = se[np.arange(len(betas)), best_j]
    seeds = sorted({c["seed"] for c in cells})
    per_seed = {}
    for seed in seeds:
        row = []
        for b in betas:
            vals = {c["group_size"]: c["test"]["elbo"] for c in cells if c["beta"] == b and c["seed"] == seed}
            row.append(max(vals, key=vals.get))
        per_seed[str(seed)] = row
    best_i = np.nanargmax(mean, axis=0)
    out = {
        "along_beta": {
            "best_group_size": best_s,
            "best_group_size_per_seed": per_seed,
            "best_elbo": best_elbo.tolist(),
            "best_elbo_se": best_se.tolist(),
            "best_group_size_v": v_shape(best_s, kind="min", min_step=0.5),
            "best_elbo_v_max": v_shape(best_elbo, best_se, kind="max"),
            "best_elbo_v_min": v_shape(best_elbo, best_se, kind="min"),
        },
        "along_s": {
            "best_beta": [betas[i] for i in best_i],
            "best_elbo": mean[best_i, np.arange(len(sizes))].tolist(),
            "best_elbo_se": se[best_i, np.arange(len(sizes))].tolist(),
        },
        "elbo_vs_beta_per_s": {},
        "elbo_vs_s_per_beta": {},
    }
    sa = out["along_s"]
    sa["best_elbo_v_max"] = v_shape(sa["best_elbo"], sa["best_elbo_se"], kind="max") if len(sizes) > 2 else None
    sa["best_elbo_v_min"] = v_shape(sa["best_elbo"], sa["best_elbo_se"], kind="min") if len(sizes) > 2 else None
    for j, s in enumerate(sizes):
        if len(betas) > 2:
            out["elbo_vs_beta_per_s"][str(s)] = {
                "max": v_shape(mean[:, j], se[:, j], kind="max"),
                "min": v_shape(mean[:, j], se[:, j], kind="min"),
            }
    for i, b in enumerate(betas):
        if len(sizes) > 2:
            out["elbo_vs_s_per_beta"][f"{b:g}"] = {
                "max": v_shape(mean[i], se[i], kind="max"),
                "min": v_shape(mean[i], se[i], kind="min"),
            }
    return out


def group_mig_vs_s1(cells: list[dict]) -> dict[str, Any]:
    """Paired (same β, same seed) group-MIG differences ``s - (s=1)`` with standard errors."""
    out = {}
    betas = sorted({c["beta"] for c in cells})
    sizes = sorted({c["group_size"] for c in cells})
    if 1 not in sizes:
        return out
    for b in betas:
        base = {c["seed"]: c["group_mig"] for c in cells if c["beta"] == b and c["group_size"] == 1}
        for s in sizes:
            if s == 1:
                continue
            d = np.asarray(
                [c["group_mig"] - base[c["seed"]] for c in cells if c["beta"] == b and c["group_size"] == s],
                float,
            )
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            out[f"beta={b:g},s={s}"] = {
                "mean_diff": float(d.mean()),
                "se": float(se),
                "n": len(d),
                "higher": bool(len(d) > 1 and d.mean() > 2 * se),
            }
    return out


def table(stats: dict) -> str:
    """Markdown table: one row per (β, s), mean ± s.e. over seeds."""
    head = "| β | s | test ELBO | train ELBO | MI | TC_B | Σ TC_g | DWKL | MIG | group MIG | SAP | FactorVAE |"
    lines = [head, "|" + "---|" * 12]
    cols = ["test_elbo", "train_elbo", "test_mi", "test_tc_between", "test_tc_within", "test_dwkl"]
    cols += ["mig", "group_mig", "sap", "factor_vae"]
    for i, b in enumerate(stats["betas"]):
        for j, s in enumerate(stats["group_sizes"]):
            cells = []
            for c in cols:
                m, e = stats[c]["mean"][i][j], stats[c]["se"][i][j]
                digits = 3 if c in METRICS[1:] else 2
                cells.append(f"{m:.{digits}f} ± {e:.{digits}f}" if np.isfinite(e) else f"{m:.{digits}f}")
            lines.append(f"| {b:g} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(stats: dict, traj: dict, out: str, tag: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    betas, sizes = np.asarray(stats["betas"]), stats["group_sizes"]
    mean, se = np.asarray(stats["test_elbo"]["mean"]), np.asarray(stats["test_elbo"]["se"])
    paths = []
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    im = ax[0].imshow(mean.T, origin="lower", aspect="auto", cmap="viridis")
    ax[0].set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax[0].set_yticks(range(len(sizes)), [str(s) for s in sizes])
    ax[0].set_xlabel("β")
    ax[0].set_ylabel("group size s")
    for i in range(len(betas)):
        for j in range(len(sizes)):
            ax[0].text(i, j, f"{mean[i, j]:.1f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax[0], label="test ELBO (nats)")
    ax[0].set_title("ELBO surface (mean over seeds)")
    for j, s in enumerate(sizes):
        ax[1].errorbar(betas, mean[:, j], yerr=se[:, j], marker="o", capsize=3, label=f"s={s}")
    ax[1].set_xlabel("β")
    ax[1].set_ylabel("test ELBO (nats)")
    ax[1].legend()
    ax[1].set_title("test ELBO vs β (± s.e. over seeds)")
    fig.tight_layout()
    paths.append(os.path.join(out, f"elbo_surface_{tag}.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    ab, as_ = traj["along_beta"], traj["along_s"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    ax[0].plot(betas, ab["best_group_size"], "k-o", label="argmax of the seed mean")
    for k, (seed, row) in enumerate(ab["best_group_size_per_seed"].items()):
        ax[0].plot(betas + 0.08 * (k - 1), row, "x", alpha=0.7, label=f"seed {seed}")
    ax[0].set_yscale("log", base=2)
    ax[0].set_yticks(sizes, [str(s) for s in sizes])
    ax[0].set_xlabel("β")
    ax[0].set_ylabel("best s (test ELBO)")
    ax[0].set_title("optimal-ELBO trajectory s*(β)")
    ax[0].legend(fontsize=7)
    ax[1].errorbar(betas, ab["best_elbo"], yerr=ab["best_elbo_se"], marker="o", capsize=3)
    ax[1].set_xlabel("β")
    ax[1].set_ylabel("max_s test ELBO")
    ax[1].set_title("optimal ELBO along β")
    ax[2].errorbar(sizes, as_["best_elbo"], yerr=as_["best_elbo_se"], marker="o", capsize=3)
    for s, b, e in zip(sizes, as_["best_beta"], as_["best_elbo"], strict=True):
        ax[2].annotate(f"β={b:g}", (s, e), fontsize=7)
    ax[2].set_xscale("log", base=2)
    ax[2].set_xticks(sizes, [str(s) for s in sizes])
    ax[2].set_xlabel("group size s")
    ax[2].set_ylabel("max_β test ELBO")
    ax[2].set_title("optimal ELBO along s")
    fig.tight_layout()
    paths.append(os.path.join(out, f"optimal_elbo_{tag}.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def traversal_figure(cells: list[dict], sweep_dir: str, out: str, tag: str) -> dict | None:
    """Latent traversals of the best (β, s > 1) by mean group MIG vs s = 1 at the same β and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gm: dict = {}
    for c in cells:
        if c["group_size"] > 1:
            gm.setdefault((c["beta"], c["group_size"]), []).append(c["group_mig"])
    if not gm:
        return None
    beta, s = max(gm, key=lambda k: np.mean(gm[k]))
    seed = max((c for c in cells if c["beta"] == beta and c["group_size"] == s), key=lambda c: c["group_mig"])["seed"]
    rows = []
    for size in (s, 1):
        path = os.path.join(sweep_dir, f"traversals_s{size}.npz")
        if not os.path.exists(path):
            return None
        z = np.load(path)
        k = int(np.flatnonzero((z["betas"] == beta) & (z["seeds"] == seed))[0])
        rows.append((size, z["traversals"][k], z["reference"]))
    d, t = rows[0][1].shape[:2]
    fig, axes = plt.subplots(d, 2 * t + 1, figsize=(0.6 * (2 * t + 1), 0.6 * d + 0.6))
    for ax in axes.ravel():
        ax.axis("off")
    for col0, (size, trav, _) in zip((0, t + 1), rows, strict=True):
        for i in range(d):
            for j in range(t):
                axes[i, col0 + j].imshow(trav[i, j], cmap="gray", vmin=0, vmax=255)
        axes[0, col0 + t // 2].set_title(f"s={size}", fontsize=8)
    fig.suptitle(
        f"traversals (±2.5 sd), β={beta:g}, seed {seed}\ns={s} (left) vs s=1 (right); one row per latent", fontsize=8
    )
    path = os.path.join(out, f"traversals_{tag}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {"beta": beta, "group_size": s, "seed": seed, "path": path}


def main(argv=None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweep", required=True, help="the sweep's sweep.json")
    p.add_argument("--out", required=True, help="output folder (e.g. experiments/stcvae/results)")
    p.add_argument("--tag", default="cpu")
    a = p.parse_args(argv)
    with open(a.sweep, encoding="utf-8") as f:
        sweep = json.load(f)
    os.makedirs(a.out, exist_ok=True)
    if os.path.abspath(a.sweep) != os.path.abspath(os.path.join(a.out, f"sweep_{a.tag}.json")):
        shutil.copyfile(a.sweep, os.path.join(a.out, f"sweep_{a.tag}.json"))
    cells = sweep["cells"]
    stats = cell_stats(cells)
    traj = trajectories(stats, cells)
    summary = {
        "source": f"sweep_{a.tag}.json",
        "provenance": sweep.get("provenance"),
        "stats": stats,
        "trajectories": traj,
        "group_mig_vs_s1": group_mig_vs_s1(cells),
    }
    with open(os.path.join(a.out, f"table_{a.tag}.md"), "w", encoding="utf-8") as f:
        f.write(table(stats))
    plots(stats, traj, a.out, a.tag)
    summary["traversals"] = traversal_figure(cells, os.path.dirname(os.path.abspath(a.sweep)), a.out, a.tag)
    with open(os.path.join(a.out, f"summary_{a.tag}.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({"along_beta": traj["along_beta"], "group_mig_vs_s1": summary["group_mig_vs_s1"]}, indent=1))
    return summary


if __name__ == "__main__":
    main()

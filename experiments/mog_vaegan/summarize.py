"""Collect the four models' per-seed results into the comparison table, the paired differences and the claim.

    python -m experiments.mog_vaegan.summarize RUNS_DIR [--out experiments/mog_vaegan/results]

``RUNS_DIR`` holds one work dir per model (``a_baseline``, ``b_population``, ``c_vaegan``,
``d_vaegan_moment``), each with ``seed_<s>/results.json`` written by :mod:`experiments.mog_vaegan.main`.
Copies those files to ``--out/<model>_seed<s>.json`` and writes ``--out/summary.json``: per model and
metric the mean, standard deviation (ddof=1) and n over seeds; the paired differences by seed
(:func:`jaxvae.metrics.paired.paired_comparison`) of (c) - (a), (c) - (b) and (d) - (c); and the measured
claim: (c)'s MNIST-FID below (a)'s with the paired mean difference beyond two standard errors over at
least 3 seeds, and (c)'s PSNR at least 90% of (a)'s.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
from typing import Any

from experiments._common import write_results
from jaxvae.metrics.paired import mean_std, paired_comparison

MODELS = ("a_baseline", "b_population", "c_vaegan", "d_vaegan_moment")
METRICS = (
    "test_mae",
    "test_psnr",
    "mnist_fid",
    "active_units",
    "mean_posterior_variance",
    "aggregate_kl_mc",
    "aggregate_kl_moment_matched_lower_bound",
    "test_per_sample_kl",
)
PAIRS = (("c_vaegan", "a_baseline"), ("c_vaegan", "b_population"), ("d_vaegan_moment", "c_vaegan"))


def load_runs(runs_dir: str) -> dict[str, dict[int, dict]]:
    """``{model: {seed: results}}`` of every finished seed found under ``runs_dir``."""
    out: dict[str, dict[int, dict]] = {}
    for name in MODELS:
        for path in sorted(glob.glob(os.path.join(runs_dir, name, "seed_*", "results.json"))):
            with open(path, encoding="utf-8") as f:
                r = json.load(f)
            if "mnist_fid" in r:
                out.setdefault(name, {})[int(r["seed"])] = r
    return out


def summarize(runs: dict[str, dict[int, dict]]) -> dict[str, Any]:
    """Per-model seed statistics, paired differences and the claim (see the module docstring)."""
    table = {
        name: {m: mean_std([r[m] for r in seeds.values()]) for m in METRICS} | {"seeds": sorted(seeds)}
        for name, seeds in runs.items()
    }
    pairs = {}
    for a, b in PAIRS:
        if a in runs and b in runs and set(runs[a]) & set(runs[b]):
            pairs[f"{a} - {b}"] = {
                m: paired_comparison({s: r[m] for s, r in runs[a].items()}, {s: r[m] for s, r in runs[b].items()})
                for m in ("mnist_fid", "test_psnr", "test_mae", "active_units", "mean_posterior_variance")
            }
    claim: dict[str, Any] = {"holds": None}
    key = "c_vaegan - a_baseline"
    if key in pairs:
        fid = pairs[key]["mnist_fid"]["paired"]
        psnr_c, psnr_a = table["c_vaegan"]["test_psnr"]["mean"], table["a_baseline"]["test_psnr"]["mean"]
        lower_fid = fid["mean"] < 0 and fid["n"] >= 3 and abs(fid["mean"]) > 2 * fid["se"]
        keeps_psnr = psnr_c >= 0.9 * psnr_a
        claim = {
            "fid_paired_mean_difference": fid["mean"],
            "fid_paired_se": fid["se"],
            "seeds": fid["n"],
            "fid_lower_beyond_2se": bool(lower_fid),
            "psnr_ratio_c_over_a": psnr_c / psnr_a,
            "psnr_within_10_percent": bool(keeps_psnr),
            "holds": bool(lower_fid and keeps_psnr),
        }
    return {"table": table, "paired": pairs, "claim": claim}


def markdown(summary: dict[str, Any]) -> str:
    """The README table: mean ± std over seeds per model."""
    cols = ("test_mae", "test_psnr", "mnist_fid", "active_units", "mean_posterior_variance", "aggregate_kl_mc")
    head = "| model | seeds | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for name, row in summary["table"].items():
        cells = [f"{row[c]['mean']:.4g} ± {row[c]['std']:.2g}" for c in cols]
        lines.append(f"| {name} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs_dir")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    runs = load_runs(args.runs_dir)
    if not runs:
        raise SystemExit(f"error: no finished results.json under {args.runs_dir}")
    os.makedirs(args.out, exist_ok=True)
    for name, seeds in runs.items():
        for s in seeds:
            shutil.copy(
                os.path.join(args.runs_dir, name, f"seed_{s}", "results.json"),
                os.path.join(args.out, f"{name}_seed{s}.json"),
            )
    summary = summarize(runs)
    seeds = sorted({s for v in runs.values() for s in v})
    written = write_results(os.path.join(args.out, "summary.json"), summary, seeds=seeds)
    print(markdown(summary))
    print(json.dumps(summary["claim"], indent=1))
    return written


if __name__ == "__main__":
    main()

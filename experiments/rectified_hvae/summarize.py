"""Collect the ``results.json`` of several runs into the README's markdown tables.

Usage::

    python -m experiments.rectified_hvae.summarize runs/rectified_hvae/{default,mean_field,gaussian,baseline_vae}

Prints one table of test ELBO / IW-NLL per run, one of per-layer active units and sparsity, and the
**paired** IW-NLL differences against the first run (same test examples, so the per-example
variation of log p(x) cancels; the standard error is that of the mean per-example difference).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def load(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as f:
        res = json.load(f)
    path = os.path.join(run_dir, "iw_log_likelihood.npy")
    res["_ll"] = np.load(path) if os.path.exists(path) else None
    res["_name"] = os.path.basename(os.path.normpath(run_dir))
    return res


def main(argv=None) -> None:
    dirs = argv if argv is not None else sys.argv[1:]
    if not dirs:
        raise SystemExit("usage: python -m experiments.rectified_hvae.summarize RUN_DIR [RUN_DIR ...]")
    runs = [load(d) for d in dirs]
    print("| run | epochs | skipped | test ELBO (all test ex.) | IW-NLL k | IW ex. | IW-NLL | ELBO same ex. |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        iw = r.get("iw_nll") or {}
        elbo = r["test"]["elbo"] if r.get("test") else float("nan")
        print(
            f"| {r['_name']} | {r['epochs']} | {r['skipped_steps']} | {elbo:.2f} ({r['test_elbo_examples']}) "
            f"| {iw.get('k', '-')} | {iw.get('examples', '-')} | {iw.get('nll', float('nan')):.2f} "
            f"± {iw.get('stderr', float('nan')):.2f} | {-iw.get('elbo_same_examples', float('nan')):.2f} |"
        )
    print()
    print("| run | layer | units | active units | sparsity (exact zeros in q samples) |")
    print("|---|---|---|---|---|")
    for r in runs:
        for layer in r.get("layers", []):
            print(
                f"| {r['_name']} | {layer['layer']} | {layer['units']} | {layer['active_units']} "
                f"| {layer['sparsity']:.3f} |"
            )
    ref = runs[0]
    if ref["_ll"] is not None:
        print()
        print(f"| paired IW-NLL difference (run - {ref['_name']}) | mean | stderr | examples |")
        print("|---|---|---|---|")
        for r in runs[1:]:
            if r["_ll"] is None or r["_ll"].shape != ref["_ll"].shape:
                continue
            d = ref["_ll"] - r["_ll"]  # NLL(run) - NLL(ref) = ll(ref) - ll(run)
            se = float(np.std(d, ddof=1) / np.sqrt(d.size))
            print(f"| {r['_name']} | {float(np.mean(d)):+.2f} | {se:.2f} | {d.size} |")


if __name__ == "__main__":
    main()

"""Plot ELBO throughput against batch size (JAX and PyTorch) from the JSON lines of elbo_throughput.py.

python benchmarks/plot.py RESULTS.jsonl OUT.png [--model mlp_vae_512x2_z32]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("out")
    p.add_argument("--model", default="mlp_vae_512x2_z32")
    args = p.parse_args(argv)

    series = defaultdict(dict)  # (impl, mode) -> {batch: ex/s}
    device = "?"
    with open(args.results) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("bench") != "elbo_throughput" or rec.get("model") != args.model:
                continue
            series[(rec["impl"], rec["mode"])][rec["batch_size"]] = rec["examples_per_sec"]
            device = f"{rec['device_kind']} x{rec['device_count']} ({rec['cpu_count']} host cores)"
    if not series:
        raise SystemExit(f"no elbo_throughput records for model {args.model!r} in {args.results}")

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"jax": "-o", "torch": "--s"}
    for (impl, mode), pts in sorted(series.items()):
        bs = sorted(pts)
        ax.plot(bs, [pts[b] for b in bs], styles.get(impl, "-"), label=f"{impl} {mode}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("examples / s (median)")
    ax.set_title(f"{args.model}: ELBO throughput, {device}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

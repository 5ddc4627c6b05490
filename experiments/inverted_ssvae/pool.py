"""Pool the seeds of several ``untapped`` runs of one configuration into one M2-vs-untapped comparison.

The paper's protocol is 10 seeds at batch 10,000 per stream; on a 2-core CPU one invocation of three
seeds takes about 1.5 hours, so the seeds are run in groups (``--set run.seeds='(3,4,5)'``), each in its
own workdir, and pooled here::

    python -m experiments.inverted_ssvae.pool runs/a/results.json runs/b/results.json [--out pooled.json]

A seed's result does not depend on which group it ran in (every seed's initialisation and noise come
from its own seed; the data, its order and the unfeatured draws from ``data.data_seed``, or with
``data.per_seed`` from ``data.data_seed + seed``), so pooling is sound only when the runs agree on
everything else. Refused, naming the file and the setting: a
configuration that differs outside ``run.seeds`` and the bookkeeping settings (:data:`BOOKKEEPING`); a
seed that appears twice; a run without both variants; a variant stopped by its time limit or short of
``run.num_steps``. Prints, per variant, ``ce_59`` (and the authors' ``ce_59_authors``) as mean +-
standard deviation over the pooled seeds, and the untapped - M2 difference unpaired and paired by seed
(:func:`experiments.inverted_ssvae.main.compare_ce`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.inverted_ssvae.main import _mean_std, compare_ce

#: ``run`` settings that may differ between pooled runs: which seeds, logging / checkpoint cadence, and
#: where the batches are gathered (the same batches either way).
BOOKKEEPING = ("seeds", "time_limit_s", "log_every", "checkpoint_every", "sync_every", "classifier_path", "device_data")
VARIANTS = ("M2", "untapped")


def _comparable(config: Mapping[str, Any]) -> dict:
    out = json.loads(json.dumps(config))
    for k in BOOKKEEPING:
        out.get("run", {}).pop(k, None)
    # runs written before data.per_seed existed shared one data seed, which is what False means
    out.setdefault("data", {}).setdefault("per_seed", False)
    return out


def data_seeds(pooled_rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> list[int]:
    """The data seed of each row (``data_seed``, or for runs written before it was recorded the shared
    ``config['data']['data_seed']``)."""
    return [int(p.get("data_seed", config["data"]["data_seed"])) for p in pooled_rows]


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}{k}"
            d = _first_difference(a[k], b[k], f"{path}{k}.")
            if d:
                return d
        return None
    return None if a == b else path.rstrip(".")


def pool(results: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict:
    """Pool the per-seed results of ``results`` (parsed ``results.json`` of ``untapped`` runs)."""
    names = list(names or [f"run {i}" for i in range(len(results))])
    if not results:
        raise ValueError("pool: need at least one results.json")
    ref = _comparable(results[0]["config"])
    seen: dict[int, str] = {}
    per_seed: dict[str, list] = {v: [] for v in VARIANTS}
    for res, name in zip(results, names):
        cfg = res["config"]
        if cfg.get("data", {}).get("task") != "untapped":
            raise ValueError(f"{name}: data.task is {cfg.get('data', {}).get('task')!r}; only 'untapped' runs pool")
        diff = _first_difference(ref, _comparable(cfg))
        if diff:
            raise ValueError(
                f"{name}: configuration differs from {names[0]} at {diff!r}; only run.seeds and "
                f"the bookkeeping settings {BOOKKEEPING} may differ"
            )
        for v in VARIANTS:
            if v not in res.get("variants", {}):
                raise ValueError(f"{name}: no {v!r} variant; pooling compares M2 with untapped")
            var = res["variants"][v]
            if var.get("time_limited") or var.get("steps_done") != cfg["run"]["num_steps"]:
                raise ValueError(
                    f"{name}: {v} stopped at step {var.get('steps_done')} of "
                    f"{cfg['run']['num_steps']} (time_limited={var.get('time_limited')}); "
                    "resume it to the end before pooling"
                )
        for p in res["variants"]["M2"]["per_seed"]:
            s = int(p["seed"])
            if s in seen:
                raise ValueError(f"{name}: seed {s} is also in {seen[s]}; each seed must come from one run")
            seen[s] = name
        for v in VARIANTS:
            per_seed[v].extend(res["variants"][v]["per_seed"])
    rows_m2 = sorted(per_seed["M2"], key=lambda p: int(p["seed"]))
    out = {
        "sources": names,
        "seeds": sorted(seen),
        "per_seed_data": bool(ref["data"]["per_seed"]),
        "data_seeds": sorted(set(data_seeds(rows_m2, results[0]["config"]))),
        "variants": {},
    }
    for v in VARIANTS:
        rows = sorted(per_seed[v], key=lambda p: int(p["seed"]))
        keys = [k for k, x in rows[0].items() if k != "seed" and isinstance(x, float)]
        out["variants"][v] = {"per_seed": rows, "summary": {k: _mean_std([p[k] for p in rows]) for k in keys}}
    out["untapped_minus_m2_ce_59"] = compare_ce(per_seed["untapped"], per_seed["M2"])
    out["untapped_minus_m2_ce_59_authors"] = compare_ce(per_seed["untapped"], per_seed["M2"], key="ce_59_authors")
    return out


def report(pooled: Mapping[str, Any]) -> str:
    ds = pooled.get("data_seeds", [])
    lines = [
        f"seeds {pooled['seeds']} ({len(pooled['seeds'])}) from {len(pooled['sources'])} run(s); "
        + (
            f"each seed on its own data (data seeds {ds})"
            if pooled.get("per_seed_data")
            else f"all on data seed {ds[0] if len(ds) == 1 else ds}"
        )
    ]
    for v in VARIANTS:
        s = pooled["variants"][v]["summary"]
        lines.append(
            f"{v:9s} ce_59 {s['ce_59']['mean']:.3f} +- {s['ce_59']['std']:.3f}   "
            f"ce_59_authors {s['ce_59_authors']['mean']:.3f} +- {s['ce_59_authors']['std']:.3f}"
        )
    c = pooled["untapped_minus_m2_ce_59"]
    lines.append(f"untapped - M2 (ce_59): unpaired {c['diff']:+.3f} +- {c['se']:.3f} (z = {c['z']:.2f})")
    p = c["paired"]
    lines.append(
        f"                       paired   {p['mean']:+.3f} +- {p['se']:.3f} (z = {p['z']:.2f}); "
        f"per-seed sd {p['std']:.3f}; untapped better in {p['untapped_better']} of {p['n']}"
    )
    lines.append(
        f"                       one-sided p: sign-flip {p['p_sign_flip']:.4f}"
        f"{'' if p['p_sign_flip_exact'] else ' (sampled)'}, sign test {p['p_sign_test']:.4f}"
    )
    return "\n".join(lines)


def run_cli(argv, description: str, compute, render, prog: str) -> dict:
    """The command line shared by ``pool`` and ``confirm_decision``: load each ``results.json``, run
    ``compute(loaded, paths)``, print ``render(out)``, optionally write ``out`` as JSON (``--out``)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("results", nargs="+", help="results.json of each run")
    ap.add_argument("--out", default=None, help="write the per-seed results and statistics here (JSON)")
    a = ap.parse_args(argv if argv is not None else sys.argv[1:])
    loaded = []
    for path in a.results:
        with open(path) as f:
            loaded.append(json.load(f))
    try:
        out = compute(loaded, a.results)
    except ValueError as e:
        raise SystemExit(f"{prog}: {e}") from None
    print(render(out))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return out


def main(argv=None) -> dict:
    return run_cli(argv, __doc__.split("\n\n")[0], pool, report, "pool")


if __name__ == "__main__":
    main()

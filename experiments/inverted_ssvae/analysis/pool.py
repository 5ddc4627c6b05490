"""Pool the seeds of several ``untapped`` runs of one configuration into one M2-vs-untapped comparison.

On a small machine the seeds of one configuration run in groups (``--set run.seeds='(3,4,5)'``), each in
its own workdir, pooled here::

    python -m experiments.inverted_ssvae.analysis.pool runs/a/results.json runs/b/results.json [--out pooled.json]

A seed's result does not depend on its group (its initialisation and noise come from its own seed; the data,
their order and the unfeatured draws from ``data.data_seed``, or with ``data.per_seed`` from
``data.data_seed + seed``), so pooling is sound when the runs agree on everything else. Refused, naming the
file and the setting: a configuration that differs outside ``run.seeds`` and the bookkeeping settings
(:data:`BOOKKEEPING`); a seed in two runs; a run without both variants; a variant stopped short of
``run.num_steps``. Results files written before the model's fields were renamed pool with today's
(:mod:`.legacy`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from experiments.inverted_ssvae.analysis import legacy
from experiments.inverted_ssvae.evaluate import compare, summarize

#: ``run`` settings that may differ between pooled runs: which seeds, logging and checkpoint cadence,
#: the classifier file's name, and where the batches are gathered (the same batches either way).
BOOKKEEPING = ("seeds", "time_limit_s", "log_every", "checkpoint_every", "sync_every", "classifier_path", "device_data")
VARIANTS = ("M2", "untapped")


def comparable(config: Mapping[str, Any]) -> dict:
    """``config`` in today's names without the bookkeeping settings (what pooled runs must share)."""
    out = legacy.upgrade(json.loads(json.dumps(config)))
    for k in BOOKKEEPING:
        out.get("run", {}).pop(k, None)
    # runs written before data.per_seed existed shared one data seed, which is what False means
    out.setdefault("data", {}).setdefault("per_seed", False)
    return out


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted path of the first leaf where two JSON trees differ (None if they are equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}{k}"
            d = first_difference(a[k], b[k], f"{path}{k}.")
            if d:
                return d
        return None
    return None if a == b else path.rstrip(".")


def pool(results: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict:
    """Pool the per-seed rows of ``results`` (parsed ``results.json`` of ``untapped`` runs)."""
    names = list(names or [f"run {i}" for i in range(len(results))])
    if not results:
        raise ValueError("pool: need at least one results.json")
    ref = comparable(results[0]["config"])
    seen: dict[int, str] = {}
    rows: dict[str, list] = {v: [] for v in VARIANTS}
    for res, name in zip(results, names):
        cfg = res["config"]
        if cfg.get("data", {}).get("task") != "untapped":
            raise ValueError(f"{name}: data.task is {cfg.get('data', {}).get('task')!r}; only 'untapped' runs pool")
        diff = first_difference(ref, comparable(cfg))
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
                    f"{name}: {v} stopped at step {var.get('steps_done')} of {cfg['run']['num_steps']} "
                    f"(time_limited={var.get('time_limited')}); resume it to the end before pooling"
                )
        for p in res["variants"]["M2"]["per_seed"]:
            s = int(p["seed"])
            if s in seen:
                raise ValueError(f"{name}: seed {s} is also in {seen[s]}; each seed must come from one run")
            seen[s] = name
        for v in VARIANTS:
            rows[v].extend(res["variants"][v]["per_seed"])
    data_seed = results[0]["config"]["data"]["data_seed"]
    out = {
        "sources": names,
        "seeds": sorted(seen),
        "per_seed_data": bool(ref["data"]["per_seed"]),
        # rows written before data_seed was recorded ran on the config's one data seed
        "data_seeds": sorted({int(p.get("data_seed", data_seed)) for p in rows["M2"]}),
        "variants": {},
    }
    for v in VARIANTS:
        rs = sorted(rows[v], key=lambda p: int(p["seed"]))
        out["variants"][v] = {"per_seed": rs, "summary": summarize(rs)}
    out["untapped_minus_m2_ce_59"] = compare(rows["untapped"], rows["M2"], "ce_59")
    out["untapped_minus_m2_ce_59_authors"] = compare(rows["untapped"], rows["M2"], "ce_59_authors")
    return out


def report(pooled: Mapping[str, Any]) -> str:
    """The pooled comparison in a few lines."""
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
    p = c["paired"]
    lines += [
        f"untapped - M2 (ce_59): unpaired {c['diff']:+.3f} +- {c['se']:.3f} (z = {c['z']:.2f})",
        f"                       paired   {p['mean']:+.3f} +- {p['se']:.3f} (z = {p['z']:.2f}); "
        f"per-seed sd {p['std']:.3f}; untapped lower in {p['a_lower']} of {p['n']}",
        f"                       one-sided p: sign-flip {p['p_sign_flip']:.4f}"
        f"{'' if p['p_sign_flip_exact'] else ' (sampled)'}, sign test {p['p_sign_test']:.4f}",
    ]
    return "\n".join(lines)


def run_cli(
    argv: Sequence[str] | None,
    description: str,
    compute: Callable[[list, list], dict],
    render: Callable[[dict], str],
    prog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> dict:
    """The command line of ``pool`` and ``confirm_decision``: load each ``results.json``, run
    ``compute(loaded, paths, **extra_args)``, print ``render(out)``, and with ``--out`` write ``out`` as a
    results file (:func:`experiments._common.write_results`: atomic, with provenance)."""
    from experiments._common import write_results

    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("results", nargs="+", help="results.json of each run")
    ap.add_argument("--out", default=None, help="write the per-seed results and statistics here (JSON)")
    if add_arguments is not None:
        add_arguments(ap)
    argv = list(sys.argv[1:] if argv is None else argv)
    a = ap.parse_args(argv)
    extra = {k: v for k, v in vars(a).items() if k not in ("results", "out")}
    loaded = []
    for path in a.results:
        with open(path) as f:
            loaded.append(json.load(f))
    try:
        out = compute(loaded, a.results, **extra)
    except ValueError as e:
        raise SystemExit(f"{prog}: {e}") from None
    print(render(out))
    if a.out:
        command = ["python", "-m", f"experiments.inverted_ssvae.analysis.{prog}", *argv]
        write_results(a.out, out, seeds=out.get("seeds"), command=command)
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    return run_cli(argv, __doc__.split("\n\n")[0], pool, report, "pool")


if __name__ == "__main__":
    main()

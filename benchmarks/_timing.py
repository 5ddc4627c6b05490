"""Timing helpers shared by the benchmark scripts (not part of the library).

Protocol (benchmarks/README.md): compile apart, warm up, then ``repeats`` timed loops of ``steps``
calls each, every call synchronised; report the median loop. Pairs of implementations are timed
interleaved (one loop of each in turn) so that a noisy neighbour slows both alike.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import jax


def environment() -> dict:
    """What a result needs to be read: versions, device, precision, machine."""
    dev = jax.devices()[0]
    return {
        "jax_version": jax.__version__,
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "device_count": jax.device_count(),
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
    }


def time_loops(fns: Sequence[Callable[[], object]], *, steps: int, repeats: int, warmup: int = 3) -> list[list[float]]:
    """Time each zero-argument ``fn`` (which must synchronise before returning) ``repeats`` times.

    The functions are interleaved loop by loop. Returns, per function, the list of per-call times
    (seconds per call) of each repeat.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            out[i].append((time.perf_counter() - t0) / steps)
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def emit(record: dict, stream=None) -> None:
    """Write one JSON line (and flush, so partial runs keep their lines)."""
    stream = stream or sys.stdout
    stream.write(json.dumps(record, sort_keys=True) + "\n")
    stream.flush()


def json_lines_sink(path: str | None):
    """``(emit, close)``: ``emit(record)`` writes one JSON line to stdout and, when ``path`` is given,
    appends it to that file too (flushed each time, so an interrupted run keeps its lines)."""
    out_f = open(path, "a") if path else None

    def emit_both(record: dict) -> None:
        emit(record)
        if out_f:
            emit(record, out_f)

    def close() -> None:
        if out_f:
            out_f.close()

    return emit_both, close


def compile_seconds(jitted, *args) -> tuple[object, float]:
    """Lower and compile ``jitted`` for ``args``; return (compiled, seconds)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def flops_of(compiled) -> float | None:
    """FLOPs of one call from XLA's cost analysis of the compiled executable (None if unavailable)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # pragma: no cover - backend without cost analysis
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None
    flops = cost.get("flops")
    return float(flops) if flops is not None and flops > 0 else None

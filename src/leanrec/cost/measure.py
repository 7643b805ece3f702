"""Small, honest timing primitives the profiler is built from.

Why medians and percentiles of repeated runs: this 2-core machine is shared and noisy, so a
single timing says little. Every function returns the raw samples beside the summary so a
report can show the spread, and nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["percentiles", "time_repeats", "latency_profile", "throughput"]


def percentiles(samples_s: Sequence[float]) -> dict:
    """p50/p99/mean in milliseconds of latency samples given in seconds."""
    arr = np.asarray(samples_s, np.float64) * 1e3
    if not len(arr):
        raise ValueError("no latency samples")
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean()), "n": int(len(arr))}


def time_repeats(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` (each call timed on its own)."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def latency_profile(fn: Callable[[int], object], n: int, *, warmup: int = 3) -> dict:
    """Per-call latency of ``fn(i)`` for i in range(n), after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def throughput(fn: Callable[[], object], n_items: int, *, repeats: int = 3) -> dict:
    """Items per second of a call that processes ``n_items``: median of ``repeats`` runs."""
    seconds = time_repeats(fn, repeats)
    med = float(np.median(seconds))
    return {"items_per_s": n_items / med if med > 0 else float("inf"), "median_s": med,
            "samples_s": [float(s) for s in seconds], "n_items": int(n_items)}

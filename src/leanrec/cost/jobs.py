"""Wall time and peak memory of the batch jobs (``leanrec batch encode``, ``leanrec batch recommend``) at
a target size, predicted from one measured run at a smaller size.

Why a model of its own: :func:`leanrec.cost.plan.plan` sizes a deployment from encoder
throughput and an index profile; a batch job's wall time also has a cluster start, a
per-worker load, a number of partition *rounds* (partitions ÷ workers, rounded up) and a
per-partition working set. Every task of a ``leanrec.scale`` job reports its phases and its
process's memory in the output manifest (``last_run.tasks``), so a finished run *is* the
profile: :func:`job_profile` condenses it and :func:`predict_job` scales it.

Laws (n0, U0 = profiled items and users; N, U = target; W = workers; one thread budget):

* **encode** — task time per item ``c = Σ(read + encode + write) / n0`` (an item's text
  costs the same wherever it is); partitions ``P = ⌈N / partition_rows⌉``, so
  ``wall = start + load + ⌈P / W⌉ · c · N / P + overhead``. ``load`` is the encoder load
  on a worker (first task), ``start`` the cluster's start, ``overhead`` the profiled
  wall time that none of these explain (driver: listing partitions, manifests), kept
  constant. Memory per worker: RSS with the encoder loaded + (peak − that) at n0, scaled by
  rows per partition (a worker holds one partition's texts and vectors at a time).
* **recommend-all** — per worker, loading the item vectors and building the exact index
  costs ``load ∝ N`` and adds the RSS the load measured (``items_mb``) ``∝ N``; per partition of
  ``partition_users`` users, scoring costs ``∝ users × N`` (a full scan) and reading
  events, building profiles and writing ``∝ users``; so
  ``wall = start + load·N/n0 + ⌈P / W⌉ · (u·(s·N + o)) + overhead`` with ``P = ⌈U / partition_users⌉``,
  ``u = U / P`` users per partition, ``s`` the measured scan seconds per user-item, ``o`` the
  other seconds per user. Peak memory per worker: the profiled peak + ``items_mb`` · (N/n0 − 1)
  (runtime and a partition's working set stay constant at a fixed partition size).

What it does not model: a target whose item matrix no longer fits in memory (the exact
index needs it whole on every worker), disk or network faster or slower than at n0, and
events per user that differ between the profile and the target.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["job_profile", "predict_job"]

JOBS = ("encode", "recommend-all")


def _sum(tasks: list[dict], key: str) -> float:
    return float(sum(t.get("timings", {}).get(key, 0.0) for t in tasks))


def job_profile(manifest: dict[str, Any], *, workers: int | None = None, start_s: float = 0.0,
                idle_rss_mb: float | None = None, driver: dict[str, float] | None = None,
                n_users: int | None = None) -> dict[str, Any]:
    """Condense a finished job's manifest (``encode_catalogue`` or ``recommend_all`` output)
    into a profile: sizes, per-phase task seconds, per-worker memory.

    ``workers``: processes that ran tasks (default: the distinct pids of the tasks);
    ``start_s``: the cluster's start, not in the manifest (0: in-process, or a cluster that
    was already up); ``idle_rss_mb``: a worker's RSS before its first task, recorded for the
    report; ``driver``: ``{"before_mb", "peak_mb"}`` of the driver process when it is not
    itself the worker.
    """
    run = manifest.get("last_run") or {}
    tasks = run.get("tasks") or []
    if not tasks:
        raise ValueError("the manifest's last_run has no task measurements: profile a run that computed its "
                         "partitions (a rerun that skipped them all measures nothing)")
    kind = str(manifest.get("kind", ""))
    by_pid: dict[int, list[dict]] = {}
    for t in tasks:
        by_pid.setdefault(int(t.get("pid", 0)), []).append(t)
    workers = len(by_pid) if workers is None else int(workers)
    prof: dict[str, Any] = {"workers": workers, "start_s": float(start_s), "wall_s": float(run["wall_s"]) + start_s,
                            "partitions": len(tasks), "idle_rss_mb": idle_rss_mb,
                            "peak_rss_mb": max(float(t.get("peak_rss_mb", 0.0)) for t in tasks),
                            "load_s": max(_sum(ts, "load_s") for ts in by_pid.values())}
    if driver:
        prof["driver"] = {k: float(v) for k, v in driver.items()}
    if kind.startswith("leanrec-vectors"):
        rows = sum(int(t["rows"]) for t in tasks)
        prof |= {"job": "encode", "n_items": rows, "partition_rows": int(manifest["config"]["partition_rows"]),
                 "rows_per_partition": rows / len(tasks),
                 "rss_after_load_mb": min(float(t["rss_after_load_mb"]) for t in tasks),
                 "task_s_per_item": (_sum(tasks, "read_s") + _sum(tasks, "encode_s") + _sum(tasks, "write_s")) / rows}
    elif kind.startswith("leanrec-recommend-all"):
        users = sum(int(t["users"]) for t in tasks)
        n_items = manifest.get("n_items")
        if n_items is None:
            raise ValueError("a recommend-all manifest needs n_items (the catalogue size) to be profiled")
        prof |= {"job": "recommend-all", "n_items": int(n_items), "n_users": n_users or users,
                 "partition_users": int(manifest["config"]["partition_users"]),
                 "users_per_partition": users / len(tasks),
                 "scan_s_per_user_item": _sum(tasks, "search_s") / (users * int(n_items)),
                 "other_s_per_user": sum(_sum(tasks, k) for k in ("read_s", "profile_s", "write_s")) / users,
                 "items_mb": max(float(t.get("items_mb", 0.0)) for t in tasks)}
    else:
        raise ValueError(f"not a leanrec.scale job manifest (kind {kind!r})")
    prof["overhead_s"] = prof["wall_s"] - _model_wall(prof, prof["n_items"], prof.get("n_users"))
    return prof


def _rounds(parts: int, workers: int) -> int:
    return math.ceil(parts / workers)


def _model_wall(p: dict, n_items: int, n_users: int | None) -> float:
    """The modelled part of the wall time (everything but ``overhead_s``)."""
    if p["job"] == "encode":
        parts = max(1, math.ceil(n_items / p["partition_rows"]))
        per_part = p["task_s_per_item"] * n_items / parts
        return p["start_s"] + p["load_s"] + _rounds(parts, p["workers"]) * per_part
    users = int(n_users if n_users is not None else p["n_users"])
    parts = max(1, math.ceil(users / p["partition_users"]))
    u = users / parts
    per_part = u * (p["scan_s_per_user_item"] * n_items + p["other_s_per_user"])
    return p["start_s"] + p["load_s"] * n_items / p["n_items"] + _rounds(parts, p["workers"]) * per_part


def predict_job(profile: dict[str, Any], n_items: int, n_users: int | None = None) -> dict[str, Any]:
    """Predicted wall time (s) and peak RSS per worker (MB) of the profiled job at ``n_items``
    (and ``n_users`` for recommend-all), same workers, threads and partition sizes; with the
    laws used, in words."""
    p = profile
    if p.get("job") not in JOBS:
        raise ValueError(f"profile job must be one of {', '.join(JOBS)}, got {p.get('job')!r}")
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    wall = _model_wall(p, n_items, n_users) + p["overhead_s"]
    if p["job"] == "encode":
        parts = max(1, math.ceil(n_items / p["partition_rows"]))
        scale = (n_items / parts) / p["rows_per_partition"]
        base = p["rss_after_load_mb"]
        peak = base + (p["peak_rss_mb"] - base) * scale
        laws = {"wall_s": "start + encoder load + ⌈partitions / workers⌉ × per-partition time (∝ rows) + overhead",
                "peak_rss_mb": "RSS with the encoder loaded + working set × rows per partition (one partition "
                               "at a time, not the catalogue)"}
    else:
        peak = p["peak_rss_mb"] + p["items_mb"] * (n_items / p["n_items"] - 1)
        laws = {"wall_s": "start + load ∝ N + ⌈user partitions / workers⌉ × users × (scan ∝ N + per-user work) "
                          "+ overhead",
                "peak_rss_mb": "profiled peak + (memory the item load added) × (N / n0 − 1): item vectors and "
                               "index ∝ N, the rest (runtime, one partition's working set) constant"}
    out = {"job": p["job"], "n_items": int(n_items), "wall_s": wall, "peak_rss_mb_per_worker": peak,
           "workers": p["workers"], "laws": laws, "profiled_at": p["n_items"]}
    if p["job"] == "recommend-all":
        out["n_users"] = int(n_users if n_users is not None else p["n_users"])
    if "driver" in p:
        out["driver_peak_rss_mb"] = p["driver"]["peak_mb"]  # the driver only schedules: constant
    return out

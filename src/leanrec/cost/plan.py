"""The planner behind ``leanrec cost plan``: hardware for a target scale, from measurements only.

Inputs are a profile written by ``leanrec cost profile`` (encoder throughput and latency at a
thread budget, model bytes, and an index measured at some catalogue size n0) and a prices
file (:file:`prices.toml` beside this module is the editable example). Nothing is a
constant buried in code: every number in a plan is either measured, read from the prices
file, or derived by one of the scaling laws below, and :attr:`Plan.assumptions` lists each
one in words so the user can disagree with it.

Scaling laws (n0 = profiled items, N = target items):

* memory: process baseline + model bytes + index bytes per item × N (+ user profiles
  held in RAM, users × dim × 4 bytes). Linear in N: vectors and graph links are per item.
* index build time: ∝ N^α with α fitted from the profile's two sizes (n0/10 and n0) when the
  profile has them (``leanrec cost profile --index-items`` measures both); otherwise exact ∝ N,
  HNSW ∝ N·log N (each insertion is a greedy search of cost ∝ log n at fixed
  ef_construction), IVF-PQ ∝ N.
* query latency on one thread: exact ∝ N (a full scan); HNSW ∝ log N at fixed ef_search;
  IVF-PQ ∝ √N (nprobe lists of N / nlist items with nlist ∝ √N).
* serving cores: QPS × CPU-seconds per query ÷ target utilisation, per replica set.
* encoding: items ÷ measured items/s per thread budget; the catalogue within the offline
  window, the daily new items spread over the day.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["Plan", "load_prices", "predict_index", "plan", "parse_count"]

GiB = 1024 ** 3


def parse_count(text: str | int | float) -> int:
    """``"10M"`` -> 10_000_000, ``"200k"`` -> 200_000, ``"2000"`` -> 2000."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower().replace("_", "").replace(",", "")
        mult = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}.get(s[-1:], 1.0)
        num = s[:-1] if s[-1:] in "kmbg" else s
        try:
            value = float(num) * mult
        except ValueError:
            raise ValueError(f"not a count: {text!r} (use e.g. 2000, 200k, 10M)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a count: {text!r} (must be a finite number >= 0)")
    return int(round(value))


def load_prices(path: str | Path | None = None) -> dict:
    """Prices from a TOML file; the packaged example when ``path`` is None."""
    if path is None:
        text = resources.files("leanrec.cost").joinpath("prices.toml").read_text()
        where = "leanrec/cost/prices.toml"
    else:
        where = str(path)
        text = Path(path).read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not valid TOML ({exc})") from None
    required = {"cpu": ("vcpu_hour", "ram_gb_hour"), "disk": ("gb_month",), "gpu": ("hour", "items_per_s"),
                "planning": ("target_utilisation", "replicas", "offline_window_hours")}
    for table, keys in required.items():
        for key in keys:
            value = data.get(table, {}).get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{where}: [{table}] {key} must be a number >= 0, got {value!r}")
    if not 0 < data["planning"]["target_utilisation"] <= 1:
        raise ValueError(f"{where}: [planning] target_utilisation must be in (0, 1]")
    data.setdefault("hours_per_month", 730)
    data.setdefault("currency", "USD")
    data["source"] = where
    return data


def _index_kind(name: str) -> str:
    name = name.lower()
    for kind in ("hnsw", "ivf", "binary", "exact"):
        if kind in name:
            return kind
    return "exact"


def predict_index(index_profile: dict, n_items: int, *, base_rss_bytes: float | None = None) -> dict:
    """Index memory, build time and one-thread query latency at ``n_items``, from a profile at n0.

    ``index_profile`` is a :func:`leanrec.cost.profile.profile_index` result (plus optional
    ``rss_before_bytes``/``peak_rss_bytes`` of the process that built it).
    """
    n0 = int(index_profile["n_items"])
    if n0 < 2 or n_items < 1:
        raise ValueError("index profile and target need at least 2 and 1 items")
    kind = _index_kind(index_profile["name"])
    r = n_items / n0
    log_r = math.log(n_items) / math.log(n0)
    build = {"exact": r, "hnsw": r * log_r, "ivf": r, "binary": r}[kind]
    build_law = {"exact": "∝ N", "hnsw": "∝ N·log N", "ivf": "∝ N", "binary": "∝ N"}[kind]
    cal = index_profile.get("calibration")
    if cal and cal.get("build_s", 0) > 0 and 1 < cal["n_items"] < n0:
        # measured growth beats the textbook law: graph inserts slow down as the graph
        # outgrows the CPU caches, which N·log N does not model
        alpha = math.log(index_profile["build_s"] / cal["build_s"]) / math.log(n0 / cal["n_items"])
        build = r ** alpha
        build_law = f"∝ N^{alpha:.2f} (exponent fitted between {cal['n_items']:,} and {n0:,} items)"
    latency = {"exact": r, "hnsw": log_r, "ivf": math.sqrt(r), "binary": r}[kind]
    out = {"kind": kind, "n0": n0, "n_items": int(n_items),
           "index_bytes": index_profile["index_bytes"] / n0 * n_items,
           "build_s": index_profile["build_s"] * build,
           "p50_ms": index_profile["latency"]["p50_ms"] * latency,
           "p99_ms": index_profile["latency"]["p99_ms"] * latency,
           "mean_ms": index_profile["latency"].get("mean_ms", index_profile["latency"]["p50_ms"]) * latency,
           "laws": {"index_bytes": "∝ N", "build_s": build_law,
                    "latency": {"exact": "∝ N", "hnsw": "∝ log N", "ivf": "∝ √N", "binary": "∝ N"}[kind]}}
    if "peak_rss_bytes" in index_profile and "rss_before_bytes" in index_profile:
        base = index_profile["rss_before_bytes"] if base_rss_bytes is None else base_rss_bytes
        grown = index_profile["peak_rss_bytes"] - index_profile["rss_before_bytes"]
        vec_bytes = index_profile.get("vectors_bytes", 0)
        per_item = (grown + vec_bytes) / n0
        fixed = base - vec_bytes
        out["peak_rss_bytes"] = fixed + per_item * n_items
        out["rss_law"] = "peak RSS = (baseline without vectors) + (vectors + index growth per item) × N"
    return out


@dataclass
class Plan:
    """A sized deployment: resources and monthly cost per part, with every assumption."""

    target: dict
    offline: dict
    online: dict
    cost: dict
    assumptions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"target": self.target, "offline": self.offline, "online": self.online, "cost": self.cost,
                "assumptions": self.assumptions}


def plan(profile: dict, *, items: int, users: int, qps: float, new_items_per_day: int,
         prices: dict | None = None, text: str = "short") -> Plan:
    """Size the offline (encoding) and online (serving) parts for a target scale."""
    prices = prices or load_prices()
    for name, value in (("items", items), ("users", users), ("qps", qps), ("new_items_per_day", new_items_per_day)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    enc = profile.get("encoder")
    idx = profile.get("index_scale")
    if not enc or not idx:
        raise ValueError("the profile needs an 'encoder' and an 'index_scale' section: "
                         "write one with `leanrec cost profile --index-items 100000 --out profile.json`")
    a: list[str] = []
    threads = int(enc["threads"])
    rate = float(enc[f"throughput_{text}"]["items_per_s"])  # items/s with `threads` threads
    per_thread = rate / threads
    a.append(f"encoder: {profile.get('describe', '?')}; measured {rate:,.0f} items/s on {text} texts with "
             f"{threads} thread(s) (batch {enc.get('batch_size')}), i.e. {per_thread:,.0f} items/s per vCPU; "
             "encoding scales linearly with vCPUs (independent batches)")
    plan_ = prices["planning"]
    util, replicas, window = float(plan_["target_utilisation"]), int(plan_["replicas"]), float(plan_["offline_window_hours"])
    hours = float(prices["hours_per_month"])

    # Offline: the full catalogue within the window, plus the daily new items.
    catalogue_core_h = items / per_thread / 3600
    offline_vcpus = max(1, math.ceil(catalogue_core_h / window)) if items else 0
    daily_core_h = new_items_per_day / per_thread / 3600
    a.append(f"offline: the whole catalogue is (re-)encoded within {window:g} h, so "
             f"{catalogue_core_h:,.1f} vCPU-hours -> {offline_vcpus} vCPU(s) for that window; daily new items "
             f"cost {daily_core_h:,.2f} vCPU-hours a day")
    offline_month_vcpu_h = catalogue_core_h + daily_core_h * 30  # one full re-encode a month + daily new items
    a.append("offline billing: one full catalogue encode a month plus 30 days of new items, billed per vCPU-hour")
    gpu = prices["gpu"]
    use_gpu = False
    gpu_month_h = 0.0
    if gpu["items_per_s"] > 0:
        gpu_month_h = (items + 30 * new_items_per_day) / gpu["items_per_s"] / 3600
        use_gpu = gpu_month_h * gpu["hour"] < offline_month_vcpu_h * prices["cpu"]["vcpu_hour"]
        a.append(f"GPU: {gpu['name']} at {gpu['items_per_s']:,.0f} items/s (prices file), {gpu_month_h:,.1f} "
                 f"GPU-hours a month; chosen only if cheaper than the vCPU-hours")
    else:
        a.append("GPU: no measured GPU throughput in the prices file ([gpu] items_per_s = 0), so no GPU is planned")

    # Online: index + profiles in RAM per replica, cores for QPS.
    pred = predict_index(idx, items, base_rss_bytes=idx.get("rss_before_bytes"))
    dim = int(idx["dim"])
    profile_bytes = users * dim * 4
    model_b = float(enc["model_bytes"])
    base = float(idx.get("rss_before_bytes", 0)) - float(idx.get("vectors_bytes", 0))
    ram_replica = base + model_b + pred["index_bytes"] + profile_bytes
    a.append(f"index: {idx['name']} profiled at {idx['n_items']:,} items, {idx['bytes_per_item']:.0f} B/item, "
             f"build {idx['build_s']:.1f} s, p50 {idx['latency']['p50_ms']:.2f} ms, p99 "
             f"{idx['latency']['p99_ms']:.2f} ms on {idx.get('threads', 1)} thread; scaled with memory "
             f"{pred['laws']['index_bytes']}, build {pred['laws']['build_s']}, latency {pred['laws']['latency']}")
    a.append(f"user profiles: {users:,} users × {dim} dims × 4 B (float32) held in RAM = {profile_bytes / GiB:,.1f} GiB")
    a.append(f"process baseline {base / GiB:.2f} GiB + model {model_b / 2**20:.0f} MiB per replica; {replicas} replicas")
    cpu_s_per_query = pred["mean_ms"] / 1e3  # one thread busy for the whole search
    encode_s_per_new_item = enc["latency_short"]["p50_ms"] / 1e3
    online_load = qps * cpu_s_per_query + new_items_per_day / 86400 * encode_s_per_new_item
    serving_vcpus = max(replicas, replicas * math.ceil(online_load / util / replicas)) if qps or new_items_per_day else 0
    a.append(f"serving: {qps:g} QPS × {cpu_s_per_query * 1e3:.2f} ms CPU per query (predicted mean at {items:,} items) "
             f"+ new items encoded online at {encode_s_per_new_item * 1e3:.1f} ms each, at {util:.0%} target "
             f"utilisation -> {serving_vcpus} vCPUs over {replicas} replicas")
    disk_gb = (pred["index_bytes"] + model_b) * replicas / GiB + items * dim * 4 / GiB
    a.append("disk: each replica's persisted index and model, plus one float32 master copy of the item vectors")

    ram_total_gb = ram_replica * replicas / GiB
    cpu = prices["cpu"]
    online_month = serving_vcpus * hours * cpu["vcpu_hour"] + ram_total_gb * hours * cpu["ram_gb_hour"]
    offline_month = (gpu_month_h * gpu["hour"]) if use_gpu else offline_month_vcpu_h * cpu["vcpu_hour"]
    disk_month = disk_gb * prices["disk"]["gb_month"]
    a.append(f"prices from {prices['source']} ({prices['currency']}), {hours:g} hours a month")
    return Plan(
        target={"items": items, "users": users, "qps": qps, "new_items_per_day": new_items_per_day},
        offline={"vcpus_in_window": offline_vcpus, "window_hours": window, "catalogue_vcpu_hours": catalogue_core_h,
                 "daily_new_items_vcpu_hours": daily_core_h, "gpu": use_gpu, "gpu_hours_per_month": gpu_month_h},
        online={"vcpus": serving_vcpus, "replicas": replicas, "ram_gb_per_replica": ram_replica / GiB,
                "ram_gb_total": ram_total_gb, "disk_gb": disk_gb, "predicted_index": pred},
        cost={"currency": prices["currency"], "offline_month": offline_month, "online_month": online_month,
              "disk_month": disk_month, "total_month": offline_month + online_month + disk_month},
        assumptions=a,
    )

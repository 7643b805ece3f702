"""``leanrec cost bench``: measure the whole cost ladder side by side in one run.

Each rung runs in its own worker process (:mod:`leanrec.cost.worker`) so peak memory and
thread pools do not leak between rows; rungs run one after another, never concurrently,
because they share the machine's cores. One-time preparation (ONNX export, static
distillation) happens before any timing, so "load time" is loading a saved encoder, not
building it. The summary puts every row beside the torch fp32 reference measured in the
same run, which is the only comparison this noisy machine supports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .config import PipelineConfig
from ..core.bootstrap import ratio_interval

__all__ = ["prepare_encoders", "run_worker", "run_ladder", "summarise"]

REFERENCE = "torch-fp32"


def prepare_encoders(configs: Sequence[PipelineConfig], progress: Callable[[str], None] | None = None) -> None:
    """Export / distil every encoder the ladder needs once, before anything is timed."""
    import re

    from ..encoders.layer_distill import ensure_distilled
    from .profile import build_encoder

    done = set()
    for cfg in configs:
        match = re.fullmatch(r"minilm-l(\d+)-distilled", cfg.encoder.lower())
        if match:
            if progress:
                progress(f"prepare distilled student ({match.group(1)} layers, up to 10 min once)")
            ensure_distilled(int(match.group(1)))
        if cfg.backend in ("onnx", "static") and cfg.encoder_key not in done:
            if progress:
                progress(f"prepare {cfg.backend} {cfg.precision} {cfg.encoder} layers={cfg.layers}")
            build_encoder(cfg)
            done.add(cfg.encoder_key)


def run_worker(job: dict, *, timeout_s: float = 1800, stderr_line: Callable[[str], None] | None = None) -> dict:
    """Run one job in a fresh Python process and return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="leanrec-bench-") as tmp:
        job_path, out_path = Path(tmp, "job.json"), Path(tmp, "out.json")
        job_path.write_text(json.dumps(job))
        env = dict(os.environ)
        # Idle OpenMP threads must sleep, not spin: spinning threads on a 2-core machine
        # steal the core the measured thread needs (measured: 2 spinning threads cut MiniLM
        # throughput ~4x when another process was busy).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # Every OpenMP runtime (faiss, torch, ONNX Runtime's) reads this at start-up, so a
        # library first imported deep inside a measurement still keeps the thread budget.
        threads = job.get("threads") or (job.get("config") or {}).get("threads") or 1
        env["OMP_NUM_THREADS"] = str(int(threads))
        env.setdefault("HF_HUB_OFFLINE", "1")
        proc = subprocess.Popen([sys.executable, "-m", "leanrec.cost.worker", str(job_path), str(out_path)],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if stderr_line and line.startswith("["):
                stderr_line(line.strip())
        rc = proc.wait(timeout=timeout_s)
        if out_path.exists():
            result = json.loads(out_path.read_text())
        else:
            result = {"error": f"worker exited with {rc} and wrote nothing", "stderr": "".join(lines[-30:])}
        result.setdefault("worker_rc", rc)
        return result


def run_ladder(configs: Sequence[PipelineConfig], *, quality: bool = True, short_n: int = 512, long_n: int = 64,
               repeats: int = 3, latency_n: int = 200, on_row: Callable[[str, dict], None] | None = None,
               on_step: Callable[[str], None] | None = None) -> dict:
    """Measure every configuration; return ``{"rows": [...], "summary": [...], ...}``."""
    from .hardware import machine_info

    t0 = time.perf_counter()
    prepare_encoders(configs, on_step)
    half_lives, tuning = ({"warm": 8.0, "cold": 8.0}, {})
    if quality and configs:
        if on_step:
            on_step("tune the half-life on validation with the reference encoder")
        half_lives, tuning = tune_reference_half_lives(next((c for c in configs if c.name == REFERENCE), configs[0]))
    rows = []
    for cfg in configs:
        job = {"kind": "pipeline", "config": cfg.as_dict(), "quality": quality, "short_n": short_n,
               "long_n": long_n, "repeats": repeats, "latency_n": latency_n, "half_life": half_lives}
        result = run_worker(job, stderr_line=on_step)
        result["name"] = cfg.name
        rows.append(result)
        if on_row:
            on_row(cfg.name, result)
    return {"rows": rows, "summary": summarise(rows), "machine": machine_info(),
            "protocol": {"data": "ml-100k", "seed": 42, "half_life": half_lives, "half_life_validation": tuning,
                         "quality": "test NDCG@10 through the index",
                         "short_texts": short_n, "long_texts": long_n, "long_words": 150, "repeats": repeats,
                         "latency_samples": latency_n},
            "wall_s": time.perf_counter() - t0}


def tune_reference_half_lives(cfg: PipelineConfig) -> tuple[dict, dict]:
    """Half-life per protocol with the best validation NDCG@10 for ``cfg``'s fp32 vectors.

    Tuned once and then fixed for every row, so that rows differ only in their cost knob.
    """
    from ..data import load
    from ..data.split import make_split
    from .profile import pipeline_vectors
    from .quality import tune_half_life

    ds = load("ml-100k")
    vectors = pipeline_vectors(cfg, list(ds.items.texts))
    best, scores = {}, {}
    for protocol in ("warm", "cold"):
        best[protocol], scores[protocol] = tune_half_life(make_split(ds, protocol), vectors)
    return best, scores


def _get(d: dict, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def summarise(rows: list[dict]) -> list[dict]:
    """One flat record per row, with ratios to the torch fp32 reference and to fp32 vectors."""
    by_name = {r["name"]: r for r in rows}
    ref = by_name.get(REFERENCE, {})
    ref_short = _get(ref, "encoder", "throughput_short", "items_per_s")
    ref_long = _get(ref, "encoder", "throughput_long", "items_per_s")
    ref_warm = _get(ref, "quality", "warm", "ndcg@10")
    ref_cold = _get(ref, "quality", "cold", "ndcg@10")
    out = []
    for r in rows:
        cfg = r.get("config", {})
        rec = {"name": r["name"], "error": r.get("error")}
        if r.get("error"):
            out.append(rec)
            continue
        short = _get(r, "encoder", "throughput_short", "items_per_s")
        long_ = _get(r, "encoder", "throughput_long", "items_per_s")
        warm = _get(r, "quality", "warm", "ndcg@10")
        cold = _get(r, "quality", "cold", "ndcg@10")
        # The same encoder with fp32 vectors and an exact index: what a codec/index row costs in quality.
        base = next((b for b in rows if not b.get("error") and b.get("config", {}).get("vectors") == "fp32"
                     and b.get("config", {}).get("index") == "exact"
                     and all(b["config"].get(k) == cfg.get(k) for k in ("encoder", "backend", "precision", "layers"))),
                    None)
        ratio = lambda a, b: (a / b) if (a is not None and b) else None  # noqa: E731

        def interval(other: dict, protocol: str):
            mine = _get(r, "quality", protocol, "per_user_ndcg@10")
            theirs = _get(other or {}, "quality", protocol, "per_user_ndcg@10")
            if mine is None or theirs is None or len(mine) != len(theirs):
                return None
            return list(ratio_interval(np.array(mine), np.array(theirs)))

        rec.update({
            "backend": cfg.get("backend"), "precision": cfg.get("precision"), "layers": cfg.get("layers"),
            "vectors": cfg.get("vectors"), "index": cfg.get("index"), "threads": cfg.get("threads"),
            "items_per_s_short": short, "items_per_s_long": long_,
            "speedup_short": ratio(short, ref_short), "speedup_long": ratio(long_, ref_long),
            "latency_p50_ms": _get(r, "encoder", "latency_short", "p50_ms"),
            "latency_p99_ms": _get(r, "encoder", "latency_short", "p99_ms"),
            "load_s": _get(r, "encoder", "load_s"), "model_mb": (_get(r, "encoder", "model_bytes") or 0) / 2**20,
            "dim": _get(r, "encoder", "dim"),
            "bytes_per_item": _get(r, "quality", "vector_bytes_per_item"),
            "ram_bytes_per_item": _get(r, "quality", "warm", "index", "ram_bytes_per_item",
                                       default=_get(r, "quality", "vector_bytes_per_item")),
            "index_build_ms": 1e3 * (_get(r, "quality", "warm", "index", "build_s") or 0),
            "query_p50_ms": _get(r, "quality", "warm", "index", "latency", "p50_ms"),
            "query_p99_ms": _get(r, "quality", "warm", "index", "latency", "p99_ms"),
            "qps": _get(r, "quality", "warm", "index", "qps_single"),
            "recall@10": _get(r, "quality", "warm", "index", "recall@10"),
            "peak_rss_mb": (r.get("peak_rss_bytes") or 0) / 2**20,
            "warm_ndcg10": warm, "cold_ndcg10": cold,
            "warm_vs_ref": ratio(warm, ref_warm), "cold_vs_ref": ratio(cold, ref_cold),
            "warm_vs_ref_ci": interval(ref, "warm"), "cold_vs_ref_ci": interval(ref, "cold"),
            "warm_vs_fp32": ratio(warm, _get(base or {}, "quality", "warm", "ndcg@10")),
            "cold_vs_fp32": ratio(cold, _get(base or {}, "quality", "cold", "ndcg@10")),
            "warm_vs_fp32_ci": interval(base, "warm"), "cold_vs_fp32_ci": interval(base, "cold"),
            "roofline_short": _get(r, "encoder", "roofline", "short", "fraction"),
            "roofline_long": _get(r, "encoder", "roofline", "long", "fraction"),
            "roof_gflops": _get(r, "encoder", "roofline", "roof_gflops"),
            "wall_s": r.get("wall_s"),
        })
        out.append(rec)
    return out

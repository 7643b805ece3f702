"""Run one measurement in a fresh process: ``python -m leanrec.cost.worker JOB.json OUT.json``.

Why a process per measurement: peak RSS is a process-lifetime number, and a configuration
that imports torch would otherwise make every later ONNX or static row look as heavy as
torch; thread pools and allocator state would leak between rows too. The job file is JSON:

* ``{"kind": "pipeline", "config": {...PipelineConfig...}, "quality": true, "long_n": 64,
  "short_n": 512, "repeats": 3, "latency_n": 200}``
* ``{"kind": "index", "index": "hnsw", "n_items": 100000, "encoder": {...PipelineConfig...},
  "queries": 1000, "threads": 1, "seed": 42}``

The result (or ``{"error": ...}``) is written to OUT.json; progress lines go to stderr so a
parent can show them.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

__all__ = ["long_texts", "run_job", "main"]


def long_texts(n: int, words: int = 150, seed: int = 7) -> list[str]:
    """~``words``-word product texts (title + description) for the long-text throughput."""
    from ..data.products import generate_products, item_text

    return list(item_text(generate_products(n, seed=seed, description_words=words)))


def _pipeline(job: dict) -> dict:
    from ..data import load
    from .config import PipelineConfig
    from .profile import profile_pipeline

    cfg = PipelineConfig.from_dict(job["config"])
    return profile_pipeline(cfg, load("ml-100k"), long_texts(int(job.get("long_n", 64))),
                            quality=bool(job.get("quality", True)), short_n=int(job.get("short_n", 512)),
                            repeats=int(job.get("repeats", 3)), latency_n=int(job.get("latency_n", 200)),
                            half_life=job.get("half_life", 8.0),
                            progress=lambda msg: print(f"[{cfg.name}] {msg}", file=sys.stderr, flush=True))


def _index(job: dict) -> dict:
    from ..vectors import make_index
    from .config import PipelineConfig
    from .hardware import machine_info, peak_rss_bytes
    from .profile import build_encoder
    from .scale import catalogue_vectors, measure_index, user_queries

    cfg = PipelineConfig.from_dict(job["encoder"])
    n = int(job["n_items"])
    seed = int(job.get("seed", 42))
    fit_texts = None
    if cfg.backend == "tfidf":  # a corpus-fitted encoder learns the generated catalogue's vocabulary
        from ..data.products import generate_products

        fit_texts = generate_products(n, seed=seed)["title"].tolist()
    vectors, cats = catalogue_vectors(build_encoder(cfg, fit_texts), n, seed=seed)
    queries, exclude = user_queries(vectors, cats, int(job.get("queries", 1000)), seed=seed)
    threads, latency_n = int(job.get("threads", 1)), int(job.get("latency_n", 1000))
    calibration = None
    if job.get("calibrate", True) and n >= 1000:
        # the same catalogue's first tenth: lets the planner fit how build time grows with N
        small = n // 10
        keep = [e[e < small] for e in exclude]
        calibration = measure_index(make_index(job["index"]), vectors[:small], queries, keep, threads=threads,
                                    latency_n=latency_n)
    out = measure_index(make_index(job["index"]), vectors, queries, exclude, threads=threads, latency_n=latency_n)
    if calibration is not None:
        out["calibration"] = {k: calibration[k] for k in ("n_items", "build_s", "latency", "index_bytes",
                                                          "recall@10")}
    out.update({"spec": job["index"], "encoder": cfg.as_dict(), "machine": machine_info(),
                "process_peak_rss_bytes": int(peak_rss_bytes())})
    return out


def run_job(job: dict) -> dict:
    kind = job.get("kind")
    if kind == "pipeline":
        return _pipeline(job)
    if kind == "index":
        return _index(job)
    raise ValueError(f"job field 'kind': {kind!r} is not 'pipeline' or 'index'")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m leanrec.cost.worker JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    try:
        result = run_job(job)
        rc = 0
    except Exception as exc:  # the parent reports it beside the other rows
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        rc = 1
    Path(args[1]).write_text(json.dumps(result, indent=1, default=float))
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""Index at scale: profile at 100k items, predict 1M with the planner, then measure 1M.

    python benchmarks/index_scale.py [--small 100000] [--large 1000000] [--index hnsw32-ef64]

Vectors: generated product titles (``leanrec data synth``'s generator) encoded with the
static encoder distilled from MiniLM (the only encoder that encodes 1M texts in minutes
on 2 cores). Queries: 1,000 user-like vectors (mean of 10 items of one category, those
excluded). Every measurement runs in its own worker process on one thread. Writes
``benchmarks/results/index_scale.json`` and ``.md`` with prediction beside measurement.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from leanrec.cost.bench import prepare_encoders, run_worker
from leanrec.cost.config import PipelineConfig
from leanrec.cost.plan import predict_index

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--index", default="hnsw")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS / "index_scale")
    args = ap.parse_args()
    enc = PipelineConfig("static", backend="static")
    prepare_encoders([enc])
    t0 = time.perf_counter()
    runs = {}
    for n in (args.small, args.large):
        print(f"measuring {args.index} at {n:,} items ...", flush=True)
        runs[n] = run_worker({"kind": "index", "index": args.index, "n_items": n, "encoder": enc.as_dict(),
                              "threads": 1, "queries": args.queries, "latency_n": args.queries},
                             timeout_s=7200, stderr_line=print)
        if runs[n].get("error"):
            raise SystemExit(f"{n}: {runs[n]['error']}\n{runs[n].get('traceback', '')}")
    small, large = runs[args.small], runs[args.large]
    pred = predict_index(small, args.large)
    rows = [("index bytes (MiB)", pred["index_bytes"] / 2**20, large["index_bytes"] / 2**20),
            ("peak RSS (MiB)", pred["peak_rss_bytes"] / 2**20, large["peak_rss_bytes"] / 2**20),
            ("build time (s)", pred["build_s"], large["build_s"]),
            ("query p50 (ms)", pred["p50_ms"], large["latency"]["p50_ms"]),
            ("query p99 (ms)", pred["p99_ms"], large["latency"]["p99_ms"])]
    table = ["| measure | measured at {:,} | predicted at {:,} | measured at {:,} | predicted ÷ measured |".format(
        args.small, args.large, args.large), "|---|---|---|---|---|"]
    small_vals = [small["index_bytes"] / 2**20, small["peak_rss_bytes"] / 2**20, small["build_s"],
                  small["latency"]["p50_ms"], small["latency"]["p99_ms"]]
    for (label, p, m), s in zip(rows, small_vals):
        table.append(f"| {label} | {s:,.2f} | {p:,.2f} | {m:,.2f} | {p / m:.2f} |")
    table.append(f"| recall@10 vs exact | {small['recall@10']:.3f} | — | {large['recall@10']:.3f} | |")
    table.append(f"| QPS, one thread | {small['qps_single']:,.0f} | — | {large['qps_single']:,.0f} | |")
    wall = time.perf_counter() - t0
    m = large["machine"]
    header = (f"Index {args.index}, static-encoder vectors (dim {large['dim']}) of generated product titles, "
              f"{args.queries} user-like queries, top-10 with 10 seen items excluded, 1 thread. Machine: "
              f"{m.get('cpu_model')}, {m.get('logical_cores')} cores. Laws: {pred['laws']}. Wall time {wall:.0f} s.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"small": small, "large": large, "prediction": pred,
                                                         "wall_s": wall}, indent=1, default=float))
    args.out.with_suffix(".md").write_text(header + "\n\n" + "\n".join(table) + "\n")
    print(header)
    print("\n".join(table))


if __name__ == "__main__":
    main()

"""Exact filtered search in memory: one masked mat-vec over the whole matrix vs gathering the filter's rows.

    python benchmarks/filter_scan.py [--items 1M] [--dim 256] [--reps 15]

Why: ``Catalogue.search`` (exact mode, and the pgvector service's in-memory answer for small
filters, ``pgvector_filter_scan_rows``) must choose between scoring every row and masking,
or gathering the allowed rows and scoring only those. Streaming the contiguous matrix is the
cheapest per row; a gathered row costs more but only the filter's rows are touched.

Protocol: a float32 matrix of unit vectors (seed 42) of ``--items`` rows, one query, filters
of growing size drawn at random (so the gather is scattered, the worst case); for each size
both paths run ``--reps`` times alternately, through ``Catalogue.search`` itself (forced
through each path with ``GATHER_SHARE``), and the medians and their ratio are reported. Both
paths must return the same top-10. Results: ``benchmarks/results/filter_scan.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results"


def main() -> None:
    from leanrec.cost.plan import parse_count
    from leanrec.service.catalogue import Catalogue
    from leanrec.vectors import topk as topk_module  # GATHER_SHARE's home: the exact index's kernels

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", default="1M")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    n, d = parse_count(args.items), args.dim
    t_all = time.perf_counter()
    rng = np.random.default_rng(42)
    V = rng.standard_normal((n, d), dtype=np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    cat = Catalogue(d, index="exact")
    cat.upsert([str(i) for i in range(n)], V, [None] * n, [0.0] * n)
    del V
    q = rng.standard_normal(d).astype(np.float32)
    q /= np.linalg.norm(q)
    rows = []
    saved = topk_module.GATHER_SHARE
    try:
        for size in sorted({s for s in (1_000, 5_000, 25_000, 100_000, 250_000, 500_000) if s < n} | {n // 2}):
            mask = np.zeros(n, bool)
            mask[rng.choice(n, size, replace=False)] = True
            times = {"stream": [], "gather": []}
            answers = {}
            for _ in range(args.reps):
                for path, share in (("stream", n + 1), ("gather", 1)):
                    topk_module.GATHER_SHARE = share  # n // (n + 1) == 0: never gather; n // 1: always
                    t0 = time.perf_counter()
                    pos, _ = cat.search(q, 10, mask=mask)
                    times[path].append((time.perf_counter() - t0) * 1e3)
                    answers[path] = pos.tolist()
            s, g = float(np.median(times["stream"])), float(np.median(times["gather"]))
            rows.append({"filter_rows": size, "share": size / n, "stream_ms": s, "gather_ms": g,
                         "gather_over_stream": g / s, "same_top10": answers["stream"] == answers["gather"]})
    finally:
        topk_module.GATHER_SHARE = saved
    result = {"items": n, "dim": d, "reps": args.reps, "rows": rows, "wall_s": time.perf_counter() - t_all,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "versions": {"python": platform.python_version(), "numpy": np.__version__},
              "gather_share_default": saved}
    OUT.mkdir(exist_ok=True)
    (OUT / "filter_scan.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Exact filtered search over {n:,} × {d} float32: masked stream vs gather", "",
             f"{result['date']} · {result['cpus']} CPUs · numpy {np.__version__} · medians of {args.reps} "
             f"alternating runs · wall {result['wall_s']:.0f} s · `python benchmarks/filter_scan.py`", "",
             "| filter rows | share | stream ms | gather ms | gather / stream | same top-10 |",
             "|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['filter_rows']:,} | {r['share']:.1%} | {r['stream_ms']:.1f} | {r['gather_ms']:.1f} | "
              f"{r['gather_over_stream']:.2f} | {r['same_top10']} |" for r in rows]
    lines += ["", f"`Catalogue.search` gathers when the filter keeps at most 1/{saved} of the rows."]
    (OUT / "filter_scan.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

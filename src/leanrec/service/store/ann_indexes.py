"""The approximate index of each encoder's pgvector table: HNSW or IVFFlat, one at a time.

Built at start-up by :class:`~leanrec.service.pgvector_index.PgVectorIndex` (through
:meth:`AnnIndexes.ensure_ann_index`), never by writes; a bulk load drops it and the next
start builds it again over all rows.
"""

from __future__ import annotations

import logging

from sqlalchemy import text, update

from ..schema import pgvector_encoders, vector_table_name
from .base import StoreError, ident
from .vectors import VectorRows

PGVECTOR_MAX_INDEXED_DIM = 2000  # pgvector's HNSW and IVFFlat limit for the vector type
ANN_KINDS = ("hnsw", "ivfflat")  # pgvector's approximate indexes
# IVFFlat learns its list centroids from the rows present when it is built: below this many
# rows it is not built (the table is scanned exactly, a few ms), so that a service started on
# an empty table does not keep centroids drawn from nothing
IVFFLAT_MIN_ROWS = 10_000
IVFFLAT_STALE_GROWTH = 4  # auto lists: rebuilt at start-up when the auto value has grown this much


def _reloptions(options: list[str] | None) -> dict[str, str]:
    """``pg_class.reloptions`` (``["lists=1000"]``) as a dict."""
    return dict(o.split("=", 1) for o in options or [])


class AnnIndexes(VectorRows):
    """Creates, reads and drops the approximate indexes. Needs ``ann`` (the kind this store
    keeps), ``hnsw_m``, ``hnsw_ef_construction`` and ``ivfflat_lists``, set by the facade's
    constructor (which checks them)."""

    ann: str
    hnsw_m: int
    hnsw_ef_construction: int
    ivfflat_lists: int

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
                conn.execute(text(f"DROP INDEX {ident(conn, stale)}"))
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
            conn.execute(text("SET LOCAL statement_timeout = 0"))  # a build takes minutes: not a request
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            rows = int(conn.execute(text(f"SELECT count(*) FROM {ident(conn, name)}")).scalar())
            want = self.ivfflat_lists or self.ivfflat_lists_for(rows)
            built = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = :i"), {"i": index}).first()
            if built is not None:
                lists = int(_reloptions(built[0]).get("lists", 100))  # 100: pgvector's default
                if self.ivfflat_lists or want < IVFFLAT_STALE_GROWTH * lists:
                    return index
                conn.execute(text(f"DROP INDEX {ident(conn, index)}"))
            if rows < IVFFLAT_MIN_ROWS:
                return None
            conn.execute(text(f"CREATE INDEX {ident(conn, index)} ON {ident(conn, name)} USING ivfflat (embedding vector_ip_ops) "
                              f"WITH (lists = {int(want):d})"))
            conn.execute(text(f"ANALYZE {ident(conn, name)}"))
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
            conn.execute(text("SET LOCAL statement_timeout = 0"))  # a build takes minutes: not a request
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            if conn.execute(text("SELECT 1 FROM pg_indexes WHERE tablename = :t AND indexname = :i"),
                            {"t": name, "i": index}).first() is not None:
                return index
            if not 2 <= m <= 100:
                raise StoreError(f"hnsw_m must be in 2..100 for pgvector, got {m}")
            if efc < 2 * m or efc > 1000:
                raise StoreError(f"hnsw_ef_construction must be in 2 * hnsw_m..1000 for pgvector, "
                                 f"got {efc} with hnsw_m = {m}")
            # identifiers quoted by the dialect, the settings checked integers: nothing user-typed
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {ident(conn, index)} ON {ident(conn, name)} USING hnsw "
                              f"(embedding vector_ip_ops) WITH (m = {m:d}, ef_construction = {efc:d})"))
            conn.execute(update(pgvector_encoders).where(pgvector_encoders.c.encoder_id == encoder_id)
                         .values(hnsw_m=m, hnsw_ef_construction=efc))
            conn.execute(text(f"ANALYZE {ident(conn, name)}"))  # the planner learns the table's size now, not later
        return index

"""Item vectors, in either of their two homes: ``item_vectors`` (float32 bytes, any database)
or, on PostgreSQL with the pgvector extension (migration 0003), one ``vector(d)`` table per
encoder (``schema.vector_table``), which :mod:`~leanrec.service.pgvector_index` searches in
SQL. The store picks the pgvector tables by itself when the extension is installed
(``vectors="auto"``); either way vectors are written in the same transaction as their items.
The approximate indexes of the pgvector tables are :mod:`.ann_indexes`'.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import LargeBinary, String, Text, bindparam, func, select, text
from sqlalchemy.engine import Connection

from ..schema import item_vectors, items, pgvector_encoders, vector_table, vector_table_name
from .base import Database, StoreError, chunks, ident, upsert

VECTOR_MODES = ("auto", "bytes", "pgvector")


class VectorRows(Database):
    """Reads and writes item vectors; decides once per store whether they live in pgvector
    tables. Needs ``vector_mode``, ``_pgvector`` (None until resolved) and ``_vec_tables``
    (encoder id -> Table, this process's cache), set by the facade's constructor."""

    vector_mode: str
    _pgvector: bool | None
    _vec_tables: dict[str, object]

    def migrate(self) -> str | None:
        rev = super().migrate()
        self._pgvector = None  # the migration may just have installed the extension
        if self.vector_mode == "pgvector":
            self.require_pgvector()
        return rev

    # -- where vectors live ------------------------------------------------------------
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

    @staticmethod
    def pgvector_tables(conn: Connection) -> list[tuple[str, str, int]]:
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
        name = table.name
        conn.execute(text(f"ALTER TABLE {ident(conn, name)} ADD COLUMN filter_terms text[]"))
        conn.execute(text(f"UPDATE {ident(conn, name)} AS v SET filter_terms = leanrec_filter_terms(i.fields) "
                          "FROM items AS i WHERE i.item_id = v.item_id"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {ident(conn, name + '_terms')} ON {ident(conn, name)} "
                          "USING gin (filter_terms)"))

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
        for chunk in chunks(rows, 1000):
            conn.execute(stmt, chunk)

    @staticmethod
    def _create_vector_table(conn: Connection, encoder_id: str, dim: int):
        name = vector_table_name(encoder_id)
        table = vector_table(name, dim)
        table.create(conn, checkfirst=True)
        conn.execute(pgvector_encoders.insert().values(encoder_id=encoder_id, table_name=name, dim=dim,
                                                       created_at=time.time()))
        return table

    @classmethod
    def _move_bytes_vectors(cls, conn: Connection, encoder_id: str, table) -> None:
        rows = conn.execute(select(item_vectors.c.item_id, item_vectors.c.vector)
                            .where(item_vectors.c.encoder_id == encoder_id)).all()
        if not rows:
            return
        dim = table.c.embedding.type.dim
        good = [{"item_id": i, "embedding": np.frombuffer(v, np.float32)} for i, v in rows if len(v) == 4 * dim]
        cls._upsert_vectors(conn, table, good)
        conn.execute(item_vectors.delete().where(item_vectors.c.encoder_id == encoder_id))

    # -- writing (inside the caller's transaction) -------------------------------------
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
        for chunk in chunks(rows, 1000):
            upsert(conn, item_vectors, chunk, ["encoder_id", "item_id"], ["vector"])

    def _drop_vectors(self, conn: Connection, item_ids: Sequence[str], keep_encoder: str | None = None) -> None:
        """Delete these items' vectors of every encoder but ``keep_encoder``, in both homes."""
        keep_bytes = keep_encoder if not self.uses_pgvector else None
        tables = [vector_table(t, d) for e, t, d in self.pgvector_tables(conn) if e != keep_encoder]
        for chunk in chunks(list(item_ids)):
            cond = [item_vectors.c.item_id.in_(chunk)]
            if keep_bytes is not None:
                cond.append(item_vectors.c.encoder_id != keep_bytes)
            conn.execute(item_vectors.delete().where(*cond))
            for t in tables:
                conn.execute(t.delete().where(t.c.item_id.in_(chunk)))

    # -- reading and writing on their own ----------------------------------------------
    def vectors(self, encoder_id: str, item_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Stored vectors of one encoder: all of them, or those of ``item_ids``."""
        if self.uses_pgvector:
            return self._pg_vectors(encoder_id, item_ids)
        query = select(item_vectors.c.item_id, item_vectors.c.vector).where(item_vectors.c.encoder_id == encoder_id)
        with self.engine.connect() as conn:
            if item_ids is None:
                return {i: np.frombuffer(v, np.float32) for i, v in conn.execute(query)}
            out: dict[str, np.ndarray] = {}
            for chunk in chunks(list(item_ids)):
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
            for chunk in chunks(list(item_ids)):
                out.update(decode(conn.execute(query.where(table.c.item_id.in_(chunk)))))
            return out

    def put_vectors(self, encoder_id: str, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        self._prepare_vectors(encoder_id, vectors)
        with self.engine.begin() as conn:
            self._write_vectors(conn, encoder_id, list(item_ids), vectors)

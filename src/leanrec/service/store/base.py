"""The store's ground floor: the engine, with the settings the durability promise rests on
(SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk when ``commit()``
returns), the migrations, and the helpers every table family writes with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Connection, Engine, make_url

from .. import migrate


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


def upsert(conn: Connection, table, rows: list[dict], keys: Sequence[str], update_cols: Iterable[str]) -> None:
    """Insert ``rows``, replacing ``update_cols`` of those whose ``keys`` exist (both dialects)."""
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                      set_={c: stmt.excluded[c] for c in update_cols})
    conn.execute(stmt, rows)


def ident(conn, name: str) -> str:
    """``name`` quoted as an SQL identifier by the connection's own dialect (always quoted,
    embedded quotes doubled): the one way a table or index name enters a DDL string, even
    when the name is a fixed hex name or read back from the database's catalog."""
    return conn.dialect.identifier_preparer.quote_identifier(name)


def chunks(seq: Sequence, n: int = 500):
    """Slices of ``n``: an ``IN (...)`` list or an executemany stays within the drivers' limits."""
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class Database:
    """One engine and what concerns the database as a whole: its name, its schema version,
    whether it answers. Every table family of :class:`~leanrec.service.store.Store` builds on
    ``self.engine`` (set by the facade's constructor)."""

    url: str
    engine: Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> str | None:
        try:
            return migrate.upgrade(self.engine)
        except Exception as exc:
            raise StoreError(f"cannot migrate the store {self.describe()}: {exc}") from exc

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

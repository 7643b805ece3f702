"""The store's ground floor: the engine, with the settings the durability promise rests on
(SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk when ``commit()``
returns), the migrations, and the helpers every table family writes with.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from .. import migrate


class StoreError(RuntimeError):
    """The database cannot be reached or is not a leanrec store."""


# the password of a URL that make_url cannot parse: scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"^[^:/]+://[^:/@]*:([^@]*)@")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: the one form in which a database URL
    is printed, logged or returned (unparsable URLs too)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):  # not a URL SQLAlchemy parses: hide what sits where a password would
        return _URL_PASSWORD.sub(lambda m: m.group(0).replace(":" + m.group(1) + "@", ":***@"), url)


def scrub(message: str, url: str) -> str:
    """``message`` without the password of ``url`` (a driver or parser error may quote it)."""
    m = _URL_PASSWORD.match(url)
    password = m.group(1) if m else None
    with contextlib.suppress(sa_exc.ArgumentError, ValueError):
        password = make_url(url).password or password
    message = message.replace(url, redact_url(url))
    return message.replace(password, "***") if password else message


# what a DBAPI error says when the database cannot take the request now but may later:
# locked or busy (SQLite), out of space, failing disk, a connection refused, lost or timed out
_UNAVAILABLE = (("locked", "the database is locked by another writer"),
                ("busy", "the database is busy"),
                ("disk is full", "the database's disk is full"),
                ("no space", "the database's disk is full"),
                ("disk i/o", "the database's disk failed to read or write (I/O error)"),
                ("statement timeout", "a database statement timed out"),
                ("canceling statement", "a database statement timed out"),
                ("connection", "the database connection failed or was lost"),
                ("server closed", "the database connection failed or was lost"),
                ("timeout", "the database did not answer in time"),
                ("timed out", "the database did not answer in time"))


def unavailable_reason(exc: BaseException) -> str | None:
    """A short, safe sentence (no SQL, no parameters, no ids) when ``exc`` means the database
    is unusable for now — locked, busy, full, an I/O error, unreachable or closed — else
    None (a bug or a constraint: not something a retry fixes)."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return "no database connection came free in time"
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return "the database connection failed or was lost"
        orig = exc.orig
    elif isinstance(exc, StoreError) and isinstance(exc.__cause__, (sa_exc.DBAPIError, sa_exc.TimeoutError)):
        return unavailable_reason(exc.__cause__)
    else:
        orig = exc
    name = type(orig).__name__
    if name not in ("OperationalError", "InterfaceError", "QueryCanceled", "ConnectionTimeout",
                    "ConnectionException", "AdminShutdown", "CannotConnectNow", "DiskFull", "IoError"):
        return None
    text = str(orig).lower()
    for needle, reason in _UNAVAILABLE:
        if needle in text:
            return reason
    return "the database cannot take requests now"


def make_engine(url: str, *, busy_timeout_s: float = 30.0, connect_timeout_s: float | None = None,
                statement_timeout_s: float | None = None) -> Engine:
    """An engine with the settings leanrec relies on (WAL + full sync for SQLite files).

    ``busy_timeout_s``: how long a SQLite write waits for another writer's lock before it
    fails with "database is locked". PostgreSQL: ``connect_timeout_s`` bounds opening a
    connection, ``statement_timeout_s`` every statement (None or 0: no limit)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        busy_ms = max(0, round(float(busy_timeout_s) * 1000))
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": busy_ms / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised through every test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms:d}")
            cur.close()

        return engine
    if u.get_backend_name() == "postgresql":
        if u.drivername == "postgresql":  # plain postgresql:// -> the psycopg 3 driver we ship
            u = u.set(drivername="postgresql+psycopg")
        connect_args: dict = {}
        if connect_timeout_s:  # libpq: whole seconds, at least 2
            connect_args["connect_timeout"] = max(2, round(float(connect_timeout_s)))
        if statement_timeout_s:
            connect_args["options"] = f"-c statement_timeout={max(1, round(float(statement_timeout_s) * 1000)):d}"
        return create_engine(u, pool_size=8, max_overflow=8, pool_pre_ping=True, connect_args=connect_args)
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
            raise StoreError(f"cannot migrate the store {self.describe()}: {self.safe_error(exc)}") from exc

    fault: tuple[float, str] | None

    def watch_faults(self) -> None:
        """Record in ``fault`` every error that means the database is unusable for now
        (:func:`unavailable_reason`), whichever statement met it; :meth:`clear_fault` after
        a write succeeds. Readiness reads it: a full disk fails writes while reads succeed."""
        @event.listens_for(self.engine, "handle_error")
        def _fault(ctx):
            reason = unavailable_reason(ctx.sqlalchemy_exception or ctx.original_exception)
            if reason is not None:
                self.fault = (time.monotonic(), reason)

    def clear_fault(self) -> None:
        self.fault = None

    def recent_fault(self, within_s: float) -> str | None:
        """Why the database last failed, if that was less than ``within_s`` seconds ago."""
        fault = self.fault
        return fault[1] if fault is not None and time.monotonic() - fault[0] < within_s else None

    def connection_error(self) -> str | None:
        """None when the database answers a query, else why not (for readiness and preflight)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except Exception as exc:  # any driver error means "not reachable"
            return self.safe_error(exc)
        return None

    def write_error(self, wait_s: float = 0.25) -> str | None:
        """None when a write could start now, else why not: :meth:`connection_error`, and on
        SQLite whether the write lock can be taken within ``wait_s`` (a reader's ``SELECT 1``
        succeeds while another connection holds ``BEGIN EXCLUSIVE``). Writes nothing."""
        error = self.connection_error()
        if error is not None or self.dialect != "sqlite":
            return error
        try:
            with self.engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                old = raw.execute("PRAGMA busy_timeout").fetchone()[0]
                raw.execute(f"PRAGMA busy_timeout={max(0, int(wait_s * 1000)):d}")
                try:
                    if raw.in_transaction:
                        raw.rollback()
                    raw.execute("BEGIN IMMEDIATE")
                    raw.rollback()
                finally:
                    raw.execute(f"PRAGMA busy_timeout={int(old):d}")
        except Exception as exc:  # noqa: BLE001 - any driver error means "cannot write now"
            return self.safe_error(exc)
        return None

    def safe_error(self, exc: BaseException) -> str:
        """What went wrong, for an operator (preflight, a log, ``/readyz``): the driver's own
        message — without SQLAlchemy's SQL and parameters, and without the URL's password."""
        orig = getattr(exc, "orig", None) or exc
        return scrub(" ".join(str(orig).split()) or type(orig).__name__, self.url)

    def close(self) -> None:
        self.engine.dispose()

"""The SQLite store behind the embedding cache: float32 vectors keyed by ``(model_id, sha256(text))``.

Why this module exists: :class:`~leanrec.encoders.cache.CachedEncoder` decides *what* to
look up and store; this module is the one place that knows *how* vectors are kept on
disk, where the file lives and what a key is.

Why this design:

* The key is the encoder's ``model_id`` plus :func:`text_hash` of the text exactly as
  given: no stripping or case folding, because the encoder might see the difference.
* SQLite (stdlib) in WAL mode: one file, safe for several processes at once; readers
  never block, writers wait up to ``timeout`` seconds for each other.
* Rows are checked on read (byte length matches ``dim``, values finite, norm 1 or 0);
  a bad row is treated as missing, so the caller recomputes it and the fresh vector
  replaces it. A file that is not a SQLite database at all is moved aside
  (``*.corrupt-<time>``, with a ``RuntimeWarning``) and a new one started: it is a
  cache, so nothing is lost.

Default location: ``$LEANREC_CACHE_DIR/embeddings.sqlite`` if that variable is set,
otherwise ``platformdirs.user_cache_dir("leanrec")/embeddings.sqlite``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "CACHE_FILENAME",
    "EmbeddingCache",
    "default_cache_dir",
    "default_cache_path",
    "text_hash",
]

CACHE_FILENAME = "embeddings.sqlite"

# The schema version is in the table name, so a future layout can live beside this one
# in the same file instead of requiring a migration.
_TABLE = "embeddings_v1"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    model_id  TEXT    NOT NULL,
    text_hash BLOB    NOT NULL,  -- sha256(text.encode('utf-8')), 32 bytes
    dim       INTEGER NOT NULL,
    vector    BLOB    NOT NULL,  -- little-endian float32[dim]
    PRIMARY KEY (model_id, text_hash)
) WITHOUT ROWID
"""
# Stay far below SQLite's bound-parameter limit (999 in old builds).
_CHUNK = 500
_NORM_TOLERANCE = 1e-3

T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$LEANREC_CACHE_DIR`` if set and non-empty, else the per-user cache folder."""
    from leanrec.paths import cache_dir

    return cache_dir()


def default_cache_path() -> Path:
    """Where :class:`EmbeddingCache` lives when given no path."""
    return default_cache_dir() / CACHE_FILENAME


def text_hash(text: str) -> bytes:
    """The cache key of a text: sha256 of its UTF-8 bytes (32 raw bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def _valid_vector(dim: Any, blob: Any) -> np.ndarray | None:
    """Decode a stored row, or return None if it cannot be a vector we wrote."""
    if not isinstance(dim, int) or dim < 1 or not isinstance(blob, bytes) or len(blob) != 4 * dim:
        return None
    vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    if not np.isfinite(vec).all():
        return None
    norm = float(np.linalg.norm(vec.astype(np.float64)))
    if norm != 0.0 and abs(norm - 1.0) > _NORM_TOLERANCE:
        return None
    return vec


class EmbeddingCache:
    """SQLite store of float32 vectors keyed by ``(model_id, sha256(text))``.

    ``path`` is the database file; an existing folder means ``folder/embeddings.sqlite``;
    ``None`` means :func:`default_cache_path` (read when the cache is created). Parent
    folders are created on first use. The connection opens lazily, is shared by threads
    (a lock serialises them) and is reopened after a ``fork``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 30.0) -> None:
        target = default_cache_path() if path is None else Path(path).expanduser()
        if target.is_dir():
            target = target / CACHE_FILENAME
        self.path = target
        self.timeout = float(timeout)
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"

    # -- connection handling ----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # After a fork the inherited connection must not be used (or closed) by the child.
        self._conn = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL cannot corrupt the file on power loss; at worst it drops the
            # last transactions, which for a cache just means recomputing them.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _quarantine(self) -> Path:
        """Move a corrupt database (and its WAL/SHM side files) out of the way."""
        if self._conn is not None and self._pid == os.getpid():
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn = None
        dest = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, dest)
        except FileNotFoundError:
            pass
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            try:
                side.unlink()
            except FileNotFoundError:
                pass
        warnings.warn(
            f"embedding cache {self.path} was corrupt; moved it to {dest} and started a new one",
            RuntimeWarning,
            stacklevel=4,
        )
        return dest

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection; recover once from a corrupt database file."""
        with self._lock:
            try:
                return fn(self._connect())
            except sqlite3.OperationalError:
                # Locked, read-only, disk full...: not corruption; let the caller decide.
                raise
            except sqlite3.DatabaseError:
                # "file is not a database" / "database disk image is malformed".
                self._quarantine()
                return fn(self._connect())

    def close(self) -> None:
        """Close the connection (it reopens if the cache is used again)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Connections and locks do not pickle; the copy reconnects lazily.
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"])  # type: ignore[misc]

    # -- data -------------------------------------------------------------------------

    def get_many(self, model_id: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Return ``{hash: vector}`` for the valid stored rows among ``hashes``.

        Rows that fail validation (wrong byte length for their ``dim``, NaN/inf, norm
        neither 1 nor 0) are left out, so the caller recomputes and overwrites them.
        """
        keys = list(dict.fromkeys(hashes))

        def query(conn: sqlite3.Connection) -> dict[bytes, np.ndarray]:
            found: dict[bytes, np.ndarray] = {}
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT text_hash, dim, vector FROM {_TABLE} "
                    f"WHERE model_id = ? AND text_hash IN ({marks})",
                    [model_id, *chunk],
                )
                for key, dim, blob in rows:
                    vec = _valid_vector(dim, blob)
                    if vec is not None:
                        found[bytes(key)] = vec
            return found

        return self._run(query) if keys else {}

    def put_many(self, model_id: str, items: Iterable[tuple[bytes, np.ndarray]]) -> int:
        """Insert or replace ``(hash, vector)`` rows in one transaction; return the count."""
        rows = []
        for key, vec in items:
            arr = np.ascontiguousarray(vec, dtype="<f4").reshape(-1)
            rows.append((model_id, bytes(key), int(arr.shape[0]), arr.tobytes()))
        if not rows:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f"INSERT OR REPLACE INTO {_TABLE} (model_id, text_hash, dim, vector) VALUES (?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return len(rows)

        return self._run(write)

    def count(self, model_id: str | None = None) -> int:
        """Number of stored rows, for one model or all."""
        if model_id is None:
            return self._run(lambda c: c.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0])
        return self._run(
            lambda c: c.execute(f"SELECT COUNT(*) FROM {_TABLE} WHERE model_id = ?", (model_id,)).fetchone()[0]
        )

    def model_ids(self) -> list[str]:
        """The distinct model ids with stored rows (e.g. for a ``cache info`` command)."""
        return self._run(
            lambda c: [r[0] for r in c.execute(f"SELECT DISTINCT model_id FROM {_TABLE} ORDER BY model_id")]
        )

    def delete(self, model_id: str | None = None) -> int:
        """Delete the rows of one model, or every row; return how many were deleted."""
        if model_id is None:
            return self._run(lambda c: c.execute(f"DELETE FROM {_TABLE}").rowcount)
        return self._run(lambda c: c.execute(f"DELETE FROM {_TABLE} WHERE model_id = ?", (model_id,)).rowcount)

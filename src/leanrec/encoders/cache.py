"""On-disk embedding cache, so a catalogue is encoded once per model, not once per run.

Encoding is the expensive step of a language-model recommender on a CPU (tens of
seconds for a few thousand items, minutes for a large catalogue), yet item texts rarely
change between runs. :class:`EmbeddingCache` stores vectors in SQLite keyed by
``(model_id, sha256(text))``; :class:`CachedEncoder` wraps any
:class:`~leanrec.encoders.base.Encoder`, looks every text up, encodes only what is
missing and stores it.

Why this design:

* The key uses the encoder's ``model_id``, which changes whenever the vectors would
  (weights fingerprint, fitted TF-IDF state, options), so a cache can never serve a
  vector computed by a different model. The text is hashed exactly as given: no
  stripping or case folding, because the encoder might see the difference.
* SQLite (stdlib) in WAL mode: one file, safe for several processes at once; readers
  never block, writers wait up to ``timeout`` seconds for each other.
* Rows are checked on read (byte length matches ``dim``, values finite, norm 1 or 0);
  a bad row is treated as missing and recomputed, and the fresh vector replaces it. A
  file that is not a SQLite database at all is moved aside (``*.corrupt-<time>``, with a
  ``RuntimeWarning``) and a new one started: it is a cache, so nothing is lost.
* A cache that cannot be read or written (read-only disk, lock held too long) never
  fails the computation: :class:`CachedEncoder` warns and returns the freshly computed
  vectors.

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

from leanrec.encoders.base import (
    Encoder,
    ProgressCallback,
    check_batch_size,
    empty_embeddings,
    validate_texts,
)

__all__ = [
    "CACHE_DIR_ENV",
    "CACHE_FILENAME",
    "CachedEncoder",
    "EmbeddingCache",
    "default_cache_dir",
    "default_cache_path",
    "text_hash",
]

from leanrec.paths import CACHE_DIR_ENV  # noqa: E402  (re-exported)
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


class CachedEncoder:
    """An :class:`~leanrec.encoders.base.Encoder` that reuses vectors from an :class:`EmbeddingCache`.

    ``encode`` hashes every text, looks the distinct ones up, sends only the missing
    distinct texts to the wrapped encoder, stores the results and returns all rows in
    input order. The output is bit-for-bit what the wrapped encoder returned when it
    computed each vector, so cached and uncached runs agree exactly.

    Counters, all in *distinct* texts (a text repeated in one call counts once):

    * ``hits`` / ``misses``: served from the cache / computed by the wrapped encoder, in
      the **last** call to ``encode``;
    * ``total_hits`` / ``total_misses``: the same, cumulative over this object's life.

    A call whose texts are all cached never touches the wrapped encoder beyond
    ``model_id``, so e.g. a sentence-transformer's weights are not even loaded.

    ``cache`` may be an :class:`EmbeddingCache`, a path, or ``None`` for the default
    location.
    """

    def __init__(
        self,
        encoder: Encoder,
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
    ) -> None:
        self.encoder = encoder
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.hits = 0
        self.misses = 0
        self.total_hits = 0
        self.total_misses = 0
        self._dims: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, {self.cache!r})"

    @property
    def model_id(self) -> str:
        """Same as the wrapped encoder's: the cache does not change the vectors."""
        return self.encoder.model_id

    @property
    def dim(self) -> int:
        """The wrapped encoder's ``dim``, or the width already seen for this model_id."""
        known = self._dims.get(self.encoder.model_id)
        return known if known is not None else int(self.encoder.dim)

    # -- cache access that never fails the computation --------------------------------

    def _lookup(self, model_id: str, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        try:
            return self.cache.get_many(model_id, keys)
        except (sqlite3.Error, OSError) as exc:
            warnings.warn(
                f"embedding cache {self.cache.path} unreadable, encoding without it: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            return {}

    def _store(self, model_id: str, keys: list[bytes], vectors: np.ndarray) -> None:
        try:
            self.cache.put_many(model_id, zip(keys, vectors))
        except (sqlite3.Error, OSError) as exc:
            warnings.warn(f"embedding cache {self.cache.path} not updated: {exc}", RuntimeWarning, stacklevel=3)

    def _compute(self, texts: list[str], batch_size: int | None, progress: ProgressCallback | None) -> np.ndarray:
        vecs = np.asarray(self.encoder.encode(texts, batch_size=batch_size, progress=progress))
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise ValueError(f"wrapped encoder returned shape {vecs.shape} for {len(texts)} texts")
        return vecs.astype(np.float32, copy=False)

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``float32[len(texts), dim]``, encoding only texts not yet cached.

        ``batch_size`` is passed to the wrapped encoder. ``progress`` receives counts of
        input positions: one call for everything served from the cache, then the wrapped
        encoder's progress scaled to the positions its distinct texts cover; the calls
        sum to ``len(texts)``.
        """
        docs = validate_texts(texts)
        if batch_size is not None:
            # Checked here too so a bad value fails even when everything is cached.
            check_batch_size(batch_size, 1)
        self.hits = self.misses = 0
        if not docs:
            return empty_embeddings(self.dim)
        model_id = self.encoder.model_id
        keys = [text_hash(t) for t in docs]
        first: dict[bytes, int] = {}
        multiplicity: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
            multiplicity[key] = multiplicity.get(key, 0) + 1
        uniq = list(first)

        found = self._lookup(model_id, uniq)
        dims = {v.shape[0] for v in found.values()}
        if len(dims) > 1:
            # Rows of several widths under one model_id: only the encoder can say which
            # is right; the others get recomputed.
            true_dim = int(self.encoder.dim)
            found = {k: v for k, v in found.items() if v.shape[0] == true_dim}
        missing = [k for k in uniq if k not in found]

        if progress is not None and found:
            progress(sum(multiplicity[k] for k in found))

        computed: dict[bytes, np.ndarray] = {}
        if missing:
            scaled = _ScaledProgress(progress, len(missing), sum(multiplicity[k] for k in missing))
            vecs = self._compute(
                [docs[first[k]] for k in missing], batch_size, scaled if progress is not None else None
            )
            scaled.finish()
            computed.update(zip(missing, vecs))
            dim = vecs.shape[1]
            stale = [k for k, v in found.items() if v.shape[0] != dim]
            if stale:
                # Cached rows of another width: this model_id's output changed shape
                # (or the rows are corrupt); recompute them too.
                redo = self._compute([docs[first[k]] for k in stale], batch_size, None)
                computed.update(zip(stale, redo))
                for k in stale:
                    del found[k]
            new_keys = list(computed)
            self._store(model_id, new_keys, np.stack([computed[k] for k in new_keys]))
        else:
            dim = next(iter(found.values())).shape[0]

        self._dims[model_id] = dim
        self.hits, self.misses = len(found), len(computed)
        self.total_hits += self.hits
        self.total_misses += self.misses

        table = {**found, **computed}
        unique_matrix = np.stack([table[k] for k in uniq]).astype(np.float32, copy=False)
        position = {k: j for j, k in enumerate(uniq)}
        return unique_matrix[[position[k] for k in keys]]


class _ScaledProgress:
    """Turn the wrapped encoder's progress (distinct texts) into input positions.

    Duplicated texts are encoded once but occupy several positions, so each report is
    scaled by ``positions / distinct``; the remainder is flushed at the end in case the
    wrapped encoder under-reports.
    """

    def __init__(self, progress: ProgressCallback | None, distinct: int, positions: int) -> None:
        self.progress = progress
        self.distinct = distinct
        self.positions = positions
        self.done = 0
        self.reported = 0

    def __call__(self, k: int) -> None:
        self.done = min(self.distinct, self.done + int(k))
        self._emit(self.done * self.positions // self.distinct)

    def _emit(self, target: int) -> None:
        if self.progress is not None and target > self.reported:
            delta = target - self.reported
            self.reported = target
            self.progress(delta)

    def finish(self) -> None:
        self._emit(self.positions)

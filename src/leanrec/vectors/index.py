"""Vector indexes: the top-k items for each user vector, exact or approximate.

Every index follows :class:`VectorIndex`, so a recommender (the batch jobs, the cost tools,
the service's catalogue) can swap brute force for HNSW, IVF-PQ or PostgreSQL's pgvector and
measure what it costs in recall:

* ``build(vectors) -> self`` over item vectors ``float32[n, d]`` (positions ``0..n-1``);
  ``add(vectors)`` appends more, positions continuing;
* ``remove(positions)`` tombstones items: a removed position never comes back from a
  search, keeps its number (positions are never reused) and still counts in ``n_items``;
  ``n_alive`` counts the rest, ``alive`` is the ``bool[n_items]`` mask of them;
* ``search(queries, k, *, exclude=None, allowed=None) -> (positions int64[q, k],
  scores float32[q, k])`` by maximum inner product (queries are weighted means of item
  vectors, not unit norm). Each row is sorted by score, best first, ties broken by lower
  position. ``exclude[i]`` (a user's seen items) are never returned for query ``i``;
  ``allowed`` (``bool[n_items]``, a filter shared by all queries) keeps out every position
  where it is False. When fewer than ``k`` items remain, the row is padded with position
  ``-1`` and score ``-inf``. ``search_one(query, k, *, exclude=None, allowed=None)`` is one
  such row without its padding: the service's request, answered by the exact and HNSW
  indexes on their kernels with no per-call overhead beyond cheap checks;
* ``n_items``, ``nbytes`` (measured: the arrays' or the faiss serialisation's size),
  ``name`` (a :func:`~leanrec.vectors.factory.make_index` spec) and ``config``;
  ``save(folder)`` / ``Class.load(folder)`` or :func:`~leanrec.vectors.factory.load_index`.

:class:`~leanrec.vectors.exact.ExactIndex` is the reference; the approximate ones live in
:mod:`~leanrec.vectors.faiss_index` and :mod:`~leanrec.vectors.binary`. By default an
index handles ``exclude``, ``allowed`` and tombstones by over-fetching candidates,
filtering, and fetching more for the rows still short (see :meth:`_BaseIndex._search`);
the exact and HNSW indexes filter inside the scan instead (a mask, a faiss bitmap), which
is what the service's single-query searches run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..core.errors import NotFittedError
from ._base import (
    Params,
    check_matrix,
    check_positive_int,
    load_array,
    read_config,
    save_arrays,
    write_config,
)

__all__ = ["VectorIndex", "recall_at_k"]


@runtime_checkable
class VectorIndex(Protocol):
    """Top-k maximum-inner-product search over item vectors; see the module docstring."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def n_items(self) -> int: ...
    @property
    def n_alive(self) -> int: ...
    @property
    def alive(self) -> np.ndarray: ...
    @property
    def nbytes(self) -> int: ...

    def build(self, vectors: np.ndarray) -> "VectorIndex": ...
    def add(self, vectors: np.ndarray) -> "VectorIndex": ...
    def remove(self, positions: Sequence[int] | np.ndarray) -> "VectorIndex": ...
    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[Any] | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def search_one(self, query: np.ndarray, k: int, *, exclude: np.ndarray | None = None,
                   allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def save(self, folder: str | os.PathLike) -> Path: ...


class _BaseIndex(Params):
    """Checks, tombstones, exclusion filtering and persistence around
    ``_build``/``_add``/``_candidates``.

    Tombstones are a ``bool`` buffer allocated at the first :meth:`remove` (an index that
    never removes anything pays no byte and no mask), grown with the index; ``_changes``
    counts adds and removals so that subclasses can cache what derives from them.
    """

    _live: np.ndarray | None = None  # capacity-grown buffer; alive = _live[:n_items]
    _n_dead = 0
    _changes = 0

    # -- hooks ----------------------------------------------------------------------
    def _build(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _add(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _candidates(self, queries: np.ndarray, fetch: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``fetch`` best items per query as ``(positions, scores)`` ``[q, fetch]``,
        sorted by :func:`~leanrec.vectors.topk.sort_results`, ``-1`` where the index found fewer."""
        raise NotImplementedError

    def _n_items(self) -> int:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------
    def build(self, vectors, y=None):
        """Index the item vectors (float32 ``[n, d]``; row i is item position i); returns self."""
        vectors = check_matrix(vectors, "vectors")
        self._check_params(vectors)
        self.dim_ = int(vectors.shape[1])
        self._live, self._n_dead, self._changes = None, 0, self._changes + 1
        self._build(vectors)
        return self

    fit = build  # scikit-learn spelling

    def add(self, vectors):
        """Append items; their positions continue from ``n_items``. Returns self."""
        self._check_built()
        vectors = check_matrix(vectors, "vectors", dim=self.dim_, allow_empty=True)
        if len(vectors):
            self._add(vectors)
            self._changes += 1
            live, n = self._live, self.n_items
            if live is not None and len(live) < n:  # new positions are alive: grow by doubling
                grown = np.ones(max(n, 2 * len(live)), bool)
                grown[:len(live)] = live
                self._live = grown
        return self

    def remove(self, positions):
        """Tombstone these positions (repeats and already-removed ones are fine); returns self.

        A removed item is never returned again; its position is not reused and the index
        structure keeps it (an HNSW graph still routes through it), until a rebuild."""
        self._check_built()
        n = self.n_items
        pos = np.asarray(positions).reshape(-1)
        if pos.size == 0:
            return self
        if not np.issubdtype(pos.dtype, np.integer):
            raise ValueError(f"positions to remove must be integers, got {pos.dtype}")
        if pos.min() < 0 or pos.max() >= n:
            raise ValueError(f"positions to remove must lie in 0..{n - 1}, got {int(pos.min())}..{int(pos.max())}")
        if self._live is None:
            self._live = np.ones(n, bool)
        pos = np.unique(pos)
        fresh = pos[self._live[pos]]
        self._live[fresh] = False
        self._n_dead += len(fresh)
        self._changes += 1
        return self

    def _check_params(self, vectors: np.ndarray) -> None:
        pass

    def _check_built(self) -> None:
        if not hasattr(self, "dim_"):
            raise NotFittedError(f"{type(self).__name__} is not built: call build(vectors) first")

    @property
    def dim(self) -> int:
        self._check_built()
        return self.dim_

    @property
    def n_items(self) -> int:
        """Positions handed out so far, removed ones included."""
        self._check_built()
        return int(self._n_items())

    @property
    def n_alive(self) -> int:
        """Positions not removed."""
        return self.n_items - self._n_dead

    @property
    def alive(self) -> np.ndarray:
        """``bool[n_items]``: True where not removed. A view of the tombstone buffer (made
        here if no removal made it yet, so that a caller asking on every request, as the
        service does, gets a view rather than a fresh array); do not write to it."""
        n = self.n_items
        if self._live is None:
            self._live = np.ones(n, bool)
        return self._live[:n]

    def _allowed_mask(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """``alive & allowed`` as a fresh array, or None when every position is allowed."""
        if allowed is None:
            return None if self._n_dead == 0 else self.alive.copy()
        return allowed & self.alive if self._n_dead else allowed.copy()

    @property
    def config(self) -> dict[str, Any]:
        """JSON-safe description: class, spec name and constructor parameters."""
        return {"class": type(self).__name__, "name": self.name, "params": self._json_params()}

    def _json_params(self) -> dict[str, Any]:
        return self.get_params()

    def search(self, queries, k: int, *, exclude=None, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` positions and scores per query; see the module docstring."""
        self._check_built()
        queries, k, excl, allowed = check_search(queries, k, self.dim_, self.n_items, exclude, allowed)
        if len(queries) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return self._search(queries, k, excl, allowed)

    def search_one(self, query, k: int, *, exclude=None, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """One query ``[d]``, its exclusions as one position array: the best ``min(k,
        allowed items)`` as ``(positions int64[m], scores float32[m])``, no padding; the same
        answer as row 0 of :meth:`search`. This is the service's request: the exact and HNSW
        indexes answer it on their kernels, with only the checks that cost no pass over the
        data (a request's cost was measured in tens of microseconds before the protocol)."""
        q = np.asarray(query, np.float32).reshape(1, -1)
        pos, sc = self.search(q, k, exclude=None if exclude is None else [exclude], allowed=allowed)
        keep = pos[0] >= 0
        return pos[0][keep], sc[0][keep]

    def _check_one(self, query, k, allowed) -> tuple[np.ndarray, int]:
        """:meth:`search_one`'s checks: built, ``k``, the query's width and finiteness (its
        sum: one pass over d numbers), ``allowed``'s shape. Returns (float32 query [d], k)."""
        if not hasattr(self, "dim_"):
            self._check_built()
        if type(k) is not int or k < 1:
            k = check_positive_int(k, "k")
        if type(query) is not np.ndarray or query.dtype != np.float32:
            query = np.asarray(query, np.float32)
        q = query.reshape(-1)  # a view of a contiguous query, else a contiguous copy
        if len(q) != self.dim_:
            raise ValueError(f"query has {len(q)} dimensions, expected {self.dim_}")
        if not math.isfinite(q.sum()):
            raise ValueError("query contains NaN or infinite values")
        if allowed is not None:
            check_allowed(allowed, self.n_items)
        return q, k

    def _search(self, queries: np.ndarray, k: int, excl: list[np.ndarray] | None,
                allowed: np.ndarray | None):
        """Over-fetch, filter the excluded, removed and not allowed, fetch more for rows
        still short of ``k``.

        Starts at ``k + max(len(exclude_i))`` candidates (enough if the index returned
        the true top list), scaled up by ``n_items / allowed items`` when tombstones or
        ``allowed`` keep some out, and doubles, for the short rows only, until each row has
        ``k`` eligible items, the index returns fewer than asked (it found all it can),
        or the whole catalogue was asked for.
        """
        n = self.n_items
        nq = len(queries)
        max_ex = max((len(e) for e in excl), default=0) if excl is not None else 0
        eligible = self._allowed_mask(allowed)
        share = 1.0 if eligible is None else n / max(1, int(np.count_nonzero(eligible)))
        fetch = min(n, int(np.ceil((k + max_ex) * share)))
        out_p = np.full((nq, k), -1, np.int64)
        out_s = np.full((nq, k), -np.inf, np.float32)
        todo = np.arange(nq)
        while len(todo):
            pos, sc = self._candidates(queries[todo], fetch, k)
            found = pos >= 0
            keep = found.copy()
            if excl is not None:
                keep &= ~_excluded_mask(pos, [excl[i] for i in todo], n)
            if eligible is not None:
                keep &= eligible[np.where(found, pos, 0)]
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            p = np.take_along_axis(pos, order, axis=1)
            s = np.take_along_axis(sc, order, axis=1)
            ok = np.take_along_axis(keep, order, axis=1)
            width = p.shape[1]
            out_p[todo, :width] = np.where(ok, p, -1)
            out_s[todo, :width] = np.where(ok, s, -np.inf)
            done = (keep.sum(axis=1) >= k) | (found.sum(axis=1) < fetch) | (fetch >= n)
            todo = todo[~done]
            fetch = min(n, fetch * 2)
        return out_p, out_s

    # -- persistence ----------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``index.json`` plus the index data into ``folder`` (created if needed)."""
        self._check_built()
        path = write_config(folder, "index", self, self._json_params(), {"dim": self.dim_})
        self._save_data(path)
        if self._n_dead:
            save_arrays(path, {"alive": self.alive})
        return path

    def _load_tombstones(self, path: Path) -> None:
        """``alive.npy`` if the saved index had removals (files from before tombstones have none)."""
        self._changes += 1
        if (path / "alive.npy").is_file():
            self._live = np.array(load_array(path, "alive"), bool)
            self._n_dead = int(len(self._live) - np.count_nonzero(self._live))

    def _save_data(self, path: Path) -> None:
        raise NotImplementedError

    def _load_data(self, path: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _from_params(cls, params: dict[str, Any], path: Path) -> "_BaseIndex":
        return cls(**params)

    @classmethod
    def read(cls, path: Path, doc: dict[str, Any]) -> "_BaseIndex":
        """The index saved in ``path`` whose ``index.json`` is ``doc`` (of this class)."""
        index = cls._from_params(doc["params"], path)
        index.dim_ = int(doc["state"]["dim"])
        index._load_data(path)
        index._load_tombstones(path)
        return index

    @classmethod
    def load(cls, folder: str | os.PathLike):
        """Read an index written by ``save``; refuses a folder holding another class."""
        path = Path(folder)
        doc = read_config(path, "index")
        family, todo = {cls}, [cls]
        while todo:
            for sub in todo.pop().__subclasses__():
                family.add(sub)
                todo.append(sub)
        match = next((c for c in family if c.__name__ == doc["class"]), None)
        if match is None:
            raise ValueError(f"{os.fspath(folder)!r} holds a {doc['class']}, not a {cls.__name__}")
        return match.read(path, doc)


def check_search(queries, k, dim: int, n_items: int, exclude, allowed):
    """The protocol's search arguments checked, once for every index: ``(queries float32[n,
    dim], k, exclude as one position array per query or None, allowed bool[n_items] or None)``."""
    k = check_positive_int(k, "k")
    queries = check_matrix(queries, "queries", dim=dim, allow_empty=True)
    if n_items == 0:
        raise ValueError("the index is empty: add vectors before searching")
    return queries, k, check_exclude(exclude, len(queries), n_items), check_allowed(allowed, n_items)


def check_exclude(exclude, n_queries: int, n_items: int) -> list[np.ndarray] | None:
    """``exclude`` as one int64 position array per query, or ``ValueError`` naming the entry."""
    if exclude is None:
        return None
    if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
        exclude = list(exclude)
    try:
        entries = list(exclude)
    except TypeError:
        raise ValueError(f"exclude must be a sequence of position arrays, got {type(exclude).__name__}") from None
    if len(entries) != n_queries:
        raise ValueError(f"exclude has {len(entries)} entries, expected one per query ({n_queries})")
    out = []
    for i, e in enumerate(entries):
        arr = np.asarray([] if e is None else e)
        if arr.size == 0:
            out.append(np.zeros(0, np.int64))
            continue
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"exclude[{i}] must be a 1-D array of integer positions, got {arr.dtype} {arr.shape}")
        if arr.min() < 0 or arr.max() >= n_items:
            raise ValueError(f"exclude[{i}] has positions outside 0..{n_items - 1}")
        out.append(arr.astype(np.int64, copy=False))
    return out


def check_allowed(allowed, n_items: int) -> np.ndarray | None:
    """``allowed`` as ``bool[n_items]`` (not copied), or ``ValueError``."""
    if allowed is None:
        return None
    arr = np.asarray(allowed)
    if arr.dtype != bool or arr.shape != (n_items,):
        raise ValueError(f"allowed must be a bool array of one entry per item ({n_items}), "
                         f"got {arr.dtype} {arr.shape}")
    return arr


def _excluded_mask(positions: np.ndarray, excl: list[np.ndarray], n_items: int) -> np.ndarray:
    """bool like ``positions``: True where ``positions[i, j]`` is in ``excl[i]``.

    One vectorised ``isin`` on keys ``row * n_items + position`` instead of a loop.
    """
    rows = np.arange(len(positions), dtype=np.int64)
    keys = rows[:, None] * n_items + positions
    lens = np.fromiter((len(e) for e in excl), np.int64, len(excl))
    if lens.sum() == 0:
        return np.zeros(positions.shape, bool)
    banned = np.repeat(rows, lens) * n_items + np.concatenate(excl)
    return np.isin(keys, banned) & (positions >= 0)


def recall_at_k(approx_positions, exact_positions, k: int = 10) -> float:
    """Mean over queries of ``|approx top-k & exact top-k| / |exact top-k|``.

    ``-1`` padding is ignored on both sides; a query whose exact list holds fewer than
    ``k`` items is divided by the number it holds, and one with none is skipped (1.0 if
    every query is).
    """
    k = check_positive_int(k, "k")
    a = np.asarray(approx_positions)
    e = np.asarray(exact_positions)
    if a.ndim != 2 or e.ndim != 2 or len(a) != len(e):
        raise ValueError(f"approx_positions {a.shape} and exact_positions {e.shape} must be 2-D "
                         "with one row per query")
    values = []
    for row_a, row_e in zip(a[:, :k], e[:, :k]):
        truth = set(row_e[row_e >= 0].tolist())
        if truth:
            values.append(len(truth & set(row_a[row_a >= 0].tolist())) / len(truth))
    return float(np.mean(values)) if values else 1.0



"""Vector indexes: the top-k items for each user vector, exact or approximate.

Every index follows :class:`VectorIndex`, so a recommender can swap brute force for HNSW
or IVF-PQ and measure what it costs in recall:

* ``build(vectors) -> self`` over item vectors ``float32[n, d]`` (positions ``0..n-1``);
  ``add(vectors)`` appends more, positions continuing;
* ``search(queries, k, *, exclude=None) -> (positions int64[q, k], scores float32[q, k])``
  by maximum inner product (queries are weighted means of item vectors, not unit norm).
  Each row is sorted by score, best first, ties broken by lower position. ``exclude[i]``
  (a user's seen items) are never returned for query ``i``; when fewer than ``k`` items
  remain, the row is padded with position ``-1`` and score ``-inf``;
* ``n_items``, ``nbytes`` (measured: the arrays' or the faiss serialisation's size),
  ``name`` (a :func:`make_index` spec) and ``config``; ``save(folder)`` /
  ``Class.load(folder)`` or :func:`load_index`.

:class:`ExactIndex` is the reference; the approximate ones live in
:mod:`~leanrec.vectors.faiss_index` and :mod:`~leanrec.vectors.binary`. Approximate
indexes handle ``exclude`` by over-fetching ``k + max(len(exclude_i))`` candidates,
filtering, and fetching more for the rows still short (see :meth:`_BaseIndex._search`).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._base import (
    NotFittedError,
    Params,
    check_matrix,
    check_positive_int,
    load_array,
    read_config,
    save_arrays,
    write_config,
)
from .codecs import CODEC_SPECS, load_codec, make_codec

__all__ = [
    "VectorIndex",
    "ExactIndex",
    "INDEX_SPECS",
    "make_index",
    "load_index",
    "recall_at_k",
]


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
    def nbytes(self) -> int: ...

    def build(self, vectors: np.ndarray) -> "VectorIndex": ...
    def add(self, vectors: np.ndarray) -> "VectorIndex": ...
    def search(self, queries: np.ndarray, k: int, *,
               exclude: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def save(self, folder: str | os.PathLike) -> Path: ...


def sort_results(positions: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score descending then position ascending; ``-1`` rows become ``-inf``."""
    scores = np.where(positions < 0, -np.inf, scores).astype(np.float32)
    # Padding last: among -inf entries, real positions (never returned) before -1 is moot.
    order = np.lexsort((np.where(positions < 0, np.iinfo(np.int64).max, positions), -scores), axis=-1)
    positions = np.take_along_axis(positions, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    positions = np.where(np.isneginf(scores), -1, positions).astype(np.int64)
    return positions, scores


class _BaseIndex(Params):
    """Checks, exclusion filtering and persistence around ``_build``/``_add``/``_candidates``."""

    # -- hooks ----------------------------------------------------------------------
    def _build(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _add(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _candidates(self, queries: np.ndarray, fetch: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``fetch`` best items per query as ``(positions, scores)`` ``[q, fetch]``,
        sorted by :func:`sort_results`, ``-1`` where the index found fewer."""
        raise NotImplementedError

    def _n_items(self) -> int:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------
    def build(self, vectors, y=None):
        """Index the item vectors (float32 ``[n, d]``; row i is item position i); returns self."""
        vectors = check_matrix(vectors, "vectors")
        self._check_params(vectors)
        self.dim_ = int(vectors.shape[1])
        self._build(vectors)
        return self

    fit = build  # scikit-learn spelling

    def add(self, vectors):
        """Append items; their positions continue from ``n_items``. Returns self."""
        self._check_built()
        vectors = check_matrix(vectors, "vectors", dim=self.dim_, allow_empty=True)
        if len(vectors):
            self._add(vectors)
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
        self._check_built()
        return int(self._n_items())

    @property
    def config(self) -> dict[str, Any]:
        """JSON-safe description: class, spec name and constructor parameters."""
        return {"class": type(self).__name__, "name": self.name, "params": self._json_params()}

    def _json_params(self) -> dict[str, Any]:
        return self.get_params()

    def search(self, queries, k: int, *, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` positions and scores per query; see the module docstring."""
        self._check_built()
        k = check_positive_int(k, "k")
        queries = check_matrix(queries, "queries", dim=self.dim_, allow_empty=True)
        n = self.n_items
        if n == 0:
            raise ValueError("the index is empty: add vectors before searching")
        excl = _check_exclude(exclude, len(queries), n)
        if len(queries) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return self._search(queries, k, excl)

    def _search(self, queries: np.ndarray, k: int, excl: list[np.ndarray] | None):
        """Over-fetch, filter the excluded, fetch more for rows still short of ``k``.

        Starts at ``k + max(len(exclude_i))`` candidates (enough if the index returned
        the true top list) and doubles, for the short rows only, until each row has
        ``k`` eligible items, the index returns fewer than asked (it found all it can),
        or the whole catalogue was asked for.
        """
        n = self.n_items
        nq = len(queries)
        max_ex = max((len(e) for e in excl), default=0) if excl is not None else 0
        fetch = min(n, k + max_ex)
        out_p = np.full((nq, k), -1, np.int64)
        out_s = np.full((nq, k), -np.inf, np.float32)
        todo = np.arange(nq)
        while len(todo):
            pos, sc = self._candidates(queries[todo], fetch, k)
            found = pos >= 0
            keep = found.copy()
            if excl is not None:
                keep &= ~_excluded_mask(pos, [excl[i] for i in todo], n)
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
        return path

    def _save_data(self, path: Path) -> None:
        raise NotImplementedError

    def _load_data(self, path: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _from_params(cls, params: dict[str, Any], path: Path) -> "_BaseIndex":
        return cls(**params)

    @classmethod
    def load(cls, folder: str | os.PathLike):
        """Read an index written by ``save``; refuses a folder holding another class."""
        index = load_index(folder)
        if not isinstance(index, cls):
            raise ValueError(f"{os.fspath(folder)!r} holds a {type(index).__name__}, not a {cls.__name__}")
        return index


def _check_exclude(exclude, n_queries: int, n_items: int) -> list[np.ndarray] | None:
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
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"exclude[{i}] must be a 1-D array of integer positions, got {arr.dtype} {arr.shape}")
        if arr.min() < 0 or arr.max() >= n_items:
            raise ValueError(f"exclude[{i}] has positions outside 0..{n_items - 1}")
        out.append(arr.astype(np.int64))
    return out


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


def topk_columns(s: np.ndarray, k: int) -> np.ndarray:
    """Column indices ``[rows, k]`` (ascending) of the k best entries of each row, ties
    broken by lower column.

    ``argpartition`` alone picks arbitrarily among entries equal to the k-th value, so
    the threshold ``t`` is found with ``partition``, everything above it is kept and the
    ties are filled in column order (a Python loop only over rows with surplus ties).
    """
    w = s.shape[1]
    if w <= k:
        return np.broadcast_to(np.arange(w), s.shape).copy()
    t = np.partition(s, w - k, axis=1)[:, w - k][:, None]
    gt = s > t
    eq = s == t
    need = k - gt.sum(axis=1)
    sel = gt | eq
    for r in np.flatnonzero(eq.sum(axis=1) > need):
        ties = np.flatnonzero(eq[r])
        sel[r, ties[need[r]:]] = False
    return np.nonzero(sel)[1].reshape(len(s), k)


class ExactIndex(_BaseIndex):
    """Brute-force inner product, optionally over compressed codes: the reference.

    Items are scored in blocks of ``chunk_items`` against ``chunk_queries`` queries at a
    time, keeping a running top-k per query, so memory stays at one
    ``chunk_queries x chunk_items`` block however large the catalogue (the defaults:
    256 MB of float32). Results equal a full ``argsort`` with ties broken by position.

    With ``codec`` (a :class:`~leanrec.vectors.codecs.VectorCodec` or a spec string such
    as ``"int8"``), items are stored as codes and scored with ``codec.scores``. The index
    works on a copy of the codec, fitted on the build vectors unless already fitted.
    ``add`` encodes new items with the same (not refitted) codec.
    """

    def __init__(self, codec=None, chunk_items: int = 65536, chunk_queries: int = 1024):
        self.codec = codec
        self.chunk_items = chunk_items
        self.chunk_queries = chunk_queries

    @property
    def name(self) -> str:
        if self.codec is None:
            return "exact"
        codec = getattr(self, "codec_", None) or self._make_codec()
        return f"exact-{codec.name}"

    def _make_codec(self):
        return make_codec(self.codec) if isinstance(self.codec, str) else self.codec

    def _check_params(self, vectors):
        check_positive_int(self.chunk_items, "chunk_items")
        check_positive_int(self.chunk_queries, "chunk_queries")

    def _build(self, vectors):
        if self.codec is None:
            self.codec_ = None
            self.data_ = vectors.copy()
            return
        codec = copy.deepcopy(self._make_codec())
        try:
            fitted_dim = codec.dim_in
        except (ValueError, AttributeError):
            fitted_dim = None
        if fitted_dim is None:
            codec.fit(vectors)
        elif fitted_dim != vectors.shape[1]:
            raise ValueError(f"codec was fitted on {fitted_dim}-d vectors, vectors have {vectors.shape[1]}")
        self.codec_ = codec
        self.data_ = codec.encode(vectors)

    def _add(self, vectors):
        new = vectors.copy() if self.codec_ is None else self.codec_.encode(vectors)
        self.data_ = np.concatenate([self.data_, new])

    def _n_items(self):
        return len(self.data_)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored codes plus the codec's shared parameters."""
        self._check_built()
        extra = 0 if self.codec_ is None else int(getattr(self.codec_, "params_nbytes", 0))
        return int(self.data_.nbytes) + extra

    def _block_scores(self, q: np.ndarray, start: int, stop: int) -> np.ndarray:
        block = self.data_[start:stop]
        if self.codec_ is None:
            return q @ block.T
        return np.asarray(self.codec_.scores(q, block), np.float32)

    def _search(self, queries, k, excl):
        n = self.n_items
        ci, cq = int(self.chunk_items), int(self.chunk_queries)
        out_p = np.empty((len(queries), k), np.int64)
        out_s = np.empty((len(queries), k), np.float32)
        for q0 in range(0, len(queries), cq):
            q = queries[q0:q0 + cq]
            best_s = np.full((len(q), k), -np.inf, np.float32)
            best_p = np.full((len(q), k), -1, np.int64)  # kept in position order
            if excl is not None:
                ex = excl[q0:q0 + cq]
                ex_rows = np.repeat(np.arange(len(ex)), [len(e) for e in ex])
                ex_cols = np.concatenate(ex) if ex else np.zeros(0, np.int64)
            for i0 in range(0, n, ci):
                i1 = min(n, i0 + ci)
                block = self._block_scores(q, i0, i1)
                if excl is not None and len(ex_cols):
                    hit = (ex_cols >= i0) & (ex_cols < i1)
                    block[ex_rows[hit], ex_cols[hit] - i0] = -np.inf
                # best_p < every position of this block, so column order is position order.
                both = np.concatenate([best_s, block], axis=1)
                cols = topk_columns(both, k)
                best_s = np.take_along_axis(both, cols, axis=1)
                best_p = np.where(cols < k, np.take_along_axis(best_p, np.minimum(cols, k - 1), axis=1),
                                  cols - k + i0)
            out_p[q0:q0 + cq], out_s[q0:q0 + cq] = sort_results(best_p, best_s)
        return out_p, out_s

    # -- persistence ----------------------------------------------------------------
    def _json_params(self):
        params = self.get_params()
        if params["codec"] is not None and not isinstance(params["codec"], str):
            params["codec"] = self.name.removeprefix("exact-")  # the object itself is saved to codec/
        return params

    def _save_data(self, path):
        save_arrays(path, {"data": self.data_})
        if self.codec_ is not None:
            self.codec_.save(path / "codec")

    def _load_data(self, path):
        self.data_ = load_array(path, "data")
        self.codec_ = load_codec(path / "codec") if (path / "codec").is_dir() else None


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


# -- factory --------------------------------------------------------------------------

#: The forms :func:`make_index` accepts (tokens in brackets are optional, any order).
INDEX_SPECS = (
    "exact",
    "exact-<codec> (codec: " + ", ".join(CODEC_SPECS) + ")",
    "hnsw[<M>][-ef<ef_search>][-efc<ef_construction>][-flat|-sq8|-fp16]  (e.g. hnsw32-ef64)",
    "ivfpq[-nlist<n>][-pq<m>[x<nbits>]][-nprobe<n>][-refine[-fp32|-int8]][-kf<k_factor>]",
    "binary-rescore[-int8|-fp32][-c<candidates>]",
)


def _bad_index_spec(spec: str, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(f"invalid index spec {spec!r}{extra}; valid forms: " + "; ".join(INDEX_SPECS))


def make_index(spec: str) -> _BaseIndex:
    """Build an unbuilt index from a spec string; see :data:`INDEX_SPECS`.

    Examples: ``"exact"``, ``"exact-int8"``, ``"exact-pca128-int8"``, ``"hnsw"``,
    ``"hnsw32-ef64"``, ``"hnsw16-sq8"``, ``"ivfpq"``, ``"ivfpq-nlist256-pq48-nprobe16"``,
    ``"ivfpq-refine-int8"``, ``"binary-rescore-int8"``, ``"binary-rescore-fp32-c200"``.
    An index's ``name`` is such a spec. Case-insensitive.
    """
    if not isinstance(spec, str):
        raise TypeError(f"index spec must be a string, got {type(spec).__name__}")
    s = spec.strip().lower()
    if s == "exact":
        return ExactIndex()
    if s.startswith("exact-"):
        try:
            return ExactIndex(codec=make_codec(s.removeprefix("exact-")))
        except ValueError as exc:
            raise _bad_index_spec(spec, str(exc).split(";")[0]) from None
    head, *tokens = s.split("-")
    if m := re.fullmatch(r"hnsw(\d+)?", head):
        from .faiss_index import HNSWIndex

        kwargs: dict[str, Any] = {}
        if m.group(1):
            kwargs["M"] = int(m.group(1))
        for t in tokens:
            if mt := re.fullmatch(r"efc(\d+)", t):
                kwargs["ef_construction"] = int(mt.group(1))
            elif mt := re.fullmatch(r"ef(\d+)", t):
                kwargs["ef_search"] = int(mt.group(1))
            elif t in ("flat", "sq8", "fp16"):
                kwargs["storage"] = t
            else:
                raise _bad_index_spec(spec, f"unknown token {t!r}")
        return HNSWIndex(**kwargs)
    if head == "ivfpq":
        from .faiss_index import IVFPQIndex

        kwargs = {}
        it = iter(range(len(tokens)))
        for i in it:
            t = tokens[i]
            if mt := re.fullmatch(r"nlist(\d+)", t):
                kwargs["nlist"] = int(mt.group(1))
            elif mt := re.fullmatch(r"pq(\d+)(?:x(\d+))?", t):
                kwargs["m"] = int(mt.group(1))
                if mt.group(2):
                    kwargs["nbits"] = int(mt.group(2))
            elif mt := re.fullmatch(r"nprobe(\d+)", t):
                kwargs["nprobe"] = int(mt.group(1))
            elif mt := re.fullmatch(r"kf(\d+)", t):
                kwargs["k_factor"] = int(mt.group(1))
            elif t == "refine":
                kwargs["refine"] = "fp32"
                if i + 1 < len(tokens) and tokens[i + 1] in ("fp32", "int8"):
                    kwargs["refine"] = tokens[i + 1]
                    next(it)
            else:
                raise _bad_index_spec(spec, f"unknown token {t!r}")
        return IVFPQIndex(**kwargs)
    if head == "binary" and tokens[:1] == ["rescore"]:
        from .binary import BinaryRescoreIndex

        kwargs = {}
        for t in tokens[1:]:
            if t in ("int8", "fp32"):
                kwargs["rescore"] = t
            elif mt := re.fullmatch(r"c(\d+)", t):
                kwargs["candidates"] = int(mt.group(1))
            else:
                raise _bad_index_spec(spec, f"unknown token {t!r}")
        return BinaryRescoreIndex(**kwargs)
    raise _bad_index_spec(spec)


def _index_classes() -> dict[str, type]:
    from .binary import BinaryRescoreIndex
    from .faiss_index import HNSWIndex, IVFPQIndex

    return {c.__name__: c for c in (ExactIndex, HNSWIndex, IVFPQIndex, BinaryRescoreIndex)}


def load_index(folder: str | os.PathLike) -> _BaseIndex:
    """Load any index written by ``save`` (the class is read from ``index.json``)."""
    path = Path(folder)
    doc = read_config(path, "index")
    cls = _index_classes().get(doc["class"])
    if cls is None:
        raise ValueError(f"unknown index class {doc['class']!r} in {os.fspath(folder)!r}")
    index = cls._from_params(doc["params"], path)
    index.dim_ = int(doc["state"]["dim"])
    index._load_data(path)
    return index

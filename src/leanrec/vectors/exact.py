"""The exact index: brute-force inner product over float vectors or codec codes, the
reference every approximate index is measured against (and the service's index below its
HNSW threshold)."""

from __future__ import annotations

import copy

import numpy as np

from ._base import check_positive_int, load_array, save_arrays
from .codecs import load_codec, make_codec
from .index import _BaseIndex
from .topk import masked_top, sort_results, topk_columns

__all__ = ["ExactIndex"]


def _zeros_like(rows: np.ndarray, n: int) -> np.ndarray:
    """A buffer for ``n`` rows shaped like ``rows``, allocated as the service's catalogue
    always allocated its matrix (``np.zeros``, i.e. calloc): gathering a filter's scattered
    rows (5% of 100k × 64) from a ``copy``-allocated matrix measured 1.5x (p25) to 2.5x
    (median) slower than from the catalogue's, the same kernel on both (their page backing,
    most likely); with ``np.zeros`` both measure the same, and the service's selective
    filters gather."""
    return np.zeros((n,) + rows.shape[1:], rows.dtype)


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

    The rows live in a buffer that grows by doubling, so adding one item costs O(d)
    amortised (the service appends items one upsert at a time), not a copy of the matrix.
    A single query on float vectors (a service request) takes the kernels of
    :mod:`~leanrec.vectors.topk` instead of the batch loop: one masked mat-vec, or, under a
    selective ``allowed`` filter, only the allowed rows gathered.
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

    @classmethod
    def adopt(cls, vectors, **params) -> "ExactIndex":
        """An exact index (no codec) over ``vectors`` itself, not a copy, for a caller handing
        over a matrix it has just made and will not write to (the service's catalogue at
        start-up and on compaction: at 1M × 256-d a copy is another GB at peak)."""
        if params.get("codec") is not None:
            raise ValueError("ExactIndex.adopt keeps float vectors as they are: no codec")
        index = cls(**params)
        index._adopting = True
        try:
            return index.build(vectors)
        finally:
            del index._adopting

    @property
    def data_(self) -> np.ndarray:
        """The stored rows (float vectors, or codes with a codec): the first ``n_items`` rows
        of the growing buffer (a view)."""
        return self._buf[:self._n]

    @data_.setter
    def data_(self, value: np.ndarray) -> None:
        self._buf, self._n = value, len(value)

    def _build(self, vectors):
        if self.codec is None:
            self.codec_ = None
            if getattr(self, "_adopting", False):
                self.data_ = vectors
            else:
                self.data_ = _zeros_like(vectors, len(vectors))
                self._buf[:] = vectors
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
        new = vectors if self.codec_ is None else self.codec_.encode(vectors)
        buf, n = self._buf, self._n
        need = n + len(new)
        if need > len(buf) or not buf.flags.writeable:  # grow by doubling (a loaded mmap: copy once)
            grown = _zeros_like(buf, max(need, 2 * len(buf)))
            grown[:n] = buf[:n]
            self._buf = buf = grown
        buf[n:need] = new
        self._n = need  # after the write: a reader's view of [:n] never sees a half-written row

    def _n_items(self):
        return self._n

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

    def _search(self, queries, k, excl, allowed):
        if self.codec_ is None and len(queries) == 1:
            return self._search_one(queries[0], k, None if excl is None else excl[0], allowed)
        n = self.n_items
        ok = self._allowed_mask(allowed)
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
                if ok is not None:
                    block[:, ~ok[i0:i1]] = -np.inf
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

    def search_one(self, query, k: int, *, exclude=None, allowed=None):
        """:meth:`~leanrec.vectors.index._BaseIndex.search_one` straight on the kernels
        (float vectors; with a codec, through :meth:`search`)."""
        self._check_built()
        if self.codec_ is not None:
            return super().search_one(query, k, exclude=exclude, allowed=allowed)
        q, k = self._check_one(query, k, allowed)
        ex = None
        if exclude is not None and len(exclude):
            ex = np.asarray(exclude)
            if ex.dtype.kind not in "iu" or ex.min() < 0 or ex.max() >= self._n:
                raise ValueError(f"exclude must hold integer positions in 0..{self._n - 1}")
        return self._top_one(q, k, ex, allowed)

    def _top_one(self, q: np.ndarray, k: int, ex: np.ndarray | None, allowed: np.ndarray | None):
        """One query over float vectors, on :func:`~leanrec.vectors.topk.masked_top`: the
        same answer as the batch loop, at the cost the service's requests were tuned on;
        unpadded."""
        ok = self._allowed_mask(allowed)
        if ex is not None and len(ex):
            if ok is None:
                ok = np.ones(self._n, bool)
            ok[ex] = False
        return masked_top(self.data_, q, ok, k, may_gather=allowed is not None)

    def _search_one(self, q: np.ndarray, k: int, ex: np.ndarray | None, allowed: np.ndarray | None):
        """:meth:`_top_one`, padded as :meth:`search` returns rows."""
        pos, sc = self._top_one(q, k, ex, allowed)
        out_p = np.full((1, k), -1, np.int64)
        out_s = np.full((1, k), -np.inf, np.float32)
        out_p[0, :len(pos)], out_s[0, :len(sc)] = pos, sc
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

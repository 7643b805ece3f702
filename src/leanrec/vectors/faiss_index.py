"""Approximate indexes on faiss: HNSW graphs and IVF-PQ, both by inner product.

faiss is imported when an index is built or loaded, not when leanrec is. These classes
keep faiss' own structures (saved with ``write_index``, measured with
``serialize_index``) and add what :class:`~leanrec.vectors.index.VectorIndex` promises on
top: input checks, ``-1``/``-inf`` padding, ties by position, ``exclude``/``allowed``
filtering and tombstones (faiss indexes cannot delete from a graph; removed items stay in it
for navigation and are filtered out).
Search-time knobs (``ef_search``, ``nprobe``) are read at every search, so they can be
changed after ``build`` (``index.ef_search = 128``) without rebuilding.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ._base import check_choice, check_positive_int
from .index import _BaseIndex
from .topk import scan_rows, sort_results, top_k

# An HNSW walk restricted to few allowed items degrades (most neighbours are filtered out, the
# beam runs dry): below max(SCAN_BELOW, n_items // SCAN_SHARE) allowed items (~2% of the items)
# an exact scan of those items answers instead, at a cost that is the size of the answer.
SCAN_BELOW = 2000
SCAN_SHARE = 50

__all__ = ["HNSWIndex", "IVFPQIndex", "auto_nlist"]


class _FaissIndex(_BaseIndex):
    """Shared plumbing: the faiss object in ``index_``, counts, bytes, files."""

    def _n_items(self):
        return self.index_.ntotal

    @property
    def nbytes(self) -> int:
        """Size of the faiss serialisation of the index (vectors, codes, graph, centroids)."""
        import faiss

        self._check_built()
        return int(faiss.serialize_index(self.index_).nbytes)

    def _add(self, vectors):
        self.index_.add(vectors)

    def _prepare_search(self, fetch: int) -> None:
        pass

    def _candidates(self, queries, fetch, k):
        self._prepare_search(fetch)
        scores, positions = self.index_.search(queries, fetch)
        return sort_results(positions.astype(np.int64), scores)

    def _save_data(self, path):
        import faiss

        faiss.write_index(self.index_, str(path / "index.faiss"))

    def _load_data(self, path):
        import faiss

        self.index_ = faiss.read_index(str(path / "index.faiss"))


class HNSWIndex(_FaissIndex):
    """Hierarchical navigable small-world graph (faiss ``IndexHNSWFlat``/``IndexHNSWSQ``).

    ``M`` links per node (memory: ~``2 * M * 4`` bytes an item on top of the vectors),
    ``ef_construction`` the build-time beam, ``ef_search`` the search-time beam (raised
    to the number of candidates asked for when that is larger). ``storage`` keeps the
    vectors as float32 (``"flat"``), 8-bit scalar-quantised (``"sq8"``, 4x smaller,
    trained on the build vectors) or ``"fp16"``.
    """

    def __init__(self, M: int = 32, ef_construction: int = 200, ef_search: int = 64,
                 storage: str = "flat"):
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.storage = storage

    @property
    def name(self) -> str:
        s = f"hnsw{self.M}-ef{self.ef_search}"
        if self.ef_construction != 200:
            s += f"-efc{self.ef_construction}"
        return s if self.storage == "flat" else f"{s}-{self.storage}"

    def _check_params(self, vectors):
        check_positive_int(self.M, "M", minimum=2)
        check_positive_int(self.ef_construction, "ef_construction")
        check_positive_int(self.ef_search, "ef_search")
        check_choice(self.storage, "storage", ("flat", "sq8", "fp16"))

    def _build(self, vectors):
        import faiss

        d = vectors.shape[1]
        if self.storage == "flat":
            index = faiss.IndexHNSWFlat(d, int(self.M), faiss.METRIC_INNER_PRODUCT)
        else:
            qtype = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}[self.storage]
            index = faiss.IndexHNSWSQ(d, qtype, int(self.M), faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        index.hnsw.efConstruction = int(self.ef_construction)
        index.add(vectors)
        self.index_ = index

    def _prepare_search(self, fetch):
        self.index_.hnsw.efSearch = max(check_positive_int(self.ef_search, "ef_search"), fetch)

    # -- filtered search: a bitmap of the allowed positions inside faiss' walk --------------
    def _search(self, queries, k, excl, allowed):
        """Nothing to filter: faiss' batch search. Only exclusions, several queries: the
        over-fetch of :class:`~leanrec.vectors.index._BaseIndex` (faiss searches the batch in
        parallel). Otherwise (a filter, tombstones, or one query with exclusions, as the
        service asks): each query walks the graph restricted by a bitmap of its allowed
        positions (faiss ``IDSelectorBitmap``), so deletions, seen items and filters cost no
        over-fetching; very selective ones are scanned exactly (:data:`SCAN_BELOW`)."""
        has_ex = excl is not None and any(len(e) for e in excl)
        if allowed is None and self._n_dead == 0 and (not has_ex or len(queries) > 1):
            return super()._search(queries, k, excl if has_ex else None, None)
        return self._search_selected(queries, k, excl if has_ex else None, allowed)

    def _live_bits(self) -> np.ndarray:
        """The packed bitmap (``bitorder="little"``, faiss' layout) of the live positions,
        cached until the next add or removal: a search copies it (n/8 bytes) and clears its
        excluded bits, with no pass over n booleans."""
        cached = getattr(self, "_bits", None)
        if cached is None or cached[0] != self._changes:
            cached = self._bits = (self._changes, np.packbits(self.alive, bitorder="little"))
        return cached[1]

    def _search_selected(self, queries, k, excl, allowed):
        ok = self._allowed_mask(allowed) if allowed is not None else None
        out_p = np.full((len(queries), k), -1, np.int64)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        for i, q in enumerate(queries):
            ex = None if excl is None or not len(excl[i]) else np.unique(excl[i])
            pos, sc = self._select_one(q, k, ex, ok, ok_is_mine=False)
            out_p[i, :len(pos)], out_s[i, :len(sc)] = pos, sc
        return out_p, out_s

    def search_one(self, query, k: int, *, exclude=None, allowed=None):
        """:meth:`~leanrec.vectors.index._BaseIndex.search_one` on the bitmap walk directly:
        the service's hot path (one user, their seen items excluded, no filter) in one
        frame, with the same numpy work as before it had a protocol and the same checks."""
        q, k = self._check_one(query, k, allowed)
        n, ex = self.index_.ntotal, None
        if exclude is not None and len(exclude):
            ex = exclude if type(exclude) is np.ndarray else np.asarray(exclude)
            if ex.dtype.kind not in "iu":
                raise ValueError(f"exclude must hold integer positions, got {ex.dtype}")
        if allowed is not None:  # a filter: the excluded are cleared in the mask, repeats or not
            if ex is not None and (ex.min() < 0 or ex.max() >= n):
                raise ValueError(f"exclude must hold positions in 0..{n - 1}")
            return self._select_one(q, k, ex, self._allowed_mask(allowed), ok_is_mine=True, n=n)
        if ex is None and self._n_dead == 0:
            return super().search_one(q, k)  # nothing to filter: faiss' plain search
        bitmap, n_ok = self._live_bits(), n - self._n_dead
        if ex is not None:  # the bitmap's count needs them unique; sorted, the range is free
            ex = np.unique(ex)
            if ex[0] < 0 or ex[-1] >= n:
                raise ValueError(f"exclude must hold positions in 0..{n - 1}")
            if self._n_dead:
                ex = ex[self._live[ex]]
            n_ok -= len(ex)
        k = min(k, n_ok)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scratch = self._scratch(n, k)
        if ex is not None:  # this thread's own bitmap buffer: the live bits, the excluded cleared
            bitmap = scratch[1]
            np.copyto(bitmap, self._live_bits())
            np.bitwise_and.at(bitmap, ex >> 3, ~np.left_shift(1, ex & 7).astype(np.uint8))
        if n_ok < max(SCAN_BELOW, n // SCAN_SHARE):
            return self._scan(np.flatnonzero(np.unpackbits(bitmap, count=n, bitorder="little")), q, k)
        if ex is None:  # tombstones only: the cached live bitmap, read in place
            return self._walk(q, k, bitmap, n)
        return self._walk(q, k, bitmap, n, scratch[2])

    def _scratch(self, n: int, k: int) -> list:
        """This thread's reusable [n, bitmap buffer (n/8 bytes), faiss search parameters
        holding an ``IDSelectorBitmap`` over that buffer] for a walk of ``k``: faiss' Python
        wrappers cost about as much to build these per search as the rest of the Python
        around the walk. Rebuilt when the index grows; ``efSearch`` set when it changes."""
        import faiss

        tls = self.__dict__.get("_tls")
        if tls is None:
            tls = self.__dict__.setdefault("_tls", threading.local())
        scratch = getattr(tls, "scratch", None)
        ef = max(int(self.ef_search), k)
        if scratch is None or scratch[0] != n:
            buf = np.zeros((n + 7) // 8, np.uint8)
            params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBitmap(n, faiss.swig_ptr(buf)), efSearch=ef)
            scratch = tls.scratch = [n, buf, params, ef]
        elif scratch[3] != ef:
            scratch[2].efSearch = scratch[3] = ef
        return scratch

    def _select_one(self, q: np.ndarray, k: int, ex: np.ndarray | None, ok: np.ndarray | None,
                    ok_is_mine: bool, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``min(k, allowed)`` of one query, unpadded. ``ex``: excluded positions or None
        (unique when ``ok`` is None); ``ok``: ``alive & allowed`` or None (no filter), changed
        in place only when ``ok_is_mine``. ``n``: ``n_items`` if the caller has read it (each
        read is a call into faiss)."""
        n = self.index_.ntotal if n is None else n
        scan_below = max(SCAN_BELOW, n // SCAN_SHARE)
        if ok is None:  # the hot path: the cached live bitmap, the excluded bits cleared
            bitmap, n_ok = self._live_bits(), n - self._n_dead
            if ex is not None:
                if self._n_dead:
                    ex = ex[self._live[ex]]
                n_ok -= len(ex)
                bitmap = bitmap.copy()
                np.bitwise_and.at(bitmap, ex >> 3, ~np.left_shift(1, ex & 7).astype(np.uint8))
            k = min(k, n_ok)
            if k <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            if n_ok < scan_below:
                return self._scan(np.flatnonzero(np.unpackbits(bitmap, count=n, bitorder="little")), q, k)
            return self._walk(q, k, bitmap, n)
        if ex is not None:
            ok = ok if ok_is_mine else ok.copy()
            ok[ex] = False
        n_ok = int(np.count_nonzero(ok))
        k = min(k, n_ok)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if n_ok < scan_below:
            return self._scan(np.flatnonzero(ok), q, k)
        return self._walk(q, k, np.packbits(ok, bitorder="little"), n)

    def _walk(self, q: np.ndarray, k: int, bitmap: np.ndarray, n: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        """faiss' HNSW search over the positions whose bit is set, ``efSearch >= k``
        (``params``: ready ones whose selector reads ``bitmap``, from :meth:`_scratch`)."""
        import faiss

        if params is None:
            params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)),
                                                efSearch=max(int(self.ef_search), k))
        D, I = self.index_.search(q[None, :], k, params=params)
        found = I[0] >= 0
        pos, sc = I[0][found].astype(np.int64), D[0][found].astype(np.float32)
        s = sc.tolist()  # k numbers: a set is cheaper than numpy calls at this size
        if len(set(s)) < len(s):  # faiss sorts by score (a tie is a repeat); ties go by position
            order = np.lexsort((pos, -sc))
            pos, sc = pos[order], sc[order]
        return pos, sc

    def _scan(self, rows: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over ``rows`` (ascending) from the graph's own vectors: read in place
        from float32 storage (no copy), decoded row by row from sq8/fp16 storage."""
        import faiss

        if self.storage == "flat":
            n, d = self.n_items, self.dim_
            xb = faiss.rev_swig_ptr(faiss.downcast_index(self.index_.storage).get_xb(), n * d).reshape(n, d)
            return scan_rows(xb, rows, q, k)
        vectors = self.index_.reconstruct_batch(rows)
        return top_k(vectors @ q, rows, k)


def auto_nlist(n: int) -> int:
    """~``4 sqrt(n)`` inverted lists, capped so k-means gets >= 39 training points each."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 39))


def _auto_m(d: int) -> int:
    """Largest divisor of ``d`` up to ``d / 4``: ~4 dimensions a byte (16x smaller than fp32)."""
    target = max(1, d // 4)
    return max(m for m in range(1, target + 1) if d % m == 0)


class IVFPQIndex(_FaissIndex):
    """Inverted file over product-quantised residuals (faiss ``IndexIVFPQ``, inner product).

    Items are clustered into ``nlist`` lists (``None``: :func:`auto_nlist`); a query scans
    the ``nprobe`` closest (``None``: ``ceil(sqrt(nlist))``) and scores their PQ codes
    (``m`` bytes at ``nbits=8``; ``None``: ~4 dimensions a byte, ``m`` must divide ``d``).
    ``refine="fp32"|"int8"`` re-ranks the ``k * k_factor`` best candidates exactly against
    a float32 or int8 copy of the vectors (faiss ``IndexRefine``), which recovers most of
    PQ's ranking error at the cost of that copy in memory.

    Training needs at least ``2**nbits`` and ``nlist`` vectors; later ``add`` calls reuse
    the trained centroids.
    """

    def __init__(self, nlist: int | None = None, m: int | None = None, nbits: int = 8,
                 nprobe: int | None = None, refine: str | None = None, k_factor: int = 4):
        self.nlist = nlist
        self.m = m
        self.nbits = nbits
        self.nprobe = nprobe
        self.refine = refine
        self.k_factor = k_factor

    @property
    def name(self) -> str:
        parts = ["ivfpq"]
        nlist = self.nlist if self.nlist is not None else getattr(self, "nlist_", None)
        m = self.m if self.m is not None else getattr(self, "m_", None)
        if nlist is not None:
            parts.append(f"nlist{nlist}")
        if m is not None:
            parts.append(f"pq{m}x{self.nbits}" if self.nbits != 8 else f"pq{m}")
        if self.nprobe is not None:
            parts.append(f"nprobe{self.nprobe}")
        if self.refine is not None:
            parts.append(f"refine-{self.refine}")
            if self.k_factor != 4:
                parts.append(f"kf{self.k_factor}")
        return "-".join(parts)

    def _check_params(self, vectors):
        n, d = vectors.shape
        nlist = auto_nlist(n) if self.nlist is None else check_positive_int(self.nlist, "nlist")
        m = _auto_m(d) if self.m is None else check_positive_int(self.m, "m")
        nbits = check_positive_int(self.nbits, "nbits")
        if self.nprobe is not None:
            check_positive_int(self.nprobe, "nprobe")
        check_choice(self.refine, "refine", (None, "fp32", "int8"))
        check_positive_int(self.k_factor, "k_factor")
        if d % m:
            raise ValueError(f"m={m} must divide the vector dimension {d}")
        if nbits > 16:
            raise ValueError(f"nbits must be between 1 and 16, got {nbits}")
        if n < max(nlist, 2 ** nbits):
            raise ValueError(f"IVFPQIndex needs at least max(nlist={nlist}, 2**nbits={2 ** nbits}) "
                             f"vectors to train, got {n}")

    def _build(self, vectors):
        import faiss

        n, d = vectors.shape
        self.nlist_ = auto_nlist(n) if self.nlist is None else int(self.nlist)
        self.m_ = _auto_m(d) if self.m is None else int(self.m)
        quantizer = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFPQ(quantizer, d, self.nlist_, self.m_, int(self.nbits), faiss.METRIC_INNER_PRODUCT)
        # Sizes were checked above; keep faiss from printing its "too few points" warnings.
        ivf.cp.min_points_per_centroid = 1
        ivf.pq.cp.min_points_per_centroid = 1
        index = ivf
        if self.refine == "fp32":
            index = faiss.IndexRefineFlat(ivf)
        elif self.refine == "int8":
            store = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index = faiss.IndexRefine(ivf, store)
        index.train(vectors)
        index.add(vectors)
        self.index_ = index

    def _prepare_search(self, fetch):
        import faiss

        ivf = faiss.extract_index_ivf(self.index_)
        nlist = ivf.nlist
        nprobe = math.ceil(math.sqrt(nlist)) if self.nprobe is None else check_positive_int(self.nprobe, "nprobe")
        ivf.nprobe = min(nprobe, nlist)
        if self.refine is not None:
            faiss.downcast_index(self.index_).k_factor = float(check_positive_int(self.k_factor, "k_factor"))

    def _load_data(self, path):
        super()._load_data(path)
        import faiss

        ivf = faiss.extract_index_ivf(self.index_)
        self.nlist_, self.m_ = int(ivf.nlist), int(faiss.downcast_index(ivf).pq.M)

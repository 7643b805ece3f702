"""Approximate indexes on faiss: HNSW graphs and IVF-PQ, both by inner product.

faiss is imported when an index is built or loaded, not when leanrec is. These classes
keep faiss' own structures (saved with ``write_index``, measured with
``serialize_index``) and add what :class:`~leanrec.vectors.index.VectorIndex` promises on
top: input checks, ``-1``/``-inf`` padding, ties by position and ``exclude`` filtering.
Search-time knobs (``ef_search``, ``nprobe``) are read at every search, so they can be
changed after ``build`` (``index.ef_search = 128``) without rebuilding.
"""

from __future__ import annotations

import math

import numpy as np

from ._base import check_choice, check_positive_int
from .index import _BaseIndex, sort_results

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

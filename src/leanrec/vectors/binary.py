"""Two-stage search: Hamming distance on sign bits, then rescoring with int8 or fp32 codes.

The first stage costs ``d / 8`` bytes an item (48 for 384 dims, 32x smaller than
float32) and a popcount per byte, so it can scan a large catalogue cheaply; its ranking
is coarse (the query is binarised too), which is why the best ``candidates`` are then
rescored with the float query against a finer store. In a deployment the finer store can
live on disk or a slower tier: after :meth:`load` the rescoring codes are memory-mapped
from the saved folder (only the rows of each query's candidates are read), so RAM holds
the binary stage alone. A freshly built index keeps both in memory. Both are reported apart:
``first_stage_bytes_per_item``, ``rescore_bytes_per_item`` and ``nbytes`` (both stores,
the faiss binary index measured by its serialisation).
"""

from __future__ import annotations

import numpy as np

from ._base import check_choice, check_positive_int, load_array, save_arrays
from .codecs import BinaryCodec, Float32Codec, Int8Codec, load_codec
from .index import _BaseIndex
from .topk import sort_results

__all__ = ["BinaryRescoreIndex"]

#: Upper bound on the float32 elements of one gathered rescoring block.
_RESCORE_BLOCK = 1 << 22


class BinaryRescoreIndex(_BaseIndex):
    """Hamming top-``candidates`` on sign bits (faiss ``IndexBinaryFlat``), rescored exactly
    by ``query . decode(code)`` with ``rescore="int8"`` or ``"fp32"`` codes.

    Recall is bounded by whether the true top-k fall within the Hamming top
    ``candidates``; raise it for more recall at linear rescoring cost.
    """

    def __init__(self, candidates: int = 100, rescore: str = "int8"):
        self.candidates = candidates
        self.rescore = rescore

    @property
    def name(self) -> str:
        return f"binary-rescore-{self.rescore}-c{self.candidates}"

    def _check_params(self, vectors):
        check_positive_int(self.candidates, "candidates")
        check_choice(self.rescore, "rescore", ("int8", "fp32"))

    def _build(self, vectors):
        self.binary_codec_ = BinaryCodec().fit(vectors)
        self.rescore_codec_ = (Int8Codec() if self.rescore == "int8" else Float32Codec()).fit(vectors)
        self.rescore_codes_ = self.rescore_codec_.encode(vectors)
        self._make_binary_index(self.binary_codec_.encode(vectors))

    def _make_binary_index(self, codes: np.ndarray) -> None:
        import faiss

        index = faiss.IndexBinaryFlat(codes.shape[1] * 8)  # packbits pads with zero bits
        if len(codes):
            index.add(codes)
        self.binary_index_ = index

    def _add(self, vectors):
        self.binary_index_.add(self.binary_codec_.encode(vectors))
        self.rescore_codes_ = np.concatenate([self.rescore_codes_, self.rescore_codec_.encode(vectors)])

    def _n_items(self):
        return len(self.rescore_codes_)

    @property
    def first_stage_bytes_per_item(self) -> int:
        self._check_built()
        return self.binary_codec_.bytes_per_item

    @property
    def rescore_bytes_per_item(self) -> int:
        self._check_built()
        return self.rescore_codec_.bytes_per_item

    @property
    def first_stage_nbytes(self) -> int:
        """Bytes of the faiss binary index (its serialisation: the packed codes plus a header)."""
        import faiss

        self._check_built()
        return int(faiss.serialize_index_binary(self.binary_index_).nbytes)

    @property
    def rescore_nbytes(self) -> int:
        """Bytes of the rescoring codes plus the int8 ranges."""
        self._check_built()
        return int(self.rescore_codes_.nbytes) + self.rescore_codec_.params_nbytes

    @property
    def nbytes(self) -> int:
        return self.first_stage_nbytes + self.rescore_nbytes

    def _candidates(self, queries, fetch, k):
        n = self.n_items
        n_cand = min(n, max(int(self.candidates), k) + (fetch - k))
        _, cand = self.binary_index_.search(self.binary_codec_.encode(queries), n_cand)
        cand = cand.astype(np.int64)
        scores = np.full(cand.shape, -np.inf, np.float32)
        tq = self.rescore_codec_.transform_queries(queries)
        d = self.rescore_codec_.dim_out
        step = max(1, _RESCORE_BLOCK // max(1, n_cand * d))
        for q0 in range(0, len(queries), step):
            c = cand[q0:q0 + step]
            valid = c >= 0
            decoded = self.rescore_codec_.decode(self.rescore_codes_[np.where(valid, c, 0).ravel()])
            s = np.einsum("qd,qcd->qc", tq[q0:q0 + step], decoded.reshape(c.shape + (d,)))
            scores[q0:q0 + step] = np.where(valid, s, -np.inf)
        pos, sc = sort_results(cand, scores)
        return pos[:, :fetch], sc[:, :fetch]

    def _save_data(self, path):
        import faiss

        faiss.write_index_binary(self.binary_index_, str(path / "binary.faiss"))
        save_arrays(path, {"rescore_codes": self.rescore_codes_})
        self.rescore_codec_.save(path / "rescore_codec")
        self.binary_codec_.save(path / "binary_codec")

    def _load_data(self, path):
        import faiss

        self.binary_index_ = faiss.read_index_binary(str(path / "binary.faiss"))
        self.rescore_codes_ = load_array(path, "rescore_codes", mmap=True)  # stays on disk
        self.rescore_codec_ = load_codec(path / "rescore_codec")
        self.binary_codec_ = load_codec(path / "binary_codec")

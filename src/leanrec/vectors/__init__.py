"""Vector compression and top-k search for item and user vectors.

Two small protocols, each with interchangeable implementations checked by one shared
contract test (``tests/test_vectors.py``):

* :class:`VectorCodec` (:mod:`.codecs`): fewer bytes per item vector, scored directly
  against float queries: fp32, fp16, int8, binary, product quantisation, PCA and
  truncation (the last two optionally followed by fp16/int8). :func:`make_codec` builds
  one from a spec such as ``"pq48x8"`` or ``"pca128-int8"``.
* :class:`VectorIndex` (:mod:`.index`): top-k maximum inner product search with a user's
  seen items excluded, a filter (``allowed``) and removals (tombstones) never returned, and
  items added incrementally: :class:`ExactIndex` (brute force, optionally over codec codes;
  the reference), :class:`HNSWIndex`, :class:`IVFPQIndex` (faiss) and
  :class:`BinaryRescoreIndex`; the service's catalogue holds one of them, and its pgvector
  search follows the same protocol (``leanrec.service.pgvector_index``). :func:`make_index`
  builds one from a spec such as ``"hnsw32-ef64"``; :func:`recall_at_k` compares an
  approximate result with the exact one. :mod:`.topk` holds the selection kernels.

Importing this package loads numpy only; faiss is imported on first use.
"""

from __future__ import annotations

from leanrec._lazy import lazy_attributes

from ..core.errors import NotFittedError
from .codecs import (
    CODEC_SPECS,
    BinaryCodec,
    Float16Codec,
    Float32Codec,
    Int8Codec,
    PCACodec,
    PQCodec,
    TruncateCodec,
    VectorCodec,
    load_codec,
    make_codec,
)
from .exact import ExactIndex
from .factory import INDEX_SPECS, load_index, make_index
from .index import VectorIndex, recall_at_k

__all__ = [
    "CODEC_SPECS",
    "INDEX_SPECS",
    "BinaryCodec",
    "BinaryRescoreIndex",
    "ExactIndex",
    "Float16Codec",
    "Float32Codec",
    "HNSWIndex",
    "IVFPQIndex",
    "Int8Codec",
    "NotFittedError",
    "PCACodec",
    "PQCodec",
    "TruncateCodec",
    "VectorCodec",
    "VectorIndex",
    "load_codec",
    "load_index",
    "make_codec",
    "make_index",
    "recall_at_k",
]

_LAZY = {
    "HNSWIndex": "leanrec.vectors.faiss_index",
    "IVFPQIndex": "leanrec.vectors.faiss_index",
    "BinaryRescoreIndex": "leanrec.vectors.binary",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)

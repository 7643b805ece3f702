"""Indexes by name: :func:`make_index` builds one from a spec string such as
``"hnsw32-ef64"`` (every index's ``name`` is such a spec), :func:`load_index` reads any saved
one back (the class is read from its ``index.json``; no pickle)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ._base import read_config
from .codecs import CODEC_SPECS, make_codec
from .exact import ExactIndex
from .index import VectorIndex

__all__ = ["INDEX_SPECS", "load_index", "make_index"]

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


def make_index(spec: str) -> VectorIndex:
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


def load_index(folder: str | os.PathLike) -> VectorIndex:
    """Load any index written by ``save`` (the class is read from ``index.json``)."""
    path = Path(folder)
    doc = read_config(path, "index")
    cls = _index_classes().get(doc["class"])
    if cls is None:
        raise ValueError(f"unknown index class {doc['class']!r} in {os.fspath(folder)!r}")
    return cls.read(path, doc)

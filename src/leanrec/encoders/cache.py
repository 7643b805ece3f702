"""On-disk embedding cache, so a catalogue is encoded once per model, not once per run.

Encoding is the expensive step of a language-model recommender on a CPU (tens of
seconds for a few thousand items, minutes for a large catalogue), yet item texts rarely
change between runs. :class:`~leanrec.encoders.cache_store.EmbeddingCache` stores
vectors in SQLite keyed by ``(model_id, sha256(text))``; :class:`CachedEncoder` wraps any
:class:`~leanrec.encoders.base.Encoder`, looks every text up, encodes only what is
missing and stores it.

Why this design:

* The key uses the encoder's ``model_id``, which changes whenever the vectors would
  (weights fingerprint, fitted TF-IDF state, options), so a cache can never serve a
  vector computed by a different model. The text is hashed exactly as given: no
  stripping or case folding, because the encoder might see the difference.
* How rows are stored, checked on read and recovered from a corrupt file is the store's
  job: :mod:`leanrec.encoders.cache_store`. A bad row comes back as missing, so it is
  recomputed here and the fresh vector replaces it.
* A cache that cannot be read or written (read-only disk, lock held too long) never
  fails the computation: :class:`CachedEncoder` warns and returns the freshly computed
  vectors.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from collections.abc import Sequence

import numpy as np

from leanrec.encoders.base import (
    Encoder,
    ProgressCallback,
    check_batch_size,
    empty_embeddings,
    validate_texts,
)
from leanrec.encoders.cache_store import EmbeddingCache, text_hash

__all__ = ["CachedEncoder"]


class CachedEncoder:
    """An :class:`~leanrec.encoders.base.Encoder` that reuses vectors from an :class:`EmbeddingCache`.

    ``encode`` hashes every text, looks the distinct ones up, sends only the missing
    distinct texts to the wrapped encoder, stores the results and returns all rows in
    input order. The output is bit-for-bit what the wrapped encoder returned when it
    computed each vector, so cached and uncached runs agree exactly.

    Counters, all in *distinct* texts (a text repeated in one call counts once):

    * ``hits`` / ``misses``: served from the cache / computed by the wrapped encoder, in
      the **last** call to ``encode``;
    * ``total_hits`` / ``total_misses``: the same, cumulative over this object's life.

    A call whose texts are all cached never touches the wrapped encoder beyond
    ``model_id``, so e.g. a sentence-transformer's weights are not even loaded.

    ``cache`` may be an :class:`EmbeddingCache`, a path, or ``None`` for the default
    location.
    """

    def __init__(
        self,
        encoder: Encoder,
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
    ) -> None:
        self.encoder = encoder
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.hits = 0
        self.misses = 0
        self.total_hits = 0
        self.total_misses = 0
        self._dims: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, {self.cache!r})"

    @property
    def model_id(self) -> str:
        """Same as the wrapped encoder's: the cache does not change the vectors."""
        return self.encoder.model_id

    @property
    def dim(self) -> int:
        """The wrapped encoder's ``dim``, or the width already seen for this model_id."""
        known = self._dims.get(self.encoder.model_id)
        return known if known is not None else int(self.encoder.dim)

    # -- cache access that never fails the computation --------------------------------

    def _lookup(self, model_id: str, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        try:
            return self.cache.get_many(model_id, keys)
        except (sqlite3.Error, OSError) as exc:
            warnings.warn(
                f"embedding cache {self.cache.path} unreadable, encoding without it: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            return {}

    def _store(self, model_id: str, keys: list[bytes], vectors: np.ndarray) -> None:
        try:
            self.cache.put_many(model_id, zip(keys, vectors))
        except (sqlite3.Error, OSError) as exc:
            warnings.warn(f"embedding cache {self.cache.path} not updated: {exc}", RuntimeWarning, stacklevel=3)

    def _compute(self, texts: list[str], batch_size: int | None, progress: ProgressCallback | None) -> np.ndarray:
        vecs = np.asarray(self.encoder.encode(texts, batch_size=batch_size, progress=progress))
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise ValueError(f"wrapped encoder returned shape {vecs.shape} for {len(texts)} texts")
        return vecs.astype(np.float32, copy=False)

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``float32[len(texts), dim]``, encoding only texts not yet cached.

        ``batch_size`` is passed to the wrapped encoder. ``progress`` receives counts of
        input positions: one call for everything served from the cache, then the wrapped
        encoder's progress scaled to the positions its distinct texts cover; the calls
        sum to ``len(texts)``.
        """
        docs = validate_texts(texts)
        if batch_size is not None:
            # Checked here too so a bad value fails even when everything is cached.
            check_batch_size(batch_size, 1)
        self.hits = self.misses = 0
        if not docs:
            return empty_embeddings(self.dim)
        model_id = self.encoder.model_id
        keys = [text_hash(t) for t in docs]
        first: dict[bytes, int] = {}
        multiplicity: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
            multiplicity[key] = multiplicity.get(key, 0) + 1
        uniq = list(first)

        found = self._lookup(model_id, uniq)
        dims = {v.shape[0] for v in found.values()}
        if len(dims) > 1:
            # Rows of several widths under one model_id: only the encoder can say which
            # is right; the others get recomputed.
            true_dim = int(self.encoder.dim)
            found = {k: v for k, v in found.items() if v.shape[0] == true_dim}
        missing = [k for k in uniq if k not in found]

        if progress is not None and found:
            progress(sum(multiplicity[k] for k in found))

        computed: dict[bytes, np.ndarray] = {}
        if missing:
            scaled = _ScaledProgress(progress, len(missing), sum(multiplicity[k] for k in missing))
            vecs = self._compute(
                [docs[first[k]] for k in missing], batch_size, scaled if progress is not None else None
            )
            scaled.finish()
            computed.update(zip(missing, vecs))
            dim = vecs.shape[1]
            stale = [k for k, v in found.items() if v.shape[0] != dim]
            if stale:
                # Cached rows of another width: this model_id's output changed shape
                # (or the rows are corrupt); recompute them too.
                redo = self._compute([docs[first[k]] for k in stale], batch_size, None)
                computed.update(zip(stale, redo))
                for k in stale:
                    del found[k]
            new_keys = list(computed)
            self._store(model_id, new_keys, np.stack([computed[k] for k in new_keys]))
        else:
            dim = next(iter(found.values())).shape[0]

        self._dims[model_id] = dim
        self.hits, self.misses = len(found), len(computed)
        self.total_hits += self.hits
        self.total_misses += self.misses

        table = {**found, **computed}
        unique_matrix = np.stack([table[k] for k in uniq]).astype(np.float32, copy=False)
        position = {k: j for j, k in enumerate(uniq)}
        return unique_matrix[[position[k] for k in keys]]


class _ScaledProgress:
    """Turn the wrapped encoder's progress (distinct texts) into input positions.

    Duplicated texts are encoded once but occupy several positions, so each report is
    scaled by ``positions / distinct``; the remainder is flushed at the end in case the
    wrapped encoder under-reports.
    """

    def __init__(self, progress: ProgressCallback | None, distinct: int, positions: int) -> None:
        self.progress = progress
        self.distinct = distinct
        self.positions = positions
        self.done = 0
        self.reported = 0

    def __call__(self, k: int) -> None:
        self.done = min(self.distinct, self.done + int(k))
        self._emit(self.done * self.positions // self.distinct)

    def _emit(self, target: int) -> None:
        if self.progress is not None and target > self.reported:
            delta = target - self.reported
            self.reported = target
            self.progress(delta)

    def finish(self) -> None:
        self._emit(self.positions)

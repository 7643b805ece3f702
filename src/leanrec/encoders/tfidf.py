"""TF-IDF text encoder: the no-GPU, no-weights baseline every language model must beat.

It wraps scikit-learn's ``TfidfVectorizer`` behind the :class:`~leanrec.encoders.base.Encoder`
contract. Unlike a pretrained model it learns its vocabulary and IDF weights from a
corpus, so it must be fitted first, and its ``model_id`` is a hash of that fitted state:
refitting on a different catalogue gives different vectors, hence a different id, hence
no stale hits in the embedding cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from ..core.errors import NotFittedError

from leanrec.encoders.base import (
    ProgressCallback,
    check_batch_size,
    empty_embeddings,
    iter_batches,
    l2_normalize,
    validate_texts,
)

__all__ = ["TfidfEncoder"]


class TfidfEncoder(BaseEstimator):
    """Dense, L2-normalised TF-IDF vectors over word n-grams.

    Follows scikit-learn's estimator contract: the constructor only stores its
    parameters (so ``get_params``/``set_params``/``clone`` work), :meth:`fit` learns the
    state, and learned attributes end in ``_`` (``vectorizer_``, ``fingerprint_``).

    Parameters mirror ``TfidfVectorizer``: ``max_features`` caps the vocabulary (and
    therefore ``dim``; the output is dense, so ``n_texts * dim * 4`` bytes),
    ``ngram_range`` the word n-grams, ``sublinear_tf`` uses ``1 + log(tf)`` so a word
    repeated in a long description does not dominate, ``min_df`` drops rare terms.

    A text none of whose tokens is in the fitted vocabulary (e.g. ``"a"``: the default
    tokenizer ignores one-letter words) encodes to the zero vector; every other row has
    unit norm.
    """

    #: Rows densified at a time when ``encode`` gets no ``batch_size``: bounds the memory
    #: of the temporary dense block, not the result.
    default_batch_size = 1024

    def __init__(
        self,
        max_features: int | None = 20000,
        ngram_range: tuple[int, int] = (1, 2),
        sublinear_tf: bool = True,
        min_df: int | float = 1,
    ) -> None:
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.sublinear_tf = sublinear_tf
        self.min_df = min_df

    def fit(self, texts: Sequence[str], y: object = None) -> TfidfEncoder:
        """Learn the vocabulary and IDF weights from ``texts``; return ``self``.

        ``y`` is ignored; it exists so the encoder fits in scikit-learn pipelines.
        """
        docs = validate_texts(texts)
        if not docs:
            raise ValueError("cannot fit TfidfEncoder on an empty corpus")
        vectorizer = TfidfVectorizer(
            max_features=self.max_features,
            ngram_range=tuple(self.ngram_range),
            sublinear_tf=self.sublinear_tf,
            min_df=self.min_df,
            norm="l2",
            dtype=np.float32,
        )
        vectorizer.fit(docs)
        self.vectorizer_ = vectorizer
        self.fingerprint_ = _fingerprint(vectorizer)
        return self

    def _check_fitted(self) -> TfidfVectorizer:
        try:
            check_is_fitted(self, "vectorizer_")
        except SklearnNotFittedError:
            raise NotFittedError(
                "TfidfEncoder is not fitted yet: call .fit(corpus) with the item texts "
                "before encode(), dim or model_id"
            ) from None
        return self.vectorizer_

    @property
    def dim(self) -> int:
        """Vocabulary size of the fitted vectorizer (at most ``max_features``)."""
        return len(self._check_fitted().vocabulary_)

    @property
    def model_id(self) -> str:
        """``"tfidf:"`` + a hash of the fitted vocabulary, IDF weights and parameters."""
        self._check_fitted()
        return f"tfidf:{self.fingerprint_}"

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``float32[len(texts), dim]``; see :class:`~leanrec.encoders.base.Encoder`.

        Each row depends only on its own text, so results do not depend on batching or
        on the order of the input.
        """
        vectorizer = self._check_fitted()
        docs = validate_texts(texts)
        size = check_batch_size(batch_size, self.default_batch_size)
        dim = len(vectorizer.vocabulary_)
        if not docs:
            return empty_embeddings(dim)
        out = np.empty((len(docs), dim), dtype=np.float32)
        for rows in iter_batches(len(docs), size):
            block = vectorizer.transform(docs[rows]).toarray()
            out[rows] = l2_normalize(block)
            if progress is not None:
                progress(rows.stop - rows.start)
        return out


def _fingerprint(vectorizer: TfidfVectorizer) -> str:
    """Hash everything that determines the output of ``vectorizer.transform``."""
    h = hashlib.sha256()
    params = {k: v for k, v in vectorizer.get_params().items() if k != "dtype"}
    h.update(json.dumps(params, sort_keys=True, default=repr).encode())
    h.update(b"\x00vocabulary\x00")
    # Feature names come out in column order, so this also pins which term owns which column.
    for term in vectorizer.get_feature_names_out():
        h.update(term.encode("utf-8"))
        h.update(b"\x00")
    h.update(b"\x00idf\x00")
    h.update(np.ascontiguousarray(vectorizer.idf_, dtype="<f8").tobytes())
    return h.hexdigest()[:16]

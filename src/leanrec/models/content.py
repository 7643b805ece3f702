"""Content recommender: the language model's view of the catalogue.

Item vectors V_i come from an encoder over the item text (L2-normalised). A user's vector
is the time-decayed weighted mean of the vectors of the items in their history,
U_u = Σ_j w_j V_j / Σ_j w_j with w_j = 0.5 ** (age_j / half_life), age_j counted in events
(the newest has age 0). Scores are ⟨U_u, V_i⟩ and P(i|u) = softmax(⟨U_u, V_i⟩ / T).
Because U_u is linear in the history, the score splits exactly into per-history-item
contributions (the explanation issue builds on this), and any item with text — including
one no user has touched yet — can be scored.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from ..data.history import user_vectors, weighted_items
from .base import Decomposition, Recommender


def build_encoder(encoder, texts, cache="auto"):
    """A ready encoder for ``texts`` from a name (see :func:`leanrec.encoders.load_encoder`)
    or an Encoder (cloned). TF-IDF is fitted on ``texts`` here; ``cache`` True/False/"auto"
    wraps it in the on-disk embedding cache ("auto": every encoder but TF-IDF, i.e. the
    expensive pretrained ones, whose vectors do not depend on the corpus)."""
    from ..encoders import CachedEncoder, EmbeddingCache, TfidfEncoder, load_encoder

    enc = load_encoder(encoder) if isinstance(encoder, str) else clone(encoder, safe=False)
    if hasattr(enc, "fit"):
        enc = enc.fit(texts)  # TF-IDF learns its vocabulary here; pretrained models ignore it
    use_cache = not isinstance(enc, TfidfEncoder) if cache == "auto" else bool(cache)
    return CachedEncoder(enc, EmbeddingCache()) if use_cache else enc


class ContentRecommender(Recommender):
    """Parameters: ``encoder`` (a name for :func:`leanrec.encoders.load_encoder` or an
    Encoder), ``half_life`` (events; None = plain mean), ``temperature`` (softmax T),
    ``cache`` (True/False/"auto": keep vectors in the on-disk embedding cache; "auto"
    caches every encoder but TF-IDF, i.e. the expensive pretrained ones)."""

    def __init__(self, encoder="minilm", half_life: float | None = 8.0, temperature: float = 1.0, cache="auto"):
        self.encoder = encoder
        self.half_life = half_life
        self.temperature = temperature
        self.cache = cache

    scores_new_items = True  # any item with text gets a score, trained on or not

    def _fit(self, dataset) -> None:
        texts = dataset.items.texts
        self.encoder_ = build_encoder(self.encoder, texts, self.cache)
        self.item_vectors_ = self.encoder_.encode(texts)

    def user_vectors(self, rows: np.ndarray) -> np.ndarray:
        """U_u for the given history rows (float32[len(rows), d])."""
        return user_vectors(self.history_.sequences_of(rows), self.item_vectors_, self.half_life)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.user_vectors(rows) @ self.item_vectors_.T

    explain_method = "weighted mean of history vectors"

    def history_weights(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(distinct history items, their normalised weights w_j / Σw): an item seen twice
        adds both events' weights."""
        items, weights = weighted_items(self.history_.sequences[row], self.half_life)
        return items.astype(np.int64), weights

    def _decompose(self, row: int, items: np.ndarray) -> Decomposition:
        """⟨U, V_i⟩ = Σ_j (w_j / Σw) ⟨V_j, V_i⟩: exact."""
        hist, a = self.history_weights(row)
        V = self.item_vectors_
        sims = V[hist].astype(np.float64) @ V[items].astype(np.float64).T
        zeros = np.zeros(len(items))
        return Decomposition(hist, a[:, None] * sims, zeros, zeros.copy(), self.explain_method)

"""Content recommender: the language model's view of the catalogue.

Item vectors V_i come from an encoder over the item text (L2-normalised). A user's vector
is the time-decayed weighted mean of the vectors of the items in their history
(:func:`leanrec.data.history.user_vectors`). Scores are ⟨U_u, V_i⟩ and
P(i|u) = softmax(⟨U_u, V_i⟩ / T). Because U_u is linear in the history, the score splits
exactly into per-history-item contributions, and any item with text — including one no
user has touched yet — can be scored.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from ..data.history import user_vectors, weighted_items
from .base import Recommender
from .live import Decomposition, ItemCatalogue, LiveScorer, encoder_spec


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


class ContentScorer(LiveScorer):
    """⟨U, V_i⟩ over the catalogue's vectors, U the decayed mean of the live history's
    vectors (or the profile the caller keeps, ``LiveUser.vector``). Needs no training
    catalogue: every item with text scores."""

    kind = "content"
    explain_method = "weighted mean of history vectors"
    uses_profile = True
    by_query = True
    scores_new_items = True

    def query(self, user, cat) -> np.ndarray:
        if user.vector is not None:
            return np.asarray(user.vector, np.float32)
        return self.queries([user.events_in(cat)], cat.V)[0]

    def queries(self, sequences, item_vectors: np.ndarray) -> np.ndarray:
        """U of many histories given as item positions (oldest first): what a batch job that
        ranks through a vector index sends as queries (float32[n, d])."""
        return user_vectors(sequences, item_vectors, self.half_life)

    def score(self, users, cat) -> np.ndarray:
        if all(u.vector is None for u in users):
            # a fixed catalogue keeps its vectors in the form the sums are fastest in (sparse
            # TF-IDF); a live one's vectors change, so they are read as they are
            V = cat.summable_V if isinstance(cat, ItemCatalogue) else cat.V
            U = self.queries([u.events_in(cat) for u in users], V)
        else:
            U = np.stack([self.query(u, cat) for u in users]) if users else np.zeros((0, cat.V.shape[1]), np.float32)
        return U @ cat.V.T

    def history_weights(self, user, cat) -> tuple[list, np.ndarray]:
        """(distinct live history items as ids, ascending position; their weights w_j / Σw)."""
        seq = user.events_in(cat)
        if not len(seq):
            return [], np.zeros(0)
        items, weights = weighted_items(seq, self.half_life)
        return [cat.ids[p] for p in items], weights

    def decompose(self, user, cat, positions) -> Decomposition:
        """⟨U, V_i⟩ = Σ_j (w_j / Σw) ⟨V_j, V_i⟩: exact."""
        ids, a = self.history_weights(user, cat)
        V = cat.V
        hist = np.fromiter((cat.pos[i] for i in ids), np.int64, count=len(ids))
        sims = V[hist].astype(np.float64) @ V[positions].astype(np.float64).T
        zeros = np.zeros(len(positions))
        return Decomposition(np.asarray(ids, dtype=object), a[:, None] * sims, zeros, zeros.copy(),
                             self.explain_method)

    def decompose_mean(self, user, cat, columns):
        ids, a = self.history_weights(user, cat)
        V = cat.V
        hist = np.fromiter((cat.pos[i] for i in ids), np.int64, count=len(ids))
        mean_v = V[columns].astype(np.float64).mean(axis=0) if len(columns) else np.zeros(V.shape[1])
        return np.asarray(ids, dtype=object), a * (V[hist].astype(np.float64) @ mean_v), 0.0, 0.0

    def _config(self) -> dict:
        return {"half_life": self.half_life, "encoder": encoder_spec(self.encoder, "content model")}

    @classmethod
    def _from_folder(cls, path, config, item_ids, popularity, load=None):
        return cls(item_ids, popularity, temperature=config.get("temperature", 1.0), encoder=config["encoder"],
                   half_life=config.get("half_life"), meta=config)


class ContentRecommender(Recommender):
    """Parameters: ``encoder`` (a name for :func:`leanrec.encoders.load_encoder` or an
    Encoder), ``half_life`` (events; None = plain mean), ``temperature`` (softmax T),
    ``cache`` (True/False/"auto": keep vectors in the on-disk embedding cache; "auto"
    caches every encoder but TF-IDF, i.e. the expensive pretrained ones)."""

    explain_method = ContentScorer.explain_method
    scores_new_items = True  # any item with text gets a score, trained on or not

    def __init__(self, encoder="minilm", half_life: float | None = 8.0, temperature: float = 1.0, cache="auto"):
        self.encoder = encoder
        self.half_life = half_life
        self.temperature = temperature
        self.cache = cache

    def _fit(self, dataset) -> None:
        texts = dataset.items.texts
        self.encoder_ = build_encoder(self.encoder, texts, self.cache)
        self.item_vectors_ = self.encoder_.encode(texts)

    def live_scorer(self) -> ContentScorer:
        return ContentScorer(self.items_.ids, self.history_.item_counts, temperature=self.temperature,
                             encoder=self.encoder, half_life=self.half_life,
                             meta={"params": {"half_life": self.half_life}})

    def _catalogue_vectors(self) -> np.ndarray:
        return self.item_vectors_

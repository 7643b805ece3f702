"""MostPopular: the baseline every personalised model must beat (and cannot on new items)."""

from __future__ import annotations

import numpy as np

from .base import Recommender
from .live import Decomposition, LiveScorer


class PopularScorer(LiveScorer):
    """Score = the item's event count, the same list for everyone: the catalogue's live
    counts (the library's training catalogue counts its training events), or with
    ``live_counts=False`` the training counts (what a learned hybrid's weights were
    learned on)."""

    kind = "popular"
    explain_method = "popularity"

    def __init__(self, item_ids, popularity, *, live_counts: bool = True, **kw):
        super().__init__(item_ids, popularity, **kw)
        self.live_counts = live_counts

    def _counts(self, cat) -> np.ndarray:
        return cat.counts[:cat.n] if self.live_counts else self.to_catalogue(cat, self.popularity)

    def score(self, users, cat) -> np.ndarray:
        return np.broadcast_to(self._counts(cat).astype(np.float32), (len(users), cat.n)).copy()

    def decompose(self, user, cat, positions) -> Decomposition:
        """No history item plays a part: the whole score is the item's popularity (exact)."""
        n = len(positions)
        base = self._counts(cat)[positions].astype(np.float32).astype(np.float64)
        return Decomposition(np.zeros(0, object), np.zeros((0, n)), base, np.zeros(n), self.explain_method)

    def decompose_mean(self, user, cat, columns):
        return np.zeros(0, object), np.zeros(0), float(self._counts(cat)[columns].astype(np.float32).mean()), 0.0

    @classmethod
    def _from_folder(cls, path, config, item_ids, popularity, load=None):
        return cls(item_ids, popularity, temperature=config.get("temperature", 1.0), encoder=config.get("encoder"),
                   meta=config)


class MostPopular(Recommender):
    """Score = number of training events of the item, the same list for everyone."""

    explain_method = PopularScorer.explain_method

    def _fit(self, dataset) -> None:
        self.popularity_ = self.history_.item_counts.astype(np.float32)

    def live_scorer(self) -> PopularScorer:
        return PopularScorer(self.items_.ids, self.history_.item_counts)

"""MostPopular: the baseline every personalised model must beat (and cannot on new items)."""

from __future__ import annotations

import numpy as np

from .base import Decomposition, Recommender


class MostPopular(Recommender):
    """Score = number of training events of the item, the same list for everyone."""

    def _fit(self, dataset) -> None:
        self.popularity_ = self.history_.item_counts.astype(np.float32)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(rows), len(self.popularity_))).copy()

    explain_method = "popularity"

    def _decompose(self, row: int, items: np.ndarray) -> Decomposition:
        """No history item plays a part: the whole score is the item's popularity (exact)."""
        return Decomposition(np.zeros(0, np.int64), np.zeros((0, len(items))),
                             self.popularity_[items].astype(np.float64), np.zeros(len(items)), self.explain_method)

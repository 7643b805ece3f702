"""MostPopular: the baseline every personalised model must beat (and cannot on new items)."""

from __future__ import annotations

import numpy as np

from .base import Recommender


class MostPopular(Recommender):
    """Score = number of training events of the item, the same list for everyone."""

    def _fit(self, dataset) -> None:
        self.popularity_ = self.history_.item_counts.astype(np.float32)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(rows), len(self.popularity_))).copy()

"""Hybrid: collaborative scores where there is evidence, content scores everywhere.

Each part's scores are z-normalised per user (collaborative over the items that have
training events, content over all items), then fused: s = w·z_cf + (1-w)·z_content for
items with events; items with no events (new items) fall back to z_content alone, so they
are ranked on the same scale rather than dropped.
"""

from __future__ import annotations

import numpy as np

from .base import Recommender
from .content import ContentRecommender
from .ease import EASE


def zscore(scores: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    ref = scores if columns is None else scores[:, columns]
    if ref.shape[1] == 0:
        return np.zeros_like(scores)
    mu = ref.mean(axis=1, keepdims=True)
    sd = ref.std(axis=1, keepdims=True)
    return (scores - mu) / np.where(sd > 0, sd, 1.0)


class Hybrid(Recommender):
    scores_new_items = True  # new items fall back to the content score

    def __init__(self, content=None, cf=None, weight: float = 0.5, temperature: float = 1.0):
        self.content = content
        self.cf = cf
        self.weight = weight
        self.temperature = temperature

    def _fit(self, dataset) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {self.weight}")
        from sklearn.base import clone

        self.content_ = clone(self.content if self.content is not None else ContentRecommender()).fit(dataset)
        self.cf_ = clone(self.cf if self.cf is not None else EASE()).fit(dataset)
        self.has_events_ = self.history_.item_counts > 0

    explain_method = "z-scored EASE + content"

    def _decompose(self, row: int, items: np.ndarray):
        """Exact: each part's z-score split (:mod:`leanrec.models.decompose`), weighted as in
        ``_score`` — w and 1 − w on items with events, content alone on the others."""
        from .decompose import merge, zscore_split

        user = self.history_.user_ids[row]
        ev = self.has_events_[items]
        content = zscore_split(self.content_, user, items, None, np.where(ev, 1.0 - self.weight, 1.0))
        cf = zscore_split(self.cf_, user, items, np.flatnonzero(self.has_events_), np.where(ev, self.weight, 0.0))
        return merge([content, cf], self.explain_method)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        users = self.history_.user_ids[rows]
        z_content = zscore(self.content_.score(users))
        z_cf = zscore(self.cf_.score(users), np.flatnonzero(self.has_events_))
        fused = self.weight * z_cf + (1.0 - self.weight) * z_content
        return np.where(self.has_events_, fused, z_content).astype(np.float32)

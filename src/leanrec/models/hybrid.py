"""Hybrid: collaborative scores where there is evidence, content scores everywhere.

Each part's scores are z-normalised per user (collaborative over the live items that have
training events, content over all live items), then fused: s = w·z_cf + (1-w)·z_content
for items with events; items with no events (new items) fall back to z_content alone, so
they are ranked on the same scale rather than dropped.
"""

from __future__ import annotations

import numpy as np

from .base import Recommender
from .content import ContentRecommender, ContentScorer
from .decompose import merge, zscore_split
from .ease import EASE, EASEScorer
from .live import LiveScorer, zscore


class HybridScorer(LiveScorer):
    """The fusion over a live catalogue; its parts are a :class:`ContentScorer` and an
    :class:`EASEScorer` of the same training catalogue."""

    kind = "hybrid"
    explain_method = "z-scored EASE + content"
    uses_profile = True
    scores_new_items = True
    fusable = False

    def __init__(self, item_ids, popularity, content: ContentScorer, cf: EASEScorer, weight: float, **kw):
        super().__init__(item_ids, popularity, **kw)
        self.content, self.cf, self.weight = content, cf, float(weight)

    def _columns(self, cat) -> tuple[np.ndarray | None, np.ndarray]:
        """(the content part's reference columns, None = all; the live items with events)."""
        return (None if self.identity(cat) else np.flatnonzero(cat.alive)), self.has_events(cat)

    def score(self, users, cat) -> np.ndarray:
        alive, has_events = self._columns(cat)
        z_content = zscore(self.content.score(users, cat), alive)
        z_cf = zscore(self.cf.score(users, cat), np.flatnonzero(has_events))
        fused = self.weight * z_cf + (1.0 - self.weight) * z_content
        return np.where(has_events, fused, z_content).astype(np.float32)

    def decompose(self, user, cat, positions):
        """Exact: each part's z-score split (:mod:`leanrec.models.decompose`), weighted as in
        ``score`` — w and 1 − w on items with events, content alone on the others."""
        alive, has_events = self._columns(cat)
        ev = has_events[positions]
        content = zscore_split(self.content, user, cat, positions, alive, np.where(ev, 1.0 - self.weight, 1.0))
        cf = zscore_split(self.cf, user, cat, positions, np.flatnonzero(has_events), np.where(ev, self.weight, 0.0))
        return merge([content, cf], self.explain_method)

    def _config(self) -> dict:
        return {"half_life": self.half_life, "weight": self.weight, "encoder": self.content._config()["encoder"]}

    def _save_arrays(self, folder) -> None:
        self.cf._save_arrays(folder)

    @classmethod
    def _from_folder(cls, path, config, item_ids, popularity, load=None):
        common = {"temperature": config.get("temperature", 1.0), "meta": config}
        content = ContentScorer(item_ids, popularity, encoder=config["encoder"], half_life=config.get("half_life"),
                                **common)
        cf = EASEScorer(item_ids, popularity, EASEScorer.read_B(path, len(item_ids)), **common)
        return cls(item_ids, popularity, content, cf, config["weight"], encoder=config["encoder"],
                   half_life=config.get("half_life"), **common)


class Hybrid(Recommender):
    explain_method = HybridScorer.explain_method
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

    def live_scorer(self) -> HybridScorer:
        content = self.content_.live_scorer()
        return HybridScorer(self.items_.ids, self.history_.item_counts, content, self.cf_.live_scorer(),
                            self.weight, temperature=self.temperature, encoder=content.encoder,
                            half_life=content.half_life,
                            meta={"params": {"half_life": content.half_life, "weight": self.weight,
                                             "lam": self.cf_.lam}})

    def _catalogue_vectors(self) -> np.ndarray:
        return self.content_.item_vectors_

"""What every recommender shares: the estimator contract, user histories, top-K and softmax.

A model implements ``_fit(dataset)`` and ``_score(rows)`` (scores for known users, as rows
of the user-item history matrix); this base turns that into the public API:

* ``fit(dataset) -> self`` (scikit-learn contract: hyper-parameters are constructor
  arguments stored as given, learned state ends in ``_``);
* ``score(user_ids) -> float32[n_users, n_items]`` over the whole catalogue, in item-id
  order; users unknown to the model get a row of zeros (the service issue adds a proper
  cold-start list on top);
* ``predict_proba(user_ids, candidates=None)``: P(i|u) = softmax_i(<U_u, V_i> / T) over the
  candidates (all items by default) — the seed formula, T = ``temperature`` where a model
  has it, else 1;
* ``recommend(user_id, k, exclude_seen=True)``: top-K with ties broken by item id, the
  user's seen items excluded, each with its score and its softmax probability;
* ``decompose(user_id, items)``: each score split into per-history-item contributions plus
  a part no history item accounts for (:class:`Decomposition`); a model implements
  ``_decompose`` where its score has such an exact split, and the default says it has none;
* ``explain(user_id, item_id)``: the reasons a user sees for one item
  (:func:`leanrec.explain.explain`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from ..core.errors import NotFittedError
from ..core.ranking import softmax, top_k
from ..data.history import History
from ..data.schema import Dataset


@dataclass(frozen=True)
class Decomposition:
    """scores[i] = contributions[:, i].sum() + base[i] + unexplained[i], for the requested items.

    ``history``: positions of the user's distinct history items (ascending), one row of
    ``contributions`` each; ``base``: the part that depends on no history item (popularity,
    a bias); ``unexplained``: the part of the score that has no exact split (a transformer's
    output) — all zeros when the split is exact; ``note`` says why a part is unexplained.
    """

    history: np.ndarray        # int64[h]
    contributions: np.ndarray  # float64[h, n]
    base: np.ndarray           # float64[n]
    unexplained: np.ndarray    # float64[n]
    method: str
    note: str = ""

    @property
    def exact(self) -> bool:
        return not np.any(self.unexplained)

    @property
    def total(self) -> np.ndarray:
        return self.contributions.sum(axis=0) + self.base + self.unexplained


@dataclass(frozen=True)
class Recommendation:
    item_id: object
    score: float
    proba: float


class Recommender(BaseEstimator):
    """Base class; see the module docstring for the contract."""

    def fit(self, dataset: Dataset, y=None) -> "Recommender":
        self.items_ = dataset.items
        self.history_ = History.from_dataset(dataset)
        from ..explain import verb_for

        self.explain_verb_ = verb_for(dataset)
        self._fit(dataset)
        return self

    # -- to implement -------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        raise NotImplementedError

    def _score(self, rows: np.ndarray) -> np.ndarray:
        """float32[len(rows), n_items] for rows of ``history_.matrix`` (all >= 0)."""
        raise NotImplementedError

    #: how ``_decompose`` splits a score (shown in explanations)
    explain_method = "none"

    def _decompose(self, row: int, items: np.ndarray) -> Decomposition:
        """Default: no exact split — the whole score is unexplained, and says so."""
        score = self._score(np.array([row]))[0, items].astype(np.float64)
        return Decomposition(np.zeros(0, np.int64), np.zeros((0, len(items))), np.zeros(len(items)), score,
                             self.explain_method,
                             f"{type(self).__name__} has no exact split of its score into history items")

    # -- public API ---------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "history_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(dataset) first")

    def score(self, user_ids) -> np.ndarray:
        self._check_fitted()
        rows = self.history_.rows(user_ids)
        out = np.zeros((len(rows), len(self.items_)), np.float32)
        known = rows >= 0
        if known.any():
            out[known] = self._score(rows[known])
        if not np.isfinite(out).all():
            raise FloatingPointError(f"{type(self).__name__} produced non-finite scores")
        return out

    def seen_mask(self, user_ids) -> np.ndarray:
        """bool[n_users, n_items]: items each user interacted with in the training data."""
        rows = self.history_.rows(user_ids)
        mask = np.zeros((len(rows), len(self.items_)), bool)
        for k, r in enumerate(rows):
            if r >= 0:
                mask[k, self.history_.sequences[r]] = True
        return mask

    def decompose(self, user_id, items=None) -> Decomposition:
        """Per-history-item split of ``user_id``'s scores of ``items`` (positions; all if None)."""
        self._check_fitted()
        row = int(self.history_.rows([user_id])[0])
        if row < 0:
            raise KeyError(f"user {user_id!r} has no history in the data {type(self).__name__} was fitted on")
        items = np.arange(len(self.items_)) if items is None else np.asarray(items, np.int64)
        return self._decompose(row, items)

    def explain(self, user_id, item_id, top: int = 3, limit: int = 10, verb: str | None = None):
        """Why ``item_id`` is scored as it is for ``user_id``: see :func:`leanrec.explain.explain`."""
        from ..explain import explain

        return explain(self, user_id, item_id, top=top, limit=limit, verb=verb)

    @property
    def temperature_(self) -> float:
        return float(getattr(self, "temperature", 1.0))

    def predict_proba(self, user_ids, candidates=None) -> np.ndarray:
        """P(i|u) = softmax over the candidate items (positions; all items if None)."""
        scores = self.score(user_ids).astype(np.float64)
        if candidates is not None:
            mask = np.full(scores.shape[1], True)
            mask[np.asarray(candidates)] = False
            scores[:, mask] = -np.inf
        return softmax(scores, self.temperature_)

    def recommend(self, user_id, k: int = 10, exclude_seen: bool = True, candidates=None) -> list[Recommendation]:
        """Top-k items for one user; probabilities are softmax over all remaining candidates."""
        scores = self.score([user_id])[0].astype(np.float64)
        allowed = np.ones(len(scores), bool) if candidates is None else np.isin(np.arange(len(scores)), candidates)
        if exclude_seen:
            allowed &= ~self.seen_mask([user_id])[0]
        masked = np.where(allowed, scores, -np.inf)
        proba = softmax(masked[None, :], self.temperature_)[0]
        best = top_k(masked[None, :], min(k, int(allowed.sum())))[0]
        ids = self.items_.ids
        return [Recommendation(ids[i].item() if hasattr(ids[i], "item") else ids[i], float(scores[i]), float(proba[i]))
                for i in best]

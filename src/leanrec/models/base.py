"""What every recommender shares: the estimator contract, user histories, top-K and softmax.

A model implements ``_fit(dataset)`` and ``_score(rows)`` (scores for known users, as rows
of the user-item history matrix); this base turns that into the public API:

* ``fit(dataset) -> self`` (scikit-learn contract: hyper-parameters are constructor
  arguments stored as given, learned state ends in ``_``);
* ``score(user_ids) -> float32[n_users, n_items]`` over the whole catalogue, in item-id
  order; users unknown to the model get a row of zeros (the service puts a proper
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
from .live import Decomposition, ItemCatalogue, LiveUser


@dataclass(frozen=True)
class Recommendation:
    item_id: object
    score: float
    proba: float


class Recommender(BaseEstimator):
    """Base class; see the module docstring for the contract."""

    def fit(self, dataset: Dataset, y=None) -> "Recommender":
        self._reset_scorer()
        self.items_ = dataset.items
        self.history_ = History.from_dataset(dataset)
        from ..explain import verb_for

        self.explain_verb_ = verb_for(dataset)
        self._fit(dataset)
        return self

    # -- to implement -------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        raise NotImplementedError

    def live_scorer(self):
        """The model's :class:`~leanrec.models.live.LiveScorer`: its formula, applied to any
        history over any catalogue. The library scores through it too (``_score``)."""
        raise NotImplementedError

    def _catalogue_vectors(self) -> np.ndarray | None:
        """The item vectors the scorer reads from the catalogue (None: it reads none)."""
        return None

    #: how the model splits a score (shown in explanations)
    explain_method = "none"

    # -- scoring through the scorer -------------------------------------------------
    @property
    def scorer_(self):
        """The fitted model's scorer, built once (a copy that changes what it scores with
        resets it: :meth:`_reset_scorer`)."""
        cached = self.__dict__.get("_scorer")
        if cached is None:
            self._check_fitted()
            cached = (self.live_scorer(), ItemCatalogue(self.items_.ids, self._catalogue_vectors(),
                                                        self.history_.item_counts))
            self.__dict__["_scorer"] = cached
        return cached[0]

    @property
    def catalogue_(self):
        """The training catalogue as the scorer sees it (every item alive)."""
        self.scorer_  # noqa: B018  (builds both)
        return self.__dict__["_scorer"][1]

    def _reset_scorer(self) -> None:
        self.__dict__.pop("_scorer", None)

    def _users(self, rows: np.ndarray) -> list:
        """The training histories of ``rows`` as the scorer's users."""
        cat, sequences = self.catalogue_, self.history_.sequences
        return [LiveUser.on_catalogue(cat, sequences[r]) for r in rows]

    def _score(self, rows: np.ndarray) -> np.ndarray:
        """float32[len(rows), n_items] for rows of ``history_.matrix`` (all >= 0)."""
        return self.scorer_.score(self._users(rows), self.catalogue_)

    def _split(self, user, items: np.ndarray) -> Decomposition:
        """The scorer's split of one user's scores (history as item ids)."""
        return self.scorer_.decompose(user, self.catalogue_, items)

    def _decompose(self, row: int, items: np.ndarray) -> Decomposition:
        """The scorer's split, its history ids turned into positions (ascending)."""
        d = self._split(self._users([row])[0], items)
        pos = self.catalogue_.pos
        hist = np.fromiter((pos[i] for i in d.history), np.int64, count=len(d.history))
        order = np.argsort(hist, kind="stable")
        return Decomposition(hist[order], d.contributions[order], d.base, d.unexplained, d.method, d.note)

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

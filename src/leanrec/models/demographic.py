"""Demographic popularity: what a brand-new user can be shown from a sign-up profile alone.

Score = the item's event count among the training users of the user's group, the group
being (age bucket, gender, occupation). A group with fewer than ``min_users`` training users
backs off to the next, coarser grouping ((age bucket, gender), then the age bucket), and a
user no grouping has enough users for (or who has no profile) gets global popularity.
Ties within the chosen group (most items, in a small group) are broken by the coarser
groups' counts and then the global count, never by item id: so the scores are the dense
ranks of that lexicographic key (equal key, equal score), not the counts themselves.

Why a model of its own: the warm and cold-item models all read a history, and a new user
has none; the one thing such a user brings is the profile (MovieLens: age, gender,
occupation). It reads a users table with columns ``user_id``, ``age``, ``gender``,
``occupation`` (``Dataset.users``, or ``users=`` at fit) and scores any user in that table,
with or without events: the held-out users of the new-user ramp
(:func:`leanrec.data.split.new_user_split`) are scored by their profile alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.schema import USER_ID, normalize_ids
from .base import Recommender

#: MovieLens-1M's age groups: under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+
AGE_EDGES = (18, 25, 35, 45, 50, 56)
#: the groupings, finest first; global popularity comes after the last
LEVELS = (("age", "gender", "occupation"), ("age", "gender"), ("age",))


class DemographicPopular(Recommender):
    """Parameters: ``min_users`` (training users a group needs to be used rather than backed
    off from), ``age_edges`` (bucket boundaries: ``age < edges[0]`` is bucket 0), ``levels``
    (the groupings, finest first; fields of the users table, ``age`` meaning its bucket)."""

    explain_method = "popularity in the user's demographic group"
    scores_from_profile = True  # scores users by their users-table row, history or not

    def __init__(self, min_users: int = 20, age_edges=AGE_EDGES, levels=LEVELS):
        self.min_users = min_users
        self.age_edges = age_edges
        self.levels = levels

    def fit(self, dataset, y=None, *, users: pd.DataFrame | None = None) -> DemographicPopular:
        """Count each group's events; ``users``: the users table when the dataset has none
        (default: ``dataset.users``)."""
        table = users if users is not None else getattr(dataset, "users", None)
        if table is None:
            raise ValueError("DemographicPopular needs a users table (columns user_id, age, gender, occupation): "
                             "this dataset has none (Dataset.users is None) and fit got no users=")
        if not isinstance(self.min_users, (int, np.integer)) or self.min_users < 1:
            raise ValueError(f"min_users must be a positive integer, got {self.min_users!r}")
        if not self.levels or any(not level for level in self.levels):
            raise ValueError(f"levels must be non-empty groupings of user fields, got {self.levels!r}")
        fields = list(dict.fromkeys(f for level in self.levels for f in level))
        missing = [c for c in (USER_ID, *fields) if c not in table.columns]
        if missing:
            raise ValueError(f"users table lacks column(s) {missing} (has {list(table.columns)})")
        self._table = table
        try:
            return super().fit(dataset)
        finally:
            del self._table

    def _fit(self, dataset) -> None:
        self.profiles_ = self._profiles(self._table)
        seqs = self.history_.sequences
        rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
        cols = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        counts = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(seqs), len(self.items_)))
        known = self.profiles_.reindex(self.history_.user_ids)  # training users' profiles (NaN: none)
        self.group_counts_: list[dict] = []
        self.group_users_: list[dict] = []
        for level in self.levels:
            keys = known[list(level)]
            has = keys.notna().all(axis=1).to_numpy()
            codes, uniques = pd.MultiIndex.from_frame(keys[has]).factorize()
            member = sp.csr_matrix((np.ones(has.sum()), (codes, np.flatnonzero(has))),
                                   shape=(len(uniques), len(seqs)))
            per_group = np.asarray((member @ counts).todense())
            sizes = np.bincount(codes, minlength=len(uniques))
            self.group_counts_.append({key: per_group[g] for g, key in enumerate(uniques)})
            self.group_users_.append({key: int(sizes[g]) for g, key in enumerate(uniques)})
        self.popularity_ = self.history_.item_counts.astype(np.float64)
        self._score_cache: dict = {}

    def _profiles(self, table: pd.DataFrame) -> pd.DataFrame:
        """The users table with ``age`` as its bucket (0..len(edges)), indexed by user id."""
        df = table.copy()
        df[USER_ID] = normalize_ids(df[USER_ID])
        if "age" in df:
            age = pd.to_numeric(df["age"], errors="coerce")
            df["age"] = np.where(age.notna(), np.searchsorted(np.asarray(self.age_edges), age, side="right"), np.nan)
        return df.drop_duplicates(USER_ID, keep="last").set_index(USER_ID)

    def chain(self, user_id) -> tuple[int, ...]:
        """The levels (indices into ``levels``) whose counts order this user's scores, the
        chosen one first; ``()`` = global popularity alone. A level counts when the user's
        group in it has at least ``min_users`` training users."""
        self._check_fitted()
        if user_id not in self.profiles_.index:
            return ()
        profile = self.profiles_.loc[user_id]
        out = []
        for k, level in enumerate(self.levels):
            values = profile[list(level)]
            if values.isna().any():
                continue
            if self.group_users_[k].get(tuple(values), 0) >= self.min_users:
                out.append(k)
        return tuple(out)

    def _groups(self, user_id, chain: tuple[int, ...]) -> tuple:
        """The user's group (its field values) at each level of the chain."""
        profile = self.profiles_.loc[user_id] if chain else None
        return tuple(tuple(profile[list(self.levels[k])]) for k in chain)

    def _chain_scores(self, chain: tuple[int, ...], groups: tuple) -> np.ndarray:
        keys = [self.group_counts_[k][group] for k, group in zip(chain, groups)]
        keys.append(self.popularity_)
        order = np.lexsort(keys[::-1])  # the first key is the primary one
        stacked = np.stack(keys)[:, order]
        step = np.concatenate([[0], (np.diff(stacked, axis=1) != 0).any(axis=0).astype(np.int64)])
        scores = np.empty(len(order), np.float32)
        scores[order] = np.cumsum(step)
        return scores

    def score(self, user_ids) -> np.ndarray:
        """float32[n_users, n_items]: each user's group popularity (dense ranks, see the
        module docstring); users outside the users table get global popularity."""
        self._check_fitted()
        ids = normalize_ids(pd.Series(list(user_ids))).tolist() if len(user_ids) else []
        out = np.zeros((len(ids), len(self.items_)), np.float32)
        for k, uid in enumerate(ids):
            chain = self.chain(uid)
            key = (chain, self._groups(uid, chain))  # users of the same groups: computed once
            if key not in self._score_cache:
                self._score_cache[key] = self._chain_scores(*key)
            out[k] = self._score_cache[key]
        return out

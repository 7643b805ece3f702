"""Reads: a user's list (the served model's scorer, or the index for a query-vector model), similar items, the cold-start list, explanations.

Part of :class:`~leanrec.service.core.RecService` (see its docstring for the locks).
"""

from __future__ import annotations

import logging

import numpy as np

from ..core.ranking import softmax
from .catalogue import Catalogue, _top
from .errors import NotFound
from .scoring import (
    COLD_START_MODEL,
    Ranked,
    Scoring,
    UserState,
    content_name,
    live_user,
)

log = logging.getLogger("leanrec.service")


class Reads:
    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True,
                  filters: list[tuple[str, str]] | None = None, experiment: str | None = None,
                  explain: bool = False) -> dict:
        """Top-k for a user under the served model. With ``experiment``: the list that
        experiment serves this user (its arm's model, or two arms interleaved), logged as an
        exposure — the only case where a read writes to the database. With ``explain``: every
        item carries its exact score split and a sentence (:mod:`leanrec.service.explain`)."""
        if experiment is not None:
            return self._recommend_in_experiment(experiment, user_id, k, exclude_seen, filters, explain)
        st = self._fresh_state(user_id)
        pre = self._pgvector_prefetch(st, k, exclude_seen, filters)
        with self._state:
            scoring = self.scoring
            out = self._finish(user_id, self._rank(st, k, exclude_seen, filters, scoring, pre))
        if explain:
            self._explain(user_id, out, {None: (st, scoring)})
        return out

    def _explain(self, user_id: str, out: dict, parts: dict) -> None:
        """Explanations for a finished list; ``parts`` maps a team (None: the whole list) to
        the (user state, scoring) that ranked its items. Store reads happen before the lock."""
        from .explain import explain_answer, prefetch

        pre = prefetch(self, user_id, out)
        history = tuple(i for i, _ in pre["history"])
        with self._state:
            for team, (st, scoring) in parts.items():
                sub = out if team is None else {**out, "items": [i for i in out["items"] if i.get("team") == team]}
                explain_answer(user_id, live_user(st, history), self.cat, scoring.scorer, sub, pre)

    def _finish(self, user_id: str, ranked: Ranked, experiment: dict | None = None,
                teams: list[str] | None = None) -> dict:
        """The one place where the final list — positions, scores and the scoring that made
        them — is known, before it becomes a response body. Called under ``_state``."""
        out = self._answer(user_id, ranked.cat, ranked.pos, ranked.scores, ranked.model, ranked.temperature,
                           ranked.cold)
        if experiment is not None:
            out["experiment"] = experiment
            for item, team in zip(out["items"], teams or ()):
                item["team"] = team
        return out

    def _pgvector_prefetch(self, st: UserState, k: int, exclude_seen: bool,
                           filters: list[tuple[str, str]] | None) -> tuple | None:
        """index = "pgvector", content model, a user with a history: the SQL search, run
        *before* ``_state`` is taken so that readers do not queue behind each other's database
        round trips. (pgvector index, scoring, ids, scores); None in every other case.

        A walk that ends short of k (a filter whose items lie far from the user's profile:
        the nearest ``max_scan_tuples`` rows hold none of them) is not finished in SQL, where
        exactness means scanning the table — seconds at a million items — but by
        :meth:`_rank` on the in-memory matrix the service keeps anyway (tens of ms)."""
        pgv, scoring = self.pgv, self.scoring
        if pgv is None or not scoring.scorer.by_query or st.profile is None or st.profile.n_events == 0 or not st.seen:
            return None
        if self._filter_in_memory(self.cat, filters):  # a small filter: :meth:`_rank` scans its rows
            return None
        ids, scores = pgv.search_ids(scoring.scorer.query(live_user(st), self.cat), k,
                                     exclude_ids=st.seen if exclude_seen else (),
                                     filters=filters or [], exact_fallback=False)
        return pgv, scoring, ids, scores

    def _rank(self, st: UserState, k: int, exclude_seen: bool, filters: list[tuple[str, str]] | None,
              scoring: Scoring, pre: tuple | None = None) -> Ranked:
        """Top-k positions and scores of ``scoring`` for a user state. Called under ``_state``.
        ``pre``: a :meth:`_pgvector_prefetch` result, used if the index and model are still served."""
        cat = self.cat
        if (scoring.scorer.by_query and pre is not None and pre[0] is self.pgv and pre[1] is scoring
                and len(pre[2]) >= k):  # PostgreSQL answered: no mask (benchmarks/results/pgvector_scale.md)
            pos, scores = pre[0].positions(cat, pre[2], pre[3])
            return Ranked(cat, pos, scores, scoring.name, scoring.temperature, False, scoring)
        mask = cat.filter_mask(filters or [])
        if st.profile is None or st.profile.n_events == 0 or not st.seen:
            return self._cold_start(k, mask, scoring)
        seen = np.fromiter((cat.pos[i] for i in st.seen if i in cat.pos), np.int64) if exclude_seen else None
        user = live_user(st)
        if scoring.scorer.by_query:  # ⟨query, V_i⟩: the index ranks it
            query = scoring.scorer.query(user, cat)
            if pre is not None and pre[0] is self.pgv and pre[1] is scoring:  # the walk ended short
                pos, scores = cat.search(query, k, exclude=seen, mask=mask)  # exact, in memory
            else:
                pos, scores = self._search(cat, query, k, seen, mask, filters)
        else:
            full = scoring.scorer.score([user], cat)[0].astype(np.float64)
            ok = cat.allowed(seen, mask)
            cand = np.flatnonzero(ok)
            pos, scores = _top(full[cand], cand, k)
        return Ranked(cat, pos, scores, scoring.name, scoring.temperature, False, scoring)

    def _search(self, cat: Catalogue, query: np.ndarray, k: int, exclude: np.ndarray | None,
                mask: np.ndarray | None, filters: list[tuple[str, str]] | None) -> tuple[np.ndarray, np.ndarray]:
        """The content model's nearest neighbours: PostgreSQL (pgvector) when configured, else
        the in-memory index. ``mask`` is ``filters`` as the catalogue evaluates them."""
        pgv = self.pgv
        if pgv is not None and not self._filter_in_memory(cat, filters):
            return pgv.search(cat, query, k, exclude=exclude, filters=filters or [])
        return cat.search(query, k, exclude=exclude, mask=mask)

    def _filter_in_memory(self, cat: Catalogue, filters: list[tuple[str, str]] | None) -> bool:
        """With pgvector: answer a filter that selects at most ``pgvector_filter_scan_rows``
        items exactly from the in-memory matrix. Its rows cost ∝ their number (8.8 ms for
        25k rows at 1M × 256-d, measured), while a walk toward a category far from the profile
        may visit ``pgvector_max_scan_tuples`` rows (HNSW) or many lists (IVFFlat) before it
        finds k of them.
        The bound is the catalogue's posting-list size, read without building the mask."""
        size = cat.filter_size(filters or [])
        return size is not None and size <= self.config.pgvector_filter_scan_rows

    def _cold_start(self, k: int, mask: np.ndarray | None, scoring: Scoring) -> Ranked:
        """Users with no history: the most popular items interleaved with the newest ones
        (a ``cold_start_new_share`` of the slots), score log(1 + events)."""
        cat = self.cat
        ok = cat.allowed(None, mask)
        n_ok = int(np.count_nonzero(ok))
        n_new = round(min(k, n_ok) * self.config.cold_start_new_share)
        popular, _ = _top(np.where(ok, cat.counts[:cat.n], -np.inf), np.arange(cat.n), min(k, n_ok) - n_new)
        ok[popular] = False
        newest, _ = _top(np.where(ok, cat.created_at[:cat.n], -np.inf), np.arange(cat.n), n_new)
        order, a, b = [], list(popular), list(newest)
        while (a or b) and len(order) < k:
            if a:
                order.append(a.pop(0))
            if b and len(order) < k:
                order.append(b.pop(0))
        pos = np.array(order, np.int64)
        return Ranked(cat, pos, np.log1p(cat.counts[pos]), COLD_START_MODEL, 1.0, True, scoring)

    def similar(self, item_id: str, k: int = 10, filters: list[tuple[str, str]] | None = None) -> dict:
        with self._state:
            cat = self.cat
            if item_id not in cat:
                raise NotFound(f"no item {item_id!r}")
            mask = cat.filter_mask(filters or [])
            pos, scores = self._search(cat, cat.vector(item_id), k, np.array([cat.pos[item_id]]), mask, filters)
            return {"item_id": item_id, "items": [{"item_id": cat.ids[p], "score": float(s)}
                                                  for p, s in zip(pos, scores)],
                    "model": content_name(self.encoder), "index": self._index_kind(cat)}

    @staticmethod
    def _answer(user_id, cat, pos, scores, model, temperature, cold) -> dict:
        scores = np.asarray(scores, np.float64)
        proba = softmax(scores[None, :], temperature)[0] if len(scores) else scores
        return {"user_id": user_id, "model": model, "cold_start": cold,
                "items": [{"item_id": cat.ids[p], "score": float(s), "probability": float(q)}
                          for p, s, q in zip(pos, scores, proba)]}

    def get_item(self, item_id: str) -> dict:
        item = self.store.get_item(item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r}")
        return item

    def stats(self) -> dict:
        cat = self.cat
        return {"items": cat.n_alive if cat else 0, "tombstones": cat.n_dead if cat else 0,
                "index": self._index_kind(cat) if cat else None, "cached_users": len(self._users)}

    def _index_kind(self, cat: Catalogue) -> str:
        return "pgvector" if self.pgv is not None else cat.kind

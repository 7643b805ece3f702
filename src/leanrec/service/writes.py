"""Item and event writes: the database transaction first, then the in-memory change.

Part of :class:`~leanrec.service.core.RecService` (see its docstring for the locks).
"""

from __future__ import annotations

import logging

import numpy as np

from ..data.history import decay_factor
from .errors import InputError, NotFound
from .profiles import Profile
from .scoring import (
    UserState,
)

log = logging.getLogger("leanrec.service")


class Writes:
    def upsert_items(self, items: list[dict]) -> list[dict]:
        """``items``: dicts with item_id, text, fields (already validated). Encoded before
        the transaction; stored and searchable when this returns."""
        if not items:
            return []
        ids = [it["item_id"] for it in items]
        first: dict[str, int] = {}
        for k, i in enumerate(ids):
            if first.setdefault(i, k) != k:
                raise InputError([{"loc": ["body", "items", k, "item_id"], "type": "value_error",
                                   "msg": f"item id {i!r} appears more than once in the batch"}])
        vecs = self._encode([it["text"] for it in items])
        enc_id = self.encoder.model_id
        with self._write:
            if self.encoder.model_id != enc_id:  # a model swap changed the encoder meanwhile
                vecs = self._encode([it["text"] for it in items])
            res = self.store.upsert_items(items, vecs, self.encoder.model_id)
            self.store.clear_fault()  # the database takes writes again: /readyz may say ready
            with self._state:
                self.cat.upsert(ids, vecs, [it["fields"] for it in items], [r["created_at"] for r in res],
                                seq=max(r["seq"] for r in res))
        return res

    def delete_item(self, item_id: str) -> None:
        with self._write:
            seq = self.store.delete_item(item_id)
            if seq is None:
                raise NotFound(f"no item {item_id!r}")
            with self._state:
                self.cat.remove(item_id, seq)

    def _unseen_events(self, events: list[dict]) -> list[dict]:
        """The events whose client ``event_id`` is not stored yet nor earlier in the batch
        (events without one always count): a retried POST stores each event once. Called
        under the write lock, so no other writer of this process stores an id in between;
        the unique index guards against other processes."""
        ids = [e["event_id"] for e in events if e.get("event_id") is not None]
        if not ids:
            return events
        seen = self.store.stored_event_ids(ids)
        out = []
        for e in events:
            eid = e.get("event_id")
            if eid is not None:
                if eid in seen:
                    continue
                seen.add(eid)
            out.append(e)
        return out

    def add_events(self, events: list[dict]) -> dict:
        """``events``: dicts with user_id, item_id, ts, kind, value and an optional client
        ``event_id`` (types already checked). Every item must exist; the batch is stored whole
        or not at all; events whose ``event_id`` is already stored are skipped (``duplicates``)."""
        with self._write:
            sent, events = len(events), self._unseen_events(events)
            if not events:
                return {"stored": 0, "duplicates": sent, "users": 0, "last_event_id": self.store.last_event_id()}
            cat = self.cat
            bad = [{"loc": ["body", "events", k, "item_id"], "type": "value_error",
                    "msg": f"unknown item id {e['item_id']!r}"} for k, e in enumerate(events) if e["item_id"] not in cat]
            if bad:
                raise InputError(bad)
            by_user: dict[str, list[dict]] = {}
            for e in events:
                by_user.setdefault(e["user_id"], []).append(e)
            gamma = decay_factor(self.scoring.half_life)
            new_states, rows = {}, []
            for user, evs in by_user.items():
                state = self._user_state(user)
                evs_sorted = sorted(evs, key=lambda e: e["ts"])  # stable: batch order breaks ties
                ts = np.array([e["ts"] for e in evs_sorted])
                prof = state.profile or Profile.empty(cat.dim)
                keep = self.scoring.seq_keep
                if ts.min() >= prof.last_ts:
                    prof = prof.folded(np.stack([cat.vector(e["item_id"]) for e in evs_sorted]), ts, gamma)
                    recent = state.recent + tuple(e["item_id"] for e in evs_sorted)
                else:  # an event from the past: recompute this user's profile exactly
                    history = self.store.history(user) + [(e["item_id"], e["ts"]) for e in evs_sorted]
                    prof = self._profile_from(history)
                    recent = tuple(i for i, _ in sorted(history, key=lambda h: h[1]))  # stable: store order
                new_states[user] = UserState(prof, tuple(dict.fromkeys(state.seen + tuple(e["item_id"] for e in evs))),
                                             recent[-keep:] if keep else ())
                rows.append(prof.to_row(self.pid, user))
            last_id = self.store.add_events(
                [{"user_id": e["user_id"], "item_id": e["item_id"], "ts": e["ts"], "kind": e["kind"],
                  "value": e["value"], "client_event_id": e.get("event_id")} for e in events], rows,
                running=[x for x in self._experiments.values() if x.running])
            self.store.clear_fault()
            with self._state:
                self._install(new_states)
                cat.add_counts([e["item_id"] for e in events])
        if self.metrics is not None:
            self.metrics.events.inc(len(events))
        return {"stored": len(events), "duplicates": sent - len(events), "users": len(by_user),
                "last_event_id": last_id}

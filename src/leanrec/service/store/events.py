"""Events (an append-only log), the user profiles they change, and the credit a click earns
the experiment exposure that showed its item — written together, in one transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from ..schema import attributions, events, exposures, user_profiles
from .base import Database, chunks, upsert


class EventRows(Database):
    def add_events(self, rows: list[dict], profiles: list[dict], running: Sequence = ()) -> int:
        """Append events and write the profiles they changed, in one transaction; returns
        the id of the last event stored.

        ``running``: the running experiments (:class:`~leanrec.service.experiments.Experiment`).
        Events of one of their click kinds are attributed to the exposures they answer (see
        :func:`~leanrec.service.experiments.attribute`) in the same transaction, so an event
        and its credit are stored together or not at all.
        """
        now = time.time()
        kinds = {e.id: tuple(e.click_kinds) for e in running}
        wanted = set().union(*kinds.values()) if kinds else set()
        clicks = [k for k, r in enumerate(rows) if r["kind"] in wanted]
        with self.engine.begin() as conn:
            if clicks:  # the clicks' event ids are needed: one RETURNING insert, in batch order
                ids = conn.execute(events.insert().returning(events.c.id, sort_by_parameter_order=True),
                                   [{**r, "received_at": now} for r in rows]).scalars().all()
                self._attribute(conn, [{**rows[k], "event_id": int(ids[k])} for k in clicks], running)
            else:
                conn.execute(events.insert(), [{**r, "received_at": now} for r in rows])
            last_id = int(conn.execute(select(func.max(events.c.id))).scalar_one())
            upsert(conn, user_profiles, [{**p, "last_event_id": last_id} for p in profiles],
                   ["profile_id", "user_id"], ["vector", "weight", "n_events", "last_ts", "last_event_id"])
        return last_id

    def stored_event_ids(self, client_ids: Sequence[str]) -> set[str]:
        """Which of these client event ids are already stored (for idempotent retries)."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for part in chunks(list(dict.fromkeys(client_ids)), 500):
                found.update(conn.execute(select(events.c.client_event_id)
                                          .where(events.c.client_event_id.in_(part))).scalars())
        return found

    @staticmethod
    def _attribute(conn: Connection, clicks: list[dict], running: Sequence) -> int:
        """Credit ``clicks`` (events with ``event_id``) to exposures, inside the caller's
        transaction; returns how many attributions were written."""
        from ..experiments import attribute

        windows = {e.id: float(e.attribution_window_s) for e in running}
        kinds = {e.id: tuple(e.click_kinds) for e in running}
        lo = min(c["ts"] for c in clicks) - max(windows.values())
        hi = max(c["ts"] for c in clicks)
        users = sorted({c["user_id"] for c in clicks})
        found = []
        for chunk in chunks(users):
            found += conn.execute(select(exposures).where(
                exposures.c.user_id.in_(chunk), exposures.c.experiment_id.in_(list(windows)),
                exposures.c.ts >= lo, exposures.c.ts <= hi)).mappings().all()
        if not found:
            return 0
        shown = [{**x, "items": json.loads(x["items"]),
                  "teams": json.loads(x["teams"]) if x["teams"] else None} for x in found]
        credited: set = set()
        for chunk in chunks([x["id"] for x in shown]):
            credited.update((int(e), i) for e, i in conn.execute(
                select(attributions.c.exposure_id, attributions.c.item_id)
                .where(attributions.c.exposure_id.in_(chunk))))
        new = attribute(clicks, shown, credited, windows, kinds)
        if new:
            conn.execute(attributions.insert(), new)
        return len(new)

    def history(self, user_id: str) -> list[tuple[str, float]]:
        """(item_id, timestamp) of a user's events, oldest first (ties in arrival order)."""
        with self.engine.connect() as conn:
            return [(i, float(t)) for i, t in conn.execute(
                select(events.c.item_id, events.c.ts).where(events.c.user_id == user_id)
                .order_by(events.c.ts, events.c.id))]

    def profile(self, profile_id: str, user_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(user_profiles).where(user_profiles.c.profile_id == profile_id,
                                                           user_profiles.c.user_id == user_id)).first()
        return None if row is None else dict(row._mapping)

    def item_event_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {i: int(n) for i, n in conn.execute(
                select(events.c.item_id, func.count()).group_by(events.c.item_id))}

    def last_event_id(self) -> int | None:
        """The id of the newest stored event (None before the first)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(events.c.id))).scalar_one()

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

"""Items: soft deletes and a change number per write (``counters.item_seq``), so that a
persisted index catches up by reading :meth:`ItemRows.changes_since` its watermark."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from ..schema import counters, items
from .base import chunks, upsert
from .vectors import VectorRows


class ItemRows(VectorRows):
    """Items and, in the same transaction, their vectors (hence a :class:`VectorRows`)."""

    @staticmethod
    def reserve_seq(conn: Connection, n: int) -> int:
        """Reserve ``n`` change numbers; returns the last one (inside the caller's transaction)."""
        stmt = (update(counters).where(counters.c.name == "item_seq")
                .values(value=counters.c.value + n).returning(counters.c.value))
        return int(conn.execute(stmt).scalar_one())

    def upsert_items(self, rows: list[dict], vectors: np.ndarray, encoder_id: str) -> list[dict]:
        """Insert or replace items and their vectors in one transaction.

        ``rows``: dicts with ``item_id``, ``text``, ``fields`` (a dict). Returns, per row,
        ``item_id``, ``seq``, ``created_at`` and whether it was ``created``. Vectors of other
        encoders for these items are dropped (their text may have changed).
        """
        self._prepare_vectors(encoder_id, vectors)
        with self.engine.begin() as conn:
            last = self.reserve_seq(conn, len(rows))
            return self.upsert_items_in(conn, rows, vectors, encoder_id, time.time(), first_seq=last - len(rows) + 1)

    def upsert_items_in(self, conn: Connection, rows: list[dict], vectors: np.ndarray, encoder_id: str, now: float,
                        *, first_seq: int, fields_json: bool = False) -> list[dict]:
        """:meth:`upsert_items` inside the caller's transaction, with change numbers from
        ``first_seq`` on (reserved by the caller, :meth:`reserve_seq`); ``fields_json``: fields
        are JSON text already. The bulk load writes its batches through this."""
        ids = [r["item_id"] for r in rows]
        existing = {}
        for chunk in chunks(ids):
            existing.update({i: (c, d) for i, c, d in conn.execute(
                select(items.c.item_id, items.c.created_at, items.c.deleted).where(items.c.item_id.in_(chunk)))})
        out, db_rows = [], []
        for k, r in enumerate(rows):
            seq = first_seq + k
            prev = existing.get(r["item_id"])
            created = prev is None or bool(prev[1])
            created_at = now if created else float(prev[0])
            db_rows.append({"item_id": r["item_id"], "text": r["text"],
                            "fields": r["fields"] if fields_json else json.dumps(r["fields"]),
                            "created_at": created_at, "updated_at": now, "seq": seq, "deleted": False})
            out.append({"item_id": r["item_id"], "seq": seq, "created_at": created_at, "created": created})
        upsert(conn, items, db_rows, ["item_id"], ["text", "fields", "created_at", "updated_at", "seq", "deleted"])
        self._drop_vectors(conn, ids, keep_encoder=encoder_id)
        self._write_vectors(conn, encoder_id, ids, vectors)
        return out

    def live_ids(self, item_ids: Sequence[str]) -> list[str]:
        """Those of ``item_ids`` that are live (not deleted) items of the store."""
        found: list[str] = []
        with self.engine.connect() as conn:
            for chunk in chunks(list(item_ids)):
                found += conn.execute(select(items.c.item_id).where(items.c.item_id.in_(chunk),
                                                                    items.c.deleted.is_(False))).scalars().all()
        return found

    def delete_item(self, item_id: str) -> int | None:
        """Soft-delete an item (its change number lets a persisted index catch up); returns
        the change number, or None when there was no live item with that id."""
        with self.engine.begin() as conn:
            live = conn.execute(select(items.c.item_id).where(items.c.item_id == item_id,
                                                              items.c.deleted.is_(False))).first()
            if live is None:
                return None
            seq = self.reserve_seq(conn, 1)
            conn.execute(update(items).where(items.c.item_id == item_id)
                         .values(deleted=True, seq=seq, updated_at=time.time()))
            self._drop_vectors(conn, [item_id])
        return seq

    def live_items(self) -> list[tuple[str, dict, float, int]]:
        """(item_id, fields, created_at, seq) of every live item, in change order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(items.c.item_id, items.c.fields, items.c.created_at, items.c.seq)
                                .where(items.c.deleted.is_(False)).order_by(items.c.seq))
            return [(i, json.loads(f), float(c), int(s)) for i, f, c, s in rows]

    def changes_since(self, seq: int) -> list[tuple[str, bool, dict, float, int]]:
        """(item_id, deleted, fields, created_at, seq) of every item changed after ``seq``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(items.c.item_id, items.c.deleted, items.c.fields, items.c.created_at,
                                       items.c.seq).where(items.c.seq > seq).order_by(items.c.seq))
            return [(i, bool(d), json.loads(f), float(c), int(s)) for i, d, f, c, s in rows]

    def item_texts(self, item_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(item_ids)):
                out.update((i, t) for i, t in conn.execute(
                    select(items.c.item_id, items.c.text).where(items.c.item_id.in_(chunk))))
        return out

    def get_item(self, item_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(items).where(items.c.item_id == item_id, items.c.deleted.is_(False))).first()
        if row is None:
            return None
        m = row._mapping
        return {"item_id": m["item_id"], "text": m["text"], "fields": json.loads(m["fields"]),
                "created_at": m["created_at"], "updated_at": m["updated_at"]}

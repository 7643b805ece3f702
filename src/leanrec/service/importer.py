"""Load a library :class:`~leanrec.data.schema.Dataset` into a service's store.

Items go in as batches of upserts (encoded once; the embedding cache makes a re-import
free), events in ``(timestamp, item position)`` order — the order the library's models
read a history in — so the service's profiles equal the library's user vectors and a model
trained on the same data scores the same lists over HTTP as in Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..data.schema import ITEM_ID, TEXT, Dataset
from .core import RecService

Progress = Callable[[str, int, int], None]


def _json_value(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_json_value(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def item_rows(ds: Dataset) -> list[dict]:
    frame = ds.items.frame
    extra = [c for c in frame.columns if c not in (ITEM_ID, TEXT)]
    rows = []
    for rec in frame.to_dict("records"):
        fields = {c: _json_value(rec[c]) for c in extra}
        rows.append({"item_id": str(rec[ITEM_ID]), "text": rec[TEXT],
                     "fields": {k: v for k, v in fields.items() if v is not None}})
    return rows


def import_dataset(service: RecService, ds: Dataset, *, item_batch: int = 1000, event_batch: int = 5000,
                   events: bool = True, progress: Progress | None = None) -> dict:
    """Upsert every item, then (when the store holds no events yet) append every event.
    Returns counts; events are skipped, not duplicated, on a second import."""
    rows = item_rows(ds)
    for lo in range(0, len(rows), item_batch):
        service.upsert_items(rows[lo:lo + item_batch])
        if progress is not None:
            progress("items", min(lo + item_batch, len(rows)), len(rows))
    stored = 0
    if events and service.store.count_events() == 0:
        ev = ds.events.frame.assign(_pos=ds.item_positions).sort_values(["timestamp", "_pos"], kind="stable")
        recs = [{"user_id": str(u), "item_id": str(i), "ts": float(t), "kind": str(k or ""),
                 "value": None if math.isnan(v) else float(v)}
                for u, i, t, k, v in zip(ev["user_id"], ev["item_id"], ev["timestamp"], ev["kind"], ev["value"])]
        for lo in range(0, len(recs), event_batch):
            service.add_events(recs[lo:lo + event_batch])
            stored += len(recs[lo:lo + event_batch])
            if progress is not None:
                progress("events", stored, len(recs))
    return {"items": len(rows), "events": stored, "events_skipped": events and stored == 0 and len(ds.events) > 0}

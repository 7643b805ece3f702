"""A synthetic data set at benchmark scale: a product catalogue *and* an event log, streamed to Parquet parts.

:mod:`leanrec.data.products` writes a realistic catalogue and :mod:`leanrec.data.interactions`
writes events over it, but ``generate_events`` builds the whole log in one frame — fine for a
load test with 100k users × 20 events, not for 10 million events on a laptop. This module
writes both at scale with bounded memory, into one folder::

    OUT/items/part-00000.parquet ...   item_id, title[, description], category, brand, price
    OUT/events/part-00000.parquet ...  user_id, item_id, timestamp, kind, value
    OUT/manifest.json                  counts, seed, parameters, per-part rows and sha256

The model (the same as ``generate_events``, plus heavy and light users):

* **Items** are :func:`leanrec.data.products.iter_products` rows (36 Zipf-skewed categories,
  brands, titles, optional descriptions), ids ``0 .. n_items-1``.
* **User activity is heavy-tailed**: each user's weight is log-normal (``sigma`` =
  ``activity_sigma``, 1.2 by default: the heaviest of 100k users has a few thousand events,
  the median user about half the mean). Counts are the weights scaled to the requested total
  with a floor of ``min_events`` per user, rounded by largest remainder, so the total equals
  ``n_events`` **exactly**.
* **Category preference**: 1-3 preferred categories per user, drawn without replacement in
  proportion to each category's share of the catalogue, weighted 1, 1/2, 1/3; a ``p_noise``
  share of events ignores them and draws the category from the catalogue shares.
* **Item popularity** is Zipf (``item_zipf``) within a category over a random rank order
  fixed by the seed: a few bestsellers per department and a long tail.
* **Timestamps**: whole seconds, uniform over ``[start_ts, start_ts + days)``, increasing
  within each user; rows are ordered by (user, timestamp). **Kinds**: view/cart/purchase with
  shares 0.85/0.10/0.05; ``value`` is NaN (implicit feedback).

Streaming and determinism: the items pass keeps only the category code of each item (one
byte per item); the events pass works through users in fixed blocks of :data:`USER_BLOCK`
users, each with its own random stream ``(seed, block)``, and writes a part whenever
``partition_rows`` rows are buffered. Every part except the last holds exactly
``partition_rows`` rows, and the concatenated rows do not depend on the partition size — only
the part boundaries do. The same arguments give byte-identical parts (same pyarrow version).

The library never prints: pass ``progress(stage, rows)`` to follow it (``stage`` is
``"items"`` or ``"events"``, ``rows`` the rows just written).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .interactions import DEFAULT_START_TS, KINDS
from .product_vocab import CATEGORIES
from .products import iter_products

__all__ = ["USER_BLOCK", "allocate_counts", "write_synthetic", "read_synthetic", "load_synthetic_dataset"]

USER_BLOCK = 1024
"""Users per random stream in the events pass; part of the output's definition."""

MANIFEST = "manifest.json"
_FORMAT = "leanrec-synth/1"
_MAX_PREFERRED = 3
_KIND_SHARES = (0.85, 0.10, 0.05)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def allocate_counts(n_users: int, n_events: int, *, seed: int = 42, activity_sigma: float = 1.2,
                    min_events: int = 1) -> np.ndarray:
    """Events per user (int64, length ``n_users``) summing to exactly ``n_events``.

    Each user gets ``min(min_events, n_events // n_users)`` events, and the rest is shared in
    proportion to a log-normal activity weight, rounded by largest remainder (ties by user id).
    """
    if n_users == 0:
        if n_events:
            raise ValueError("events need at least one user")
        return np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, 0x5EED, 1])
    weight = rng.lognormal(0.0, activity_sigma, n_users)
    base = min(min_events, n_events // n_users)
    rest = n_events - base * n_users
    quota = weight / weight.sum() * rest
    counts = np.floor(quota).astype(np.int64)
    short = rest - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    elif short < 0:  # float rounding only; never by more than a few
        counts[np.argsort(-counts, kind="stable")[:-short]] -= 1
    return counts + base


class _Catalogue:
    """Per-category sampling tables over the catalogue's category codes (item id = position)."""

    def __init__(self, codes: np.ndarray, seed: int, item_zipf: float):
        n_cat = len(CATEGORIES)
        rng = np.random.default_rng([seed, 0x5EED, 2])
        order = np.argsort(codes, kind="stable")                    # item ids grouped by category
        sorted_codes = codes[order].astype(np.int64)
        size = np.bincount(sorted_codes, minlength=n_cat)
        offset = np.concatenate([[0], np.cumsum(size)[:-1]])
        self.size, self.offset = size, offset
        self.share = size / max(size.sum(), 1)
        # A random popularity rank within each category: shuffle positions inside each group.
        key = rng.random(len(codes)) + sorted_codes
        self.item_at = order[np.argsort(key, kind="stable")].astype(np.int64)   # position -> item id
        rank = np.arange(len(codes)) - offset[sorted_codes]
        cum = np.cumsum(1.0 / (rank + 1.0) ** item_zipf)
        last = np.maximum(offset + size - 1, 0)
        before = np.where(offset > 0, cum[np.maximum(offset - 1, 0)], 0.0)
        total = np.where(size > 0, cum[last] - before, 1.0)
        self.cdf = sorted_codes + (cum - before[sorted_codes]) / total[sorted_codes]
        self.share_cdf = np.cumsum(self.share)
        self.log_share = np.log(np.where(self.share > 0, self.share, 1e-300))
        self.log_share[self.share == 0] = -np.inf

    def block(self, rng: np.random.Generator, counts: np.ndarray, first_user: int, days: float,
              start_ts: float, p_noise: float) -> dict[str, np.ndarray]:
        """The events of users ``first_user .. first_user + len(counts) - 1`` (ordered by user, time)."""
        n_users = len(counts)
        n_cat = len(self.size)
        k = min(_MAX_PREFERRED, int((self.size > 0).sum()))
        n_pref = np.minimum(rng.integers(1, _MAX_PREFERRED + 1, n_users), k)
        gumbel = self.log_share[None, :] - np.log(-np.log(rng.random((n_users, n_cat))))
        preferred = np.argsort(-gumbel, axis=1, kind="stable")[:, :k]
        pref_w = np.where(np.arange(k)[None, :] < n_pref[:, None], 1.0 / np.arange(1, k + 1)[None, :], 0.0)
        pref_cdf = np.cumsum(pref_w, axis=1) / pref_w.sum(axis=1, keepdims=True)

        local = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        n = len(local)
        slot = (rng.random(n)[:, None] >= pref_cdf[local]).sum(axis=1)
        cat = preferred[local, np.minimum(slot, k - 1)]
        noise = rng.random(n) < p_noise
        noise_cat = np.searchsorted(self.share_cdf, rng.random(n), side="right").clip(0, n_cat - 1)
        cat = np.where(noise, noise_cat, cat)
        pos = np.searchsorted(self.cdf, cat + rng.random(n), side="right")
        pos = np.clip(pos, self.offset[cat], self.offset[cat] + self.size[cat] - 1)
        span = max(int(np.ceil(days * 86_400.0)), 1)
        offset_s = np.sort((local << 32) + rng.integers(0, span, n)) & 0xFFFFFFFF
        shares = np.asarray(_KIND_SHARES)
        kind = np.searchsorted(np.cumsum(shares) / shares.sum(), rng.random(n), side="right")
        return {"user_id": local + first_user, "item_id": self.item_at[pos],
                "timestamp": float(start_ts) + offset_s.astype(np.float64),
                "kind": np.minimum(kind, len(KINDS) - 1).astype(np.int8)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _events_table(cols: dict[str, np.ndarray]):
    import pyarrow as pa

    kind = pa.DictionaryArray.from_arrays(pa.array(cols["kind"], pa.int8()), pa.array(KINDS, pa.string()))
    n = len(cols["user_id"])
    return pa.table({"user_id": pa.array(cols["user_id"], pa.int64()),
                     "item_id": pa.array(cols["item_id"], pa.int64()),
                     "timestamp": pa.array(cols["timestamp"], pa.float64()),
                     "kind": kind.cast(pa.string()),
                     "value": pa.array(np.full(n, np.nan), pa.float64())})


def _clear(out: Path) -> None:
    """Remove a previous run's parts and manifest (only files this module writes)."""
    for sub in ("items", "events"):
        for p in sorted((out / sub).glob("part-*.parquet")) if (out / sub).is_dir() else []:
            p.unlink()
    (out / MANIFEST).unlink(missing_ok=True)


def write_synthetic(out: str | Path, n_items: int, n_users: int, n_events: int, *, seed: int = 42,
                    description_words: int | None = None, partition_rows: int = 100_000, days: float = 90.0,
                    start_ts: float = DEFAULT_START_TS, p_noise: float = 0.1, item_zipf: float = 1.0,
                    activity_sigma: float = 1.2, min_events: int = 1,
                    progress: Callable[[str, int], None] | None = None) -> dict:
    """Write ``n_items`` products and exactly ``n_events`` events of ``n_users`` users under ``out``.

    See the module docstring for the layout and the model. Parts from an earlier run in
    ``out`` are replaced; the manifest is written last, so its presence means the set is
    complete. Returns the manifest (a dict).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, v in (("n_items", n_items), ("n_users", n_users), ("n_events", n_events), ("seed", seed),
                    ("min_events", min_events)):
        if not _is_int(v) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if not _is_int(partition_rows) or partition_rows < 1:
        raise ValueError(f"partition_rows must be a positive integer, got {partition_rows!r}")
    if n_events and (n_items == 0 or n_users == 0):
        raise ValueError("events need at least one item and one user")
    if not 0 < days <= 40_000:
        raise ValueError(f"days must be in (0, 40000], got {days!r}")
    if not 0.0 <= p_noise <= 1.0:
        raise ValueError(f"p_noise must be in [0, 1], got {p_noise!r}")
    if not item_zipf >= 0 or not activity_sigma >= 0:
        raise ValueError("item_zipf and activity_sigma must be >= 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    (out / "items").mkdir(parents=True, exist_ok=True)
    (out / "events").mkdir(parents=True, exist_ok=True)
    _clear(out)
    report = progress or (lambda stage, rows: None)

    # Items: one part per partition_rows rows; keep each item's category code.
    cat_index = {c.name: i for i, c in enumerate(CATEGORIES)}
    codes = np.empty(n_items, np.int8)
    item_parts = []
    for i, chunk in enumerate(iter_products(n_items, partition_rows, seed=seed, description_words=description_words)):
        lo = int(chunk["item_id"].iloc[0])
        codes[lo:lo + len(chunk)] = chunk["category"].map(cat_index).to_numpy(np.int8)
        path = out / "items" / f"part-{i:05d}.parquet"
        pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), path)
        item_parts.append({"path": f"items/{path.name}", "rows": len(chunk), "sha256": _sha256(path)})
        report("items", len(chunk))
    if n_items == 0:
        empty = next(iter_products(1, seed=seed, description_words=description_words)).iloc[:0]
        path = out / "items" / "part-00000.parquet"
        pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), path)
        item_parts.append({"path": f"items/{path.name}", "rows": 0, "sha256": _sha256(path)})

    # Events: users in fixed blocks, parts of exactly partition_rows rows.
    counts = allocate_counts(n_users, n_events, seed=seed, activity_sigma=activity_sigma, min_events=min_events)
    event_parts: list[dict] = []
    buffer: list[dict[str, np.ndarray]] = []
    buffered = 0

    def flush(rows: int) -> None:
        nonlocal buffer, buffered
        cols = {k: np.concatenate([b[k] for b in buffer]) if buffer else np.zeros(0, dtype)
                for k, dtype in (("user_id", np.int64), ("item_id", np.int64), ("timestamp", np.float64),
                                 ("kind", np.int8))}
        head = {k: v[:rows] for k, v in cols.items()}
        path = out / "events" / f"part-{len(event_parts):05d}.parquet"
        pq.write_table(_events_table(head), path)
        event_parts.append({"path": f"events/{path.name}", "rows": rows, "sha256": _sha256(path)})
        rest = {k: v[rows:] for k, v in cols.items()}
        buffer, buffered = ([rest] if len(rest["user_id"]) else []), buffered - rows
        report("events", rows)

    if n_events:
        catalogue = _Catalogue(codes, seed, item_zipf)
        del codes
        for b, first in enumerate(range(0, n_users, USER_BLOCK)):
            rng = np.random.default_rng([seed, 0x5EED, 3, b])
            block = catalogue.block(rng, counts[first:first + USER_BLOCK], first, days, start_ts, p_noise)
            buffer.append(block)
            buffered += len(block["user_id"])
            while buffered >= partition_rows:
                flush(partition_rows)
    if buffered or not event_parts:
        flush(buffered)

    manifest = {
        "format": _FORMAT,
        "counts": {"items": n_items, "users": n_users, "events": n_events},
        "seed": seed,
        "parameters": {"description_words": description_words, "partition_rows": partition_rows, "days": days,
                       "start_ts": start_ts, "p_noise": p_noise, "item_zipf": item_zipf,
                       "activity_sigma": activity_sigma, "min_events": min_events,
                       "kind_shares": dict(zip(KINDS, _KIND_SHARES)), "user_block": USER_BLOCK},
        "columns": {"items": ["item_id", "title"] + (["description"] if description_words is not None else [])
                    + ["category", "brand", "price"],
                    "events": ["user_id", "item_id", "timestamp", "kind", "value"]},
        "parts": {"items": item_parts, "events": event_parts},
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def read_synthetic(out: str | Path, *, verify: bool = False):
    """``(items, events)`` DataFrames of a folder written by :func:`write_synthetic` (whole, in memory).

    For small and medium outputs; at 10M events stream the parts instead (e.g.
    ``pyarrow.dataset.dataset(out / "events")``). ``verify`` checks each part's sha256.
    """
    import pandas as pd

    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text())
    frames = []
    for stage in ("items", "events"):
        parts = manifest["parts"][stage]
        if verify:
            for p in parts:
                if _sha256(out / p["path"]) != p["sha256"]:
                    raise ValueError(f"{out / p['path']}: sha256 does not match the manifest")
        frames.append(pd.concat([pd.read_parquet(out / p["path"]) for p in parts], ignore_index=True))
    return frames[0], frames[1]


def load_synthetic_dataset(out: str | Path, name: str = "synthetic"):
    """A :class:`leanrec.data.schema.Dataset` of a generated folder (text: ``title. description``)."""
    from .schema import Dataset, Events, Items

    items, events = read_synthetic(out)
    text = ("title", "description") if "description" in items.columns else ("title",)
    return Dataset(Items.from_frame(items, text_fields=text, categorical_fields=("category", "brand"),
                                    numeric_fields=("price",)),
                   Events.from_frame(events), name=name)

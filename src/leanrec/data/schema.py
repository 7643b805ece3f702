"""Typed dataset model: a catalogue of items and a log of events.

Everything downstream (splits, encoders, models, evaluation) reads these two tables, so
their invariants are checked once, here, and never re-checked later:

* ``Items.frame``: one row per item, ``item_id`` unique, rows sorted by id (numeric order
  when every id is an integer, string order otherwise), a non-empty ``text`` column built
  from one or more text fields, optional list-valued categorical fields (e.g. genres) and
  optional numeric fields.
* ``Events.frame``: ``user_id``, ``item_id`` (same id type as the catalogue),
  ``timestamp`` (float64 seconds since the Unix epoch, never NaN), ``value`` (float64,
  NaN where absent; e.g. a rating) and ``kind`` (string, e.g. ``view``/``purchase``;
  empty where absent).
* ``Dataset.users`` (optional): one row per user, ``user_id`` unique (same id rules as the
  events), other columns describing the user (MovieLens: age, gender, occupation, zip).
  Optional because most logs have none; kept by :meth:`Dataset.with_events`, so the parts
  of a split carry it too.

Item positions (0..n_items-1, in id order) are the internal index every model uses; the
original ids are kept for everything a user sees (recommendation lists, CSV files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd

ITEM_ID = "item_id"
USER_ID = "user_id"
TEXT = "text"
TIMESTAMP = "timestamp"
VALUE = "value"
KIND = "kind"

EVENT_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP, VALUE, KIND)

T = TypeVar("T")


def normalize_ids(values: pd.Series) -> pd.Series:
    """Return ids as int64 when every id is an integer, else as stripped strings.

    Integer ids keep their numeric order (item 2 before item 10), which the fixed
    cold-start protocol relies on ("items ordered by id").
    """
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("int64")
    as_str = values.astype(str).str.strip()
    if len(as_str) and as_str.str.fullmatch(r"[+-]?\d{1,18}").all():
        return as_str.astype("int64")
    return as_str.astype(object)


def coerce_ids_like(values: pd.Series, reference: pd.Series) -> pd.Series:
    """Convert ``values`` to the id type of ``reference`` (ids in events follow the catalogue).

    Values that cannot be converted become ``None`` so the caller can report them as
    unknown ids rather than crash.
    """
    if pd.api.types.is_integer_dtype(reference.dtype):
        if pd.api.types.is_integer_dtype(values.dtype):
            return values.astype("int64").astype(object)
        as_str = values.astype(str).str.strip()
        ok = as_str.str.fullmatch(r"[+-]?\d{1,18}").fillna(False)
        # Built as a list: assigning into an object Series would turn the ints into floats
        # (and ids above 2**53 would no longer match the catalogue).
        return pd.Series([int(s) if good else None for s, good in zip(as_str, ok)],
                         index=values.index, dtype=object)
    return values.astype(str).str.strip().astype(object)


@dataclass(frozen=True)
class Items:
    """The catalogue. Build with :meth:`from_frame`, which sorts and checks it."""

    frame: pd.DataFrame
    text_fields: tuple[str, ...] = (TEXT,)
    categorical_fields: tuple[str, ...] = ()
    numeric_fields: tuple[str, ...] = ()

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        text_fields: tuple[str, ...] | list[str] = (TEXT,),
        categorical_fields: tuple[str, ...] | list[str] = (),
        numeric_fields: tuple[str, ...] | list[str] = (),
    ) -> "Items":
        """Sort by id, build ``text`` from the text fields if absent, and check invariants.

        Raises ``ValueError`` on a broken invariant; file readers (``leanrec.data.io``)
        report bad rows with file/line/field before they get here.
        """
        if ITEM_ID not in frame.columns:
            raise ValueError(f"items frame has no {ITEM_ID!r} column")
        df = frame.copy()
        df[ITEM_ID] = normalize_ids(df[ITEM_ID])
        if TEXT not in df.columns:
            missing = [f for f in text_fields if f not in df.columns]
            if missing:
                raise ValueError(f"items frame lacks text field(s) {missing}")
            df[TEXT] = join_text_fields(df, text_fields)
        dup = df[ITEM_ID].duplicated(keep=False)
        if dup.any():
            raise ValueError(f"duplicate item ids: {sorted(df.loc[dup, ITEM_ID].unique())[:10]}")
        bad_text = ~df[TEXT].map(lambda t: isinstance(t, str) and t.strip() != "")
        if bad_text.any():
            raise ValueError(f"empty or non-string text for items {list(df.loc[bad_text, ITEM_ID][:10])}")
        for name in numeric_fields:
            df[name] = pd.to_numeric(df[name], errors="raise").astype("float64")
        df = df.sort_values(ITEM_ID, kind="stable").reset_index(drop=True)
        return cls(df, tuple(text_fields), tuple(categorical_fields), tuple(numeric_fields))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> np.ndarray:
        return self.frame[ITEM_ID].to_numpy()

    @property
    def texts(self) -> list[str]:
        return self.frame[TEXT].tolist()

    def positions(self, item_ids) -> np.ndarray:
        """Map item ids to positions 0..n-1; raises ``KeyError`` naming unknown ids."""
        index = pd.Index(self.frame[ITEM_ID])
        ids = pd.Series(item_ids)
        ids = coerce_ids_like(ids, self.frame[ITEM_ID])
        pos = index.get_indexer(ids.to_numpy())
        if (pos < 0).any():
            unknown = ids[pos < 0].tolist()[:10]
            raise KeyError(f"unknown item id(s): {unknown}")
        return pos.astype(np.int64)


def join_text_fields(frame: pd.DataFrame, fields) -> pd.Series:
    """Join several text fields into one string per row ("title. description")."""

    def join(row) -> str:
        parts = [str(row[f]).strip() for f in fields if isinstance(row[f], str) and row[f].strip()]
        return ". ".join(parts)

    return frame.apply(join, axis=1) if len(frame) else pd.Series([], dtype=object)


@dataclass(frozen=True)
class Events:
    """The interaction log. Build with :meth:`from_frame`."""

    frame: pd.DataFrame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Events":
        missing = [c for c in (USER_ID, ITEM_ID, TIMESTAMP) if c not in frame.columns]
        if missing:
            raise ValueError(f"events frame lacks column(s) {missing}")
        df = frame.copy()
        df[USER_ID] = normalize_ids(df[USER_ID]) if len(df) else df[USER_ID]
        df[TIMESTAMP] = pd.to_numeric(df[TIMESTAMP], errors="raise").astype("float64")
        if df[TIMESTAMP].isna().any():
            raise ValueError("events have NaN timestamps")
        df[VALUE] = (
            pd.to_numeric(df[VALUE], errors="raise").astype("float64") if VALUE in df else np.nan
        )
        df[KIND] = df[KIND].fillna("").astype(str) if KIND in df else ""
        return cls(df[list(EVENT_COLUMNS)].reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.frame)


def check_users(frame: pd.DataFrame) -> pd.DataFrame:
    """The users table with normalised ids, sorted by id; ``ValueError`` if ids are missing or repeated."""
    if not isinstance(frame, pd.DataFrame) or USER_ID not in frame.columns:
        raise ValueError(f"users table has no {USER_ID!r} column")
    df = frame.copy()
    df[USER_ID] = normalize_ids(df[USER_ID]) if len(df) else df[USER_ID]
    dup = df[USER_ID].duplicated(keep=False)
    if dup.any():
        raise ValueError(f"users table: duplicate user ids {sorted(df.loc[dup, USER_ID].unique())[:10]}")
    return df.sort_values(USER_ID, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Dataset:
    """Items plus events, with every event's item in the catalogue; optionally a users table."""

    items: Items
    events: Events
    name: str = "dataset"
    meta: dict = field(default_factory=dict)
    users: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.users is not None:
            object.__setattr__(self, "users", check_users(self.users))
        ev = self.events.frame
        if len(ev):
            ev_items = coerce_ids_like(ev[ITEM_ID], self.items.frame[ITEM_ID])
            known = ev_items.isin(set(self.items.frame[ITEM_ID]))
            if not known.all():
                raise ValueError(
                    f"{(~known).sum()} event(s) name items not in the catalogue, "
                    f"e.g. {ev.loc[~known, ITEM_ID].head(5).tolist()}"
                )
            if ev_items.dtype != self.items.frame[ITEM_ID].dtype:
                ev = ev.copy()
                ev[ITEM_ID] = ev_items.astype(self.items.frame[ITEM_ID].dtype)
                object.__setattr__(self, "events", Events(ev))
        object.__setattr__(
            self, "_item_pos", self.items.positions(self.events.frame[ITEM_ID]) if len(ev) else np.zeros(0, np.int64)
        )

    @property
    def item_positions(self) -> np.ndarray:
        """Item position (0..n_items-1) of every event, aligned with ``events.frame``."""
        return self._item_pos  # type: ignore[attr-defined]

    @property
    def n_items(self) -> int:
        return len(self.items)

    def derived(self, kind: str, key, compute: Callable[[], T]) -> T:
        """``compute()``, kept on this data set: one value per ``kind`` (the latest),
        reused while ``key`` (the parameters it depends on) is the same.

        Why: a grid search fits many models on one training set, and part of what they
        derive depends on the data (and a parameter or two) alone: the user histories every
        model sorts every event for (0.3 s at ML-1M), and EASE's inverse (3 s at 3,706
        items), which the hybrid's 24-point grid computed again for every point with the
        same λ. A data set is immutable, so a kept value cannot go stale; one value per
        kind bounds the memory, and it lives as long as the data set (copies and pickles
        leave it behind)."""
        memo = self.__dict__.setdefault("_derived", {})  # frozen: bypass __setattr__
        hit = memo.get(kind)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        memo[kind] = (key, value)
        return value

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_derived", None)
        return state

    def with_events(self, frame: pd.DataFrame) -> "Dataset":
        """Same catalogue, other events (a split's training part, say)."""
        return Dataset(self.items, Events.from_frame(frame), self.name, dict(self.meta), self.users)

    def summary(self) -> dict:
        ev = self.events.frame
        n_users = ev[USER_ID].nunique()
        return {
            "name": self.name,
            "n_items": self.n_items,
            "n_users": int(n_users),
            "n_events": len(ev),
            "density": float(len(ev) / max(1, n_users * self.n_items)),
            "items_without_events": int(self.n_items - np.unique(self.item_positions).size),
            "first_event": float(ev[TIMESTAMP].min()) if len(ev) else None,
            "last_event": float(ev[TIMESTAMP].max()) if len(ev) else None,
            "text_fields": list(self.items.text_fields),
            "categorical_fields": list(self.items.categorical_fields),
            "numeric_fields": list(self.items.numeric_fields),
            "user_fields": [] if self.users is None else [c for c in self.users.columns if c != USER_ID],
            **self.meta,
        }

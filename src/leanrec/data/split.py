"""The fixed evaluation protocols (DESIGN.md §4), so every number in leanrec compares.

Warm: per-user temporal leave-one-out. Each user's events are sorted by (timestamp, item
id); the last is the test target, the second-to-last the validation target, the rest is
training. Users with two events get a test target only; users with one, training only.

Cold-start items: ``numpy.random.default_rng(seed).permutation(n_items)[:int(0.2 * n_items)]``
over items ordered by id picks the cold items; every event with them leaves training. For
each user, the last event with a cold item is the test target and the one before it (if
any) the validation target; candidates are the cold items only.

Every target carries the items the user interacted with *before* it (``seen``): those are
excluded from the candidates at ranking time (except the target itself, so repeat
consumption stays rankable), which is exactly "exclude train items at validation, train and
validation items at test".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .schema import ITEM_ID, TIMESTAMP, USER_ID, Dataset

COLD_FRACTION = 0.2
SEED = 42


@dataclass(frozen=True)
class Targets:
    """One held-out event per user: what the model must rank highly.

    ``frame`` columns: user_id, item_id, item_pos, timestamp. ``seen[k]`` holds the item
    positions the k-th user interacted with before the target (to exclude).
    """

    frame: pd.DataFrame
    seen: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class Split:
    """A protocol's data: fit on ``train`` for ``valid``, on ``train_valid`` for ``test``."""

    protocol: str
    train: Dataset
    valid: Targets
    train_valid: Dataset
    test: Targets
    candidates: np.ndarray | None = None  # item positions that may be ranked; None = all

    def summary(self) -> dict:
        return {
            "protocol": self.protocol,
            "train_events": len(self.train.events),
            "train_valid_events": len(self.train_valid.events),
            "valid_users": len(self.valid),
            "test_users": len(self.test),
            "n_candidates": None if self.candidates is None else int(len(self.candidates)),
        }


def _ordered(ds: Dataset) -> pd.DataFrame:
    """Events with item positions, sorted by (user, timestamp, item id) — the protocol's order."""
    ev = ds.events.frame.copy()
    ev["item_pos"] = ds.item_positions
    # item positions follow item-id order, so sorting by them breaks timestamp ties by id.
    return ev.sort_values([USER_ID, TIMESTAMP, "item_pos"], kind="stable").reset_index(drop=True)


def _targets(ev: pd.DataFrame, rows: np.ndarray) -> Targets:
    """Targets at the given row numbers of the ordered log, with each user's earlier items."""
    frame = ev.loc[rows, [USER_ID, ITEM_ID, "item_pos", TIMESTAMP]].reset_index(drop=True)
    starts = ev.groupby(USER_ID, sort=False).head(1).index.to_numpy()
    user_start = dict(zip(ev.loc[starts, USER_ID], starts))
    positions = ev["item_pos"].to_numpy()
    seen = [positions[user_start[u]:r] for u, r in zip(frame[USER_ID], rows)]
    return Targets(frame, seen)


def temporal_leave_one_out(ds: Dataset) -> Split:
    """The warm protocol: last event = test, second-to-last = validation, rest = train."""
    ev = _ordered(ds)
    rank_from_end = ev.groupby(USER_ID, sort=False).cumcount(ascending=False).to_numpy()
    n_user = ev.groupby(USER_ID, sort=False)[ITEM_ID].transform("size").to_numpy()
    is_test = (rank_from_end == 0) & (n_user >= 2)
    is_valid = (rank_from_end == 1) & (n_user >= 3)
    train_rows = ~(is_test | is_valid)
    cols = list(ds.events.frame.columns)
    return Split(
        protocol="warm",
        train=ds.with_events(ev.loc[train_rows, cols]),
        valid=_targets(ev, np.flatnonzero(is_valid)),
        train_valid=ds.with_events(ev.loc[~is_test, cols]),
        test=_targets(ev, np.flatnonzero(is_test)),
    )


def cold_items(n_items: int, seed: int = SEED, fraction: float = COLD_FRACTION) -> np.ndarray:
    """Positions of the cold items (items ordered by id), sorted."""
    return np.sort(np.random.default_rng(seed).permutation(n_items)[: int(fraction * n_items)])


def cold_start_split(ds: Dataset, seed: int = SEED, fraction: float = COLD_FRACTION) -> Split:
    """The cold-start-item protocol: cold items lose all training events; rank cold items only."""
    ev = _ordered(ds)
    cold = cold_items(ds.n_items, seed, fraction)
    is_cold = np.isin(ev["item_pos"].to_numpy(), cold)
    cold_ev = ev[is_cold]
    rank_from_end = cold_ev.groupby(USER_ID, sort=False).cumcount(ascending=False)
    test_rows = cold_ev.index[rank_from_end.to_numpy() == 0].to_numpy()
    valid_rows = cold_ev.index[rank_from_end.to_numpy() == 1].to_numpy()
    cols = list(ds.events.frame.columns)
    train = ds.with_events(ev.loc[~is_cold, cols])
    return Split(
        protocol="cold",
        train=train,
        valid=_targets(ev, valid_rows),
        train_valid=train,  # cold items never get training events, whatever the stage
        test=_targets(ev, test_rows),
        candidates=cold,
    )


#: The evaluation protocols (DESIGN.md §4): warm users' next item, and cold items.
PROTOCOLS = ("warm", "cold")


def make_split(ds: Dataset, protocol: str, seed: int = SEED) -> Split:
    if protocol == "warm":
        return temporal_leave_one_out(ds)
    if protocol == "cold":
        return cold_start_split(ds, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose 'warm' or 'cold'")

"""The fixed evaluation protocols (DESIGN.md §4), so every number in leanrec compares.

Warm: per-user temporal leave-one-out. Each user's events are sorted by (timestamp, item
id); the last is the test target, the second-to-last the validation target, the rest is
training. Users with two events get a test target only; users with one, training only.

Cold-start items: ``numpy.random.default_rng(seed).permutation(n_items)[:int(0.2 * n_items)]``
over items ordered by id picks the cold items; every event with them leaves training. For
each user, the last event with a cold item is the test target and the one before it (if
any) the validation target; candidates are the cold items only.

New users (the ramp, :func:`new_user_split`): ``numpy.random.default_rng(seed).permutation(
n_users)[:int(0.1 * n_users)]`` over users ordered by id picks the held-out users; every event
of theirs leaves training (later ones too). For each n in (0, 1, 3, 5, 10) and each held-out
user with at least n + 1 events, the (n + 1)-th event in the same (timestamp, item id) order
is the target and the first n are all the model knows of the user (``seen``, excluded from
the candidates). Models score these users without retraining.

Every target carries the items the user interacted with *before* it (``seen``): those are
excluded from the candidates at ranking time (except the target itself, so repeat
consumption stays rankable), which is exactly "exclude train items at validation, train and
validation items at test".

Every target also carries ``strictly_later``: its timestamp is strictly greater than that
of the user's last earlier event (the latest training event for validation, the latest
train+validation event for test; True when there is none). Where it is False the protocol's
order between the two events came from the item-id tie-break alone (on ML-100K, 415 of 943
warm test targets share their timestamp with the validation event), an order a model with
item-id embeddings can learn; the evaluation reports every metric on the strictly-later
targets as well, so a gain that lives only in the ties shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .schema import ITEM_ID, TIMESTAMP, USER_ID, Dataset

COLD_FRACTION = 0.2
SEED = 42
NEW_USER_FRACTION = 0.1
#: history lengths n of the new-user ramp: rank the (n + 1)-th event given the first n
RAMP_SIZES = (0, 1, 3, 5, 10)


@dataclass(frozen=True)
class Targets:
    """One held-out event per user: what the model must rank highly.

    ``frame`` columns: user_id, item_id, item_pos, timestamp, strictly_later (see the module
    docstring). ``seen[k]`` holds the item positions the k-th user interacted with before
    the target (to exclude), oldest first.
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
    """Targets at the given row numbers of the ordered log, with each user's earlier items
    and whether the target is strictly later than the user's last earlier event."""
    rows = np.asarray(rows, np.int64)
    frame = ev.loc[rows, [USER_ID, ITEM_ID, "item_pos", TIMESTAMP]].reset_index(drop=True)
    starts = ev.groupby(USER_ID, sort=False).head(1).index.to_numpy()
    user_start = dict(zip(ev.loc[starts, USER_ID], starts))
    positions = ev["item_pos"].to_numpy()
    first = np.fromiter((user_start[u] for u in frame[USER_ID]), np.int64, count=len(rows))
    seen = [positions[s:r] for s, r in zip(first, rows)]
    ts = ev[TIMESTAMP].to_numpy()
    # the log is sorted by (user, timestamp, item), so row r - 1 is the user's last earlier event
    has_earlier = rows > first
    frame["strictly_later"] = ~has_earlier | (ts[rows] > ts[np.maximum(rows - 1, 0)])
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


@dataclass(frozen=True)
class RampSplit:
    """The new-user protocol's data: fit on ``train`` (the other users, every event of
    theirs), then rank ``targets[n]`` for each n: the held-out users' (n + 1)-th events, with
    ``seen`` = their first n items (the whole history a model may use, oldest first)."""

    train: Dataset
    held_out: np.ndarray            # the held-out user ids, sorted
    targets: dict[int, Targets]     # n -> targets

    def summary(self) -> dict:
        return {
            "protocol": "new-users",
            "train_events": len(self.train.events),
            "train_users": int(self.train.events.frame[USER_ID].nunique()),
            "held_out_users": len(self.held_out),
            "targets": {str(n): len(t) for n, t in self.targets.items()},
        }


def held_out_users(user_ids, seed: int = SEED, fraction: float = NEW_USER_FRACTION) -> np.ndarray:
    """The new-user protocol's held-out users among ``user_ids`` (ordered by id), sorted."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction of held-out users must be between 0 and 1, got {fraction}")
    users = np.unique(np.asarray(user_ids))
    return np.sort(users[np.random.default_rng(seed).permutation(len(users))[: int(fraction * len(users))]])


def new_user_split(ds: Dataset, seed: int = SEED, fraction: float = NEW_USER_FRACTION,
                   sizes=RAMP_SIZES) -> RampSplit:
    """The new-user ramp (module docstring): held-out users lose every event from training;
    their (n + 1)-th event is ranked given their first n, for each n in ``sizes``."""
    sizes = tuple(sizes)
    if not sizes or any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0 for n in sizes):
        raise ValueError(f"ramp sizes must be non-negative integers, got {sizes}")
    ev = _ordered(ds)
    held = held_out_users(ev[USER_ID].to_numpy(), seed, fraction)
    is_held = ev[USER_ID].isin(held).to_numpy()
    cols = list(ds.events.frame.columns)
    held_ev = ev[is_held].reset_index(drop=True)
    index = held_ev.groupby(USER_ID, sort=False).cumcount().to_numpy()
    targets = {int(n): _targets(held_ev, np.flatnonzero(index == n)) for n in sorted(set(sizes))}
    return RampSplit(train=ds.with_events(ev.loc[~is_held, cols]), held_out=held, targets=targets)


#: The evaluation protocols (DESIGN.md §4): warm users' next item, and cold items.
PROTOCOLS = ("warm", "cold")


def make_split(ds: Dataset, protocol: str, seed: int = SEED) -> Split:
    if protocol == "warm":
        return temporal_leave_one_out(ds)
    if protocol == "cold":
        return cold_start_split(ds, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose 'warm' or 'cold'")

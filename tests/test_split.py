"""Split invariants: sizes, no leakage, determinism, the fixed cold-item draw."""

import numpy as np
import pandas as pd
import pytest

from leanrec.data.schema import Dataset, Events, Items
from leanrec.data.split import cold_items, cold_start_split, make_split, temporal_leave_one_out


def _keys(frame):
    return set(zip(frame["user_id"], frame["item_id"], frame["timestamp"]))


def test_warm_sizes_and_order(synthetic):
    s = temporal_leave_one_out(synthetic)
    ev = synthetic.events.frame
    n_users = ev["user_id"].nunique()
    assert len(s.test) == n_users and len(s.valid) == n_users  # every synthetic user has >= 8 events
    assert len(s.train.events) + len(s.valid) + len(s.test) == len(ev)
    assert len(s.train_valid.events) == len(s.train.events) + len(s.valid)
    train = s.train.events.frame
    last_train = train.groupby("user_id")["timestamp"].max()
    for frame in (s.valid.frame, s.test.frame):
        ts = frame.set_index("user_id")["timestamp"]
        assert (ts >= last_train.loc[ts.index]).all()  # targets never precede training
    assert (s.test.frame.set_index("user_id")["timestamp"] >= s.valid.frame.set_index("user_id")["timestamp"]).all()


def test_warm_no_leakage(synthetic):
    s = temporal_leave_one_out(synthetic)
    train, tv = _keys(s.train.events.frame), _keys(s.train_valid.events.frame)
    assert not (_keys(s.valid.frame) & train)
    assert not (_keys(s.test.frame) & tv)
    assert _keys(s.valid.frame) <= tv
    # seen = exactly the user's earlier items
    for (_, row), seen in zip(s.test.frame.iterrows(), s.test.seen):
        user_train = s.train_valid.events.frame.query("user_id == @row.user_id")
        assert sorted(seen.tolist()) == sorted(s.train_valid.items.positions(user_train["item_id"]).tolist())


def test_timestamp_ties_broken_by_item_id():
    items = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3], "text": ["a", "b", "c"]}))
    ev = Events.from_frame(pd.DataFrame({"user_id": [7, 7, 7], "item_id": [3, 1, 2], "timestamp": [5, 5, 5]}))
    s = temporal_leave_one_out(Dataset(items, ev))
    assert s.test.frame["item_id"].tolist() == [3] and s.valid.frame["item_id"].tolist() == [2]


def test_short_histories():
    items = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3], "text": ["a", "b", "c"]}))
    ev = Events.from_frame(pd.DataFrame({"user_id": [1, 2, 2], "item_id": [1, 1, 2], "timestamp": [1, 1, 2]}))
    s = temporal_leave_one_out(Dataset(items, ev))
    assert s.test.frame["user_id"].tolist() == [2]  # user 1 (one event) stays in training only
    assert len(s.valid) == 0


def test_cold_items_fixed_draw():
    expected = np.sort(np.random.default_rng(42).permutation(1682)[: int(0.2 * 1682)])
    assert np.array_equal(cold_items(1682), expected)
    assert len(expected) == 336


def test_cold_protocol_invariants(synthetic):
    s = cold_start_split(synthetic)
    cold = set(s.candidates.tolist())
    train_pos = set(s.train.item_positions.tolist())
    assert not (train_pos & cold)  # cold items have no training events at all
    assert set(s.test.frame["item_pos"]) <= cold and set(s.valid.frame["item_pos"]) <= cold
    ev = synthetic.events.frame.assign(pos=synthetic.item_positions)
    cold_ev = ev[ev["pos"].isin(cold)].sort_values(["user_id", "timestamp", "pos"])
    last = cold_ev.groupby("user_id").tail(1)
    assert sorted(s.test.frame["user_id"]) == sorted(last["user_id"])
    assert set(zip(s.test.frame["user_id"], s.test.frame["item_pos"])) == set(zip(last["user_id"], last["pos"]))


def test_deterministic(synthetic):
    for protocol in ("warm", "cold"):
        a, b = make_split(synthetic, protocol), make_split(synthetic, protocol)
        pd.testing.assert_frame_equal(a.test.frame, b.test.frame)
        pd.testing.assert_frame_equal(a.train.events.frame, b.train.events.frame)


def test_unknown_protocol(synthetic):
    with pytest.raises(ValueError, match="protocol"):
        make_split(synthetic, "lukewarm")


def test_the_users_table_travels_with_the_splits():
    items = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3], "text": ["a", "b", "c"]}))
    ev = Events.from_frame(pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "item_id": [1, 2, 3, 3, 2, 1],
                                         "timestamp": [1, 2, 3, 1, 2, 3]}))
    users = pd.DataFrame({"user_id": ["2", "1"], "age": [30, 20], "gender": ["F", "M"]})
    ds = Dataset(items, ev, users=users)
    assert ds.users["user_id"].tolist() == [1, 2]  # ids normalised like the events', sorted
    assert ds.summary()["user_fields"] == ["age", "gender"]
    for protocol in ("warm", "cold"):
        s = make_split(ds, protocol)
        assert s.train.users.equals(ds.users) and s.train_valid.users.equals(ds.users)
    assert Dataset(items, ev).users is None and Dataset(items, ev).summary()["user_fields"] == []
    with pytest.raises(ValueError, match="duplicate user ids"):
        Dataset(items, ev, users=pd.DataFrame({"user_id": [1, 1], "age": [20, 21]}))
    with pytest.raises(ValueError, match="no 'user_id' column"):
        Dataset(items, ev, users=pd.DataFrame({"uid": [1, 2]}))


def _tied_dataset():
    """Four users with hand-made timestamp ties (item ids 1..5)."""
    items = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3, 4, 5], "text": list("abcde")}))
    ev = Events.from_frame(pd.DataFrame({
        "user_id":   [1, 1, 1,  2, 2, 2,  3, 3,  4, 4, 4],
        "item_id":   [1, 3, 2,  1, 2, 3,  5, 4,  5, 1, 2],
        "timestamp": [1, 2, 2,  1, 2, 3,  5, 5,  9, 9, 9],
    }))
    return Dataset(items, ev)


def test_strictly_later_flag_by_hand():
    s = temporal_leave_one_out(_tied_dataset())
    test = s.test.frame.set_index("user_id")
    valid = s.valid.frame.set_index("user_id")
    # user 1: valid item 2 (t2, after t1), test item 3 (t2, tied with valid: ordered by id alone)
    # user 2: every event later than the one before; user 3: two tied events (no valid)
    # user 4: three tied events ordered 1, 2, 5 by id: valid 2 and test 5 both tied
    assert test.loc[[1, 2, 3, 4], "item_id"].tolist() == [3, 3, 5, 5]
    assert test.loc[[1, 2, 3, 4], "strictly_later"].tolist() == [False, True, False, False]
    assert valid.loc[[1, 2, 4], "item_id"].tolist() == [2, 2, 2]
    assert valid.loc[[1, 2, 4], "strictly_later"].tolist() == [True, True, False]
    assert s.test.frame["strictly_later"].dtype == bool


def test_strictly_later_in_cold_split_compares_with_the_previous_event(synthetic):
    """The previous event in protocol order is tied only if an event of the same timestamp
    with a lower item id exists; otherwise it is strictly earlier (or there is none)."""
    s = cold_start_split(synthetic)
    ev = synthetic.events.frame.assign(item_pos=synthetic.item_positions)
    for _, row in s.test.frame.iterrows():
        same = ev[(ev.user_id == row.user_id) & (ev.timestamp == row.timestamp)]
        assert row.strictly_later == (not (same.item_pos < row.item_pos).any())

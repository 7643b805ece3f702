"""Generated interaction logs: shape, determinism, preferences, skew, valid ids."""

import numpy as np
import pandas as pd
import pytest

from leanrec.data.interactions import DEFAULT_START_TS, KINDS, generate_events
from leanrec.data.products import generate_products


@pytest.fixture(scope="module")
def items() -> pd.DataFrame:
    return generate_products(5_000, seed=3)


@pytest.fixture(scope="module")
def events(items) -> pd.DataFrame:
    return generate_events(items, 2_000, (10, 30), seed=11)


def test_columns_dtypes_and_counts(items, events):
    assert list(events.columns) == ["user_id", "item_id", "timestamp", "kind", "value"]
    assert events["user_id"].dtype == np.int64 and events["item_id"].dtype == np.int64
    assert events["timestamp"].dtype == np.float64 and events["value"].dtype == np.float64
    assert events["value"].isna().all()
    assert set(events["kind"].unique()) <= set(KINDS)
    assert isinstance(events.index, pd.RangeIndex)
    per_user = events.groupby("user_id").size()
    assert per_user.min() >= 10 and per_user.max() <= 30
    assert set(per_user.index) <= set(range(2_000)) and len(per_user) == 2_000
    assert len(events) == per_user.sum()


def test_ids_are_catalogue_ids(items, events):
    assert events["item_id"].isin(items["item_id"]).all()
    shifted = items.assign(item_id=items["item_id"] + 1_000_000)
    ev = generate_events(shifted, 50, (5, 5), seed=1)
    assert ev["item_id"].isin(shifted["item_id"]).all()
    strings = items.assign(item_id="p" + items["item_id"].astype(str))
    ev = generate_events(strings, 50, (5, 5), seed=1)
    assert ev["item_id"].isin(set(strings["item_id"])).all()


def test_deterministic_for_a_seed(items, events):
    again = generate_events(items, 2_000, (10, 30), seed=11)
    pd.testing.assert_frame_equal(events, again)
    other = generate_events(items, 2_000, (10, 30), seed=12)
    assert len(other) != len(events) or not other["item_id"].equals(events["item_id"])


def test_timestamps_sorted_per_user_and_in_range(events):
    assert events["user_id"].is_monotonic_increasing
    assert (events.groupby("user_id")["timestamp"].diff().dropna() >= 0).all()
    assert events["timestamp"].min() >= DEFAULT_START_TS
    assert events["timestamp"].max() < DEFAULT_START_TS + 90 * 86_400
    assert (events["timestamp"] == np.floor(events["timestamp"])).all()
    ev = generate_events(generate_products(100), 10, (3, 3), start_ts=1_000.0, days=1.0, seed=0)
    assert ev["timestamp"].between(1_000.0, 1_000.0 + 86_400).all()


def test_users_mostly_stay_in_their_categories(items, events):
    cat = events["item_id"].map(items.set_index("item_id")["category"])
    # Share of each user's events in their three most frequent categories: ~90% (the
    # p_noise=0.1 off-preference share, part of which lands in a preferred one anyway).
    top3 = cat.groupby(events["user_id"]).agg(lambda s: s.value_counts().iloc[:3].sum() / len(s))
    assert top3.mean() > 0.85
    n_cats = cat.groupby(events["user_id"]).nunique()
    assert n_cats.median() <= 5  # not spread over the 36 categories
    # Without noise, a user never leaves their (at most 3) preferred categories.
    clean = generate_events(items, 500, (10, 30), seed=2, p_noise=0.0)
    clean_cat = clean["item_id"].map(items.set_index("item_id")["category"])
    assert clean_cat.groupby(clean["user_id"]).nunique().max() <= 3


def test_popularity_is_skewed(items, events):
    counts = events["item_id"].value_counts()
    top = counts.iloc[: len(items) // 100].sum() / counts.sum()
    assert top > 0.15  # the top 1% of items draws far more than 1% of the events
    flat = generate_events(items, 2_000, (10, 30), seed=11, item_zipf=0.0)
    flat_top = flat["item_id"].value_counts().iloc[: len(items) // 100].sum() / len(flat)
    assert flat_top < top / 2
    # Popular categories attract more users: the catalogue's largest category gets the
    # most events.
    cat = events["item_id"].map(items.set_index("item_id")["category"])
    assert cat.value_counts().index[0] == items["category"].value_counts().index[0]


def test_kinds_follow_the_funnel(events):
    share = events["kind"].value_counts(normalize=True)
    assert share["view"] > share["cart"] > share["purchase"] > 0


def test_edge_cases_and_errors(items):
    empty = generate_events(items, 0)
    assert len(empty) == 0 and list(empty.columns) == ["user_id", "item_id", "timestamp", "kind", "value"]
    none = generate_events(items, 10, (0, 0))
    assert len(none) == 0
    one_cat = pd.DataFrame({"item_id": [1, 2, 3], "category": ["a", "a", "a"]})
    ev = generate_events(one_cat, 20, (4, 4))
    assert len(ev) == 80 and ev["item_id"].isin([1, 2, 3]).all()
    with pytest.raises(ValueError, match="category"):
        generate_events(items[["item_id"]], 10)
    with pytest.raises(ValueError, match="empty"):
        generate_events(items.iloc[:0], 10)
    with pytest.raises(ValueError, match="events_per_user"):
        generate_events(items, 10, (5, 2))
    with pytest.raises(ValueError, match="n_users"):
        generate_events(items, -1)
    with pytest.raises(ValueError, match="duplicate"):
        generate_events(pd.concat([items, items.iloc[:1]]), 10)


def test_fast_enough_for_a_benchmark():
    import time

    big = generate_products(20_000, seed=1)
    t0 = time.perf_counter()
    ev = generate_events(big, 20_000, (15, 25))
    assert len(ev) > 300_000
    assert time.perf_counter() - t0 < 5.0  # 400k events; 100k users x 20 take ~2 s

"""The scale generator: exact counts, streamed parts + manifest, determinism, realistic skew, CLI."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leanrec.cli import app
from leanrec.data.products import generate_products
from leanrec.data.synth_scale import allocate_counts, load_synthetic_dataset, read_synthetic, write_synthetic

N_ITEMS, N_USERS, N_EVENTS = 5000, 500, 20_000


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    manifest = write_synthetic(out, N_ITEMS, N_USERS, N_EVENTS, seed=7, partition_rows=3000)
    items, events = read_synthetic(out, verify=True)
    return out, manifest, items, events


def test_exact_counts_and_columns(synth):
    out, manifest, items, events = synth
    assert len(items) == N_ITEMS and len(events) == N_EVENTS
    assert events["user_id"].nunique() == N_USERS
    assert items["item_id"].tolist() == list(range(N_ITEMS))
    assert list(events.columns) == ["user_id", "item_id", "timestamp", "kind", "value"]
    assert list(items.columns) == ["item_id", "title", "category", "brand", "price"]
    assert events["user_id"].dtype == np.int64 and events["item_id"].dtype == np.int64
    assert events["timestamp"].dtype == np.float64 and events["value"].isna().all()
    assert set(events["kind"]) == {"view", "cart", "purchase"}
    assert manifest["counts"] == {"items": N_ITEMS, "users": N_USERS, "events": N_EVENTS}


def test_parts_and_manifest(synth):
    out, manifest, _, _ = synth
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["seed"] == 7 and on_disk["parameters"]["partition_rows"] == 3000
    for stage, total in (("items", N_ITEMS), ("events", N_EVENTS)):
        parts = on_disk["parts"][stage]
        rows = [p["rows"] for p in parts]
        assert sum(rows) == total
        assert rows[:-1] == [3000] * (len(rows) - 1) and 0 < rows[-1] <= 3000
        assert [p["path"] for p in parts] == [f"{stage}/part-{i:05d}.parquet" for i in range(len(parts))]
        assert sorted(p.name for p in (out / stage).iterdir()) == [p["path"].split("/")[1] for p in parts]
        for p in parts:
            assert hashlib.sha256((out / p["path"]).read_bytes()).hexdigest() == p["sha256"]
            assert len(pd.read_parquet(out / p["path"])) == p["rows"]


def test_events_consistent_with_items(synth):
    _, _, items, events = synth
    assert events["item_id"].isin(items["item_id"]).all()
    # Ordered by user, then time within a user; timestamps in the 90-day window.
    assert events["user_id"].is_monotonic_increasing
    assert (events.groupby("user_id")["timestamp"].diff().dropna() >= 0).all()
    assert events["timestamp"].min() >= 1_704_067_200 and events["timestamp"].max() < 1_704_067_200 + 90 * 86_400
    # The catalogue is the products generator's, row for row.
    pd.testing.assert_frame_equal(items, generate_products(N_ITEMS, seed=7), check_dtype=False)


def test_category_preference(synth):
    _, _, items, events = synth
    cat = events["item_id"].map(items.set_index("item_id")["category"])
    counts = events["user_id"].value_counts()
    heavy = events["user_id"].isin(counts[counts >= 30].index)
    per_user = cat[heavy].groupby(events["user_id"][heavy])
    top3 = per_user.apply(lambda g: g.value_counts().iloc[:3].sum() / len(g)).mean()
    base = items["category"].value_counts(normalize=True).iloc[:3].sum()
    # Measured ~0.94 (seeds 1, 2, 3, 42) against ~0.44 for catalogue-share draws.
    assert top3 > 0.85 and base < 0.55


def test_popularity_and_activity_skew(synth):
    _, _, _, events = synth
    per_item = events["item_id"].value_counts()
    top1 = per_item.iloc[: N_ITEMS // 100].sum() / N_EVENTS
    assert top1 > 0.2  # measured ~0.29 (0.01 if uniform); 0.59 at 1M items / 10M events
    per_user = events["user_id"].value_counts()
    assert per_user.max() > 8 * per_user.median()  # heavy users (measured 22-37x)
    assert (per_user <= per_user.median() / 2).mean() > 0.1  # and light ones


def test_allocate_counts_exact_and_skewed():
    for users, total in ((1, 5), (7, 3), (1000, 12_345), (100_000, 10_000_000)):
        c = allocate_counts(users, total, seed=1)
        assert len(c) == users and c.sum() == total and c.min() >= 0
    c = allocate_counts(1000, 100_000, seed=1)
    assert c.min() >= 1 and c.max() > 10 * np.median(c)
    assert (allocate_counts(1000, 100_000, seed=1) == c).all()


def test_deterministic_and_independent_of_partition_size(tmp_path, synth):
    _, manifest, items, events = synth
    again = write_synthetic(tmp_path / "a", N_ITEMS, N_USERS, N_EVENTS, seed=7, partition_rows=3000)
    assert again["parts"] == manifest["parts"]  # byte-identical parts
    write_synthetic(tmp_path / "b", N_ITEMS, N_USERS, N_EVENTS, seed=7, partition_rows=7777)
    items_b, events_b = read_synthetic(tmp_path / "b")
    pd.testing.assert_frame_equal(items_b, items)
    pd.testing.assert_frame_equal(events_b, events)
    other = write_synthetic(tmp_path / "c", N_ITEMS, N_USERS, N_EVENTS, seed=8, partition_rows=3000)
    assert other["parts"]["events"][0]["sha256"] != manifest["parts"]["events"][0]["sha256"]


def test_rerun_replaces_parts_and_edge_cases(tmp_path):
    out = tmp_path / "ds"
    write_synthetic(out, 300, 20, 1000, partition_rows=100)
    write_synthetic(out, 300, 20, 250, partition_rows=100)  # fewer parts than before
    assert len(list((out / "events").iterdir())) == 3
    m = write_synthetic(tmp_path / "none", 10, 0, 0)
    assert m["parts"]["events"][0]["rows"] == 0
    assert len(read_synthetic(tmp_path / "none")[1]) == 0
    with pytest.raises(ValueError):
        write_synthetic(tmp_path / "bad", 0, 5, 10)
    with pytest.raises(ValueError):
        write_synthetic(tmp_path / "bad", 10, 5, 10, partition_rows=0)


def test_loads_as_dataset(tmp_path):
    write_synthetic(tmp_path / "ds", 400, 30, 900, description_words=20, partition_rows=250)
    ds = load_synthetic_dataset(tmp_path / "ds")
    assert len(ds.items) == 400 and len(ds.events) == 900
    assert ". " in ds.items.texts[0]  # "title. description"


def test_cli_round_trip(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--items", "2k", "--users", "200", "--events", "5k",
                                 "--seed", "3", "--partition-rows", "1k", "--description-words", "15"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"items": 2000, "users": 200, "events": 5000}
    assert len(manifest["parts"]["items"]) == 2 and len(manifest["parts"]["events"]) == 5
    items, events = read_synthetic(out)
    assert "description" in items.columns and len(events) == 5000
    ref = write_synthetic(tmp_path / "lib", 2000, 200, 5000, seed=3, partition_rows=1000, description_words=15)
    assert ref["parts"] == manifest["parts"]
    # Without --users: the single-file catalogue, as before.
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "cat.parquet"), "--items", "1500"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "cat.parquet")) == 1500
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x.parquet"), "--events", "10"])
    assert result.exit_code != 0

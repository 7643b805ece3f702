"""Bulk loading an offline-encoded catalogue (`leanrec service load`): the store then holds exactly
the items, vectors and events given — on SQLite by inserts, on PostgreSQL + pgvector by COPY —
a reload replaces, and bad input names file, row and field and leaves the store as it was."""

import json

import numpy as np
import pandas as pd
import pytest
from test_pgvector_index import pg_server  # noqa: F401  (a module-scoped PostgreSQL + pgvector server)
from typer.testing import CliRunner

from leanrec.data.interactions import generate_events
from leanrec.data.products import generate_products, item_text, write_products
from leanrec.scale import EncoderSpec, encode_catalogue, load_vectors
from leanrec.service.bulk_load import HNSW_DROP_ROWS, BulkLoadError, load_catalogue
from leanrec.service.store import Store

N_ITEMS = 400
HASH = EncoderSpec("leanrec.scale.testing:hash_encoder", options={"dim": 16})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulk")
    items = write_products(root / "items.parquet", N_ITEMS, chunk_size=150)
    encode_catalogue(items, root / "vectors", encoder=HASH, client=None, partition_rows=128)
    events = generate_events(generate_products(N_ITEMS), 40, (3, 12), seed=3)
    events.to_parquet(root / "events.parquet")
    return root, items, root / "vectors", root / "events.parquet", events


@pytest.fixture(params=["sqlite", pytest.param("pgvector", marks=pytest.mark.slow)])
def store(request, tmp_path):
    if request.param == "sqlite":
        st = Store(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        from test_store_contract import fresh_database

        url, drop = fresh_database(request.getfixturevalue("pg_server"))
        st = Store(url, vectors="pgvector")
        request.addfinalizer(drop)
    request.addfinalizer(st.close)
    return st


def _snapshot(st: Store) -> tuple:
    return (sorted((i, json.dumps(f, sort_keys=True), s) for i, f, _, s in st.live_items()), st.count_events())


def test_load_writes_items_vectors_and_events(store, data):
    root, items, vectors, events_path, events = data
    out = load_catalogue(store, items, vectors, events_path=events_path)
    assert (out["items"], out["created"], out["replaced"], out["events"]) == (N_ITEMS, N_ITEMS, 0, len(events))
    assert out["method"] == ("copy" if store.uses_pgvector else "insert")
    frame = pd.read_parquet(items)
    live = {i: (f, s) for i, f, _, s in store.live_items()}
    assert set(live) == set(frame["item_id"].astype(str))
    assert live["7"][0] == {"category": frame.loc[7, "category"], "brand": frame.loc[7, "brand"],
                            "price": float(frame.loc[7, "price"])}
    seqs = sorted(s for _, s in live.values())
    assert seqs == list(range(seqs[0], seqs[0] + N_ITEMS))
    texts = item_text(frame)
    assert store.item_texts(["0", "399"]) == {"0": texts[0], "399": texts[399]}
    ids, vecs = load_vectors(vectors)
    stored = store.vectors(out["encoder_id"])
    assert len(stored) == N_ITEMS
    for i, v in zip(ids, vecs):
        assert np.array_equal(stored[str(i)], v)  # bitwise: binary COPY, no text round trip
    user = int(events["user_id"].iloc[0])
    mine = events[events["user_id"] == user].sort_values(["timestamp", "item_id"], kind="stable",
                                                         key=lambda c: c.astype(str) if c.name == "item_id" else c)
    assert store.history(str(user)) == [(str(i), float(t)) for i, t in zip(mine["item_id"], mine["timestamp"])]
    assert store.count_events() == len(events)


def test_reload_replaces_items_and_appends_events(store, data):
    root, items, vectors, events_path, events = data
    load_catalogue(store, items, vectors)
    first = {i: (c, s) for i, _, c, s in store.live_items()}
    out = load_catalogue(store, items, vectors, events_path=events_path)
    assert (out["created"], out["replaced"]) == (0, N_ITEMS)
    again = {i: (c, s) for i, _, c, s in store.live_items()}
    assert all(again[i][0] == first[i][0] and again[i][1] > first[i][1] for i in first)  # created kept, new seq
    assert store.count_events() == len(events)


def _bad_events(tmp_path, events, **change):
    bad = events.copy()
    name = "_".join(change)
    for col, (row, value) in change.items():
        bad[col] = bad[col].astype(object)
        bad.loc[row, col] = value
    path = tmp_path / f"bad_{name}.parquet"
    bad.to_parquet(path)
    return path


def test_bad_input_names_file_row_and_field_and_keeps_the_store(store, data, tmp_path):
    root, items, vectors, events_path, events = data
    load_catalogue(store, items, vectors, events_path=events_path)
    before = _snapshot(store)
    cases = [
        (_bad_events(tmp_path, events, item_id=(5, 99999)), r"bad_item_id.parquet row 5: item_id '99999' is neither"),
        (_bad_events(tmp_path, events, timestamp=(3, float("nan"))), r"bad_timestamp.parquet row 3: missing timestamp"),
        (_bad_events(tmp_path, events, user_id=(2, None)), r"bad_user_id.parquet row 2: missing user_id"),
    ]
    for path, message in cases:
        with pytest.raises(BulkLoadError, match=message):
            load_catalogue(store, items, vectors, events_path=path)
        assert _snapshot(store) == before
    frame = pd.read_parquet(items)
    frame.loc[11, "title"] = " "
    frame.to_parquet(tmp_path / "bad_items.parquet")
    with pytest.raises(BulkLoadError, match=r"bad_items.parquet row 11 \(item_id '11'\): empty or missing title"):
        load_catalogue(store, tmp_path / "bad_items.parquet", vectors)
    pd.concat([frame.iloc[:5].assign(title="x"), pd.read_parquet(items)]).to_parquet(tmp_path / "more.parquet")
    with pytest.raises(BulkLoadError, match=r"more.parquet row 5: item_id '0' appears twice"):
        load_catalogue(store, tmp_path / "more.parquet", vectors)
    extra = pd.read_parquet(items)
    extra = pd.concat([extra, extra.iloc[:1].assign(item_id=5000)], ignore_index=True)
    extra.to_parquet(tmp_path / "extra.parquet")
    with pytest.raises(BulkLoadError, match=r"item_id '5000' has no vector in .*vectors"):
        load_catalogue(store, tmp_path / "extra.parquet", vectors)
    assert _snapshot(store) == before


@pytest.mark.slow
def test_pgvector_load_drops_a_stale_hnsw_index_and_service_search_matches_exact(pg_server, data, tmp_path,  # noqa: F811
                                                                                 monkeypatch):
    """A big reload into an indexed table drops the index (rebuilt once at start-up); the
    pgvector search over the loaded rows then returns the exact top-k for loaded users."""
    from test_store_contract import fresh_database

    from leanrec.service import bulk_load
    from leanrec.service.pgvector_index import PgVectorIndex

    root, items, vectors, events_path, events = data
    url, drop = fresh_database(pg_server)
    st = Store(url, vectors="pgvector")
    try:
        out = load_catalogue(st, items, vectors, events_path=events_path)
        assert out["ann_index_dropped"] is False
        index = PgVectorIndex(st, out["encoder_id"], out["dim"], ef_search=400)  # builds the HNSW index
        monkeypatch.setattr(bulk_load, "HNSW_DROP_ROWS", 100)
        assert HNSW_DROP_ROWS == 10_000
        again = load_catalogue(st, items, vectors)
        assert again["ann_index_dropped"] is True
        index = PgVectorIndex(st, out["encoder_id"], out["dim"], ef_search=400)
        assert "Index Scan" in index.plan(np.ones(out["dim"], np.float32), 5, settings={"enable_seqscan": "off"})
        ids, vecs = load_vectors(vectors)
        q = vecs[:3].mean(axis=0)
        got, scores = index.search_ids(q, 10, exclude_ids=[str(i) for i in ids[:3]])
        exact = np.argsort(-(vecs @ q), kind="stable")
        want = [str(ids[j]) for j in exact if j >= 3][:10]
        assert got == want
        assert np.allclose(scores, (vecs @ q)[[int(g) for g in got]], atol=1e-5)
    finally:
        st.close()
        drop()


def test_cli_service_load(data, tmp_path):
    from leanrec.cli import app

    root, items, vectors, events_path, events = data
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(app, ["service", "load", str(items), str(vectors), "--events", str(events_path),
                                      "--db", db])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.replace(",", "").split())
    assert f"{N_ITEMS} items ({N_ITEMS} new 0 replaced)" in said
    assert f"{len(events)} events" in said
    bad = CliRunner().invoke(app, ["service", "load", str(items), str(tmp_path / "nowhere"), "--db", db])
    assert bad.exit_code == 2 and "nowhere" in bad.output

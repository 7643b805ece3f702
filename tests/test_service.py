"""The service in process (FastAPI TestClient, a real SQLite file, a word-hash encoder):
contract of every endpoint, auth, bad input, durability rules, profiles, cold start."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from _service import READ_KEY, WRITE_KEY, HashEncoder, write_keys
from fastapi.testclient import TestClient

from leanrec.data.history import decay_factor
from leanrec.service import ServiceConfig, create_app
from leanrec.service.core import RecService
from leanrec.service.profiles import Profile

W = {"Authorization": f"Bearer {WRITE_KEY}"}
R = {"Authorization": f"Bearer {READ_KEY}"}

CATALOGUE = {
    "heat": "Heat crime thriller heist Los Angeles",
    "casino": "Casino crime drama Las Vegas mob",
    "goodfellas": "Goodfellas crime drama mob New York",
    "toy": "Toy Story animation children comedy toys",
    "nemo": "Finding Nemo animation children ocean fish",
    "alien": "Alien science fiction horror space",
    "solaris": "Solaris science fiction space drama",
}
GENRE = {"heat": "Crime", "casino": "Crime", "goodfellas": "Crime", "toy": "Animation", "nemo": "Animation",
         "alien": "Sci-Fi", "solaris": "Sci-Fi"}


def make_client(tmp_path, **overrides) -> TestClient:
    cfg = ServiceConfig(db=f"sqlite:///{tmp_path / 'store.db'}", data_dir=str(tmp_path / "data"),
                        api_key_file=str(write_keys(tmp_path)), **overrides)
    return TestClient(create_app(cfg, encoder=HashEncoder(), start_in_background=False))


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        r = c.post("/items", headers=W, json={"items": [
            {"item_id": i, "text": t, "fields": {"genres": [GENRE[i]], "price": 9.5}} for i, t in CATALOGUE.items()]})
        assert r.status_code == 200, r.text
        yield c


def db_rows(tmp_path, sql):
    with sqlite3.connect(tmp_path / "store.db") as conn:
        return conn.execute(sql).fetchall()


def test_health_ready_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["items"] == len(CATALOGUE) and ready["index"] == "exact"
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/items/{item_id}", "/items", "/events", "/users/{user_id}/recommendations",
              "/items/{item_id}/similar", "/healthz", "/readyz", "/metrics", "/model"):
        assert p in paths
    body = paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(body["anyOf"]) == 3 and "user_id" in body["anyOf"][0]["properties"]
    assert "$ref" not in str(body)
    assert paths["/items/{item_id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["text"]


def test_serve_refuses_to_start_on_a_broken_setup(tmp_path):
    from typer.testing import CliRunner

    from leanrec.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["service", "serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--model", str(tmp_path)])
    assert r.exit_code == 2 and "not a leanrec model folder" in r.output
    (tmp_path / "keys.txt").write_text("admin:abcdefghijklmnopqrstuvwxyz\n")
    r = runner.invoke(app, ["service", "serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--api-key-file",
                            str(tmp_path / "keys.txt")])
    assert r.exit_code == 2 and "keys.txt, line 1" in r.output and "abcdefghij" not in r.output


def test_sqlite_runs_in_wal_mode_and_migrations_are_versioned(client, tmp_path):
    assert db_rows(tmp_path, "PRAGMA journal_mode")[0][0] == "wal"
    from leanrec.service import migrate

    assert db_rows(tmp_path, "SELECT version_num FROM alembic_version") == [(migrate.head(),)]


def test_migration_creates_exactly_the_declared_schema(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from leanrec.service import migrate
    from leanrec.service.schema import metadata
    from leanrec.service.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    assert migrate.upgrade(engine) == migrate.head()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upserted_item_is_recommendable_at_once_and_deleted_never_again(client):
    r = client.post("/events", headers=W, json={"events": [
        {"user_id": "u1", "item_id": "heat", "timestamp": 1_700_000_000},
        {"user_id": "u1", "item_id": "casino", "timestamp": 1_700_000_100}]})
    assert r.status_code == 200 and r.json()["stored"] == 2
    recs = client.get("/users/u1/recommendations", params={"k": 3}).json()
    assert recs["cold_start"] is False and recs["items"][0]["item_id"] == "goodfellas"
    assert {"heat", "casino"}.isdisjoint(i["item_id"] for i in recs["items"])
    assert abs(sum(i["probability"] for i in recs["items"]) - 1) < 1e-9
    # a brand-new item close to the history is the top recommendation in the next request
    r = client.put("/items/scarface", headers=W, json={"text": "Scarface crime drama mob heist Miami",
                                                       "fields": {"genres": ["Crime"]}})
    assert r.status_code == 201 and r.json()["created"] is True
    assert client.get("/users/u1/recommendations", params={"k": 1}).json()["items"][0]["item_id"] == "scarface"
    assert client.put("/items/scarface", headers=W, json={"text": "Scarface crime drama"}).status_code == 200
    assert client.delete("/items/scarface", headers=W).status_code == 204
    assert client.delete("/items/scarface", headers=W).status_code == 404
    recs = client.get("/users/u1/recommendations", params={"k": 100}).json()["items"]
    sims = client.get("/items/heat/similar", params={"k": 100}).json()["items"]
    assert "scarface" not in {i["item_id"] for i in recs + sims}
    assert client.get("/items/scarface").status_code == 404
    assert client.get("/items/heat").json()["fields"]["genres"] == ["Crime"]


def test_exclude_seen_filter_and_similar(client):
    client.post("/events", headers=W, json={"user_id": "u", "item_id": "toy", "timestamp": 1_700_000_000})
    with_seen = client.get("/users/u/recommendations", params={"k": 1, "exclude_seen": "false"}).json()
    assert with_seen["items"][0]["item_id"] == "toy"
    crime = client.get("/users/u/recommendations", params={"k": 10, "filter": "genres:crime"}).json()["items"]
    assert {i["item_id"] for i in crime} == {"heat", "casino", "goodfellas"}
    sim = client.get("/items/alien/similar", params={"k": 2}).json()
    assert sim["items"][0]["item_id"] == "solaris" and "alien" not in {i["item_id"] for i in sim["items"]}
    assert client.get("/items/nope/similar").status_code == 404
    bad = client.get("/users/u/recommendations", params={"filter": "no-colon"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "filter", 0]
    assert client.get("/users/u/recommendations", params={"k": 0}).status_code == 422


def test_unknown_user_gets_a_documented_cold_start_list(client):
    client.post("/events", headers=W, json={"events": [
        {"user_id": f"p{k}", "item_id": "nemo", "timestamp": 1_700_000_000} for k in range(3)]})
    client.put("/items/fresh", headers=W, json={"text": "A brand new documentary"})
    r = client.get("/users/never-seen/recommendations", params={"k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["cold_start"] is True and body["model"] == "cold-start:popular+new"
    ids = [i["item_id"] for i in body["items"]]
    assert ids[0] == "nemo" and "fresh" in ids and len(ids) == 4


def test_auth_scopes_and_messages(client, tmp_path):
    r = client.put("/items/x", json={"text": "t"})
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    r = client.put("/items/x", json={"text": "t"}, headers={"Authorization": "Bearer not-a-key-at-all"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    r = client.post("/events", json={"user_id": "u", "item_id": "heat"}, headers=R)
    assert r.status_code == 403 and "scope 'read'" in r.json()["detail"]
    assert client.get("/users/u/recommendations").status_code == 200  # reads open by default
    hashes = [h for (h,) in db_rows(tmp_path, "SELECT key_hash FROM api_keys")]
    assert len(hashes) == 2 and WRITE_KEY not in str(hashes) and all(len(h) == 64 for h in hashes)


def test_reads_can_require_a_key(tmp_path):
    with make_client(tmp_path, read_requires_key=True) as c:
        assert c.get("/users/u/recommendations").status_code == 401
        assert c.get("/users/u/recommendations", headers=R).status_code == 200
        assert c.get("/users/u/recommendations", headers=W).status_code == 200
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("body, loc", [
    ({"user_id": "u", "item_id": "missing"}, ["body", "item_id"]),
    ({"user_id": "u", "item_id": "heat", "timestamp": 4_000_000_000}, ["body", "timestamp"]),
    ({"user_id": "u", "item_id": "heat", "timestamp": -5}, ["body", "timestamp"]),
    ({"user_id": "u", "item_id": "heat", "value": "high"}, ["body", "events", 0, "value"]),
    ({"user_id": ["u"], "item_id": "heat"}, ["body", "events", 0, "user_id"]),
    ({"user_id": "u", "item_id": "heat", "colour": 1}, ["body", "events", 0, "colour"]),
])
def test_bad_events_are_422_naming_the_field(client, body, loc):
    r = client.post("/events", headers=W, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:len(loc)] == loc


def test_bad_items_are_422_naming_the_field(client):
    for body, loc in [({"text": "   "}, ["body", "text"]), ({"text": 3}, ["body", "text"]),
                      ({"text": "ok", "fields": {"price": float("inf")}}, ["body"]),
                      ({}, ["body", "text"])]:
        r = client.put("/items/x", headers={**W, "content-type": "application/json"},
                       content=__import__("json").dumps(body))
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"][0]["loc"][:len(loc)] == loc
    r = client.post("/items", headers={**W, "content-type": "application/json"}, content=b'{"items": [')
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_rejected_batches_change_nothing(client, tmp_path):
    client.post("/events", headers=W, json={"user_id": "u", "item_id": "heat", "timestamp": 1_700_000_000})
    before_events = db_rows(tmp_path, "SELECT count(*) FROM events")
    before_recs = client.get("/users/u/recommendations").json()
    r = client.post("/events", headers=W, json=[{"user_id": "u", "item_id": "casino"},
                                                 {"user_id": "u", "item_id": "ghost"},
                                                 {"user_id": "v", "item_id": "toy"}])
    assert r.status_code == 422 and [e["loc"] for e in r.json()["detail"]] == [["body", "events", 1, "item_id"]]
    r = client.post("/items", headers=W, json={"items": [{"item_id": "heat", "text": "REPLACED"},
                                                          {"item_id": "bad", "text": ""}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "items", 1, "text"]
    r = client.post("/items", headers=W, json={"items": [{"item_id": "d", "text": "a"}, {"item_id": "d", "text": "b"}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "items", 1, "item_id"]
    assert db_rows(tmp_path, "SELECT count(*) FROM events") == before_events
    assert db_rows(tmp_path, "SELECT text FROM items WHERE item_id='heat'")[0][0] == CATALOGUE["heat"]
    assert client.get("/users/u/recommendations").json() == before_recs
    assert client.get("/users/v/recommendations").json()["cold_start"] is True


def test_body_limit_is_413(tmp_path):
    with make_client(tmp_path, max_body_bytes=2048) as c:
        r = c.post("/items", headers=W, json={"items": [{"item_id": str(k), "text": "x" * 100} for k in range(50)]})
        assert r.status_code == 413 and "limit" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit applies while streaming
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/events", headers={**W, "content-type": "application/json"}, content=chunks())
        assert r.status_code == 413
        assert c.get("/readyz").json()["items"] == 0


def test_metrics_expose_requests_latency_index_and_encoding(client):
    client.get("/users/x/recommendations")
    text = client.get("/metrics").text
    assert 'leanrec_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"} 1.0' in text
    assert 'leanrec_request_seconds_bucket{le="0.05",method="GET",route="/users/{user_id}/recommendations"}' in text
    assert f"leanrec_index_items {float(len(CATALOGUE))}" in text
    assert "leanrec_encode_seconds_count 1.0" in text and "leanrec_encoded_items_total 7.0" in text


def test_profiles_fold_in_o_d_and_equal_the_library_user_vector(tmp_path):
    rng = np.random.default_rng(0)
    V = rng.normal(size=(12, 8)).astype(np.float32)
    ts = np.sort(rng.uniform(0, 100, 12))
    for half_life in (1.0, 3.0, None):
        folded = Profile.empty(8)
        for v, t in zip(V, ts):
            folded = folded.folded(v[None, :], np.array([t]), decay_factor(half_life))
        exact = Profile.from_history(V, ts, half_life, 8)
        np.testing.assert_allclose(folded.vector, exact.vector, rtol=1e-5, atol=1e-6)
        from leanrec.data.history import decay_weights

        w = decay_weights(12, half_life)
        np.testing.assert_allclose(exact.vector, (w @ V) / w.sum(), rtol=1e-5, atol=1e-6)


def test_out_of_order_event_recomputes_the_profile_exactly(tmp_path):
    cfg = ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"), half_life=2.0)
    svc = RecService(cfg, encoder=HashEncoder()).start()
    try:
        svc.upsert_items([{"item_id": i, "text": t, "fields": {}} for i, t in CATALOGUE.items()])
        svc.add_events([{"user_id": "u", "item_id": "heat", "ts": 10.0, "kind": "view", "value": None},
                        {"user_id": "u", "item_id": "toy", "ts": 30.0, "kind": "view", "value": None}])
        svc.add_events([{"user_id": "u", "item_id": "alien", "ts": 20.0, "kind": "view", "value": None}])
        got = svc._user_state("u").profile.vector
        V = np.stack([svc.cat.vector(i) for i in ("heat", "alien", "toy")])
        want = Profile.from_history(V, np.array([10.0, 20.0, 30.0]), 2.0, V.shape[1]).vector
        np.testing.assert_allclose(got, want, rtol=1e-6)
        stored = svc.store.profile(svc.pid, "u")
        np.testing.assert_allclose(Profile.from_row(stored).vector, want, rtol=1e-6)
    finally:
        svc.stop()


def test_restart_restores_the_index_without_reencoding(tmp_path):
    class Counting(HashEncoder):
        calls = 0

        def encode(self, texts, **kw):
            Counting.calls += len(texts)
            return super().encode(texts)

    cfg = ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"), index="hnsw")
    svc = RecService(cfg, encoder=Counting()).start()
    svc.upsert_items([{"item_id": i, "text": t, "fields": {}} for i, t in CATALOGUE.items()])
    before = svc.similar("heat", 3)
    svc.persist()
    svc.upsert_items([{"item_id": "late", "text": "late crime heist", "fields": {}}])  # after the save
    svc.delete_item("casino")
    after_changes = svc.similar("heat", 3)
    svc.store.close()  # as after a crash: no final save
    encoded = Counting.calls
    svc2 = RecService(cfg, encoder=Counting()).start()
    try:
        assert Counting.calls == encoded  # vectors came from the store
        assert svc2.cat.kind == "hnsw" and svc2.cat.n_alive == len(CATALOGUE)
        assert svc2.similar("heat", 3) == after_changes != before
    finally:
        svc2.stop()


def _serve_folder(tmp_path, folder) -> RecService:
    return RecService(ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"),
                                    model=str(folder)), encoder=HashEncoder()).start()


def _served_scores(svc, st):
    """The served model's scores of every catalogue position for a user state."""
    from leanrec.service.scoring import live_user

    return svc.scoring.scorer.score([live_user(st)], svc.cat)[0]


def test_sequential_model_scores_exactly_like_the_library(tmp_path):
    """A SASRec saved by the library, served in process: the same scores and lists for
    every user, new items scored from their text alone, unknown users cold-started."""
    import torch

    from leanrec.data.synth import make_dataset
    from leanrec.models.persist import save_model
    from leanrec.models.sequential import SequentialRecommender, last_window
    from leanrec.service.importer import import_dataset

    ds = make_dataset(n_users=60, n_items=40, seed=5)
    lib = SequentialRecommender(encoder=HashEncoder(), cache=False, pooling="sasrec", dim=16, max_len=10,
                                max_epochs=2, item_ids=True).fit(ds)
    lib.encoder = HashEncoder.model_id  # the name of the encoder the service is handed
    svc = _serve_folder(tmp_path, save_model(lib, tmp_path / "model", name="seq"))
    try:
        import_dataset(svc, ds)
        assert svc.model_info()["kind"] == "sequential"
        ids = [str(i) for i in ds.items.ids]
        users = ds.events.frame["user_id"].unique()
        for user in users[:20]:
            st = svc._user_state(str(user))
            got = _served_scores(svc, st)[[svc.cat.pos[i] for i in ids]]
            np.testing.assert_allclose(got, lib.score([user])[0], rtol=1e-6, atol=1e-6)
            want = [str(r.item_id) for r in lib.recommend(user, k=10)]
            answer = svc.recommend(str(user), 10)
            assert [i["item_id"] for i in answer["items"]] == want, user
            assert answer["model"] == "seq" and not answer["cold_start"]
            assert abs(sum(i["probability"] for i in answer["items"]) - 1) < 1e-9
        # a new item after load: scored from its text alone (projection, no ID embedding)
        user, row = str(users[0]), lib.history_.rows(users[:1])
        last = ds.items.texts[lib.history_.sequences[row[0]][-1]]
        svc.upsert_items([{"item_id": "brand-new", "text": last + " sequel", "fields": {}}])
        with torch.no_grad():
            net = lib.net_
            window = last_window(lib.history_.sequences[row[0]], lib.max_len, len(lib.items_))[None, :]
            state = net.user_states(torch.from_numpy(window), net.item_table())[0, -1]
            text = net.proj(torch.from_numpy(HashEncoder().encode([last + " sequel"])))[0]
        full = _served_scores(svc, svc._user_state(user))
        np.testing.assert_allclose(full[svc.cat.pos["brand-new"]], float(state @ text), rtol=1e-5, atol=1e-6)
        everything = svc.recommend(user, 100)["items"]
        assert "brand-new" in [i["item_id"] for i in everything]
        assert not set(svc._user_state(user).seen) & {i["item_id"] for i in everything}
        # deleted items are never recommended; unknown users get the cold-start list
        svc.delete_item("brand-new")
        assert "brand-new" not in [i["item_id"] for i in svc.recommend(user, 100)["items"]]
        cold = svc.recommend("never-seen", 5)
        assert cold["cold_start"] is True and cold["model"] == "cold-start:popular+new"
        # new events move the state at once, like the library fed the longer history
        svc.add_events([{"user_id": user, "item_id": ids[5], "ts": 2e9, "kind": "view", "value": None}])
        st = svc._user_state(user)
        assert st.recent[-1] == ids[5]
        seq = np.append(lib.history_.sequences[row[0]], 5)[-10:]
        with torch.no_grad():
            x = torch.from_numpy(np.pad(seq, (10 - len(seq), 0), constant_values=len(ids))[None, :])
            want = (net.user_states(x, net.item_table())[0, -1] @ net.item_table().T).numpy()
        got = _served_scores(svc, st)[[svc.cat.pos[i] for i in ids]]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    finally:
        svc.stop()


def test_learned_hybrid_scores_like_the_library(tmp_path):
    """The learned fusion of EASE, content, SASRec and popularity, served in process."""
    from test_model_persist import fit_learned_hybrid

    from leanrec.data.synth import make_dataset
    from leanrec.models.persist import save_model
    from leanrec.service.importer import import_dataset

    ds = make_dataset(n_users=60, n_items=40, seed=5)
    lib = fit_learned_hybrid(ds)
    svc = _serve_folder(tmp_path, save_model(lib, tmp_path / "model"))
    try:
        import_dataset(svc, ds)
        assert svc.model_info()["kind"] == "learned_hybrid"
        ids = [str(i) for i in ds.items.ids]
        for user in ds.events.frame["user_id"].unique()[:20]:
            got = _served_scores(svc, svc._user_state(str(user)))[[svc.cat.pos[i] for i in ids]]
            np.testing.assert_allclose(got, lib.score([user])[0], rtol=1e-5, atol=1e-5)
            want = [str(r.item_id) for r in lib.recommend(user, k=10)]
            assert [i["item_id"] for i in svc.recommend(str(user), 10)["items"]] == want, user
        user = str(ds.events.frame["user_id"].iloc[0])
        svc.upsert_items([{"item_id": "brand-new", "text": ds.items.texts[0] + " sequel", "fields": {}}])
        assert "brand-new" in [i["item_id"] for i in svc.recommend(user, 100)["items"]]
    finally:
        svc.stop()

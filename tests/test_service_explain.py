"""``explain=true`` in the service: the parts add up to the served score, match the library's
split of the same model, and a model without an exact split says so."""

from __future__ import annotations

import numpy as np
import pytest
from _service import HashEncoder
from test_service import GENRE, R, W, client  # noqa: F401  (the fixture)

from leanrec.data.synth import make_dataset
from leanrec.models import EASE, ContentRecommender, Hybrid, MostPopular
from leanrec.models.persist import save_model
from leanrec.service import ServiceConfig
from leanrec.service.core import RecService
from leanrec.service.importer import import_dataset


def _serve(tmp_path, folder=None, **cfg) -> RecService:
    return RecService(ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"),
                                    model=str(folder) if folder else None, **cfg), encoder=HashEncoder()).start()


def _adds_up(item) -> float:
    e = item["explanation"]
    return sum(c["contribution"] for c in e["contributions"]) + e["other"] + e["base"] + e["unexplained"]


def _matches_library(svc, lib, ds, users, k) -> None:
    """Every served explanation is exact, adds up to the served score, and has the library's
    contributions and base for the same model."""
    for user in users:
        for item in svc.recommend(str(user), k, explain=True)["items"]:
            e = item["explanation"]
            assert e["exact"], e["note"]
            assert _adds_up(item) == pytest.approx(item["score"], abs=1e-4)
            want = lib.explain(user, type(ds.items.ids[0])(item["item_id"]), limit=100)
            assert want.exact and e["base"] == pytest.approx(want.base, abs=1e-4)
            ref = {str(c.item_id): c.contribution for c in want.contributions}
            for c in e["contributions"]:
                assert c["contribution"] == pytest.approx(ref[c["item_id"]], abs=1e-4), (user, item["item_id"])


def _library(kind):
    content = ContentRecommender(encoder=HashEncoder(), cache=False, half_life=4)
    return {"content": content, "ease": EASE(lam=30), "popular": MostPopular(),
            "hybrid": Hybrid(content=content, cf=EASE(lam=30), weight=0.6)}[kind]


@pytest.mark.parametrize("kind", ["content", "ease", "popular", "hybrid"])
def test_exact_models_split_like_the_library(tmp_path, kind):
    ds = make_dataset(n_users=40, n_items=40, seed=5)
    lib = _library(kind).fit(ds)
    folder = None
    if kind != "content":
        for part in (lib, getattr(lib, "content_", None)):
            if part is not None and hasattr(part, "encoder"):
                part.encoder = HashEncoder.model_id
        folder = save_model(lib, tmp_path / "model", name=kind)
    svc = _serve(tmp_path, folder, half_life=4)
    try:
        import_dataset(svc, ds)
        users = ds.events.frame["user_id"].unique()[:8]
        _matches_library(svc, lib, ds, users, 5)
        for user in users:
            answer = svc.recommend(str(user), 5, explain=True)
            assert not answer["cold_start"]
            for item in answer["items"]:
                e = item["explanation"]
                if kind == "popular":
                    assert "not based on your history" in e["sentence"]
                elif e["contributions"] and e["contributions"][0]["contribution"] > 0:
                    assert e["sentence"].startswith("Because you ")
    finally:
        svc.stop()


def test_models_without_a_split_say_so(tmp_path):
    from test_model_persist import fit_learned_hybrid

    ds = make_dataset(n_users=60, n_items=40, seed=5)
    lib = fit_learned_hybrid(ds)
    assert lib.weights_["sasrec"] > 0  # the transformer counts (else the split is exact, and says so)
    svc = _serve(tmp_path, save_model(lib, tmp_path / "model"))
    try:
        import_dataset(svc, ds)
        for user in ds.events.frame["user_id"].unique()[:5]:
            for item in svc.recommend(str(user), 5, explain=True)["items"]:
                e = item["explanation"]
                assert not e["exact"] and e["unexplained"] != 0 and "transformer" in e["note"]
                assert _adds_up(item) == pytest.approx(item["score"], abs=1e-4)
                assert "no exact split" in e["sentence"]
    finally:
        svc.stop()


def test_http_explain_true_gives_reasons_and_cold_start_says_why(client):  # noqa: F811
    r = client.post("/events", headers=W, json=[{"user_id": "u", "item_id": i, "timestamp": 1.7e9 + k}
                                                for k, i in enumerate(["heat", "casino"])])
    assert r.status_code == 200, r.text
    plain = client.get("/users/u/recommendations", params={"k": 3}, headers=R).json()
    assert "explanation" not in plain["items"][0]
    body = client.get("/users/u/recommendations", params={"k": 3, "explain": "true"}, headers=R).json()
    assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in plain["items"]]
    top = body["items"][0]
    assert top["item_id"] == "goodfellas"
    e = top["explanation"]
    assert e["exact"] and e["sentence"].startswith("Because you viewed ")
    assert e["shared"] == {"genres": ["Crime"]} and "shares Crime" in e["sentence"]
    assert {c["item_id"] for c in e["contributions"]} == {"heat", "casino"}
    assert _adds_up(top) == pytest.approx(top["score"], abs=1e-5)
    cold = client.get("/users/nobody/recommendations", params={"explain": "true"}, headers=R).json()
    assert cold["cold_start"] and all(i["explanation"]["exact"] and "no history yet" in i["explanation"]["sentence"]
                                      for i in cold["items"])
    bad = client.get("/users/u/recommendations", params={"explain": "maybe"}, headers=R)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "explain"]


def test_a_profile_holding_a_deleted_item_is_not_called_exact(tmp_path):
    svc = _serve(tmp_path)
    try:
        svc.upsert_items([{"item_id": i, "text": t, "fields": {"genres": [GENRE[i]]}}
                          for i, t in {"heat": "Heat crime heist", "casino": "Casino crime mob",
                                       "goodfellas": "Goodfellas crime mob", "toy": "Toy animation"}.items()])
        svc.add_events([{"user_id": "u", "item_id": i, "ts": 1.7e9 + k, "kind": "view", "value": None}
                        for k, i in enumerate(["heat", "casino"])])
        svc.delete_item("casino")  # the folded profile still holds casino's vector
        items = svc.recommend("u", 2, explain=True)["items"]
        e = items[0]["explanation"]
        assert not e["exact"] and "deleted" in e["note"]
        assert _adds_up(items[0]) == pytest.approx(items[0]["score"], abs=1e-6)
        assert np.isfinite(e["unexplained"])
    finally:
        svc.stop()


def test_experiment_lists_are_explained_by_the_model_that_ranked_each_item(tmp_path):
    ds = make_dataset(n_users=60, n_items=40, seed=5)
    ease = save_model(EASE(lam=30).fit(ds), tmp_path / "ease", name="ease")
    popular = save_model(MostPopular().fit(ds), tmp_path / "popular", name="popular")
    svc = _serve(tmp_path)
    try:
        import_dataset(svc, ds)
        svc.create_experiment({"id": "ab", "mode": "ab", "arms": [{"name": "pop", "share": 0.5, "model": str(popular)},
                                                                 {"name": "ease", "share": 0.5, "model": str(ease)}]})
        svc.create_experiment({"id": "mix", "mode": "interleave",
                               "arms": [{"name": "pop", "model": str(popular)}, {"name": "ease", "model": str(ease)}]})
        methods = {"pop": "popularity", "ease": "item-item weights (EASE)"}
        for user in ds.events.frame["user_id"].astype(str).unique()[:6]:
            ab = svc.recommend(user, 5, experiment="ab", explain=True)
            for item in ab["items"]:
                assert item["explanation"]["method"] == methods[ab["experiment"]["arm"]]
                assert _adds_up(item) == pytest.approx(item["score"], abs=1e-4)
            mix = svc.recommend(user, 6, experiment="mix", explain=True)
            for item in mix["items"]:
                assert item["explanation"]["method"] == methods[item["team"]] and item["explanation"]["exact"]
                assert _adds_up(item) == pytest.approx(item["score"], abs=1e-4)
    finally:
        svc.stop()


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_sequence_models_with_a_linear_state_split_like_the_library(tmp_path, pooling):
    from leanrec.models.sequential import SequentialRecommender

    ds = make_dataset(n_users=40, n_items=40, seed=5)
    lib = SequentialRecommender(encoder=HashEncoder(), cache=False, pooling=pooling, dim=16, max_len=10,
                                max_epochs=2, item_ids=True).fit(ds)
    lib.encoder = HashEncoder.model_id
    svc = _serve(tmp_path, save_model(lib, tmp_path / "model", name=pooling))
    try:
        import_dataset(svc, ds)
        _matches_library(svc, lib, ds, ds.events.frame["user_id"].unique()[:6], 4)
    finally:
        svc.stop()


def test_a_fused_projection_part_is_split_too(tmp_path):
    from leanrec.models.learned_hybrid import LearnedHybrid
    from leanrec.models.sequential import SequentialRecommender

    ds = make_dataset(n_users=60, n_items=40, seed=5)
    lib = LearnedHybrid(components=[
        ("ease", EASE(lam=30)), ("content", ContentRecommender(encoder=HashEncoder(), cache=False, half_life=4)),
        ("projection", SequentialRecommender(encoder=HashEncoder(), cache=False, pooling="mean", dim=16, max_len=10,
                                             max_epochs=3, item_ids=True))]).fit(ds)
    assert lib.weights_["projection"] > 0 or lib.new_item_weights_["projection"] > 0  # the part counts
    for _, comp in lib.components_:
        if hasattr(comp, "encoder"):
            comp.encoder = HashEncoder.model_id
    svc = _serve(tmp_path, save_model(lib, tmp_path / "model"))
    try:
        import_dataset(svc, ds)
        _matches_library(svc, lib, ds, ds.events.frame["user_id"].unique()[:5], 4)
    finally:
        svc.stop()

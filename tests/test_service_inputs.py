"""Request content the schema cannot bound: the number of filters, and the zone of ISO times."""

from __future__ import annotations

import os
import time

import pytest
from test_service import CATALOGUE, GENRE, W, db_rows, make_client

from leanrec.service.inputs import MAX_FILTERS, MAX_PAIRS


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        r = c.post("/items", headers=W, json={"items": [
            {"item_id": i, "text": t, "fields": {"genres": [GENRE[i]]}} for i, t in CATALOGUE.items()]})
        assert r.status_code == 200, r.text
        yield c


def test_filters_per_request_are_capped_with_a_clear_422(client):
    ok = client.get("/users/u/recommendations",
                    params={"filter": [",".join(["genres:Crime"] * MAX_PAIRS)] * MAX_FILTERS})
    assert ok.status_code == 200, ok.text
    many = client.get("/users/u/recommendations", params={"filter": ["genres:Crime"] * (MAX_FILTERS + 1)})
    assert many.status_code == 422 and many.json()["detail"][0]["loc"] == ["query", "filter"]
    long = client.get("/items/heat/similar", params={"filter": ",".join(["genres:Crime"] * (MAX_PAIRS + 1))})
    assert long.status_code == 422 and long.json()["detail"][0]["loc"] == ["query", "filter", 0]
    bad = client.get("/items/heat/similar", params={"filter": "genres:Cri\x07me"})   # a control character
    assert bad.status_code == 422


@pytest.fixture
def far_from_utc():
    """The server's local zone far from UTC, so reading a zoneless time as local would show."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_iso_time_without_a_zone_is_utc(client, tmp_path, far_from_utc):
    r = client.post("/events", headers=W, json=[
        {"user_id": "u", "item_id": "heat", "timestamp": "2023-11-14T22:13:20"},          # no zone: UTC
        {"user_id": "u", "item_id": "toy", "timestamp": "2023-11-14T23:13:20+01:00"}])    # explicit zone
    assert r.status_code == 200, r.text
    ts = dict(db_rows(tmp_path, "SELECT item_id, ts FROM events"))
    assert ts == {"heat": pytest.approx(1_700_000_000.0), "toy": pytest.approx(1_700_000_000.0)}


def test_a_retried_post_with_event_ids_stores_each_event_once(client, tmp_path):
    batch = [{"user_id": "u", "item_id": "heat", "timestamp": 1_700_000_000, "event_id": "e1"},
             {"user_id": "u", "item_id": "toy", "timestamp": 1_700_000_001, "event_id": "e2"}]
    first = client.post("/events", headers=W, json=batch)
    assert first.status_code == 200 and first.json()["stored"] == 2 and first.json()["duplicates"] == 0
    again = client.post("/events", headers=W, json=batch)       # the answer was lost: the client retries
    assert again.status_code == 200 and again.json()["stored"] == 0 and again.json()["duplicates"] == 2
    mixed = client.post("/events", headers=W, json=[batch[0], {**batch[0], "item_id": "nemo", "event_id": "e3"},
                                                    {**batch[0], "item_id": "nemo", "event_id": "e3"},
                                                    {"user_id": "u", "item_id": "alien"}])   # no id: always stored
    assert mixed.json()["stored"] == 2 and mixed.json()["duplicates"] == 2
    assert db_rows(tmp_path, "SELECT count(*) FROM events") == [(4,)]
    assert db_rows(tmp_path, "SELECT n_events FROM user_profiles WHERE user_id = 'u'") == [(4,)]


def test_event_id_follows_the_id_rules(client):
    bad = client.post("/events", headers=W, json={"user_id": "u", "item_id": "heat", "event_id": "x" * 257})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "event_id"

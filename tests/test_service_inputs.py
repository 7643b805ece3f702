"""Request content the schema cannot bound: the number of filters, and the zone of ISO times."""

from __future__ import annotations

import os
import time

import pytest
from test_service import CATALOGUE, GENRE, W, db_rows, make_client

from leanrec.service.inputs import MAX_FILTERS


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        r = c.post("/items", headers=W, json={"items": [
            {"item_id": i, "text": t, "fields": {"genres": [GENRE[i]]}} for i, t in CATALOGUE.items()]})
        assert r.status_code == 200, r.text
        yield c


def test_filters_per_request_are_capped_with_a_clear_422(client):
    ok = client.get("/users/u/recommendations", params={"filter": ["genres:Crime"] * MAX_FILTERS})
    assert ok.status_code == 200, ok.text
    many = client.get("/users/u/recommendations", params={"filter": ",".join(["genres:Crime"] * (MAX_FILTERS + 1))})
    assert many.status_code == 422
    assert f"at most {MAX_FILTERS} filters" in many.json()["detail"][0]["msg"]
    assert client.get("/items/heat/similar", params={"filter": ["genres:Crime"] * 100}).status_code == 422


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

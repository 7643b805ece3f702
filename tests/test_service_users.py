"""The user cache under races and hostile ids: a profile is always the exact profile of the
user's stored events (in memory and in the database), and user ids in paths are checked like
ids in bodies, with unknown users kept out of memory."""

from __future__ import annotations

import random
import threading
from urllib.parse import quote

import numpy as np
import pytest
from _service import HashEncoder
from test_service import CATALOGUE, W, client  # noqa: F401  (the fixture)

from leanrec.service.config import ServiceConfig
from leanrec.service.core import RecService
from leanrec.service.profiles import Profile

ITEMS = list(CATALOGUE)


def _service(tmp_path, **overrides) -> RecService:
    cfg = ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"), half_life=2.0,
                        **overrides)
    return RecService(cfg, encoder=HashEncoder()).start()


def _event(user: str, item: str, ts: float) -> dict:
    return {"user_id": user, "item_id": item, "ts": ts, "kind": "view", "value": None}


def _check_user(svc: RecService, user: str) -> None:
    """The stored and the cached profile equal the recompute from the user's stored events,
    and every item they have seen is left out of their list."""
    history = svc.store.history(user)
    want = svc._profile_from(history)
    stored = Profile.from_row(svc.store.profile(svc.pid, user))
    assert stored.n_events == want.n_events == len(history), (user, stored.n_events, len(history))
    np.testing.assert_allclose(stored.total, want.total, rtol=1e-9, atol=1e-9, err_msg=user)
    np.testing.assert_allclose(stored.weight, want.weight, rtol=1e-9, err_msg=user)
    st = svc._user_state(user)
    assert st.profile.n_events == len(history), (user, st.profile.n_events, len(history))
    np.testing.assert_allclose(st.profile.total, want.total, rtol=1e-9, atol=1e-9, err_msg=user)
    seen = {i for i, _ in history}
    listed = {i["item_id"] for i in svc.recommend(user, len(ITEMS), exclude_seen=True)["items"]}
    assert not listed & seen, (user, listed & seen)


LATENCY = 2e-3  # seconds from a store read to its answer (a database across a network)


def _slow_reads(svc: RecService) -> None:
    """Every user read answers LATENCY after its snapshot, as a remote database would: the
    window in which a write can commit while a read is under way."""
    for name in ("profile", "history"):
        real = getattr(svc.store, name)

        def slow(*args, _real=real):
            out = _real(*args)
            threading.Event().wait(LATENCY)
            return out

        setattr(svc.store, name, slow)


def _at_once(*calls: tuple) -> None:
    """Run each (delay, fn, *args) in its own thread, released together by a barrier."""
    gate, errors = threading.Barrier(len(calls)), []

    def run(delay, fn, *args):
        try:
            gate.wait()
            threading.Event().wait(delay)
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _race(svc: RecService, users: list[str], ts0: float, rng: random.Random) -> None:
    """Each user's first read and a write at the same moment, then a second write; the read
    starts anywhere from with the write to after its commit."""
    for user in users:
        first, second = rng.sample(ITEMS, 2)
        _at_once((rng.uniform(0, 3 * LATENCY), svc.recommend, user, 3),
                 (0, svc.add_events, [_event(user, first, ts0)]))
        svc.add_events([_event(user, second, ts0 + 1)])


def test_first_read_racing_first_write_loses_no_profile_update(tmp_path):
    """New users, and known users whose state is not in memory (after a restart), each get
    their first read and an event at once, then a second event: the stored profile must
    count both events and the list must leave both items out — in this process and after a
    restart. Before the fix a read that began before the event's commit cached its stale
    state over the writer's, and the second event was folded onto it (n_events = 1)."""
    rng = random.Random(7)
    svc = _service(tmp_path)
    try:
        svc.upsert_items([{"item_id": i, "text": t, "fields": {}} for i, t in CATALOGUE.items()])
        known = [f"k{n}" for n in range(150)]
        svc.add_events([_event(u, rng.choice(ITEMS), 1_000.0) for u in known])
    finally:
        svc.stop()
    svc = _service(tmp_path)  # the known users' states are in the store only
    try:
        _slow_reads(svc)
        new = [f"n{n}" for n in range(150)]
        _race(svc, new, 2_000.0, rng)
        _race(svc, known, 2_000.0, rng)
        for user in new + known:
            _check_user(svc, user)
    finally:
        svc.stop()
    svc = _service(tmp_path)
    try:
        for user in new + known:
            _check_user(svc, user)
    finally:
        svc.stop()


@pytest.mark.parametrize("cache_users", [100, 1])
def test_a_read_never_caches_a_state_older_than_a_write(tmp_path, cache_users):
    """The race above made deterministic: a write commits (and, with a one-user cache, is
    evicted again by another user's write) while a read of the user is between its store
    reads and caching what it read. The read must not cache its older state."""
    svc = _service(tmp_path, cache_users=cache_users)
    try:
        svc.upsert_items([{"item_id": i, "text": t, "fields": {}} for i, t in CATALOGUE.items()])
        svc.add_events([_event("u", "heat", 1_000.0)])
    finally:
        svc.stop()
    svc = _service(tmp_path, cache_users=cache_users)
    try:
        real_history, busy = svc.store.history, []

        def history_then_writes(user_id):
            out = real_history(user_id)
            if user_id == "u" and not busy:
                busy.append(1)
                svc.add_events([_event("u", "toy", 2_000.0)])
                svc.add_events([_event("other", "heat", 2_000.0)])
            return out

        svc.store.history = history_then_writes
        assert svc.recommend("u", 3)["cold_start"] is False
        svc.store.history = real_history
        svc.add_events([_event("u", "alien", 3_000.0)])
        _check_user(svc, "u")
    finally:
        svc.stop()


# ---- ids in paths, unknown users ----------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["x" * 257, "tab\there", "bell\x07"])
def test_path_user_ids_follow_the_body_id_rules(client, user_id):  # noqa: F811
    r = client.get(f"/users/{quote(user_id, safe='')}/recommendations")
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["path", "user_id"], err
    assert client.get(f"/users/{'x' * 256}/recommendations").status_code == 200


def test_unknown_users_are_not_cached_and_evict_nobody(tmp_path):
    svc = _service(tmp_path, cache_users=3)
    try:
        svc.upsert_items([{"item_id": i, "text": t, "fields": {}} for i, t in CATALOGUE.items()])
        svc.add_events([_event("real", "heat", 1_000.0)])
        svc.recommend("real", 3)
        before = dict(svc._users)
        assert "real" in before
        for n in range(50):
            assert svc.recommend(f"ghost-{n}-" + "x" * 200, 3)["cold_start"] is True
        assert svc._users.keys() == before.keys()
        # an unknown user who then posts an event is served their history at once
        assert svc.recommend("late", 7)["cold_start"] is True
        svc.add_events([_event("late", "toy", 1_000.0)])
        got = svc.recommend("late", 7)
        assert got["cold_start"] is False and "toy" not in {i["item_id"] for i in got["items"]}
    finally:
        svc.stop()


def test_unknown_users_over_http_do_not_grow_the_cache(client):  # noqa: F811
    client.post("/events", headers=W, json={"user_id": "real", "item_id": "heat", "timestamp": 1_700_000_000})
    client.get("/users/real/recommendations")
    cached = client.get("/readyz").json()["cached_users"]
    for n in range(40):
        assert client.get(f"/users/ghost{n}{'y' * 200}/recommendations").json()["cold_start"] is True
    assert client.get("/readyz").json()["cached_users"] == cached


# ---- 404 messages -------------------------------------------------------------------------------


def test_not_found_messages_are_not_mangled(client):  # noqa: F811
    assert client.get("/items/nope").json() == {"detail": "no item 'nope'"}
    assert client.get("/items/nope/similar").json() == {"detail": "no item 'nope'"}
    assert client.get("/experiments/nope").json() == {"detail": "no experiment 'nope'"}


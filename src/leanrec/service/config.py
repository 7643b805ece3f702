"""Service settings: one dataclass, filled from a TOML file and then from command-line flags.

Every knob a product team would turn lives here with its default and why; ``leanrec service serve
--config FILE`` reads the same names from a ``[service]`` table (unknown names are an error,
so a typo never silently keeps a default).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ServiceConfig:
    # where
    host: str = "127.0.0.1"           # loopback by default: exposing it is a deliberate choice
    port: int = 8000
    db: str = "sqlite:///leanrec.db"   # SQLAlchemy URL; postgresql+psycopg://... for PostgreSQL
    data_dir: str = "leanrec-data"     # persisted vector index (restored at start-up)
    # database faults (locked, busy, disk full, I/O error, unreachable) answer 503 with
    # Retry-After; these bound how long a request waits before it gets that answer
    sqlite_busy_timeout_s: float = 2.0     # SQLite: how long a write waits for another writer's lock
    pg_connect_timeout_s: float = 5.0      # PostgreSQL: opening a connection (libpq connect_timeout, >= 2)
    pg_statement_timeout_s: float = 30.0   # PostgreSQL: any statement of a request; 0 = no limit
    db_retry_after_s: int = 5              # Retry-After of those 503s; /readyz is 503 this long after one
    # who
    api_key_file: str | None = None    # lines "read:KEY" / "write:KEY"; synced (hashed) into the store
    read_requires_key: bool = False    # reads are open unless this is set; writes always need a write key
    # what
    model: str | None = None           # a model folder (leanrec model train); None = the content recommender
    encoder: str = "minilm"            # for the content recommender when no model names one
    encoder_backend: str = "torch"
    encoder_precision: str = "fp32"
    encoder_threads: int = 1
    half_life: float | None = 8.0      # events; None = plain mean of the history
    temperature: float = 1.0
    # vectors
    index: str = "auto"                # auto | exact | hnsw | pgvector (PostgreSQL with pgvector only)
    hnsw_threshold: int = 20_000       # auto: exact below this many items, HNSW from it
    hnsw_m: int = 32                   # faiss HNSW, and pgvector's index when it builds one (2..100 there)
    hnsw_ef_construction: int = 100    # pgvector: at least 2 * hnsw_m, at most 1000
    hnsw_ef_search: int = 64           # per query, raised to k; pgvector: at most 1000
    # pgvector (index = "pgvector"): filtered / seen-excluding queries resume the HNSW walk
    # until k rows pass (pgvector >= 0.8), up to max_scan_tuples visited rows
    pgvector_iterative_scan: str = "relaxed_order"  # relaxed_order | strict_order | off
    pgvector_max_scan_tuples: int = 20_000
    # a filter that selects at most this many items is answered exactly from the in-memory
    # matrix (cost ∝ its size) instead of a walk that may visit max_scan_tuples rows for it
    pgvector_filter_scan_rows: int = 50_000  # see benchmarks/results/filter_scan.md
    # pgvector's approximate index: hnsw (the hnsw_* settings) or ivfflat, which scans the
    # ivfflat_probes lists whose centroids are nearest (an iterative scan up to max_probes);
    # its centroids come from the rows present when it is built (see Store.ensure_ivfflat_index)
    pgvector_ann: str = "hnsw"          # hnsw | ivfflat
    ivfflat_lists: int = 0              # 0: rows / 1000 up to 1M rows, sqrt(rows) beyond
    ivfflat_probes: int = 32
    ivfflat_max_probes: int = 128
    persist_interval_s: float = 30.0   # how often a changed index is written to data_dir
    # limits
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 10_000
    max_k: int = 1000
    max_future_s: float = 86_400.0     # events may be at most this far in the future
    min_timestamp: float = 0.0         # ... and not before this (Unix seconds)
    cache_users: int = 200_000         # users with events whose profiles are kept in memory (LRU)
    cold_start_new_share: float = 0.5  # share of a cold-start list taken by the newest items

    def with_overrides(self, **values: Any) -> ServiceConfig:
        """A copy with the given non-None values replaced (flags override the file)."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def check(self) -> ServiceConfig:
        if self.index not in ("auto", "exact", "hnsw", "pgvector"):
            raise ValueError(f"index must be auto, exact, hnsw or pgvector, got {self.index!r}")
        if self.index == "pgvector":
            self._check_pgvector()
        for name in ("port", "hnsw_threshold", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search",
                     "max_body_bytes", "max_batch", "max_k", "cache_users", "encoder_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("sqlite_busy_timeout_s", "pg_connect_timeout_s", "pg_statement_timeout_s"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if int(self.db_retry_after_s) < 1:
            raise ValueError(f"db_retry_after_s must be >= 1, got {self.db_retry_after_s!r}")
        if self.half_life is not None and not self.half_life > 0:
            raise ValueError(f"half_life must be > 0 or absent, got {self.half_life!r}")
        if not 0.0 <= self.cold_start_new_share <= 1.0:
            raise ValueError(f"cold_start_new_share must be in [0, 1], got {self.cold_start_new_share!r}")
        return self

    def _check_pgvector(self) -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        from .store.base import redact_url

        try:
            backend = make_url(self.db).get_backend_name()
        except ArgumentError:
            backend = None
        if backend != "postgresql":
            raise ValueError(f"index = 'pgvector' needs a PostgreSQL store (db = postgresql://USER@HOST/DB), "
                             f"got db = {redact_url(self.db)!r}")
        if self.pgvector_ann not in ("hnsw", "ivfflat"):
            raise ValueError(f"pgvector_ann must be hnsw or ivfflat, got {self.pgvector_ann!r}")
        modes = ("relaxed_order", "strict_order", "off") if self.pgvector_ann == "hnsw" else ("relaxed_order", "off")
        if self.pgvector_iterative_scan not in modes:
            raise ValueError(f"pgvector_iterative_scan must be {', '.join(modes)} with pgvector_ann = "
                             f"{self.pgvector_ann!r}, got {self.pgvector_iterative_scan!r}")
        if int(self.ivfflat_lists) < 0:
            raise ValueError(f"ivfflat_lists must be >= 0 (0: from the row count), got {self.ivfflat_lists!r}")
        for name in ("ivfflat_probes", "ivfflat_max_probes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 2 <= int(self.hnsw_m) <= 100:
            raise ValueError(f"hnsw_m must be in 2..100 with index = 'pgvector', got {self.hnsw_m!r}")
        if not 2 * int(self.hnsw_m) <= int(self.hnsw_ef_construction) <= 1000:
            raise ValueError(f"hnsw_ef_construction must be in 2 * hnsw_m..1000 with index = 'pgvector', "
                             f"got {self.hnsw_ef_construction!r} (hnsw_m = {self.hnsw_m!r})")
        if not 1 <= int(self.hnsw_ef_search) <= 1000:
            raise ValueError(f"hnsw_ef_search must be in 1..1000 with index = 'pgvector', got {self.hnsw_ef_search!r}")
        if int(self.pgvector_max_scan_tuples) < 1:
            raise ValueError(f"pgvector_max_scan_tuples must be >= 1, got {self.pgvector_max_scan_tuples!r}")
        if int(self.pgvector_filter_scan_rows) < 0:
            raise ValueError(f"pgvector_filter_scan_rows must be >= 0, got {self.pgvector_filter_scan_rows!r}")


def load_config(path: str | Path | None) -> ServiceConfig:
    """Defaults, updated from the ``[service]`` table of a TOML file when one is given."""
    if path is None:
        return ServiceConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML ({exc})") from None
    table = data.get("service", data)
    known = {f.name for f in dataclasses.fields(ServiceConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{p}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return ServiceConfig(**table).check()

"""The service's database: SQLite by default, PostgreSQL by URL, through SQLAlchemy Core.

Every write is one transaction, committed before the service answers 2xx, so an
acknowledged item or event survives a crash (SQLite runs in WAL mode with
``synchronous=FULL``: the commit is on disk when ``commit()`` returns). All SQL is built by
SQLAlchemy with bound parameters; no statement is assembled from strings.

Item vectors: in ``item_vectors`` (float32 bytes) — or, on PostgreSQL with the pgvector
extension (migration 0003), in one ``vector(d)`` table per encoder with an HNSW index
(``schema.vector_table``), which :mod:`~leanrec.service.pgvector_index` searches in SQL.
The store picks the pgvector tables by itself when the extension is installed
(``vectors="auto"``); either way vectors are written in the same transaction as their items.

One module per table family, each a class over the one engine of :mod:`.base`;
:class:`Store` is all of them together, and the only name callers need:

* :mod:`.items` — items, their change numbers, soft deletes;
* :mod:`.vectors` — item vectors in ``item_vectors`` or the pgvector tables;
* :mod:`.ann_indexes` — the HNSW / IVFFlat index of each pgvector table;
* :mod:`.events` — events, user profiles, click attribution;
* :mod:`.experiments` — experiments and exposures;
* :mod:`.keys` — API keys; :mod:`.models` — the served-model log.
"""

from __future__ import annotations

from .ann_indexes import ANN_KINDS, AnnIndexes
from .base import StoreError, make_engine, redact_url, scrub, unavailable_reason
from .events import EventRows
from .experiments import ExperimentRows
from .items import ItemRows
from .keys import KeyRows
from .models import ModelRows
from .vectors import VECTOR_MODES

__all__ = ["ANN_KINDS", "VECTOR_MODES", "Store", "StoreError", "make_engine", "redact_url", "scrub",
           "unavailable_reason"]


class Store(ItemRows, AnnIndexes, EventRows, ExperimentRows, KeyRows, ModelRows):
    """``vectors``: where item vectors live — ``auto`` (pgvector tables when the database is
    PostgreSQL with the extension installed, else ``item_vectors``), ``bytes`` (always
    ``item_vectors``) or ``pgvector`` (required: an error when unavailable). ``ann`` is the
    approximate index :meth:`ensure_ann_index` gives an encoder's table: ``hnsw`` (built with
    ``hnsw_m`` and ``hnsw_ef_construction``: m in 2..100, ef_construction in 2·m..1000; an
    existing index keeps the settings it was built with, recorded in ``pgvector_encoders``) or
    ``ivfflat`` (``ivfflat_lists`` lists, 0 = pgvector's guidance from the row count, see
    :meth:`ivfflat_lists_for`).

    Switching an existing store between modes loses nothing: ``pgvector`` moves the bytes
    vectors of an encoder into its table on first use; ``bytes`` does not read the pgvector
    tables, so the service re-encodes the items it finds without a vector.

    The settings every table family reads are checked and set here, in one place.
    """

    def __init__(self, url: str, *, vectors: str = "auto", hnsw_m: int = 16, hnsw_ef_construction: int = 64,
                 ann: str = "hnsw", ivfflat_lists: int = 0, busy_timeout_s: float = 30.0,
                 connect_timeout_s: float | None = None, statement_timeout_s: float | None = None):
        self.url = url
        self.fault: tuple[float, str] | None = None  # (when, why) of the last "database unusable" error
        if vectors not in VECTOR_MODES:
            raise StoreError(f"vectors must be one of {', '.join(VECTOR_MODES)}, got {vectors!r}")
        if ann not in ANN_KINDS:
            raise StoreError(f"ann must be one of {', '.join(ANN_KINDS)}, got {ann!r}")
        if int(ivfflat_lists) < 0:
            raise StoreError(f"ivfflat_lists must be >= 0 (0: from the row count), got {ivfflat_lists!r}")
        self.vector_mode, self.ann = vectors, ann
        self.hnsw_m, self.hnsw_ef_construction = int(hnsw_m), int(hnsw_ef_construction)
        self.ivfflat_lists = int(ivfflat_lists)
        self._pgvector: bool | None = None  # resolved on first use (after the migrations)
        self._vec_tables: dict[str, object] = {}  # encoder id -> its Table (pgvector mode)
        try:
            self.engine = make_engine(url, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s,
                                      statement_timeout_s=statement_timeout_s)
        except Exception as exc:  # bad URL, missing driver: neither message may show the password
            raise StoreError(scrub(f"cannot open the store {redact_url(url)!r}: {exc}", url)) from None
        self.watch_faults()

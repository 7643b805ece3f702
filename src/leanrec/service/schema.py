"""The store's tables (SQLAlchemy Core), shared by the store and the Alembic migrations.

Why each table exists:

* ``items`` — the catalogue. Deletes are soft (``deleted``) and every change bumps ``seq``
  from the ``counters`` row ``item_seq``, so a persisted index can catch up with exactly the
  changes it missed (``seq > watermark``) instead of being rebuilt.
* ``item_vectors`` — one vector per (encoder, item), so a restart or a model swap back to a
  known encoder never re-encodes.
* ``events`` — the append-only interaction log; ``id`` gives arrival order.
* ``user_profiles`` — the decayed vector sum per (profile kind, user), updated in O(d) in the
  same transaction as the event that changes it.
* ``api_keys`` — SHA-256 hashes of the keys, never the keys.
* ``models`` — which model folder was loaded when, and which one is active.
* ``experiments`` — online experiments (A/B or interleaving): arms as JSON (name, share,
  model folder), attribution window and click kinds, running or stopped.
* ``exposures`` — every list served under an experiment: who, which arm (A/B), which items
  and, for interleaving, which team contributed each. It is also the assignment log: the
  arm is a pure function of (experiment, user), recorded with each exposure.
* ``attributions`` — a click credited to an exposure, written in the same transaction as
  the event; unique per (exposure, item), so a shown item is credited at most once.
* ``pgvector_encoders`` (PostgreSQL with pgvector only, migration 0003) — which ``vector(d)``
  table holds each encoder's item vectors (:func:`vector_table`); in such a store those
  tables replace ``item_vectors``.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import (
                        BigInteger,
                        Boolean,
                        Column,
                        Float,
                        Index,
                        Integer,
                        LargeBinary,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

ID_LEN = 256
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

items = Table(
    "items", metadata,
    Column("item_id", String(ID_LEN), primary_key=True),
    Column("text", Text, nullable=False),
    Column("fields", Text, nullable=False, default="{}"),   # JSON object
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Index("ix_items_seq", "seq"),
)

item_vectors = Table(
    "item_vectors", metadata,
    Column("encoder_id", String(200), primary_key=True),
    Column("item_id", String(ID_LEN), primary_key=True),
    Column("vector", LargeBinary, nullable=False),          # float32, little-endian
)

events = Table(
    "events", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", String(ID_LEN), nullable=False),
    Column("item_id", String(ID_LEN), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False, default=""),
    Column("value", Float, nullable=True),
    Column("received_at", Float, nullable=False),
    # the client's own id for the event (optional): a retried POST stores it once
    Column("client_event_id", String(ID_LEN), nullable=True),
    Index("ix_events_user", "user_id", "id"),
    Index("ix_events_item", "item_id"),
    Index("ux_events_client_event_id", "client_event_id", unique=True),
)

user_profiles = Table(
    "user_profiles", metadata,
    Column("profile_id", String(200), primary_key=True),
    Column("user_id", String(ID_LEN), primary_key=True),
    Column("vector", LargeBinary, nullable=False),          # float64 decayed sum
    Column("weight", Float, nullable=False),                # decayed count
    Column("n_events", Integer, nullable=False),
    Column("last_ts", Float, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys", metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("scope", String(8), nullable=False),
    Column("created_at", Float, nullable=False),
)

models = Table(
    "models", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("meta", Text, nullable=False),
    Column("loaded_at", Float, nullable=False),
    Column("active", Boolean, nullable=False, default=False),
)

counters = Table(
    "counters", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

experiments = Table(
    "experiments", metadata,
    Column("id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("arms", Text, nullable=False),                   # JSON [{"name", "share", "model"}]
    Column("attribution_window_s", Float, nullable=False),
    Column("click_kinds", Text, nullable=False),            # JSON list of event kinds
    Column("created_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),
)

exposures = Table(
    "exposures", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("experiment_id", String(64), nullable=False),
    Column("user_id", String(ID_LEN), nullable=False),
    Column("arm", String(64), nullable=True),               # A/B: the user's arm; interleaving: null
    Column("items", Text, nullable=False),                  # JSON list of item ids, in list order
    Column("teams", Text, nullable=True),                   # interleaving: JSON list, the team per item
    Column("ts", Float, nullable=False),
    Index("ix_exposures_user_ts", "user_id", "ts"),
    Index("ix_exposures_experiment", "experiment_id"),
)

# PostgreSQL-only tables live apart from ``metadata`` (the schema every store has, which the
# migrations must produce exactly on SQLite as on PostgreSQL)
pgvector_metadata = MetaData()

pgvector_encoders = Table(
    "pgvector_encoders", pgvector_metadata,
    Column("encoder_id", String(200), primary_key=True),
    Column("table_name", String(63), nullable=False, unique=True),
    Column("dim", Integer, nullable=False),
    Column("hnsw_m", Integer, nullable=True),                # the HNSW index's build settings
    Column("hnsw_ef_construction", Integer, nullable=True),  # (null: no index, dim > 2000)
    Column("created_at", Float, nullable=False),
)


def vector_table_name(encoder_id: str) -> str:
    """``item_vec_<16 hex>``: a fixed-length, always-valid name for an encoder's table."""
    return "item_vec_" + hashlib.sha256(encoder_id.encode()).hexdigest()[:16]


def vector_table(name: str, dim: int) -> Table:
    """One encoder's pgvector table: ``item_id`` → ``embedding vector(dim)``.

    Why one table per encoder rather than one table with an ``encoder_id`` column and a
    partial HNSW index per encoder: an HNSW index needs a fixed dimension, and a partial
    index is only usable when the planner can prove its predicate from the query — with
    bound parameters and generic plans (psycopg prepares repeated statements) it often
    cannot, and the query silently becomes a sequential scan. A table per encoder has one
    plain HNSW index that every nearest-neighbour query uses, its statistics describe one
    encoder's vectors, and dropping an encoder is ``DROP TABLE`` rather than a mass delete.
    The table lives in its own MetaData: it is created at first use (its dimension is known
    only then), not by a migration.
    """
    from pgvector.sqlalchemy import VECTOR
    from sqlalchemy.dialects.postgresql import ARRAY

    return Table(name, MetaData(), Column("item_id", String(ID_LEN), primary_key=True),
                 Column("embedding", VECTOR(int(dim)), nullable=False),
                 # "field:lower(value)" per field value (leanrec_filter_terms, migration 0004):
                 # field filters as an indexable array test on the table the HNSW index serves
                 Column("filter_terms", ARRAY(Text), nullable=True),
                 Index(f"{name}_terms", "filter_terms", postgresql_using="gin"))


attributions = Table(
    "attributions", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("experiment_id", String(64), nullable=False),
    Column("exposure_id", BigInteger, nullable=False),
    Column("arm", String(64), nullable=False),              # A/B: the arm; interleaving: the item's team
    Column("user_id", String(ID_LEN), nullable=False),
    Column("item_id", String(ID_LEN), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
    UniqueConstraint("exposure_id", "item_id", name="uq_attributions_exposure_item"),
    Index("ix_attributions_experiment", "experiment_id"),
)

"""pgvector: the vector extension and the registry of per-encoder vector tables (PostgreSQL only).

On PostgreSQL this enables ``CREATE EXTENSION IF NOT EXISTS vector`` (in a savepoint, so a
server without pgvector, or a role not allowed to create it, keeps a working plain store)
and creates ``pgvector_encoders``, which names the ``vector(d)`` table of each encoder. The
tables themselves are created by the store the first time an encoder is used, because their
dimension is only known then (see ``leanrec.service.store.vectors``). On SQLite this
revision changes nothing.

A service configured with ``index = "pgvector"`` on a server where the extension could not
be created fails at start-up with an error that says so (``Store.require_pgvector``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if available is not None:
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sa.exc.DBAPIError:  # no privilege: the store stays a plain store (bytea vectors)
            pass
    op.create_table(
        "pgvector_encoders",
        sa.Column("encoder_id", sa.String(200), primary_key=True),
        sa.Column("table_name", sa.String(63), nullable=False, unique=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("hnsw_m", sa.Integer, nullable=True),
        sa.Column("hnsw_ef_construction", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for (name,) in bind.execute(sa.text("SELECT table_name FROM pgvector_encoders")).all():
        op.drop_table(name)
    op.drop_table("pgvector_encoders")

"""Initial schema: items, item vectors, events, user profiles, API keys, models, counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID_LEN = 256
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(ID_LEN), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    op.create_index("ix_items_seq", "items", ["seq"])
    op.create_table(
        "item_vectors",
        sa.Column("encoder_id", sa.String(200), primary_key=True),
        sa.Column("item_id", sa.String(ID_LEN), primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(ID_LEN), nullable=False),
        sa.Column("item_id", sa.String(ID_LEN), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_events_user", "events", ["user_id", "id"])
    op.create_index("ix_events_item", "events", ["item_id"])
    op.create_table(
        "user_profiles",
        sa.Column("profile_id", sa.String(200), primary_key=True),
        sa.Column("user_id", sa.String(ID_LEN), primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("n_events", sa.Integer, nullable=False),
        sa.Column("last_ts", sa.Float, nullable=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.Float, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
                   [{"name": "item_seq", "value": 0}])


def downgrade() -> None:
    for name in ("counters", "models", "api_keys", "user_profiles", "events", "item_vectors", "items"):
        op.drop_table(name)

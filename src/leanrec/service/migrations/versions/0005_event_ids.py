"""Client event ids: ``events.client_event_id``, unique when given.

Why: a client that lost the answer to ``POST /events`` cannot know whether its events were
stored; retrying without an id stores them twice (and counts them twice in the profile).
With an ``event_id`` the retry is recognised: an id already stored is skipped, so a retried
batch stores each event once. NULLs (events sent without an id) are not constrained: both
SQLite and PostgreSQL let a unique index hold any number of them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("client_event_id", sa.String(256), nullable=True))
    op.create_index("ux_events_client_event_id", "events", ["client_event_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_events_client_event_id", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("client_event_id")

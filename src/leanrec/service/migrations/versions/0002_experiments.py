"""Online experiments: experiments, exposures, attributions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID_LEN = 256
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("arms", sa.Text, nullable=False),
        sa.Column("attribution_window_s", sa.Float, nullable=False),
        sa.Column("click_kinds", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float, nullable=True),
    )
    op.create_table(
        "exposures",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(ID_LEN), nullable=False),
        sa.Column("arm", sa.String(64), nullable=True),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("teams", sa.Text, nullable=True),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_exposures_user_ts", "exposures", ["user_id", "ts"])
    op.create_index("ix_exposures_experiment", "exposures", ["experiment_id"])
    op.create_table(
        "attributions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(64), nullable=False),
        sa.Column("exposure_id", sa.BigInteger, nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(ID_LEN), nullable=False),
        sa.Column("item_id", sa.String(ID_LEN), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.UniqueConstraint("exposure_id", "item_id", name="uq_attributions_exposure_item"),
    )
    op.create_index("ix_attributions_experiment", "attributions", ["experiment_id"])


def downgrade() -> None:
    for name in ("attributions", "exposures", "experiments"):
        op.drop_table(name)

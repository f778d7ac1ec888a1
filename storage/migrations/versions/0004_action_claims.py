"""Action claims: the exactly-once guard of people's actions (clicks, commands, retries)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "action_claims",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=True),
        sa.Column("track", sa.String(length=64), nullable=True),
        sa.Column("stage", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=32), nullable=False),
        sa.Column("claimed_at", TIMESTAMP, nullable=False),
        sa.Column("done_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_action_claims"),
    )
    op.create_index("ix_action_claims_rollout_id_action", "action_claims", ["rollout_id", "action"])


def downgrade() -> None:
    op.drop_table("action_claims")

"""Reliability: timers remember their last error and can be dead-lettered; the outbox of
messages a state change must deliver to Slack.

Additive only, so replicas of the previous version keep serving while it runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

TIMESTAMP = sa.DateTime(timezone=True)
PENDING = "delivered_at IS NULL AND dead_at IS NULL"


def upgrade() -> None:
    op.add_column("timers", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("timers", sa.Column("dead_at", TIMESTAMP, nullable=True))
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("dead_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_outbox_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index(
        "ix_outbox_pending_id",
        "outbox",
        ["rollout_id", "id"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_column("timers", "dead_at")
    op.drop_column("timers", "last_error")

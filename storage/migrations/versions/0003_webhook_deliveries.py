"""GitHub webhook deliveries taken in, so each `X-GitHub-Delivery` is acted on once."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "github_deliveries",
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_github_deliveries"),
    )
    op.create_index("ix_github_deliveries_received_at", "github_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_table("github_deliveries")

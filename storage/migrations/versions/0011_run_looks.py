"""The next look at each rollout's run (`run_looks`), shared by the replicas so that one of
them looks at a run at a time: additive, a new table only."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.create_table(
        "run_looks",
        sa.Column("rollout_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("looked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holder", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", name="pk_run_looks"),
    )


def downgrade() -> None:
    op.drop_table("run_looks")

"""An override records the freezes it overrode (`lane_holds.overrides`, their `Freeze.key`s):
additive, a nullable column. An override stored before has none, so it passes no freeze
(an approver overrides again)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column("lane_holds", sa.Column("overrides", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lane_holds") as batch:
        batch.drop_column("overrides")

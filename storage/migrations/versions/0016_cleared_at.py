"""`stages.cleared_at`: when the bot approved the stage's environment, the earliest its job can
have deployed; a job completion GitHub dates before it (GitHub's clock behind the bot's) opens
the window when the bot saw it instead. Additive: a nullable column; NULL falls back to the
stage before's deploy or the dispatch, as the previous version's rows have it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    op.add_column("stages", sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stages") as batch:
        batch.drop_column("cleared_at")

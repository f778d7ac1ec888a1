"""`protection_rule_requests.sent_at`: when the bot's post of the answer in `sent` ended without
GitHub telling whether it applied it (its reply and read-back lost), so that a read of the run
begun after then that still sees the job waiting knows it was not applied and clears the mark:
an admin's later start of the job is then told as the bypass it is. Additive: a nullable
column; NULL (a post still on its way, or a row of the previous version) clears nothing."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    op.add_column(
        "protection_rule_requests", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("protection_rule_requests") as batch:
        batch.drop_column("sent_at")

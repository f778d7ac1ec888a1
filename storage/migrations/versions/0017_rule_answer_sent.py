"""`protection_rule_requests.sent`: the answer the bot posted to a request still open that GitHub
may have applied (its reply lost), so that the job found started is told as the bot's answer
applied, not as an admin's bypass. Additive: a nullable column; NULL reads as nothing sent, as
the previous version does."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.add_column("protection_rule_requests", sa.Column("sent", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("protection_rule_requests") as batch:
        batch.drop_column("sent")

"""Each webhook delivery's signed body, by its SHA-256 (`github_deliveries.body_digest`,
unique), so the same body sent again under a new `X-GitHub-Delivery` id is known: additive, a
nullable column and its index. The previous version writes no digest (NULL, which a unique
index lets repeat)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.add_column("github_deliveries", sa.Column("body_digest", sa.String(64), nullable=True))
    op.create_index(
        "ix_github_deliveries_body_digest", "github_deliveries", ["body_digest"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_github_deliveries_body_digest", table_name="github_deliveries")
    with op.batch_alter_table("github_deliveries") as batch:
        batch.drop_column("body_digest")

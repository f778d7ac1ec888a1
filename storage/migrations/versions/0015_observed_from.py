"""`stages.observed_from`: where a window opened again after it closed (an INCONCLUSIVE
extension given late, a held stage re-evaluated, a missed gate extended by hand) reads its
figures from, instead of the deploy. Additive: a nullable column; NULL reads from the deploy,
as the previous version does."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.add_column("stages", sa.Column("observed_from", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stages") as batch:
        batch.drop_column("observed_from")

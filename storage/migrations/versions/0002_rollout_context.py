"""Rollout context and track ending: what the domain rollout holds that had no column yet.

`rollouts.context` keeps the preflight checks and the dispatch time; `rollout_tracks.ending`
the state an aborting track ends in once its failure job is done.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("rollouts", sa.Column("context", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("rollout_tracks", sa.Column("ending", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN: neither column is indexed, so SQLite (3.35+) drops it in place.
    op.drop_column("rollout_tracks", "ending")
    op.drop_column("rollouts", "context")

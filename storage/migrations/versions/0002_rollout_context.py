"""Rollout context and track ending: what the domain rollout holds that had no column yet.

`rollouts.context` keeps the preflight checks and the dispatch time; `rollout_tracks.ending`
the state an aborting track ends in once its failure job is done.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("rollouts", sa.Column("context", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("rollout_tracks", sa.Column("ending", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN: neither column is indexed, so SQLite (3.35+) drops it in place.
    op.drop_column("rollout_tracks", "ending")
    op.drop_column("rollouts", "context")

"""`ix_action_claims_action_state_claimed_at`: the claims of an action still `claimed` (never
recorded done) before a time, which the sweeps of unrecorded claims (a re-run, a delivery)
look for at every poll on every replica (`ClaimStore.unrecorded`): without it, each poll read
every claim of the 30 days kept. Additive: an index only; the previous version reads and
writes the table as before. Not partial (`WHERE state = 'claimed'`): the query binds the state
as a parameter, which SQLite (and a generic PostgreSQL plan) cannot match to a partial index's
condition."""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"


def upgrade() -> None:
    op.create_index(
        "ix_action_claims_action_state_claimed_at",
        "action_claims",
        ["action", "state", "claimed_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_action_claims_action_state_claimed_at", table_name="action_claims")

"""Custom deployment protection rules' requests (`protection_rule_requests`): additive, a new
table only. At most one request is open per run and environment (a partial unique index)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

OPEN = "answer IS NULL"


def upgrade() -> None:
    op.create_table(
        "protection_rule_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.String(length=16), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_protection_rule_requests"),
    )
    op.create_index(
        "ix_protection_rule_requests_run_id", "protection_rule_requests", ["run_id"], unique=False
    )
    op.create_index(
        "uq_protection_rule_requests_open",
        "protection_rule_requests",
        ["run_id", "environment"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_protection_rule_requests_open", table_name="protection_rule_requests")
    op.drop_index("ix_protection_rule_requests_run_id", table_name="protection_rule_requests")
    op.drop_table("protection_rule_requests")

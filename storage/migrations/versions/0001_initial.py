"""Initial schema: rollouts, their tracks and stages, timers, audit events."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

# 64-bit ids on PostgreSQL; SQLite only autoincrements a column declared exactly INTEGER.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("message_ts", sa.String(length=32), nullable=True),
        sa.Column("started_by", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("run_url", sa.Text(), nullable=True),
        sa.Column("plan", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
    )
    op.create_index("ix_rollouts_state", "rollouts", ["state"])
    op.create_index("ix_rollouts_tag", "rollouts", ["tag"])
    op.create_index("ix_rollouts_run_id", "rollouts", ["run_id"])
    op.create_index("ix_rollouts_created_at", "rollouts", ["created_at"])

    op.create_table(
        "rollout_tracks",
        sa.Column("rollout_id", sa.String(length=32), nullable=False),
        sa.Column("track", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("current_stage", sa.String(length=64), nullable=True),
        sa.Column("ended_reason", sa.Text(), nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_rollout_tracks_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "track", name="pk_rollout_tracks"),
    )
    op.create_index(
        "uq_rollout_tracks_open_track",
        "rollout_tracks",
        ["track"],
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )

    op.create_table(
        "stages",
        sa.Column("rollout_id", sa.String(length=32), nullable=False),
        sa.Column("track", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("environment", sa.String(length=128), nullable=False),
        sa.Column("window_started_at", TIMESTAMP, nullable=True),
        sa.Column("window_ends_at", TIMESTAMP, nullable=True),
        sa.Column("extensions", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=True),
        sa.Column("verdict_detail", JSON, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id", "track"],
            ["rollout_tracks.rollout_id", "rollout_tracks.track"],
            name="fk_stages_rollout_id_track_rollout_tracks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "track", "key", name="pk_stages"),
    )

    op.create_table(
        "timers",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=True),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("payload", JSON, nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("fired_at", TIMESTAMP, nullable=True),
        sa.Column("cancelled_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_timers_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_timers"),
        sa.UniqueConstraint("key", name="uq_timers_key"),
    )
    op.create_index(
        "ix_timers_pending_due_at",
        "timers",
        ["due_at"],
        sqlite_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )
    op.create_index("ix_timers_rollout_id", "timers", ["rollout_id"])

    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=True),
        sa.Column("track", sa.String(length=64), nullable=True),
        sa.Column("stage", sa.String(length=64), nullable=True),
        sa.Column("result", sa.String(length=64), nullable=False),
        sa.Column("detail", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_rollout_id_at", "audit_events", ["rollout_id", "at"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("timers")
    op.drop_table("stages")
    op.drop_table("rollout_tracks")
    op.drop_table("rollouts")

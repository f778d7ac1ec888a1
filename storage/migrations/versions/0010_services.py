"""Services: rollouts, their tracks, the lane's holds, timers, protection rules' requests and
the audit trail carry the service they belong to (`bot.domain.service`); every row written
before belongs to the default service, `default`.

One open rollout per track *per service*, and freezes and the lock per service: the lane's
holds are keyed by (service, kind). That key is the one step that is not additive: a replica
of the previous version cannot take a freeze, the lock or an override on it (its `ON CONFLICT
(kind)` has no matching key) until it is rolled (docs/operating.md, Migration 0010).

The downgrade refuses, changing nothing, while any row belongs to another service: the
previous version serves one service and would take those rows for its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"

DEFAULT = "default"
OPEN = "ended_at IS NULL"
SERVICE_TABLES = ("rollouts", "lane_holds", "timers", "protection_rule_requests", "audit_events")


def _service(*, nullable: bool = False) -> sa.Column[str]:
    if nullable:
        return sa.Column("service", sa.String(length=64), nullable=True)
    return sa.Column("service", sa.String(length=64), nullable=False, server_default=DEFAULT)


def _open_track_index(*columns: str) -> None:
    op.create_index(
        "uq_rollout_tracks_open_track",
        "rollout_tracks",
        list(columns),
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def upgrade() -> None:
    op.add_column("rollouts", _service())
    op.create_index("ix_rollouts_service", "rollouts", ["service"])

    op.add_column("rollout_tracks", _service())
    op.drop_index("uq_rollout_tracks_open_track", table_name="rollout_tracks")
    _open_track_index("service", "track")

    op.add_column("lane_holds", _service())
    with op.batch_alter_table("lane_holds") as batch:
        batch.drop_constraint("pk_lane_holds", type_="primary")
        batch.create_primary_key("pk_lane_holds", ["service", "kind"])

    op.add_column("audit_events", _service(nullable=True))
    op.execute(
        sa.text(
            "UPDATE audit_events SET service = COALESCE("
            "(SELECT rollouts.service FROM rollouts WHERE rollouts.id = audit_events.rollout_id),"
            " :default)"
        ).bindparams(default=DEFAULT)
    )
    op.create_index("ix_audit_events_service", "audit_events", ["service"])

    op.add_column("timers", _service())
    op.add_column("protection_rule_requests", _service())


def downgrade() -> None:
    _refuse_other_services()

    # Plain DROP COLUMN: SQLite's batch mode copies a table and drops the old one, which
    # would cascade to the rows that refer to it (rollouts' tracks, stages, timers).
    op.drop_column("protection_rule_requests", "service")
    op.drop_column("timers", "service")
    op.drop_index("ix_audit_events_service", table_name="audit_events")
    op.drop_column("audit_events", "service")

    with op.batch_alter_table("lane_holds") as batch:
        batch.drop_constraint("pk_lane_holds", type_="primary")
        batch.create_primary_key("pk_lane_holds", ["kind"])
        batch.drop_column("service")

    op.drop_index("uq_rollout_tracks_open_track", table_name="rollout_tracks")
    op.drop_column("rollout_tracks", "service")
    _open_track_index("track")

    op.drop_index("ix_rollouts_service", table_name="rollouts")
    op.drop_column("rollouts", "service")


def _refuse_other_services() -> None:
    connection = op.get_bind()
    found = {
        table: connection.scalar(
            sa.select(sa.func.count())
            .select_from(sa.table(table, sa.column("service")))
            .where(sa.column("service") != DEFAULT)
        )
        for table in SERVICE_TABLES
    }
    held = {table: count for table, count in found.items() if count}
    if held:
        counts = ", ".join(f"{table}: {count}" for table, count in held.items())
        raise RuntimeError(
            f"migration 0010 cannot be undone while rows belong to services other than "
            f"'{DEFAULT}' ({counts}): the previous version serves one service and would take "
            "them for its own. Nothing was changed. Restore the backup taken before the "
            "upgrade, or delete those rows first (docs/operating.md, Migration 0010)."
        )

"""The tables: rollouts with their tracks and stages, durable timers, and the audit trail.

Every datetime is timezone-aware UTC in Python. PostgreSQL stores `timestamptz`; SQLite has no
time zones, so `UTCDateTime` stores naive UTC there (a fixed-width text that sorts correctly)
and gives it back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from bot.domain.service import DEFAULT_SERVICE

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on PostgreSQL; SQLite only autoincrements a column declared exactly INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonObject = JSON(none_as_null=True)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as UTC; naive datetimes are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: storage needs a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index of the rows that match `where`, in both dialects (SQLite and PostgreSQL)."""
    return Index(
        name, *columns, unique=unique, sqlite_where=text(where), postgresql_where=text(where)
    )


def _service() -> Mapped[str]:
    """The service a row belongs to (`bot.domain.service`; migration 0010): rows written
    before services existed, or by a replica that knows none, belong to the default one."""
    return mapped_column(String(64), server_default=DEFAULT_SERVICE)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RolloutRow(Base):
    """One release of one tag: the run it drives, the Slack message it updates, its plan."""

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = _service()
    tag: Mapped[str] = mapped_column(String(128))
    channel_id: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    started_by: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    run_url: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[dict[str, Any]] = mapped_column(JsonObject)
    # What the domain rollout holds beyond the columns: preflight checks, dispatch time.
    context: Mapped[dict[str, Any] | None] = mapped_column(JsonObject)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped by every write; a writer that read an older version gets StaleRollout.
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index(None, "service"),
        Index(None, "state"),
        Index(None, "tag"),
        Index(None, "run_id"),
        Index(None, "created_at"),
    )


class RolloutTrackRow(Base):
    """One lane of a rollout (relay, desktop): where it stands and how it ended."""

    __tablename__ = "rollout_tracks"

    rollout_id: Mapped[str] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    track: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The rollout's, denormalised so that the open-track index can be per service.
    service: Mapped[str] = _service()
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    current_stage: Mapped[str | None] = mapped_column(String(64))
    # While the track aborts: the state it ends in once its failure job is done.
    ending: Mapped[str | None] = mapped_column(String(32))
    # Why the track ended: the domain's stop reason as JSON (migration 0006); text written
    # before reasons were data reads as a legacy reason.
    ended_reason: Mapped[str | None] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # At most one open rollout per track of a service, enforced by the database across
        # replicas.
        _partial_index(
            "uq_rollout_tracks_open_track",
            "service",
            "track",
            where="ended_at IS NULL",
            unique=True,
        ),
    )


class StageRow(Base):
    """One stage of a track (canary 5%, internal ring): its window and its gate verdict."""

    __tablename__ = "stages"

    rollout_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    track: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    environment: Mapped[str] = mapped_column(String(128))
    window_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extensions: Mapped[int] = mapped_column(Integer)
    observed_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verdict: Mapped[str | None] = mapped_column(String(32))
    verdict_detail: Mapped[dict[str, Any] | None] = mapped_column(JsonObject)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        ForeignKeyConstraint(
            ["rollout_id", "track"],
            ["rollout_tracks.rollout_id", "rollout_tracks.track"],
            ondelete="CASCADE",
        ),
    )


class Leased:
    """The columns of a row that one replica at a time claims with a lease and works on
    (`storage.leases`): a timer, an outbox message."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str | None] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    """Why the last attempt failed (an error's class and message, never a secret)."""
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Given up after the configured number of attempts (dead-lettered): it is never claimed
    again, and stays in the table for the record."""


class TimerRow(Leased, Base):
    """A durable timer (an observation window's end): claimed with a lease, fired once."""

    __tablename__ = "timers"

    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    # Its rollout's, so the one scheduler routes a fired timer without another query.
    service: Mapped[str] = _service()
    payload: Mapped[dict[str, Any] | None] = mapped_column(JsonObject)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        _partial_index(
            "ix_timers_pending_due_at", "due_at", where="fired_at IS NULL AND cancelled_at IS NULL"
        ),
        Index(None, "rollout_id"),
    )


class OutboxRow(Leased, Base):
    """A message the channel must see (a thread line, a card redraw, a gate card), written in
    the same transaction as the state change it tells of, and delivered with retries."""

    __tablename__ = "outbox"

    channel_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonObject)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        _partial_index(
            "ix_outbox_pending_id",
            "rollout_id",
            "id",
            where="delivered_at IS NULL AND dead_at IS NULL",
        ),
    )


class AuditEventRow(Base):
    """One entry of the append-only audit trail: who did what to which rollout, and the result.

    `rollout_id` is deliberately not a foreign key: a refusal that names an unknown rollout
    must still be recorded.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    rollout_id: Mapped[str | None] = mapped_column(String(32))
    # None: an event of no known service (a refusal naming an unknown rollout).
    service: Mapped[str | None] = mapped_column(String(64))
    track: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonObject)

    __table_args__ = (
        Index(None, "rollout_id", "at"),
        Index(None, "at"),
        Index(None, "service"),
    )


class GitHubDeliveryRow(Base):
    """A GitHub webhook delivery already taken in (`X-GitHub-Delivery`): GitHub redelivers
    on request and retries, and each delivery must be acted on once across replicas."""

    __tablename__ = "github_deliveries"

    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    rollout_id: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    body_digest: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the signed body (hex), unique: the same body under another delivery id (the
    id is outside the signature) is taken in before (migration 0012). None for a protection
    rule's request (its deployment decides: `storage.protection_rules`) and for a delivery
    taken in before 0012."""

    __table_args__ = (Index(None, "received_at"), Index(None, "body_digest", unique=True))


class RunLookRow(Base):
    """The next look at a rollout's run, shared by the replicas (`storage.looks`): a replica
    looks only once it has claimed it here, so one replica at a time looks at a run."""

    __tablename__ = "run_looks"

    # Not a foreign key (like the deliveries'): the row is only a pace, which the poller
    # claims for whatever rollouts its service port gives it.
    rollout_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The rollout's version the look was for: a newer one brings the next look forward.
    version: Mapped[int] = mapped_column(Integer)
    looked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Whose look it is (a random token per replica's poller): only it may record the look's
    # pace, or claim it again before it is due.
    holder: Mapped[str] = mapped_column(String(32))


class ActionClaimRow(Base):
    """An effect a person asked for (a Promote of one stage, a Slack delivery), claimed once.

    The primary key is the effect's identity: the first INSERT wins, on every replica, and a
    claim still `claimed` after its lease ran out may be taken over (its owner died). A failed
    action deletes its claim, so the click can be repeated.
    """

    __tablename__ = "action_claims"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    rollout_id: Mapped[str | None] = mapped_column(String(32))
    track: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    # A random token per attempt: only the attempt that claimed may complete or release.
    holder: Mapped[str] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(None, "rollout_id", "action"),
        # The claims of an action still unrecorded before a time (`ClaimStore.unrecorded`),
        # which the sweeps look for at every poll (migration 0019).
        Index(None, "action", "state", "claimed_at"),
    )


class LaneHoldRow(Base):
    """A freeze, the lock, or a freeze's override for one rollout (`bot.domain.freeze`): one
    row per service and kind, so two replicas locking at once leave one holder."""

    __tablename__ = "lane_holds"

    service: Mapped[str] = mapped_column(
        String(64), primary_key=True, server_default=DEFAULT_SERVICE
    )
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overrides: Mapped[str | None] = mapped_column(Text)


class ProtectionRuleRequestRow(Base):
    """A custom deployment protection rule's request (`bot.domain.protection_rules`), kept
    until answered: it may come before the bot knows the run is its rollout's. At most one is
    open per run and environment; a re-run's request is a new row once the first is closed."""

    __tablename__ = "protection_rule_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The service whose repository's run asked.
    service: Mapped[str] = _service()
    run_id: Mapped[int] = mapped_column(BigInteger)
    environment: Mapped[str] = mapped_column(String(255))
    deployment_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answer: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The bot's answer posted that GitHub may have applied (`RuleRequest.sent`; 0017).
    sent: Mapped[str | None] = mapped_column(String(16))
    # When the post of `sent` ended, its outcome unknown (`RuleRequest.sent_at`; 0018).
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(None, "run_id"),
        _partial_index(
            "uq_protection_rule_requests_open",
            "run_id",
            "environment",
            where="answer IS NULL",
            unique=True,
        ),
    )

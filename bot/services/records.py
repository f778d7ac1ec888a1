"""The records that cross the storage ports: outbox messages, timers, claims, audit events,
the looks at runs.

`storage` keeps them and the services read them (`bot.services.ports` has the stores' Protocols).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.domain.freeze import LaneHold
from bot.domain.service import DEFAULT_SERVICE

BOT = "rollout-bot"
"""The actor of what the bot does on its own, in the audit trail."""


def metrics_actor(source: str) -> str:
    """The actor of a gate judged on the figures a metrics source read."""
    return f"metrics:{source}"


def is_machine(actor: str) -> bool:
    """Whether an audit actor is the bot or a metrics source, not a person."""
    return actor == BOT or actor.startswith(metrics_actor(""))


def new_rollout_id() -> str:
    """A fresh rollout id, `r-` and 12 hex digits: short enough to type in Slack."""
    return f"r-{secrets.token_hex(6)}"


CARD = "card"
"""The outbox kind of a rollout's card (`bot.services.outbox_messages`), drawn from the
rollout as it stands when delivered: a save after the one that wrote it writes it again
(`storage.rollout_store`), so that no card is left at a version the rollout moved past."""

SUMMARY = "summary"
"""The outbox kind of a rollout's summary (`bot.services.outbox_messages`), drawn from the
rollout as it ended: the outbox delivers it after the rollout's other messages, and not while
a re-run has reopened the rollout (`storage.outbox`)."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """An outbox message to write: its kind and what its delivery needs to render it."""

    kind: str
    channel_id: str
    rollout_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


Told = Callable[[list[LaneHold]], Sequence[NewMessage]]
"""The outbox messages that tell of the holds a change stored (or removed): written with them
(`/rollout freeze --all` tells the other release channels)."""


@dataclass(frozen=True, slots=True)
class NewTimer:
    """A durable timer to write with the rollout it belongs to (a scheduled dispatch, a
    window's end) or on its own (`EffectRunner.window_timer`)."""

    key: str
    kind: str
    due_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)


AsksFor = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]
"""Whether a pending timer's payload is about a given thing (a held protection rule request:
`ProtectionRuleRequests.hold`): None when not, else the payload the timer carries from now on
(the same, or one brought up to date with a later sending of the thing); raises ValueError
when the payload does not read."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """An outbox message as stored; `attempts` counts failed deliveries, a claim taken over
    from an owner whose lease ran out (it died, or lost its database) included: above 0, an
    earlier attempt may have reached Slack without its answer being recorded."""

    id: int
    kind: str
    channel_id: str
    rollout_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    lease_until: datetime | None = None
    """Until when its claimer holds it, as claimed (renewals later are not read back)."""


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer as stored. `payload` is whatever the scheduler needs to act when it fires."""

    id: int
    key: str
    kind: str
    due_at: datetime
    created_at: datetime
    attempts: int
    service: str = DEFAULT_SERVICE
    """Its rollout's (`bot.domain.service`): the scheduler routes it without another query."""
    rollout_id: str | None = None
    payload: dict[str, Any] | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    fired_at: datetime | None = None
    cancelled_at: datetime | None = None
    last_error: str | None = None
    dead_at: datetime | None = None

    @property
    def is_pending(self) -> bool:
        return self.fired_at is None and self.cancelled_at is None and self.dead_at is None


class ClaimState(StrEnum):
    CLAIMED = "claimed"
    """Being carried out by its owner."""
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Claim:
    """Who claimed an effect, when, and whether it is done; `holder` tells attempts apart."""

    key: str
    action: str
    actor: str
    state: ClaimState
    claimed_at: datetime
    holder: str
    rollout_id: str | None = None
    track: str | None = None
    stage: str | None = None
    done_at: datetime | None = None


class ClaimUnsettled(Exception):
    """A claim's write failed with its outcome unknown: the database may have committed it and
    lost the answer (a connection dropped at COMMIT, a timeout). Whatever it wrote was looked
    for by its holder token and removed (`withdrawn`), or may hold its key until `held_until`,
    when its lease runs out. `timed_out`: the write waited past its bound (a lock held elsewhere,
    no connection free), the connection not known lost."""

    def __init__(
        self, claim: Claim, *, withdrawn: bool, held_until: datetime, timed_out: bool = False
    ) -> None:
        super().__init__(f"the claim of {claim.key} was interrupted")
        self.claim = claim
        self.withdrawn = withdrawn
        self.held_until = held_until
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True)
class RunLook:
    """A look at a rollout's run, as one replica claimed it (`bot.services.polling`): made at
    `looked_at` for the rollout at `version`, the next one due at `due_at`."""

    rollout_id: str
    version: int
    looked_at: datetime
    due_at: datetime
    holder: str
    """Whose look it is: the claiming poller's random token."""

    @property
    def interval(self) -> timedelta:
        """The wait its replica chose: the look's pace."""
        return self.due_at - self.looked_at


@dataclass(frozen=True, slots=True)
class NewAuditEvent:
    """An audit trail entry to write, alone or with the state change it records."""

    at: datetime
    actor: str
    action: str
    result: str
    rollout_id: str | None = None
    track: str | None = None
    stage: str | None = None
    detail: Mapping[str, Any] | None = None
    service: str | None = None
    """The service acted on; None: its rollout's (when it names one the bot knows)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent(NewAuditEvent):
    """One audit trail entry as stored: the entry written, and its id."""

    id: int

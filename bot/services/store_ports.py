"""The storage ports: what the use cases ask of the database (rollouts, timers, claims, the
audit log, webhook deliveries, protection rules' requests, the looks at runs), which `storage`
implements. The outbox's is in `outbox_ports`; the other ports (GitHub, Slack, metrics, the
clock) are in `ports`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.domain.plan import RolloutPlan
from bot.domain.protection_rules import RuleAnswer, RuleRequest
from bot.domain.rollout import Phase, Rollout
from bot.services.records import (
    AsksFor,
    AuditEvent,
    Claim,
    NewAuditEvent,
    NewMessage,
    NewTimer,
    RunLook,
    Timer,
)


class Rollouts(Protocol):
    """Domain rollouts with the plan each started with; at most one active rollout per track
    of a service, versions checked on save (`ConcurrentChange`), outbox messages and audit
    events saved with the change. A store of one service sees that service's rollouts only."""

    async def create(
        self,
        *,
        rollout: Rollout,
        plan: RolloutPlan,
        outbox: Sequence[NewMessage] = (),
        timers: Sequence[NewTimer] = (),
    ) -> Rollout: ...

    async def get(self, rollout_id: str) -> Rollout | None: ...

    async def plan(self, rollout_id: str) -> RolloutPlan: ...

    async def with_plan(self, rollout_id: str) -> tuple[Rollout, RolloutPlan] | None: ...

    async def save(
        self,
        rollout: Rollout,
        *,
        outbox: Sequence[NewMessage] = (),
        audit: Sequence[NewAuditEvent] = (),
        timers: Sequence[NewTimer] = (),
    ) -> Rollout: ...

    async def set_message_ts(
        self, rollout_id: str, message_ts: str, *, replacing: str | None = None
    ) -> str: ...

    async def active(self) -> list[Rollout]:
        """Rollouts that have not ended, oldest first."""

    async def active_with_plans(self) -> list[tuple[Rollout, RolloutPlan]]: ...

    async def recent(self, limit: int = 10) -> list[Rollout]:
        """The latest rollouts, active or ended, newest first."""

    async def ended_between(self, start: datetime, end: datetime) -> list[Rollout]:
        """The rollouts that ended in [start, end), newest first."""

    async def by_run_id(self, run_id: int) -> Rollout | None: ...

    async def phase_by_run_id(self, run_id: int) -> tuple[str, Phase] | None:
        """The id and phase of the rollout driving this run, without the rest of it."""
        ...

    async def by_tag(self, tag: str) -> list[Rollout]:
        """Every rollout of this tag, newest first."""
        ...

    async def active_on_track(self, track: str) -> Rollout | None: ...

    async def last_released(self, *, before: datetime | None = None) -> Rollout | None: ...


class Timers(Protocol):
    """Durable timers, each fired once by one replica (`storage.timers`)."""

    async def schedule(
        self,
        *,
        key: str,
        kind: str,
        due_at: datetime,
        now: datetime,
        rollout_id: str | None = None,
        payload: Mapping[str, Any] | None = None,
        outbox: Sequence[NewMessage] = (),
        service: str | None = None,
        cancel: Collection[str] = (),
    ) -> Timer: ...

    async def settle(
        self,
        *,
        key: str,
        payload: Mapping[str, Any],
        now: datetime,
        cancel: bool = False,
        outbox: Sequence[NewMessage] = (),
    ) -> None: ...

    async def cancel(self, *, key: str, now: datetime) -> bool: ...

    async def cancel_all(self, *, keys: Collection[str], now: datetime) -> int: ...

    async def get(self, *, key: str) -> Timer | None: ...

    async def claim_due(
        self,
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        limit: int = 10,
        kinds: Collection[str] | None = None,
    ) -> list[Timer]: ...

    async def prune(self, *, kinds: Collection[str], before: datetime) -> int: ...

    async def dead_of_active(self, *, kinds: Collection[str]) -> list[Timer]: ...

    async def of_kind(self, *, kind: str, due_since: datetime) -> list[Timer]:
        """The timers of `kind` due at or after `due_since`, whatever became of them (pending,
        fired, cancelled, given up), soonest due first: what the bot set out to do since then."""
        ...

    async def complete(self, *, timer_id: int, owner: str, now: datetime) -> bool: ...

    async def renew(self, *, timer_id: int, owner: str, lease_until: datetime) -> bool: ...

    async def release(
        self,
        *,
        timer_id: int,
        owner: str,
        due_at: datetime | None = None,
        error: str | None = None,
    ) -> bool: ...

    async def bury(self, *, timer_id: int, owner: str, now: datetime, error: str) -> bool: ...

    async def retold(self, *, timer_id: int, error: str) -> None:
        """Say in a dead-lettered timer's `last_error` that its holder was told again."""
        ...

    async def release_owned(self, *, owner: str) -> int:
        """Give back every pending timer `owner` holds (a replica shutting down), due as they
        were, so any replica claims them at once instead of after the lease; how many."""
        ...

    async def next_due(self, *, kinds: Collection[str] | None = None) -> datetime | None: ...

    async def due_kinds(self, *, now: datetime) -> set[str]: ...


class Claims(Protocol):
    """Exactly-once effect keys: one winner across every replica (`storage.claims`)."""

    async def claim(
        self,
        *,
        key: str,
        action: str,
        actor: str,
        now: datetime,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
        done: bool = False,
        take_over: bool = True,
        replacing: Claim | None = None,
    ) -> Claim | None:
        """Claim `key` for `actor`: the claim, or None when someone else holds or did it.
        `done=True` records a claim that is complete at once (a Slack delivery seen). Not
        `take_over`: a claim whose lease ran out unrecorded is not taken over either (its
        request may have acted). `replacing`: that lapsed claim alone is taken over, not one
        that took it over since and lapsed in turn (None then)."""
        ...

    async def complete(self, claim: Claim, *, now: datetime) -> None: ...

    async def release(self, claim: Claim) -> bool:
        """Give the claim back (the action failed and changed nothing): whether it was still
        `claim`'s, unfinished, to give back (not taken over, completed or given back since)."""
        ...

    async def get(self, key: str) -> Claim | None: ...

    async def prune(self, *, before: datetime) -> int: ...

    async def unrecorded(self, action: str, before: datetime) -> list[Claim]:
        """The claims of `action` never recorded done, made before `before`."""
        ...

    @property
    def lease(self) -> timedelta:
        """How long a claim nobody finishes holds its key (`CLAIM_LEASE_SECONDS`)."""


class AuditLog(Protocol):
    """The append-only audit trail."""

    async def append(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        result: str,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
        detail: Mapping[str, Any] | None = None,
        service: str | None = None,
    ) -> AuditEvent: ...

    async def add(self, events: Sequence[NewAuditEvent]) -> list[AuditEvent]:
        """Write events that go with no saved state change, in one transaction."""
        ...

    async def list_for_rollout(self, rollout_id: str) -> list[AuditEvent]: ...

    async def list_for_claim(
        self, claim: Claim, *, action: str, results: Collection[str], limit: int
    ) -> list[AuditEvent]:
        """The events of `action` with one of `results` written under `claim` (their detail
        names its holder), oldest first, at most `limit`."""
        ...


class Deliveries(Protocol):
    """GitHub webhook deliveries taken in, so that each is processed once."""

    async def remember(
        self,
        *,
        delivery_id: str,
        event: str,
        rollout_id: str | None,
        received_at: datetime,
        body_digest: str | None = None,
    ) -> bool:
        """Record a delivery; True when it is new, False when it was taken in before: its id,
        or its signed body (`body_digest`, its SHA-256) under another id."""
        ...

    async def prune(self, *, before: datetime) -> int: ...

    async def services_with_deliveries(self, *, since: datetime) -> set[str]:
        """The services a delivery about one of their rollouts was taken in for since
        `since` (one statement, whatever the number of services)."""
        ...


class RunLooks(Protocol):
    """The next look at each rollout's run, claimed by one replica at a time
    (`storage.looks`)."""

    async def claim(
        self,
        looks: Sequence[RunLook],
        *,
        now: datetime,
        cut_short: Collection[str] = (),
        paced_before: datetime | None = None,
    ) -> list[RunLook]:
        """Claim each look, in one statement: it is won unless another holder claimed a look
        of its rollout whose due time has not come, for the same version of the rollout or a
        newer one; a rollout in `cut_short` is won too when its look was claimed at
        `paced_before` or earlier (its holder chose a pace longer than is allowed now). For
        each, the look recorded afterwards: the one given when won, else the other's."""
        ...

    async def record(self, look: RunLook) -> None:
        """After a look that found something: the pace it turned out to need, in place of
        `look.holder`'s claim (unless another replica has claimed since)."""
        ...


class Database(Protocol):
    """The database, as far as the app's health check asks."""

    async def ping(self) -> bool:
        """True when the database answers in time."""
        ...


class ProtectionRuleRequests(Protocol):
    """Custom deployment protection rules' requests, kept until answered (`storage`)."""

    async def remember(self, request: RuleRequest, *, delivery_id: str | None = None) -> bool:
        """Keep a request; False when its delivery was taken in before, when a request of its
        deployment was (open or answered: GitHub asks once per deployment, so it is the same
        signed body sent again under a new delivery id), or when a request of its run and
        environment is open already."""
        ...

    async def hold(
        self, request: RuleRequest, *, delivery_id: str, timer: NewTimer, asks_for: AsksFor
    ) -> bool:
        """Remember a request's delivery with the timer that confirms its installation later,
        in one transaction, without keeping the request; False (no timer written) when the
        delivery was taken in before, when a request of its deployment was kept, or when a
        pending timer of `timer`'s kind `asks_for` it already (its payload): one chain of
        asks per request, whatever delivery ids GitHub sent it under. That timer's payload is
        then replaced by the one `asks_for` gives (a later sending of the request: a re-run's, when
        no deployment tells the attempts apart)."""
        ...

    async def forget_delivery(self, delivery_id: str) -> None:
        """Forget a held request's delivery whose asks gave up (dead-lettered), so that its
        redelivery from the App's delivery log (the same id) is taken in, not `duplicate`."""
        ...

    async def open_for_run(self, run_id: int) -> list[RuleRequest]: ...

    async def without_timer(self, prefix: str) -> list[RuleRequest]:
        """The open requests of runs no active rollout follows (a re-run after its rollout
        ended included) and no timer `<prefix>:<run id>` waits for, oldest first."""
        ...

    async def for_run(self, run_id: int) -> list[RuleRequest]:
        """Every request of the run, answered or not, oldest first."""
        ...

    async def close(
        self, *, run_id: int, environment: str, answer: RuleAnswer, at: datetime
    ) -> int:
        """Close the run's open request for `environment` (as stored), or a racing replica's
        `gone` with an answer GitHub took; how many this call closed (0: someone did first)."""
        ...

    async def sending(
        self,
        *,
        run_id: int,
        environment: str,
        answer: RuleAnswer | None,
        ends_by: datetime | None = None,
    ) -> None:
        """Mark the run's open request for `environment` with the answer the bot posts to it
        (`RuleRequest.sent`; None: GitHub clearly did not take it), its post on its way and
        ended by `ends_by` (`RuleRequest.sent_at`)."""
        ...

    async def unknown(self, *, run_id: int, environment: str, at: datetime) -> None:
        """Date the end of the post of the mark whose outcome the bot never learned
        (`RuleRequest.sent_at`)."""
        ...

    async def not_applied(self, *, run_id: int, environment: str, sent_at: datetime) -> int:
        """Clear the mark of the run's open request for `environment` if its post still is the
        one that ended at `sent_at` (GitHub seen waiting after it); how many it cleared."""
        ...

    async def close_run(self, *, run_id: int, asked_by: datetime, at: datetime) -> int:
        """Close as `gone` the run's open requests asked by `asked_by` (the run was seen
        completed then; a re-run's request asked since stays open); how many this call closed."""
        ...

    async def answer_of(self, *, run_id: int, environment: str) -> RuleAnswer | None:
        """How the run's latest request for `environment` was closed (None: still open, or
        none): what another replica answered when this one's answer raced it."""
        ...

    async def prune(self, *, before: datetime, open_before: datetime) -> int:
        """Forget requests made before `before` (retention) that were closed, or that are
        still open but were made before `open_before` too (past GitHub's limit: nobody holds
        their job any more); returns how many. A request still held is never forgotten: its
        card, its answer and its deployment's dedup depend on it."""
        ...

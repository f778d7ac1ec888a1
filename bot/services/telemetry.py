"""What the bot tells its operator about itself: the `Telemetry` port and the gauges read from
storage when Prometheus scrapes.

The few choke points (the GitHub transport, the Slack clients, the listeners' answer, the
scheduler, the gate, the webhook intake) report through `Telemetry`; production wires the
prometheus-client adapter (`bot.adapters.telemetry`), and code built without it (unit tests, the
CLI's one-shot commands) reports to `UNTRACKED`, which records nothing. It lives apart from
`ports.py`, which holds the world the use cases act on; this one only watches them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from bot.domain.rollout import Phase
from bot.services.failures import TRANSIENT, log_failure
from bot.services.ports import Clock
from bot.services.store_ports import Rollouts

REFRESH_SECONDS = 2.0
"""How long a scrape waits for the database gauges before it serves them as unknown."""

log = logging.getLogger(__name__)

Handled = Literal["command", "click"]


class Telemetry:
    """Counts and figures about the bot's work; every method returns at once and never fails.

    This base records nothing (what runs without an operator watching: unit tests, one-shot
    commands); the Prometheus adapter overrides every method."""

    def handled(self, *, kind: Handled, name: str, outcome: str) -> None:
        """A slash command (`name` its subcommand) or a click (`name` its action id) was
        answered: `ok`, `refused`, `interrupted` or `error`."""

    def refused(self, *, reason: str) -> None:
        """A person was refused, `reason` the RolloutError's code."""

    def github_request(self, *, service: str, endpoint: str, status: str) -> None:
        """A call to GitHub's API for `service` (the service whose repository it concerns)
        ended: its endpoint class (`app_token` when the installation token it needed was
        refused: nothing else sent) and its status (`2xx`, GitHub's refusal code,
        `rate_limited` or `no_answer`)."""

    def github_token_renewal(self, *, service: str, renewed: bool) -> None:
        """GitHub answered 401 to an installation token of `service`'s (App mode): a new one
        was minted at once (`renewed`, the call sent once more with it) or GitHub gave none.
        Called from the GitHub worker's thread."""

    def github_rate_limit(self, *, account: str, remaining: int, reset: int) -> None:
        """GitHub's rate limit of `account`'s App installation ("": the token's, or the one
        installation's) as of its latest answer: the requests left and the Unix time it is
        renewed at."""

    def github_clock(self, *, host: str, offset: timedelta, at: datetime) -> None:
        """GitHub's clock at `host` (its API's host and port) is `offset` ahead of the bot's
        (negative: behind), as read off an answer's `Date` at `at`. Called from the GitHub
        worker's thread."""

    def github_not_modified(self) -> None:
        """A conditional GET was answered 304 Not Modified: it cost no rate limit (it is one
        of the requests of a call counted by `github_request`)."""

    def polls_deferred(self, *, count: int) -> None:
        """The poller put off `count` looks at runs to its next pass: the GitHub request
        budget keeps its reserve for people."""

    def slack_call(self, *, method: str, status: str, error: str) -> None:
        """A Slack Web API attempt ended: its method, the HTTP status (`no_answer` when none
        came) and Slack's error code (empty when it said ok)."""

    def gate_decided(self, *, service: str, track: str, verdict: str) -> None:
        """A gate's verdict was saved, for a rollout of `service`."""

    def window_closed(self, *, lateness: timedelta) -> None:
        """An observation window was evaluated `lateness` after its end."""

    def signature_refused(self, *, door: Literal["slack", "github"]) -> None:
        """A request came signed, but not with the secret the bot has (Slack's: with a fresh
        timestamp): the secret was changed on one side only, or the request is forged."""

    def outbox_dead(self) -> None:
        """A message to Slack was given up (refused for good, or after its last attempt): a
        card or thread was not told something."""

    def timer_dead(self) -> None:
        """A window timer was dead-lettered: its stage holds for a person."""

    def webhook_delivery(self, *, event: str, result: str, at: datetime) -> None:
        """A signed GitHub webhook delivery was taken in: `followed`, `ignored`, `duplicate`,
        `kept`."""

    def readiness(self, *, ready: bool) -> None:
        """What `/readyz` answers as of the scrape."""

    def backlog(
        self,
        *,
        rollouts: Mapping[str, Mapping[str, int]],
        timers_due: int,
        timers_overdue: int,
        timers_dead: Mapping[str, int],
    ) -> None:
        """The state of the database as of the scrape (it answered): active rollouts by
        service and phase (every configured service, with zeros), timers due and overdue,
        dead-lettered timers whose stage still holds by service (the same services)."""

    def database_clock(self, *, offset: timedelta) -> None:
        """The database server's clock is `offset` ahead of this replica's (negative: behind),
        as of its latest reading (`bot.services.clock_skew`)."""

    def database_unread(self, *, services: Sequence[str]) -> None:
        """The database did not answer the scrape: its figures (`services`' rollouts among
        them) are unknown."""


UNTRACKED = Telemetry()

ACTIVE_PHASES = tuple(phase.value for phase in Phase if phase is not Phase.ENDED)


class TimerBacklog(Protocol):
    async def backlog(self, *, now: datetime, overdue_after: timedelta) -> tuple[int, int]:
        """How many pending timers are due now, and how many of them have been due for longer
        than `overdue_after`."""
        ...

    async def dead_by_service(self) -> Mapping[str, int]:
        """How many dead-lettered timers still hold a stage (their rollout has not ended), by
        service."""
        ...


@dataclass(frozen=True)
class Backlog:
    """Reads the gauges Prometheus asks for from the database, at scrape time: they are the
    same on every replica (take the max across instances)."""

    telemetry: Telemetry
    rollouts: Rollouts
    timers: TimerBacklog
    clock: Clock
    overdue_after: timedelta
    """A timer due longer than this has not been fired when it should have been (a lease:
    the time another replica waits before it takes a dead one's timer over)."""
    services: Sequence[str]
    """The configured services: each has its series of active rollouts, 0 when it has none
    (a bounded label: services are configured, not made up by requests)."""
    database_clock: Callable[[], Awaitable[object]] | None = None
    """Reads the database server's clock against this replica's, and reports it (None: on
    SQLite, one host and its clock)."""

    async def refresh(self) -> None:
        """Read the gauges (the database server's clock among them); when the database does
        not answer they become unknown and the database reads as down (one WARNING line), and
        the scrape still serves every counter."""
        try:
            # A hung query must not hold the scrape past Prometheus' timeout: the counters
            # would go unserved and the replica would read as down.
            async with asyncio.timeout(REFRESH_SECONDS):
                active = await self.rollouts.active()
                due, overdue = await self.timers.backlog(
                    now=self.clock(), overdue_after=self.overdue_after
                )
                dead = await self.timers.dead_by_service()
                if self.database_clock is not None:
                    await self.database_clock()
        except TRANSIENT as error:
            log_failure(log, "metrics: the database gauges were not read", error)
            self.telemetry.database_unread(services=self.services)
            return
        counted = Counter((rollout.service, rollout.phase.value) for rollout in active)
        # A service taken out of the configuration with rollouts still active (or a timer that
        # still holds a stage of one) keeps its series: nobody follows them.
        services = dict.fromkeys([*self.services, *(service for service, _ in counted), *dead])
        self.telemetry.backlog(
            rollouts={
                service: {phase: counted[service, phase] for phase in ACTIVE_PHASES}
                for service in services
            },
            timers_due=due,
            timers_overdue=overdue,
            timers_dead={service: dead.get(service, 0) for service in services},
        )

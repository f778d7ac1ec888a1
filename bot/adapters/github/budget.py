"""The GitHub request budget of one token or App installation: what the poller may spend now,
learnt from GitHub's rate-limit headers, with a reserve that only people's calls may spend.

Every transport on the same credentials shares one `RequestBudget` (`RequestBudgets` keeps one
per token, or per account a GitHub App is installed on) and hands it the rate limit of each
answer (`X-RateLimit-Limit`, `-Remaining`, `-Reset`, as PyGithub read them).
The poller asks it before each look at a run (`PollBudget`): a look may go when its worst cost
(`look_cost` requests, if no answer were a 304) leaves

- the reserve whole: max(`reserve_floor`, `reserve_share` of the limit) stays for clicks,
  commands and webhooks, so polling never spends the requests a person's action needs;
- this pass's share: max(`burst` of what polling has left, its even share until the reset:
  what polling has left x the pass interval / the time to the reset). Requests are counted as
  GitHub counts them, so the 304s of unchanged runs cost nothing and looks go on; only runs
  that changed spend the share. A backlog (a restart, many runs moving at once) is spread
  over passes rather than sent at one instant.

Once the reset time has passed the limit is whole again until an answer says otherwise. Before
the first answer nothing is known, and looks go (their answers teach the budget).

A secondary rate limit holds back every call on these credentials, the poller's and people's
alike: for its `Retry-After` when it says one, else for a wait that doubles with each such limit
in a row (from GitHub's minute, with jitter, `SecondaryBackoff`) and starts again at a minute
after an answer that was not one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from github.Requester import Requester

from bot.services.clock import SystemClock
from bot.services.ports import Clock
from bot.services.telemetry import Telemetry

WINDOW = timedelta(hours=1)
"""GitHub's primary rate limit is counted per hour."""

UNSAID_WAIT = 60.0
"""Seconds to wait after a rate limit that says nothing of when to try again. GitHub's REST
docs ("Rate limits for the REST API", exceeding the rate limit): use `retry-after` when
present; else, with `x-ratelimit-remaining` 0, wait until `x-ratelimit-reset`; "Otherwise, wait
for at least one minute before retrying" (a secondary rate limit)."""


class SecondaryBackoff:
    """How long secondary rate limits that say no wait hold back the calls on one token or
    installation. GitHub's REST docs: "If your request continues to fail due to a secondary rate
    limit, wait for an exponentially increasing amount of time between retries". The first
    waits `UNSAID_WAIT`, each one in a row twice the one before, up to `longest`; each is
    lengthened by up to `jitter` of itself, so that replicas limited together do not all ask
    again at one instant. An answer that is not a rate limit, once the wait is over, starts the
    count again."""

    def __init__(
        self,
        clock: Clock,
        *,
        longest: timedelta = timedelta(minutes=16),
        jitter: float = 0.25,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._longest = longest.total_seconds()
        self._jitter = jitter
        self._draw = draw
        self.in_a_row = 0
        """Secondary rate limits with no wait said, since the last other answer."""
        self.until: datetime | None = None
        """No call goes before this time (None: calls go)."""

    def limited(self) -> float:
        """A secondary rate limit that said no wait: the seconds to hold calls back."""
        base = min(UNSAID_WAIT * 2**self.in_a_row, self._longest)
        wait = base * (1 + self._jitter * self._draw())
        self.in_a_row += 1
        self.said(wait)
        return self.wait() or wait

    def said(self, seconds: float) -> None:
        """Hold calls back for `seconds` at least: as a secondary rate limit said
        (`Retry-After`; GitHub's REST docs: "you should not retry your request until after that
        many seconds has elapsed"), or as `limited` chose."""
        until = self._clock() + timedelta(seconds=seconds)
        self.until = until if self.until is None else max(self.until, until)

    def wait(self) -> float | None:
        """Seconds left to hold calls back (None: none)."""
        if self.until is None:
            return None
        left = (self.until - self._clock()).total_seconds()
        return left if left > 0 else None

    def answered(self) -> None:
        """An answer that was not a rate limit: after the wait, the count starts again (an
        answer to a call sent before the limit, arriving during the wait, does not count)."""
        if self.wait() is None:
            self.in_a_row = 0
            self.until = None


@dataclass(frozen=True)
class RateLimit:
    """GitHub's primary rate limit as of an answer."""

    limit: int
    remaining: int
    reset: datetime


class RequestBudget:
    """One token's or App installation's rate limit, shared by its transports (on the event
    loop), and what the poller may spend of it."""

    def __init__(
        self,
        *,
        account: str = "",
        reserve_share: float = 0.2,
        reserve_floor: int = 100,
        look_cost: int = 4,
        burst: float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        if not 0 <= reserve_share < 1:
            raise ValueError("reserve_share must be at least 0 and below 1")
        if reserve_floor < 0 or look_cost < 1:
            raise ValueError("reserve_floor must be at least 0 and look_cost at least 1")
        if not 0 < burst <= 1:
            raise ValueError("burst must be above 0 and at most 1")
        self.account = account
        """The account whose App installation this limit is ("": a token's, or a fixed
        installation's: the bot's one limit); the label of its rate-limit gauges."""
        self._reserve_share = reserve_share
        self._reserve_floor = reserve_floor
        self.look_cost = look_cost
        """Requests one look at a run makes at most: the run, its jobs, its waiting
        deployments, its reviews."""
        self.burst = burst
        """The share of what polling has left that one pass may always spend."""
        self.seen: RateLimit | None = None
        """The rate limit of the latest answer (None: none yet)."""
        self.secondary = SecondaryBackoff(clock or SystemClock())
        """The hold that secondary rate limits put on every call of these credentials."""

    def observe(self, *, limit: int, remaining: int, reset: int) -> None:
        """An answer's rate limit (`reset` in Unix seconds). Transports answer out of order: of
        answers in the same window (the same reset) the lowest remaining is the latest."""
        at = datetime.fromtimestamp(reset, UTC)
        seen = self.seen
        if seen is None or at > seen.reset or (at == seen.reset and remaining < seen.remaining):
            self.seen = RateLimit(limit=limit, remaining=remaining, reset=at)

    def reserve(self, limit: int) -> int:
        """Requests kept for people out of `limit`."""
        return max(self._reserve_floor, math.ceil(limit * self._reserve_share))

    def as_of(self, now: datetime) -> RateLimit | None:
        """The rate limit as it stands `now`: whole again once its reset has passed."""
        seen = self.seen
        if seen is None or now < seen.reset:
            return seen
        return RateLimit(limit=seen.limit, remaining=seen.limit, reset=now + WINDOW)

    def open_pass(self, *, now: datetime, every: timedelta) -> PollAllowance:
        return PollAllowance(self, now=now, every=every)


class PollAllowance:
    """What one pass of the poller may spend (`PollPass`; see the module's docstring)."""

    def __init__(self, budget: RequestBudget, *, now: datetime, every: timedelta) -> None:
        self._budget = budget
        self._now = now
        self._every = every
        self._start: RateLimit | None = None
        self._share = 0.0

    def may_poll(self) -> bool:
        budget = self._budget
        current = budget.as_of(self._now)
        if current is None:
            return True  # nothing known yet: the answers will tell
        start = self._start
        if start is None or current.remaining > start.remaining:  # first look, or a new window
            self._start = start = current
            self._share = self._pass_share(current)
        cost = budget.look_cost
        spent = start.remaining - current.remaining
        return (
            current.remaining - cost >= budget.reserve(current.limit)
            and spent + cost <= self._share
        )

    def _pass_share(self, at_start: RateLimit) -> float:
        left = max(at_start.remaining - self._budget.reserve(at_start.limit), 0)
        to_reset = max(at_start.reset - self._now, self._every)
        return max(left * (self._every / to_reset), left * self._budget.burst)


class RequestBudgets:
    """The budgets of a bot's services. A token has one rate limit for every repository; a
    GitHub App has one per installation, that is per account it is installed on (GitHub's
    limit is the installation's), so the services of one owner's repositories share a budget
    and one owner's polls never spend another's requests."""

    def __init__(
        self, owners: Mapping[str, str] | None = None, *, clock: Clock | None = None
    ) -> None:
        """`owners`: per service, the account whose installation its calls use (an App
        without a fixed installation); None: every service spends one budget."""
        self._shared = RequestBudget(clock=clock)
        by_owner: dict[str, RequestBudget] = {}
        self._of = {
            service: by_owner.setdefault(
                owner.casefold(), RequestBudget(account=owner.casefold(), clock=clock)
            )
            for service, owner in (owners or {}).items()
        }

    def of(self, service: str) -> RequestBudget:
        """The budget `service`'s calls spend (the shared one for a service not named)."""
        return self._of.get(service, self._shared)

    def open_pass(self, *, now: datetime, every: timedelta) -> BudgetsPass:
        return BudgetsPass(self, now=now, every=every)

    def account(self, service: str) -> str:
        """The account of the budget `service`'s calls spend ("": the shared one)."""
        return self.of(service).account


class BudgetsPass:
    """One pass of the poller through the runs of every service: each budget's allowance,
    opened at its first look."""

    def __init__(self, budgets: RequestBudgets, *, now: datetime, every: timedelta) -> None:
        self._budgets = budgets
        self._now = now
        self._every = every
        self._allowances: dict[int, PollAllowance] = {}

    def may_poll(self, service: str) -> bool:
        budget = self._budgets.of(service)
        allowance = self._allowances.get(id(budget))
        if allowance is None:
            allowance = budget.open_pass(now=self._now, every=self._every)
            self._allowances[id(budget)] = allowance
        return allowance.may_poll()


def rate_limit_seen(
    requester: Requester, budget: RequestBudget | None, telemetry: Telemetry
) -> None:
    """Hand the rate limit of the latest answer to the budget, and report the budget's figure
    (not this client's last one: a call that got no answer would report an older one)."""
    # PyGithub keeps X-RateLimit-Remaining, -Limit and -Reset of the last answer that
    # carried them (-1 and 0: none).
    remaining, limit = requester.rate_limiting
    reset = requester.rate_limiting_resettime
    if budget is None:
        if remaining >= 0 and reset > 0:
            telemetry.github_rate_limit(account="", remaining=remaining, reset=reset)
        return
    if remaining >= 0 and limit > 0 and reset > 0:
        budget.observe(limit=limit, remaining=remaining, reset=reset)
    if (seen := budget.seen) is not None:
        telemetry.github_rate_limit(
            account=budget.account, remaining=seen.remaining, reset=int(seen.reset.timestamp())
        )

"""A timer whose work failed (`bot.services.scheduler`): retried with backoff, or, after its last
attempt, dead-lettered once its holder is told (a window's stage holds, a schedule is held).

What is stored of a failure holds no Slack markup: a known error's message is written with the
Slack edge's `Words` (it may name a person or a time), so `timers.last_error` keeps its words
without markup, and the holder is given the reason as data (`bot.domain.reasons`), which the
Slack edge marks again when the thread and the card are told. Of any other error only its kind
is told (its text may hold what a channel must not see); the log has the rest.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Protocol

from bot.domain.errors import RolloutError
from bot.domain.reasons import Reason
from bot.services.backoff import Backoff
from bot.services.failures import UnknownService, error_summary, log_failure, not_configured
from bot.services.ports import Clock
from bot.services.records import Timer
from bot.services.store_ports import Timers
from bot.services.telemetry import Telemetry
from bot.services.words import Words

log = logging.getLogger("bot.services.scheduler")  # the scheduler's lines, as operators filter them


class DeadTimers(Protocol):
    """Who is told of a timer that gave up: the rollout service."""

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None: ...


@dataclass(kw_only=True, eq=False)
class GivingUp:
    """The scheduler's failure bookkeeping: one replica's (`owner`) retries and dead letters."""

    timers: Timers
    service: DeadTimers
    words: Words
    clock: Clock
    owner: str
    max_attempts: int
    backoff: Backoff
    rng: random.Random
    telemetry: Telemetry

    async def unfinished(self, timer: Timer) -> bool:
        """Give up a timer claimed again after its last attempts, which never reported back
        (the replica working on it stopped), or which gave up and could not tell its holder
        (told now what it would have been told); whether it was one."""
        if timer.attempts <= self.max_attempts:
            return False
        summary, untold = _untold(timer.last_error)
        if untold is not None:
            # Its attempts, as it gave up: the claims since only tried to tell its holder.
            ran = replace(timer, attempts=self.max_attempts)
            await self.give_up(ran, reason=untold, error=summary or untold.text)
        else:
            await self.give_up(timer, reason=Reason("its last attempt never finished"))
        return True

    async def failed(self, timer: Timer, error: Exception) -> None:
        """A timer must not be lost to a failure: it fires again later, or, after the last
        attempt, is dead-lettered and a person told."""
        summary = self._summary(error)
        if timer.attempts >= self.max_attempts:
            log.error(
                "timer %s failed %d times; giving up: %s",
                timer.key,
                timer.attempts,
                summary,
                exc_info=error,
            )
            await self.give_up(timer, reason=self._reason(error), error=summary)
            return
        delay = self.backoff.delay(timer.attempts, self.rng)
        log_failure(
            log,
            f"timer {timer.key} failed (attempt {timer.attempts} of {self.max_attempts}); "
            f"retrying in {delay}",
            error,
        )
        await self.timers.release(
            timer_id=timer.id, owner=self.owner, due_at=self.clock() + delay, error=summary
        )

    async def tell_again(self, kinds: Collection[str]) -> None:
        """Hand the dead-lettered timers of `kinds` whose rollout is still active, and which
        died while their service was not in the services file, to their holder again: they
        told nobody (`EveryService.on_timer_dead` only logs it), so the holder hears of them
        once the service is back (a window's stage holds, a schedule is held), once: the
        timer's `last_error` then says it was told. One whose service is still out waits."""
        for timer in await self.timers.dead_of_active(kinds=kinds):
            if not not_configured(timer.last_error):
                continue  # its holder was told as it died
            reason = Reason(
                f"the service `{timer.service}` was not in ROLLOUT_SERVICES (the services file) "
                "when it was due, so nothing could act on it"
            )
            try:
                await self.service.on_timer_dead(timer, reason=reason)
            except UnknownService:
                continue  # still out of the services file: told once it is back
            except Exception as failure:
                log_failure(log, f"dead timer {timer.key} could not be told again", failure)
                continue
            await self.timers.retold(timer_id=timer.id, error=f"told once back: {timer.last_error}")

    async def give_up(self, timer: Timer, *, reason: Reason, error: str | None = None) -> None:
        """Dead-letter the timer once its holder is told (its stage holds, the thread knows);
        while they cannot be told, the timer stays and telling them is retried."""
        try:
            await self.service.on_timer_dead(timer, reason=reason)
        except Exception as failure:
            delay = self.backoff.delay(self.max_attempts, self.rng)
            log_failure(
                log, f"timer {timer.key} could not be given up; retrying in {delay}", failure
            )
            await self.timers.release(
                timer_id=timer.id,
                owner=self.owner,
                due_at=self.clock() + delay,
                error=_to_tell(error or _untold(timer.last_error)[0], reason),
            )
            return
        log.error(
            "timer %s dead-lettered after %d attempts: %s", timer.key, timer.attempts, reason.text
        )
        await self.timers.bury(
            timer_id=timer.id,
            owner=self.owner,
            now=self.clock(),
            error=error or timer.last_error or reason.text,
        )
        self.telemetry.timer_dead()

    def _reason(self, error: BaseException) -> Reason:
        """What the thread is told failed: a known error's message, written for people, as
        data; of anything else only its kind."""
        if isinstance(error, RolloutError):
            return self.words.recorded(error.message)
        return Reason(f"an unexpected {type(error).__name__}, see the bot's log")

    def _summary(self, error: BaseException) -> str:
        """The error for `timers.last_error` and the log: a known error's in its words without
        markup."""
        if isinstance(error, RolloutError):
            return error_summary(error, text=self.words.recorded(error.message).text)
        return error_summary(error)


UNTOLD = "\nuntold: "
"""In a timer's `last_error`, after its error's summary: the timer gave up and its holder could
not be told; then the reason they are told when it is claimed again (`Reason.detail`, JSON)."""


def _to_tell(summary: str | None, reason: Reason) -> str:
    """A `last_error` that keeps `summary` and the `reason` still to be told (`UNTOLD`)."""
    return f"{summary or ''}{UNTOLD}{json.dumps(reason.detail())}"


def _untold(last_error: str | None) -> tuple[str | None, Reason | None]:
    """A `last_error`'s summary, and the reason still to be told if `_to_tell` wrote it."""
    summary, untold, detail = (last_error or "").partition(UNTOLD)
    if not untold:
        return last_error, None
    try:
        return summary or None, Reason.from_detail(json.loads(detail))
    except (ValueError, TypeError, AttributeError, KeyError):
        return summary or None, None

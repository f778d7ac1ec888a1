"""Which failures repair themselves on a later try, and how a failure is logged: a transient one
as one WARNING line, a bug as an ERROR with its traceback."""

from __future__ import annotations

import logging

import aiohttp

from bot.domain.controls import BeingDone, NothingDone
from bot.domain.errors import ConcurrentChange, GitHubError, RolloutError
from bot.services.records import ClaimUnsettled
from storage.failures import DATABASE_FAILURES, timed_out

TRANSIENT: tuple[type[BaseException], ...] = (
    GitHubError,
    ConcurrentChange,
    BeingDone,  # someone else is doing it right now: they finish, or fail, by the next try
    ClaimUnsettled,  # a claim's write whose answer was lost: withdrawn, or held for a lease
    NothingDone,  # the same, told to a person: nothing was done, and a try again acts
    *DATABASE_FAILURES,  # the database or the connection to it (OSError, TimeoutError too)
    aiohttp.ClientError,
)
"""Failures that a later try repairs by itself: logged as one line, not as a bug."""


def database_timed_out(error: BaseException) -> bool:
    """Whether `error` is the database's word that a wait for it ran out (no pool connection
    free, a lock held elsewhere past the statement's bound), not a lost connection. A bare
    `TimeoutError` is not counted: any service's request may have raised it."""
    return (
        type(error) is not TimeoutError
        and isinstance(error, DATABASE_FAILURES)
        and timed_out(error)
    )


class UnknownService(RuntimeError):
    """A stored row names a service that is not configured (any more)."""


def not_configured(last_error: str | None) -> bool:
    """Whether a timer's `last_error` (`error_summary`) says its service was not configured
    when it last tried: nothing could fire it, though the bot was running."""
    return last_error is not None and last_error.startswith(f"{UnknownService.__name__}:")


def error_summary(error: BaseException, *, text: str | None = None) -> str:
    """An error's class and the first line of its message (or of `text`, its message in other
    words), for `timers.last_error` and log lines: no traceback, no SQL statement or parameters."""
    if text is None:
        text = error.message if isinstance(error, RolloutError) else str(error)
    first = text.strip().splitlines()[0] if text.strip() else ""
    if not first and isinstance(error, TimeoutError):  # asyncpg's `command_timeout`, say
        first = "no answer in time"
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


def log_failure(log: logging.Logger, message: str, error: BaseException) -> None:
    """A transient failure as one WARNING line; anything else as an ERROR with its traceback."""
    if isinstance(error, TRANSIENT):
        log.warning("%s: %s", message, error_summary(error))
    else:
        log.error("%s", message, exc_info=error)

"""GitHub's clock as its answers tell it: the `Date` header (HTTP's origin date, whole seconds),
compared with the bot's around the request that read it (`rollout-bot doctor`, and the
transport's gauge of the last reading, `rollout_bot_github_clock_offset_seconds`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from github.Requester import Requester

from bot.adapters.github.redirects import checked, get
from bot.domain.clocks import ClockOffset
from bot.domain.errors import GitHubError
from bot.domain.text import whole_number
from bot.services.clock import SystemClock
from bot.services.ports import Clock
from bot.services.telemetry import Telemetry

if TYPE_CHECKING:
    from bot.adapters.github.transport import GitHubTransport

WHOLE_SECOND = timedelta(seconds=1)
_log = logging.getLogger(__name__)


class UndatedAnswer(GitHubError):
    """GitHub answered, but with no readable `Date` (a proxy in front of GitHub Enterprise
    Server that drops it): its clock cannot be read, which is not GitHub unreachable."""


def dated_offset(
    date: object, *, sent: datetime, received: datetime, age: object = None
) -> ClockOffset:
    """GitHub's clock minus the bot's, from an answer's `Date` read between the bot's `sent`
    and `received`: a range, the round trip and the second the header rounds down wide. A
    cache's answer (`age`, its `Age` header: seconds since GitHub made it, RFC 9111) dates
    from then: its `Date` is that much older. UndatedAnswer when either is unreadable."""
    try:
        theirs = parsedate_to_datetime(str(date or ""))
    except (TypeError, ValueError) as exc:
        raise UndatedAnswer(f"GitHub's answer has no readable Date header ({date!r})") from exc
    if theirs.tzinfo is None:
        raise UndatedAnswer(f"GitHub's answer has no readable Date header ({date!r})")
    held = None if age is None else whole_number(str(age).strip())
    if age is not None and held is None:  # a cache's odd Age: when the Date was made is unknown
        raise UndatedAnswer(f"GitHub's answer has an unreadable Age header ({age!r})")
    try:
        if held is not None:
            theirs += timedelta(seconds=held)
        return ClockOffset(low=theirs - received, high=theirs + WHOLE_SECOND - sent)
    except OverflowError as exc:  # past the calendar's end (year 9999): no reading
        raise UndatedAnswer(f"GitHub's answer is dated out of range ({date!r}, {age!r})") from exc


class AnswerClock:
    """GitHub's clock read off every answer a transport's requesters get (PyGithub's own calls
    and the bot's GETs through them), for the gauge of its last reading (per GitHub host): a
    job's times are on GitHub's clock, and a stage's window starts there only when they are
    possible (docs/reliability.md)."""

    def __init__(self, api_url: str, telemetry: Telemetry, clock: Clock | None = None) -> None:
        self._host = urlsplit(api_url).netloc
        self._telemetry = telemetry
        self._clock = clock or SystemClock()
        self._sent = threading.local()  # each request's, in the worker thread that sends it

    def watch(self, *requesters: Requester) -> None:
        """Read every answer the `requesters` get: PyGithub tells each request it sends and
        each answer (its headers, a 304's too) to these two of its methods, in the sending
        thread (their own work, debug frames, is off). A `Github` client's objects have a
        requester of their own (`get_repo` copies it): each is watched."""
        for requester in requesters:
            setattr(requester, "NEW_DEBUG_FRAME", self._sending)  # noqa: B010 - replaced
            setattr(requester, "DEBUG_ON_RESPONSE", self._answered)  # noqa: B010

    def _sending(self, _headers: object) -> None:
        self._sent.at = self._clock()

    def _answered(self, _status: int, headers: Mapping[str, Any], _data: object) -> None:
        """Called by PyGithub inside the request, its answer in hand: whatever goes wrong here
        must not fail the call (a write GitHub has done would read as failed), so nothing but
        a reading leaves it."""
        try:
            self._read(headers)
        except Exception:  # the gauge only, never the call's outcome
            _log.debug("GitHub's clock could not be read off an answer", exc_info=True)

    def _read(self, headers: Mapping[str, Any]) -> None:
        sent = getattr(self._sent, "at", None)
        if sent is None:
            return
        self._sent.at = None
        received = self._clock()
        try:
            offset = dated_offset(
                headers.get("date"), sent=sent, received=received, age=headers.get("age")
            )
        except UndatedAnswer:
            return
        # Reported unless too slow to tell whether the clocks are within `MAX_CLOCK_SKEW` (its
        # middle could be either side).
        if offset.agree or offset.apart:
            self._telemetry.github_clock(host=self._host, offset=offset.middle, at=received)


async def github_offset(github: GitHubTransport, clock: Clock) -> ClockOffset:
    """GitHub's clock minus the bot's, as a range (`dated_offset`), from a read of the
    repository. GitHubError when GitHub does not answer, UndatedAnswer when it sends no
    readable date."""
    path = f"/repos/{github.repository}"

    def read() -> tuple[str | None, str | None]:
        requester = github.client.requester
        answer = get(requester, github.api_url, path)
        checked(requester, answer)
        return answer[1].get("date"), answer[1].get("age")

    sent = clock()
    date, age = await github.call(f"read the repository {github.repository}", read)
    return dated_offset(date, sent=sent, received=clock(), age=age)

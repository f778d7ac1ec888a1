"""GitHub's clock as its answers tell it: the `Date` header (HTTP's origin date, whole seconds),
compared with the bot's around the request that read it (`rollout-bot doctor`, and the
transport's gauge of the last reading, `rollout_bot_github_clock_offset_seconds`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.adapters.github.redirects import Answer, checked, get
from bot.domain.clocks import ClockOffset
from bot.domain.errors import GitHubError
from bot.services.clock import SystemClock
from bot.services.ports import Clock
from bot.services.telemetry import Telemetry

if TYPE_CHECKING:
    from bot.adapters.github.transport import GitHubTransport

WHOLE_SECOND = timedelta(seconds=1)


class UndatedAnswer(GitHubError):
    """GitHub answered, but with no readable `Date` (a proxy in front of GitHub Enterprise
    Server that drops it): its clock cannot be read, which is not GitHub unreachable."""


def dated_offset(date: object, *, sent: datetime, received: datetime) -> ClockOffset:
    """GitHub's clock minus the bot's, from an answer's `Date` read between the bot's `sent`
    and `received`: a range, the round trip and the second the header rounds down wide.
    UndatedAnswer when it is missing or unreadable."""
    try:
        theirs = parsedate_to_datetime(str(date or ""))
    except (TypeError, ValueError) as exc:
        raise UndatedAnswer(f"GitHub's answer has no readable Date header ({date!r})") from exc
    if theirs.tzinfo is None:
        raise UndatedAnswer(f"GitHub's answer has no readable Date header ({date!r})")
    return ClockOffset(low=theirs - received, high=theirs + WHOLE_SECOND - sent)


class AnswerClock:
    """GitHub's clock read off each answer a transport's GETs get, for the gauge of its last
    reading (per GitHub host): a job's times are on GitHub's clock, and a stage's window starts
    there only when they are possible (docs/reliability.md)."""

    def __init__(self, api_url: str, telemetry: Telemetry, clock: Clock | None = None) -> None:
        self._host = urlsplit(api_url).netloc
        self._telemetry = telemetry
        self._clock = clock or SystemClock()

    def read(self, request: Callable[[], Answer]) -> Answer:
        """`request`'s answer; its `Date` (a 304's too) against the bot's clock around it,
        reported unless missing or too slow to tell whether the clocks are within
        `MAX_CLOCK_SKEW` (its middle could be either side)."""
        sent = self._clock()
        answer = request()
        received = self._clock()
        try:
            offset = dated_offset(answer[1].get("date"), sent=sent, received=received)
        except UndatedAnswer:
            return answer
        if offset.agree or offset.apart:
            self._telemetry.github_clock(host=self._host, offset=offset.middle, at=received)
        return answer


async def github_offset(github: GitHubTransport, clock: Clock) -> ClockOffset:
    """GitHub's clock minus the bot's, as a range (`dated_offset`), from a read of the
    repository. GitHubError when GitHub does not answer, UndatedAnswer when it sends no
    readable date."""
    path = f"/repos/{github.repository}"

    def read() -> str | None:
        requester = github.client.requester
        answer = get(requester, github.api_url, path)
        checked(requester, answer)
        return answer[1].get("date")

    sent = clock()
    date = await github.call(f"read the repository {github.repository}", read)
    return dated_offset(date, sent=sent, received=clock())

"""GitHub's clock as its answers tell it: the `Date` header (HTTP's origin date, whole seconds),
compared with the bot's around the request that read it (`rollout-bot doctor`)."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime

from bot.adapters.github.redirects import checked, get
from bot.adapters.github.transport import GitHubTransport
from bot.domain.clocks import ClockOffset
from bot.domain.errors import GitHubError
from bot.services.ports import Clock

WHOLE_SECOND = timedelta(seconds=1)


class UndatedAnswer(GitHubError):
    """GitHub answered, but with no readable `Date` (a proxy in front of GitHub Enterprise
    Server that drops it): its clock cannot be read, which is not GitHub unreachable."""


async def github_offset(github: GitHubTransport, clock: Clock) -> ClockOffset:
    """GitHub's clock minus the bot's, as a range: the round trip of a read of the repository
    and the second the `Date` header rounds down. GitHubError when GitHub does not answer,
    UndatedAnswer when it sends no readable date."""
    path = f"/repos/{github.repository}"

    def read() -> str | None:
        requester = github.client.requester
        answer = get(requester, github.api_url, path)
        checked(requester, answer)
        return answer[1].get("date")

    sent = clock()
    date = await github.call(f"read the repository {github.repository}", read)
    received = clock()
    try:
        theirs = parsedate_to_datetime(date or "")
    except (TypeError, ValueError) as exc:
        raise UndatedAnswer(f"GitHub's answer has no readable Date header ({date!r})") from exc
    if theirs.tzinfo is None:
        raise UndatedAnswer(f"GitHub's answer has no readable Date header ({date!r})")
    return ClockOffset(low=theirs - received, high=theirs + WHOLE_SECOND - sent)

"""Posting a review of a run's waiting deployments, for both holds: a required reviewer's
(`pending_deployments`) and the App's custom protection rule (`deployment_protection_rule`).
GitHub answers both the same way: 2xx applied, 422 when nothing of it waits there any more
(or, rarely, not applied while it still waits: a look at the run tells them apart).

A write at a renamed or transferred repository's former name is answered `307 Temporary
Redirect`, to be repeated verbatim at `Location`, which PyGithub does not follow and would pass
as a success: a review is posted here, the redirection followed on the bot's own GitHub and any
other 3xx taken as a refusal, never as a review applied (`redirects`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from github import GithubException

from bot.adapters.github.redirects import Answer, checked, followed
from bot.adapters.github.refusals import message
from bot.adapters.github.transport import GitHubTransport

_log = logging.getLogger(__name__)


async def post_review(
    github: GitHubTransport, path: str, body: Mapping[str, Any], *, operation: str, run_id: int
) -> bool | str:
    """True when applied, False when GitHub answered 422 (raced, or answered before; or not
    applied while it still waits, which only a look at the run tells apart), else
    what GitHub answered when it may have applied it, for the caller to read back. A refusal
    raises GitHubError."""
    try:
        await github.run(
            functools.partial(post_json, github, path, body),
            endpoint="review",
            operation=operation,
        )
    except (GithubException, OSError) as exc:
        if isinstance(exc, GithubException) and exc.status == 422:
            _log.info("GitHub: run %s: 422 (%s): not waiting any more?", run_id, message(exc))
            return False
        return github.unclear_answer(operation, exc, run_id=run_id, kind="review")
    return True


def post_json(github: GitHubTransport, path: str, body: Mapping[str, Any]) -> Any:
    """POST `body` to `path` (in the pool's thread): GitHub's JSON answer, GithubException
    for any answer but a 2xx once a redirection on the same API was followed (`redirects`)."""
    requester = github.client.requester

    def send(url: str) -> Answer:
        return requester.requestJson("POST", url, input=dict(body))

    first = send(path)
    answer = followed(github.api_url, first, send, what=f"POST {path}")
    if answer is not first:
        _log.warning(
            "GitHub redirected a write on %s (%s; a renamed or transferred repository): it "
            "was sent again where GitHub said; set the service's repository to its new name",
            github.repository,
            first[0],
        )
    return checked(requester, answer)

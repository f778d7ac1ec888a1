"""Posting a review of a run's waiting deployments, for both holds: a required reviewer's
(`pending_deployments`) and the App's custom protection rule (`deployment_protection_rule`).
GitHub answers both the same way: 2xx applied, 422 when nothing of it waits there any more.

A write at a renamed or transferred repository's former name is answered `307 Temporary
Redirect`, to be repeated verbatim at `Location` (docs.github.com, "Best practices for using
the REST API": follow any redirects the API sends you). PyGithub follows only a 301 and passes
every status below 400 as a success, so a review is posted here, the redirect followed on the
bot's own GitHub and any other 3xx taken as a refusal: never as a review applied.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from github import GithubException

from bot.adapters.github.refusals import message
from bot.adapters.github.transport import GitHubTransport

_log = logging.getLogger(__name__)

_REDIRECTS = 3
"""Redirects followed at most for one write (GitHub's rename redirect is one)."""


async def post_review(
    github: GitHubTransport, path: str, body: Mapping[str, Any], *, operation: str, run_id: int
) -> bool | str:
    """True when applied, False when GitHub answered 422 (raced, or answered before), else
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
            _log.info("GitHub: run %s: not waiting any more (%s)", run_id, message(exc))
            return False
        return github.unclear_answer(operation, exc, run_id=run_id, kind="review")
    return True


def post_json(github: GitHubTransport, path: str, body: Mapping[str, Any]) -> Any:
    """POST `body` to `path` (in the pool's thread): GitHub's JSON answer, GithubException
    for any answer of 300 or more once a 307/308 to the same API was followed."""
    requester = github.client.requester
    status, headers, text = requester.requestJson("POST", path, input=dict(body))
    for _ in range(_REDIRECTS):
        location = _on_api(github.api_url, headers.get("location"))
        if status not in (307, 308) or location is None:
            break
        _log.warning(
            "GitHub redirected a write on %s (%s: the repository was renamed or transferred); "
            "repeated at its new address: set the service's repository to its new name",
            github.repository,
            status,
        )
        status, headers, text = requester.requestJson("POST", location, input=dict(body))
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = {"message": str(text)[:200]}
    if status >= 300:
        output = data if isinstance(data, dict) else {"message": str(text)[:200]}
        raise requester.createException(status, headers, output)
    return data


def _on_api(api_url: str, location: object) -> str | None:
    """`location` as an absolute URL when it is on the bot's GitHub API (scheme, host and
    port, under its path), else None: a write is never sent, with the token, elsewhere."""
    if not isinstance(location, str) or not location:
        return None
    target = urlsplit(urljoin(f"{api_url}/", location))
    base = urlsplit(api_url)
    if (target.scheme, target.netloc.lower()) != (base.scheme, base.netloc.lower()):
        return None
    if not (target.path + "/").startswith(base.path.rstrip("/") + "/"):
        return None
    return target.geturl()

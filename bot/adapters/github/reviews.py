"""Posting a review of a run's waiting deployments, for both holds: a required reviewer's
(`pending_deployments`) and the App's custom protection rule (`deployment_protection_rule`).
GitHub answers both the same way: 2xx applied, 422 when nothing of it waits there any more."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from github import GithubException

from bot.adapters.github.refusals import message
from bot.adapters.github.transport import GitHubTransport

_log = logging.getLogger(__name__)


async def post_review(
    github: GitHubTransport, path: str, body: Mapping[str, Any], *, operation: str, run_id: int
) -> bool | str:
    """True when applied, False when GitHub answered 422 (raced, or answered before), else
    what GitHub answered when it may have applied it, for the caller to read back. A refusal
    raises GitHubError."""
    try:
        await github.run(
            functools.partial(
                github.client.requester.requestJsonAndCheck, "POST", path, input=dict(body)
            ),
            endpoint="review",
            operation=operation,
        )
    except (GithubException, OSError) as exc:
        if isinstance(exc, GithubException) and exc.status == 422:
            _log.info("GitHub: run %s: not waiting any more (%s)", run_id, message(exc))
            return False
        return github.unclear_answer(operation, exc, run_id=run_id, kind="review")
    return True

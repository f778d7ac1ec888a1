"""The attempt of a workflow run (GitHub's `run_attempt`), and the review that is not sent
because the run was re-run since the attempt it was meant for.

GitHub's review of a run's waiting deployments (`POST .../pending_deployments`) and the App's
answer to its protection rule (`POST .../deployment_protection_rule`) name the run, never an
attempt: they answer whatever waits on its latest attempt. A review the bot decided on one
attempt (its gate passed there) would approve the same environment waiting on a re-run,
which the bot never watched nor gated.
"""

from __future__ import annotations

import logging

from bot.adapters.github.schema import Run
from bot.adapters.github.transport import GitHubTransport

_log = logging.getLogger(__name__)


def read_attempt(github: GitHubTransport, run_id: int, *, conditional: bool = True) -> int:
    """The run's latest attempt (in the pool's thread); a conditional GET when `conditional`
    (a 304 costs no rate limit)."""
    read = github.get_conditional if conditional else github.get_json
    return Run.model_validate(read(github.runs_path(run_id))).run_attempt


async def latest_attempt(github: GitHubTransport, run_id: int) -> int:
    """`read_attempt`, through the transport (as a review's call)."""
    return await github.call(
        f"read the attempt of run {run_id}",
        lambda: read_attempt(github, run_id),
        run_id=run_id,
        kind="review",
    )


def not_for(run_id: int, attempt: int | None, latest: int | None, operation: str) -> bool:
    """Whether the run was re-run (`latest`) since `attempt`, the one a review is meant for
    (None: any attempt will do). Nothing is sent then; the rollout's next look finds the
    re-run and tells the thread it does not follow it."""
    if attempt is None or latest is None or latest == attempt:
        return False
    _log.warning(
        "GitHub: run %s was re-run (attempt %s; this was meant for attempt %s): nothing was "
        "sent to %s",
        run_id,
        latest,
        attempt,
        operation,
    )
    return True

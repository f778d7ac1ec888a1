"""What is in the release: which release it is compared with, and GitHub's comparison.

The last released tag is the newest rollout in the bot's own store that reached its last stage
on every track; without one, the repository's latest GitHub Release; without that, this is the
first release. When it is the tag started (the release live, started again), there is nothing
new and GitHub is not asked. A failure to read never blocks the preflight: the contents say
why they could not be read.
"""

from __future__ import annotations

import logging

from bot.domain.errors import GitHubError
from bot.domain.plan import RolloutPlan
from bot.domain.release_contents import LastRelease, ReleaseContents, Since, release_contents
from bot.services.changes import ChangesSource
from bot.services.store_ports import Rollouts

log = logging.getLogger(__name__)


async def last_release(*, github: ChangesSource, store: Rollouts, tag: str) -> LastRelease | None:
    """The release `tag` is compared with (None for the first release); raises GitHubError."""
    released = await store.last_released()
    if released is not None:
        return LastRelease(released.tag, Since.ROLLOUT)
    latest = await github.latest_release()
    return None if latest is None else LastRelease(latest, Since.GITHUB_RELEASE)


async def read_contents(
    *, github: ChangesSource, store: Rollouts, plan: RolloutPlan, tag: str
) -> ReleaseContents:
    """The changes `tag` brings since the last release (two GitHub requests at most)."""
    since: LastRelease | None = None
    try:
        since = await last_release(github=github, store=store, tag=tag)
        if since is None or since.tag == tag:  # the first release, or the one live: nothing new
            return ReleaseContents(tag=tag, since=since)
        comparison = await github.compare(base=since.tag, head=tag)
    except GitHubError as error:
        log.info("the changes in %s could not be read: %s", tag, error.cause)
        return ReleaseContents(tag=tag, since=since, unread=error.cause)
    return release_contents(tag=tag, since=since, comparison=comparison, plan=plan)

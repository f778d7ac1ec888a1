"""What is in the release: which release it is compared with, and GitHub's comparison.

The last released tag is the newest rollout in the bot's own store that reached its last stage
on every track; without one, the repository's latest GitHub Release; without that, this is the
first release. When it is the tag started (the release live, started again), there is nothing
new and GitHub is not asked, unless the tag has been moved since it went out: then the commits
it was moved over are compared, and the card says so. When its tag is gone from GitHub
(deleted), the newest earlier release whose tag is there is compared with instead, and the card
says so. A failure to read never blocks the preflight: the contents say why they could not be
read.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.domain.errors import GitHubError, RefNotFound
from bot.domain.plan import RolloutPlan
from bot.domain.release_contents import (
    Comparison,
    LastRelease,
    ReleaseContents,
    Since,
    release_contents,
)
from bot.domain.rollout import Rollout
from bot.services.changes import ChangesSource
from bot.services.store_ports import Rollouts

log = logging.getLogger(__name__)


EARLIER_RELEASES = 5
"""How many earlier releases are tried, each tag asked of GitHub, when the tag of the last
release is gone (deleted) and cannot be compared with."""


async def read_contents(
    *, github: ChangesSource, store: Rollouts, plan: RolloutPlan, tag: str, at: str | None = None
) -> ReleaseContents:
    """The changes `tag` brings since the last release (two GitHub requests at most, unless
    the last release's commit or tag is gone): compared at `at`, the commit its preflight
    read the tag at, so they describe that commit even if the tag moves meanwhile (the tag's
    name when the commit is not known)."""
    since: LastRelease | None = None
    try:
        released = await store.last_released()
        if released is not None:
            since = LastRelease(released.tag, Since.ROLLOUT)
        elif (latest := await github.latest_release()) is not None:
            since = LastRelease(latest, Since.GITHUB_RELEASE)
        moved_from = _moved_from(released, since, tag=tag, at=at)
        if since is None or (since.tag == tag and not moved_from):
            return ReleaseContents(tag=tag, since=since)  # the first, or the one live: nothing
        try:
            comparison = await _from_release(github, released, since, head=at or tag)
        except RefNotFound:
            if await github.tag_exists(since.tag):
                raise  # the tag started is the one GitHub does not know
            return await _instead_of_gone(
                github=github, store=store, plan=plan, tag=tag, at=at, gone=since, released=released
            )
    except GitHubError as error:
        log.info("the changes in %s could not be read: %s", tag, error.cause)
        return ReleaseContents(tag=tag, since=since, unread=error.cause)
    contents = release_contents(tag=tag, since=since, comparison=comparison, plan=plan)
    return replace(contents, moved_from=moved_from)


def _moved_from(
    released: Rollout | None, since: LastRelease | None, *, tag: str, at: str | None
) -> str:
    """The commit the release live went out at, when its tag, started again (`tag`), now
    reads another commit (`at`): moved since (`git tag -f`), it brings the commits it was
    moved over. "" when another tag is started, or either commit is not known."""
    if since is None or since.tag != tag or since.source is not Since.ROLLOUT:
        return ""
    if released is None or not at:
        return ""
    released_at = released.preflight.tag_commit
    return released_at if released_at and released_at != at else ""


async def _from_release(
    github: ChangesSource, released: Rollout | None, since: LastRelease, *, head: str
) -> Comparison:
    """GitHub's comparison of `head` with the last release: from the commit it went out at
    (`_released_at`), or from its tag when GitHub no longer has that commit (the history
    rewritten and the old commits purged). RefNotFound when GitHub knows neither."""
    base = _released_at(released, since)
    try:
        return await github.compare(base=base, head=head)
    except RefNotFound:
        if base == since.tag:
            raise
        return await github.compare(base=since.tag, head=head)


def _released_at(released: Rollout | None, since: LastRelease) -> str:
    """Where the comparison starts: the commit the last release's preflight read its tag at
    (what was dispatched), not where its tag is now, which may have been moved since (a tag
    re-pointed after the release would leave what it skipped uncounted and unflagged); the
    tag itself for the latest GitHub Release, or a release recorded without its commit."""
    if since.source is Since.ROLLOUT and released is not None and released.preflight.tag_commit:
        return released.preflight.tag_commit
    return since.tag


async def _instead_of_gone(
    *,
    github: ChangesSource,
    store: Rollouts,
    plan: RolloutPlan,
    tag: str,
    at: str | None,
    gone: LastRelease,
    released: Rollout | None,
) -> ReleaseContents:
    """The changes `tag` brings since the newest earlier release whose tag GitHub still has,
    the last release's tag (`gone`) deleted; without one, contents that say the tag is gone
    (Re-check reads them again once it is pushed back). Raises GitHubError."""
    earlier = released
    for _ in range(EARLIER_RELEASES):
        if earlier is None or earlier.ended_at is None:
            break
        earlier = await store.last_released(before=earlier.ended_at)
        if earlier is None or earlier.tag == tag:
            break
        if earlier.tag != gone.tag and await github.tag_exists(earlier.tag):
            since = LastRelease(earlier.tag, Since.ROLLOUT)
            comparison = await github.compare(base=since.tag, head=at or tag)
            contents = release_contents(tag=tag, since=since, comparison=comparison, plan=plan)
            return replace(contents, gone=gone.tag)
    unread = f"the tag `{gone.tag}` is gone from GitHub"
    return ReleaseContents(tag=tag, since=gone, unread=unread, gone=gone.tag)

"""Where a release tag is, as the production gateway reads it on the simulator: a lightweight
tag's ref names the commit; an annotated tag's names a tag object, which names the commit (or
another tag object: a tag of a tag)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from sandbox.clock import ManualClock
from sandbox.config import GITHUB_TOKEN, REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_runs import commit_sha

TAG = "v1.4.2"


@pytest.fixture
async def gh() -> AsyncIterator[GitHubSimulator]:
    clock = ManualClock(datetime(2026, 11, 29, 2, 0, tzinfo=UTC))
    async with GitHubSimulator(clock=clock, token=GITHUB_TOKEN) as sim:
        yield sim


@pytest.fixture
def gateway(gh: GitHubSimulator) -> PyGithubGateway:
    transport = GitHubTransport(
        api_url=gh.api_url, token=GITHUB_TOKEN, repository=REPOSITORY, timeout=5, backoff=0.01
    )
    return PyGithubGateway(transport, search=DispatchSearch(attempts=1, delay=0.01))


@pytest.mark.parametrize("levels", [0, 1, 4])
async def test_a_tag_is_followed_to_its_commit(
    gh: GitHubSimulator, gateway: PyGithubGateway, levels: int
) -> None:
    gh.push_tag(TAG, annotated=levels > 0, levels=max(levels, 1))
    assert await gateway.tag_commit(TAG) == commit_sha(TAG)


async def test_no_such_tag_is_none(gh: GitHubSimulator, gateway: PyGithubGateway) -> None:
    gh.history.every_tag = False  # GitHub knows no tag at all
    assert await gateway.tag_commit(TAG) is None


async def test_a_chain_of_tags_too_long_to_follow_is_unreadable_not_absent(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """A tag of a tag of ... five tag objects deep: the bot does not follow it to its commit,
    and says so (an error naming the tag), never that there is no such tag."""
    gh.push_tag(TAG, annotated=True, levels=5)
    with pytest.raises(GitHubError) as raised:
        await gateway.tag_commit(TAG)
    assert TAG in raised.value.message
    assert "more than 4" in raised.value.message


async def test_runs_report_the_head_github_reports_for_their_event(gh: GitHubSimulator) -> None:
    """GitHub's "Events that trigger workflows": a run of its ref's commit on a tag (a push of
    the tag, a dispatch on it) reports the tag's commit, wherever the tag was pushed; a pull
    request's run from a branch of that name reports its branch's head; a `schedule` or
    `repository_dispatch` run is on the default branch only."""
    gh.push_tag(TAG, at=commit_sha("the release"))
    for event in ("push", "workflow_dispatch", "release"):
        run = gh.create_foreign_run(branch=TAG, event=event)
        assert gh.engine.runs[run].head_sha == commit_sha("the release"), event
    pull = gh.create_foreign_run(branch=TAG, event="pull_request")
    assert gh.engine.runs[pull].head_sha == commit_sha(TAG)
    for event in ("schedule", "repository_dispatch"):
        with pytest.raises(ValueError, match="default branch only"):
            gh.create_foreign_run(branch=TAG, event=event)
        run = gh.create_foreign_run(event=event)
        assert gh.engine.runs[run].branch == "main"

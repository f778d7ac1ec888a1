"""What is in a release: the changes since the last released tag, the pull requests they
merged, and the risky ones (a migration, a change to the deployment workflow itself).

Pure values and rules: the GitHub adapter reads the comparison, this module decides what it
means. Pull requests are read from the commit subjects GitHub writes when it merges one
("Merge pull request #12 from owner/branch", a squash's "Title (#12)"), so a preflight costs
one comparison, never a request per commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from bot.domain.plan import RolloutPlan

COMMITS_CAP = 250
"""GitHub's compare API lists at most 250 commits, the newest ("the last commit in the list is
the most recent of the entire comparison"; `total_commits` still counts them all)."""
FILES_CAP = 300
"""... and at most 300 changed files, without saying how many more there are."""
WORKFLOWS_DIRECTORY = ".github/workflows"

_MERGE = re.compile(r"^Merge pull request #(\d+) from (\S+)")
_SQUASH = re.compile(r"^(.*\S)\s+\(#(\d+)\)$")


class Since(StrEnum):
    """Where the release compared against came from."""

    ROLLOUT = "rollout"
    """The newest rollout of this plan that reached its last stage on every track."""
    GITHUB_RELEASE = "github_release"
    """The repository's latest GitHub Release (no completed rollout in the bot's store)."""


@dataclass(frozen=True)
class LastRelease:
    tag: str
    source: Since


@dataclass(frozen=True)
class ComparedCommit:
    """A commit of the comparison, as GitHub listed it."""

    sha: str
    message: str
    author: str | None
    """The GitHub login of its author (None when GitHub could not match the e-mail)."""
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """GitHub's answer to compare base...head, reduced to what the release contents use."""

    total_commits: int
    commits: tuple[ComparedCommit, ...]
    files: tuple[str, ...]
    html_url: str
    """The comparison on the web (`https://github.com/o/r/compare/base...head`)."""
    behind_by: int = 0
    """Commits of the base that the head lacks: the release is older than the last one (a
    release taken back), and `total_commits` counts none of what it takes out."""

    @property
    def pulls_url(self) -> str:
        """The repository's pull requests on the web, next to the comparison."""
        return self.html_url.rsplit("/compare/", 1)[0] + "/pull"


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    author: str | None
    url: str


class RiskKind(StrEnum):
    MIGRATION = "migration"
    WORKFLOW = "workflow"


@dataclass(frozen=True)
class Risk:
    """A change that deserves a second look before dispatch (it never blocks it)."""

    kind: RiskKind
    paths: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseContents:
    """The changes a release brings since the last one, or why they could not be read."""

    tag: str
    since: LastRelease | None = None
    """None for the first release (nothing to compare with)."""
    total_commits: int = 0
    pull_requests: tuple[PullRequest, ...] = ()
    risks: tuple[Risk, ...] = ()
    commits_capped: bool = False
    """GitHub listed fewer commits than it counted (the newest): the pull requests of the older
    ones may be missing."""
    files_capped: bool = False
    """GitHub listed its maximum of files: a risky file may be among those not listed."""
    compare_url: str = ""
    behind_by: int = 0
    """Commits of the last release this one lacks: releasing it takes their changes out."""
    unread: str | None = None
    """Why the changes could not be read (the rest of the preflight goes on)."""
    gone: str | None = None
    """The tag of the last release, gone from GitHub (deleted): the changes are compared with
    an earlier release whose tag is there (`since`), or, with `unread`, with none."""
    workflow_ref: str = ""
    """The ref the dispatch runs the workflow from (the plan's `workflow.ref`): a workflow
    change is read between the tags, which is not what that ref holds ("" when stored
    before it was kept)."""

    moved_from: str = ""
    """The commit the tag was released at, when the tag has been moved since (`git tag -f`)
    and is started again: the changes are the commits it was moved over ("" otherwise)."""

    @property
    def nothing_new(self) -> bool:
        """The tag is the last release itself (the release live, started again, its tag where
        it was released): it brings nothing, and GitHub was not asked."""
        same = self.since is not None and self.since.tag == self.tag
        return same and self.unread is None and not self.moved_from


def release_contents(
    *, tag: str, since: LastRelease, comparison: Comparison, plan: RolloutPlan
) -> ReleaseContents:
    """The contents of `tag` since `since`: pull requests (newest first) and risks."""
    return ReleaseContents(
        tag=tag,
        since=since,
        total_commits=comparison.total_commits,
        pull_requests=pull_requests(comparison.commits, comparison.pulls_url),
        risks=risks(comparison.files, plan),
        commits_capped=len(comparison.commits) < comparison.total_commits,
        files_capped=len(comparison.files) >= FILES_CAP,
        compare_url=comparison.html_url,
        behind_by=comparison.behind_by,
        workflow_ref=plan.workflow.ref,
    )


def pull_requests(commits: Sequence[ComparedCommit], pulls_url: str) -> tuple[PullRequest, ...]:
    """The pull requests merged by these commits (oldest first as GitHub lists them), newest
    first, each once. A merge commit's title is its message's first paragraph after the
    subject and its author the author of the merged branch's head (the merge commit itself is
    by whoever clicked Merge); a squash commit is the pull request's own author and title."""
    authors = {commit.sha: commit.author for commit in commits}
    found: dict[int, PullRequest] = {}
    for commit in reversed(commits):
        subject, _, body = commit.message.partition("\n")
        if merge := _MERGE.match(subject):
            number = int(merge.group(1))
            title = next((line.strip() for line in body.splitlines() if line.strip()), "")
            branch_head = commit.parents[1] if len(commit.parents) > 1 else None
            author = authors.get(branch_head) if branch_head else None
            pull = PullRequest(
                number, title or merge.group(2), author or commit.author, f"{pulls_url}/{number}"
            )
        elif squash := _SQUASH.match(subject.strip()):
            number = int(squash.group(2))
            pull = PullRequest(number, squash.group(1), commit.author, f"{pulls_url}/{number}")
        else:
            continue
        found.setdefault(pull.number, pull)
    return tuple(found.values())


def risks(files: Sequence[str], plan: RolloutPlan) -> tuple[Risk, ...]:
    """The risky changes among the changed files: the plan's migration files, and the
    deployment workflow file the bot dispatches (changed between the tags compared; the
    dispatch runs it from the plan's `workflow.ref`, which this does not compare)."""
    migrations = tuple(path for path in files if plan.preflight.migrations.applies_to(path))
    workflow = str(PurePosixPath(WORKFLOWS_DIRECTORY) / plan.workflow.file)
    found = []
    if migrations:
        found.append(Risk(RiskKind.MIGRATION, migrations))
    if workflow in files:
        found.append(Risk(RiskKind.WORKFLOW, (workflow,)))
    return tuple(found)

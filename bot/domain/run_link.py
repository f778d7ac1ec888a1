"""Linking a run by hand: the rules for attaching an existing GitHub Actions run to a rollout
whose dispatch could not be identified (GitHub Enterprise, an unclear answer, a give-up).

A person names the run by its id or its page on the bot's own GitHub
(`https://HOST/OWNER/REPO/actions/runs/ID`, with an optional `/attempts/N` or `/job/N`, and
whatever query or fragment GitHub's address bar shows: `?pr=12`, `#summary`); the run must be one
the rollout could have started: the plan's workflow, dispatched on the plan's ref (not a pull
request's run, a fork's on a branch named `main` say), created after the
rollout's preflight began, still going, and followed by no other rollout.
Each refusal says which rule, in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import SplitResult, urlsplit

from bot.domain.errors import InvalidCommand, RolloutError
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Phase, Rollout
from bot.domain.text import shown

USAGE = "`/rollout link <run id or run URL>`"

_ID = re.compile(r"[1-9][0-9]{0,18}")
_PAGE = re.compile(
    r"/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+)/actions/runs/"
    r"(?P<id>[1-9][0-9]{0,18})(?:/attempts/[1-9][0-9]{0,5}|/job/[1-9][0-9]{0,18})?/?"
)
"""A run's page, of one of its attempts, or of one of its jobs (where a person reading a failed
job copies the address from): each names the run."""
DISPATCHED = "workflow_dispatch"
"""The event of a run the bot (or a person on github.com) dispatched."""
OF_ITS_REF = frozenset(
    {DISPATCHED, "push", "create", "release", "deployment", "deployment_status", "registry_package"}
)
"""The events whose run may be on a tag and is of the commit its ref is at (GitHub's
"Events that trigger workflows": `GITHUB_SHA` is the ref's, on a tag the tag's commit): a
push of the tag, its creation, a release of it, a dispatch on it, a deployment of it, a
package published from it. Left out: a pull request's run is of its merge commit, a
`workflow_run`'s or `pull_request_target`'s of another branch's (the default one, the base),
whatever `head_branch` and `head_sha` say; a `schedule`'s or `repository_dispatch`'s is always
on the default branch (no tag's run); and `workflow_call` is no run's event (a reusable
workflow runs in its caller's run, under the caller's event and workflow file)."""
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?")


class LinkRefused(RolloutError):
    """The run named may not be linked to the rollout: which rule refused it."""

    code = "link_refused"


@dataclass(frozen=True)
class RunReference:
    """A run as a person named it: its id, and the page's host and repository when a URL."""

    run_id: int
    site: str | None = None
    """`scheme://host[:port]` of the URL: it must be the bot's GitHub, where the run is."""
    repository: str | None = None
    """`owner/name` as the URL spelled it."""


@dataclass(frozen=True)
class LinkableRun:
    """What GitHub says of the named run, as far as the rules need it."""

    run_id: int
    html_url: str
    workflow_path: str
    """The workflow file the run is of (`.github/workflows/x.yml`, maybe with `@ref`)."""
    head_branch: str
    status: str
    created_at: datetime
    attempt: int = 1
    """2 and up once someone re-ran it (GitHub's `run_attempt`)."""
    conclusion: str | None = None
    """How it ended (`success`, `failure`, ...), once completed."""
    head_sha: str = ""
    """The commit it runs (`head_sha`): a release tag's, for a run on that tag."""
    event: str = ""
    """What started it (`workflow_dispatch`, `pull_request`, ...)."""

    @property
    def of_its_ref(self) -> bool:
        """Whether the run is of the commit its ref is at (`OF_ITS_REF`): a fork's pull request
        from a branch it named `v1.4.2`, at the tag's very commit, runs a merge with its base."""
        return self.event in OF_ITS_REF

    def runs_commit(self, tagged: str | None) -> bool:
        """Whether the run is of the commit `tagged` (a release tag's, as GitHub says; None: no
        such tag): started by an event whose run is of its ref's commit (`of_its_ref`), that
        commit `tagged`. A branch, or a fork's, may bear a tag's name: its run is no release."""
        return self.of_its_ref and tagged is not None and tagged == self.head_sha

    def state(self) -> str:
        """Its status, and how it ended once completed (`completed: failure`)."""
        return f"{self.status}: {self.conclusion}" if self.conclusion else self.status


def parse_run_reference(text: str) -> RunReference:
    """The run in `text`: a bare numeric id, or a run's page on GitHub (its query and fragment
    say nothing of which run). Raises InvalidCommand."""
    text = text.strip()  # a slash command's `<https://...>` is a URL again at the Slack edge
    if _ID.fullmatch(text):
        return RunReference(int(text))
    parts = _split(text) if text.isprintable() and " " not in text else None
    page = _PAGE.fullmatch(parts.path) if parts is not None else None
    if (
        parts is None
        or page is None
        or parts.scheme not in ("https", "http")
        or not _HOST.fullmatch(parts.netloc)
    ):
        # Credentials typed into a URL are not repeated (the answer is audited).
        quoted = "That URL" if "@" in text else f"`{shown(text)}`"
        raise InvalidCommand(
            f"{quoted} is not a run: give its number or its page, "
            f"`https://HOST/OWNER/REPO/actions/runs/ID`, as in {USAGE}."
        )
    return RunReference(
        int(page["id"]),
        site=_site(text),
        repository=f"{page['owner']}/{page['repo']}",
    )


def may_link(rollout: Rollout) -> bool:
    """Whether the rollout waits for its run: dispatching, or back in preflight after the bot
    gave up looking for the run of its dispatch."""
    return rollout.phase is Phase.DISPATCHING or (
        rollout.phase is Phase.PREFLIGHT and rollout.gave_up_at is not None
    )


def branch_of(ref: str) -> str:
    """The branch (or tag) a workflow ref names, as GitHub reports a run's `head_branch`."""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def reference_refusal(reference: RunReference, repository: str) -> str | None:
    """Why a run's URL cannot name a run of `repository` (`owner/name`), or None."""
    if reference.repository is None or reference.repository.casefold() == repository.casefold():
        return None
    return (
        f"That run is in `{reference.repository}`; this bot follows `{repository}` only: "
        f"link a run of `{repository}`."
    )


def link_refusal(
    rollout: Rollout,
    plan: RolloutPlan,
    reference: RunReference,
    run: LinkableRun,
    *,
    followed_by: Rollout | None,
) -> str | None:
    """Which rule refuses linking `run` to `rollout`, in one line, or None when it may be."""
    if reference.site is not None and reference.site != _site(run.html_url):
        return (
            f"That URL is on `{reference.site}`, but this bot's GitHub is "
            f"`{_site(run.html_url)}`: link a run from there."
        )
    workflow = PurePosixPath(run.workflow_path.split("@", 1)[0]).name
    if workflow != PurePosixPath(plan.workflow.file).name:
        return (
            f"Run {run.run_id} is of `{workflow or 'an unknown workflow'}`, not of the plan's "
            f"workflow `{plan.workflow.file}`: link a run of {plan.workflow.name}."
        )
    branch = branch_of(plan.workflow.ref)
    if run.head_branch != branch:
        return (
            f"Run {run.run_id} runs on `{run.head_branch}`, not on the plan's ref `{branch}`: "
            f"link a run on `{branch}`."
        )
    if run.event != DISPATCHED:
        # A fork's pull request runs on its own branch's name (`main` too), with a workflow
        # it may have changed; the rollout's run is a dispatch.
        return (
            f"Run {run.run_id} was started by `{run.event or 'an unknown event'}`, not "
            f"dispatched: link the run of a dispatch of {plan.workflow.name}."
        )
    if run.created_at < rollout.created_at:
        return (
            f"Run {run.run_id} was created before the preflight of `{rollout.tag}` started, "
            "so it is not this rollout's: link a run started after it."
        )
    if run.status == "completed":
        return (
            f"Run {run.run_id} has already completed: there is nothing left to follow. "
            "Dispatch again from the preflight card."
        )
    if followed_by is not None and followed_by.id != rollout.id:
        return (
            f"Run {run.run_id} is already followed by the rollout of `{followed_by.tag}` "
            f"({followed_by.id}): link another run."
        )
    return None


def _split(text: str) -> SplitResult | None:
    """The parts of a URL, None for text urlsplit refuses (an unclosed `[` of an IPv6 host)."""
    try:
        return urlsplit(text)
    except ValueError:
        return None


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"

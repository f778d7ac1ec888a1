"""Block Kit of what is in a release: a short section on the preflight card (counts, risks, the
first pull requests) and the "What's in it" modal that lists every pull request.

Pull request titles and logins are other people's text: they are escaped for mrkdwn, so a
title such as "<!channel> fix" is shown, never acted on.
"""

from __future__ import annotations

from slack_sdk.models.blocks import Block

from bot.adapters.slack.blocks import ViewJson, context, modal, section, sections
from bot.adapters.slack.limits import VIEW_BLOCKS, fit
from bot.adapters.slack.mrkdwn import escape
from bot.domain.release_contents import (
    COMMITS_CAP,
    FILES_CAP,
    PullRequest,
    ReleaseContents,
    RiskKind,
    Since,
)

CARD_PULL_REQUESTS = 5
"""Pull requests listed on the card itself; the modal lists them all."""

_SOURCE = {
    Since.ROLLOUT: "the last release the bot completed on every track",
    Since.GITHUB_RELEASE: "the repository's latest GitHub Release",
}


_SAME = {
    Since.ROLLOUT: "the release live now (the last the bot completed on every track)",
    Since.GITHUB_RELEASE: "the repository's latest GitHub Release already",
}


NO_PULLS = "no merged pull requests found in the commit subjects"
"""Pull requests are read from commit subjects only, so none found is not none merged."""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summary(contents: ReleaseContents) -> str:
    """One line: "12 commits, 5 pull requests since v1.4.1 · ⚠ 1 migration · ⚠ workflow
    changed" (and what it lacks of the last release when their histories diverged), or why
    there is nothing to count."""
    if contents.unread is not None and contents.gone is not None:
        return (
            f":warning: *What's in it*: the tag `{escape(contents.gone)}` of the last release is "
            f"gone from GitHub (deleted), and no earlier release's tag is there to compare "
            f"`{escape(contents.tag)}` with. Push the tag back to the commit it named "
            f"(`git push origin &lt;commit&gt;:refs/tags/{escape(contents.gone)}`), then Re-check; "
            "or compare the commits on GitHub by hand."
        )
    if contents.unread is not None:
        return (
            f":warning: *What's in it*: the changes could not be read ({escape(contents.unread)});"
            " Re-check to read them again."
        )
    if contents.since is None:
        return ":information_source: *What's in it*: the first release (no earlier release)."
    if contents.nothing_new:
        return (
            f":information_source: *What's in it*: nothing new. `{escape(contents.tag)}` is "
            f"{_SAME[contents.since.source]}: the same release, so no change is compared."
        )
    if contents.behind_by and not contents.total_commits:
        return (
            f":warning: *What's in it*: `{escape(contents.tag)}` is "
            f"*{_plural(contents.behind_by, 'commit')} behind* `{escape(contents.since.tag)}`: "
            "releasing it takes out what those brought."
        )
    commits = _plural(contents.total_commits, "commit")
    if contents.pull_requests:
        pulls = _plural(len(contents.pull_requests), "pull request")
        if contents.commits_capped:
            pulls = f"at least {pulls}"
        parts = [f"*{commits}, {pulls}* since `{escape(contents.since.tag)}`"]
    else:  # a rebase merge leaves no subject to read: none found is not none merged
        parts = [f"*{commits}* since `{escape(contents.since.tag)}` ({NO_PULLS})"]
    for risk in contents.risks:
        if risk.kind is RiskKind.MIGRATION:
            parts.append(f":warning: {_plural(len(risk.paths), 'migration')}")
        else:
            parts.append(f":warning: workflow file changed in these commits{_run_from(contents)}")
    if contents.moved_from:
        parts.append(
            f":warning: `{escape(contents.tag)}` was moved after it was released at "
            f"`{contents.moved_from[:7]}`: these are the commits it was moved over, which never "
            "went out"
        )
    if contents.gone is not None:
        parts.append(
            f":warning: the tag of the last release, `{escape(contents.gone)}`, is gone from "
            f"GitHub: compared with `{escape(contents.since.tag)}`, an earlier release, so what "
            f"`{escape(contents.gone)}` brought (already live) is counted too"
        )
    if contents.behind_by:  # diverged: a force-push, or a tag cut from another branch
        parts.append(
            f":warning: *diverged*: `{escape(contents.since.tag)}` has "
            f"{_plural(contents.behind_by, 'commit')} that `{escape(contents.tag)}` lacks "
            "(a force-push, or a tag from another branch): releasing it takes those out"
        )
    return " · ".join(parts)


def _run_from(contents: ReleaseContents) -> str:
    """Where the dispatch runs the workflow from, which the comparison of the tags is not."""
    if not contents.workflow_ref:
        return ""
    return f" (the dispatch runs it from `{escape(contents.workflow_ref)}`, not from the tag)"


def pull_request_line(pull: PullRequest) -> str:
    by = f" by {escape(pull.author)}" if pull.author else ""
    return f"• <{pull.url}|#{pull.number}> {escape(pull.title)}{by}"


def _small_print(contents: ReleaseContents) -> list[str]:
    """Where the comparison comes from, and what GitHub left out."""
    if contents.since is None or contents.unread is not None or contents.nothing_new:
        return []
    source = _SOURCE[contents.since.source]
    if contents.gone is not None:
        source = f"an earlier release than {source} (its tag is gone)"
    notes = [f"Compared with {source}."]
    if contents.commits_capped:
        # Unpaginated, GitHub lists the newest commits: those left out are the oldest.
        older = _plural(max(contents.total_commits - COMMITS_CAP, 1), "older commit")
        notes.append(
            f"GitHub lists only the newest {COMMITS_CAP} commits: "
            f"the pull requests of the {older} before them are not shown."
        )
    if contents.files_capped:
        notes.append(
            f"GitHub lists only {FILES_CAP} changed files and more changed: "
            "a migration or workflow change among the others is not flagged."
        )
    if contents.compare_url:
        notes.append(f"<{contents.compare_url}|All changes on GitHub>")
    return notes


def card_blocks(contents: ReleaseContents) -> list[Block]:
    """The preflight card's section: the summary and the first pull requests."""
    lines = [summary(contents)]
    shown = contents.pull_requests[:CARD_PULL_REQUESTS]
    lines += [pull_request_line(pull) for pull in shown]
    more = len(contents.pull_requests) - len(shown)
    if more > 0:
        lines.append(f"… and {more} more: *What's in it* lists them all.")
    blocks: list[Block] = [*sections(lines)]
    if notes := _small_print(contents):
        blocks.append(context(" ".join(notes)))
    return blocks


def contents_modal(contents: ReleaseContents) -> ViewJson:
    """Every pull request of the release, and the risky files by name."""
    risky = [
        f":warning: *{'Migrations' if risk.kind is RiskKind.MIGRATION else 'Workflow'}*: "
        + ", ".join(f"`{escape(path)}`" for path in risk.paths)
        + (
            ""
            if risk.kind is RiskKind.MIGRATION
            else f" changed in these commits{_run_from(contents)}"
        )
        for risk in contents.risks
    ]
    pulls = [pull_request_line(pull) for pull in contents.pull_requests]
    if (
        not pulls
        and contents.since is not None
        and contents.unread is None
        and not (contents.nothing_new)
    ):
        pulls = [
            f"{NO_PULLS.capitalize()}: they are read from merge commits and squashes' `(#12)`, "
            "and a rebase merge leaves neither."
        ]
    blocks: list[Block] = [section(summary(contents)), *sections(risky), *sections(pulls)]
    if notes := _small_print(contents):
        blocks.append(context(" ".join(notes)))
    return modal(f"What's in {contents.tag}", fit(blocks, "the comparison on GitHub", VIEW_BLOCKS))

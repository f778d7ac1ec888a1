"""The release tag's commit as the preflight read it (before its checks, which describe it), the
flags asked for again when a Re-check finds the tag moved, and the look at a person's Dispatch
that the tag is still there (refused, the card offers Re-check): a tag force-pushed between the
card and the click would otherwise ship a commit nobody preflighted (the workflow is dispatched
with the tag's name, and checks out wherever the tag is then)."""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.domain.errors import GitHubError
from bot.domain.rollout import Check, CheckState, Rollout
from bot.domain.schedule import Schedule
from bot.services.ports import GitHubGateway

log = logging.getLogger(__name__)


async def read_tag_commit(github: GitHubGateway, tag: str, *, before: str | None) -> str | None:
    """The commit the tag is at, for the preflight to keep (`Preflight.tag_commit`): "" when
    GitHub has no commit for it; `before` (what the preflight kept) when GitHub did not say,
    so a failed Re-check never forgets a commit already read."""
    try:
        return await github.tag_commit(tag) or ""
    except GitHubError as error:
        log.info("the commit of the tag %s could not be read: %s", tag, error.message)
        return before


async def scheduled_at_commit(
    github: GitHubGateway, rollout: Rollout, schedule: Schedule
) -> Rollout:
    """`rollout` of a scheduled start with its `schedule`, which keeps (`Schedule.tag_commit`)
    the commit its preflight read, before its checks; read again when the preflight could not
    (GitHub failing, a tag too deep to follow), and then kept by its preflight too, so that a
    Re-check and a Dispatch compare with it (a Re-check finding it moved asks for the flags
    again). Raises `GitHubError` when it still cannot be read: the start is refused rather
    than scheduled with no commit to hold the dispatch by."""
    commit = rollout.preflight.tag_commit
    if commit is None:
        commit = await github.tag_commit(rollout.tag) or ""
    return replace(
        rollout,
        preflight=replace(rollout.preflight, tag_commit=commit),
        schedule=replace(schedule, tag_commit=commit),
    )


def flags_after_move(tag: str, flags: Check, *, was: str | None, now: str | None) -> Check:
    """The flags check once a Re-check read the tag at `now`, its preflight having read it at
    `was` ("": no such tag): as it was while the tag is where it was (or either is not known);
    otherwise waiting for the starter again, saying where the tag went (old → new, gone, or
    created since): a confirmation given before never carries over to another commit."""
    if was is None or now is None or was == now:
        return flags
    if not now:
        said = (
            f"`{tag}` is gone from GitHub (its preflight read it at `{was[:12]}`). A "
            "confirmation given for that commit does not carry over: waiting for the starter to "
            "confirm the feature flags again"
        )
    elif not was:
        said = (
            f"`{tag}` now points at `{now[:12]}`: GitHub had no such tag when its preflight "
            "read it. A confirmation given before does not carry over: waiting for the starter "
            "to confirm the feature flags for this commit"
        )
    else:
        said = (
            f"`{tag}` now points at another commit: `{was[:12]}` → `{now[:12]}` (moved since "
            "its preflight read it). A confirmation given for the old commit does not carry "
            "over: waiting for the starter to confirm the feature flags for the new one"
        )
    return Check(CheckState.PENDING, said)


def flags_card_refusal(rollout: Rollout, commit: str | None) -> str | None:
    """Why a Confirm flags from a card drawn for `commit` (None: it showed none) confirms
    nothing: a Re-check has read the tag at another commit since (the flags asked for again,
    for that one); None when the card showed the commit the preflight keeps, or either kept
    none (nothing to compare, as `where_moved`)."""
    now, tag = rollout.preflight.tag_commit, rollout.tag
    if commit is None or now is None or commit == now:
        return None
    shown = f"at `{commit[:12]}`" if commit else "not on GitHub"
    where = f"at `{now[:12]}`" if now else "gone from GitHub"
    return (
        f"This card is out of date: it showed `{tag}` {shown}, and a Re-check found it {where} "
        "since, so nothing was confirmed. Confirm the feature flags on the updated card, for "
        "the commit it shows."
    )


async def where_moved(github: GitHubGateway, rollout: Rollout) -> str | None:
    """Look before a person's Dispatch: the commit the tag is at now when it is no longer
    where its preflight read it, and "" whenever it is gone from GitHub (also when the
    preflight found it gone: there is nothing to release); None when it is there, or when the
    preflight kept no commit (an older version's, or GitHub did not say then, or the tag is too
    deep to follow): nothing to compare, GitHub is not asked. GitHub failing to say where the
    tag is raises `GitHubError`, saying the bot could not check and nothing was dispatched."""
    seen, tag = rollout.preflight.tag_commit, rollout.tag
    if seen is None:  # asking would only refuse, for nothing, while GitHub fails or the tag is deep
        return None
    try:
        now = await github.tag_commit(tag) or ""
    except GitHubError as error:
        at = f" (`{seen[:12]}`)" if seen else ""
        raise GitHubError(
            f"Could not check that `{tag}` is still at the commit its preflight read{at}: "
            f"{error.message} Nothing was dispatched: click Dispatch again once GitHub answers.",
            status=error.status,
        ) from error
    return None if now == seen and now else now


def moved_refusal(rollout: Rollout, now: str) -> str:
    """Why a person's Dispatch may not go, the tag found at `now` (`where_moved`): both
    commits (or that the tag is still gone), and what to do (the card offers Re-check
    meanwhile, `Preflight.moved_to`)."""
    seen, tag = rollout.preflight.tag_commit, rollout.tag
    if not seen and not now:
        said = (
            f"`{tag}` is not on GitHub: its preflight found it gone too. Dispatching would start "
            "a run of a tag GitHub does not have (it would fail there), so nothing was "
            "dispatched. Push the tag where it should be and click Re-check on the card"
        )
    else:
        was = f"its preflight read it at `{seen[:12]}`" if seen else "GitHub had no such tag then"
        where = f"it is now at `{now[:12]}`" if now else "it is now gone from GitHub"
        said = (
            f"`{tag}` was moved since its preflight was read: {was}, and {where}. Dispatching "
            "would release a commit nobody preflighted, so nothing was dispatched. Check the "
            "tag on GitHub; if it is where it should be, click Re-check on the card"
        )
    return (
        f"{said}: it reads the tag where it is now, checks it again and asks the starter to "
        "confirm the feature flags for it, then Dispatch. Else Cancel this preflight."
    )

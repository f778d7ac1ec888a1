"""Block Kit of the preflight card: the runbook's preconditions with their outcome, and Dispatch
only once all are clear."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, ButtonElement

from bot.adapters.slack.actions import Action, ButtonValue
from bot.adapters.slack.blocks import BlockJson, actions, as_json, button, context, header, section
from bot.adapters.slack.contents_view import card_blocks
from bot.adapters.slack.messages import check_text, reason_text
from bot.adapters.slack.rollout_words import CHECK_EMOJI, released
from bot.adapters.slack.schedule_words import card_line
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Check, CheckState, Phase, Preflight, Rollout
from bot.domain.run_link import may_link


def _check_line(title: str, check: Check, pending: str, skipped: str) -> str:
    if check.state is CheckState.SKIPPED:
        detail = check.detail or skipped
    elif check.state is CheckState.PENDING:
        detail = check_text(check) or pending
    else:
        detail = check_text(check) or str(check.state)
    return f"{CHECK_EMOJI[check.state]} *{title}*: {detail}"


def preflight_card(rollout: Rollout, plan: RolloutPlan, *, named: bool = False) -> list[BlockJson]:
    """The runbook's preconditions with their outcome; Dispatch only once all are clear."""
    checks = rollout.preflight
    open_ = rollout.phase is Phase.PREFLIGHT
    value = ButtonValue(rollout_id=rollout.id, version=rollout.version).encode()
    confirm_flags = None
    if open_ and checks.flags.state is CheckState.PENDING:
        # For the commit the card shows: a card drawn before the tag moved confirms nothing.
        confirming = ButtonValue(
            rollout_id=rollout.id, version=rollout.version, commit=checks.tag_commit
        ).encode()
        confirm_flags = button("Feature flags validated", Action.CONFIRM_FLAGS, confirming)
    flags = _check_line(
        "Feature flags validated",
        checks.flags,
        pending=f"waiting for <@{rollout.started_by}> to confirm they are validated",
        skipped="not checked",
    )
    blocks: list[Block] = [
        header(f"Preflight: {released(rollout, named=named)}"),
        context(
            f"Started by <@{rollout.started_by}> · *{plan.workflow.name}* "
            f"(`{plan.workflow.file}` on `{plan.workflow.ref}`)"
        ),
        section(flags, accessory=confirm_flags),
        section(
            _check_line(
                "Migrations additive only",
                checks.migrations,
                pending="reading the migration files",
                skipped="not checked",
            )
        ),
        section(
            _check_line(
                "Image tag published",
                checks.image,
                pending="checking the registry",
                skipped="not checked (turned off in the plan)",
            )
        ),
    ]
    if checks.contents is not None:
        blocks += card_blocks(checks.contents)
    listing = _contents_button(checks, value)
    if not open_:
        return as_json([*blocks, section(_after_preflight(rollout)), *actions(listing)])
    # After the bot gave up looking for the run of a dispatch: it may have started after all.
    link = [button("Link a run…", Action.LINK_RUN, value)] if may_link(rollout) else []
    blocking = checks.blocking()
    cancel = [button("Cancel", Action.CANCEL_PREFLIGHT, value)]
    schedule = rollout.schedule
    if schedule is not None:
        blocks.append(section(card_line(schedule)))
    if schedule is not None and schedule.pending:
        cancel.insert(0, button("Cancel schedule", Action.CANCEL_SCHEDULE, value))
    moved = checks.moved_to
    if moved is not None:  # a Dispatch refused: Re-check reads the tag where it is now
        blocks.append(section(_moved_line(rollout, moved)))
    # A tag moved, or not on GitHub: Re-check reads it where it is now.
    again = _unread(checks) or moved is not None or checks.tag_commit == ""
    recheck = [button("Re-check", Action.RECHECK, value)] if again else []
    if blocking:
        blocks.append(section(":no_entry: Dispatch is blocked by: " + "; ".join(blocking)))
        return as_json([*blocks, *actions([*recheck, *link, *listing, *cancel])])
    firsts = ", ".join(f"{track.stages[0].label} ({track.label})" for track in plan.tracks.values())
    blocks.append(
        section(
            f":large_green_circle: All checks are clear. Dispatch starts *{plan.workflow.name}* "
            f"and approves {firsts}."
        )
    )
    # While scheduled, Dispatch goes now (the schedule then finds the rollout dispatched).
    label = "Dispatch now" if schedule is not None and schedule.pending else "Dispatch"
    dispatch = button(label, Action.DISPATCH, value, style="primary")
    return as_json([*blocks, *actions([dispatch, *recheck, *link, *listing, *cancel])])


def _moved_line(rollout: Rollout, now: str) -> str:
    """Where a refused Dispatch found the tag (`Preflight.moved_to`), and what Re-check does."""
    found = f"at `{now[:12]}`" if now else "gone from GitHub"
    moved = now or rollout.preflight.tag_commit
    since = "moved since its preflight read it" if moved else "its preflight found it gone too"
    return (
        f":warning: Dispatch found `{rollout.tag}` {found}, {since}: nothing was dispatched. "
        "Re-check reads it where it is now, checks it again and asks "
        f"<@{rollout.started_by}> to confirm the feature flags for it."
    )


def _unread(checks: Preflight) -> bool:
    """Whether GitHub failed to answer a check or the release's contents (Re-check reads
    them again)."""
    contents_unread = checks.contents is not None and checks.contents.unread is not None
    return contents_unread or CheckState.ERROR in (checks.migrations.state, checks.image.state)


def _contents_button(checks: Preflight, value: str) -> list[ButtonElement]:
    """The "What's in it" button, when there are changes to list."""
    contents = checks.contents
    if contents is None or contents.since is None or contents.unread is not None:
        return []
    return [button("What's in it", Action.SHOW_CONTENTS, value)]


def _after_preflight(rollout: Rollout) -> str:
    if rollout.run_id is not None and rollout.run_url:
        return f":rocket: Dispatched: <{rollout.run_url}|run {rollout.run_id}>."
    if rollout.phase is Phase.DISPATCHING:
        return ":hourglass_flowing_sand: Dispatching…"
    reasons = {reason_text(t.ended_reason) for t in rollout.tracks if t.ended_reason}
    why = f": {'; '.join(sorted(reasons))}" if reasons else ""
    return f":heavy_minus_sign: Ended before dispatch{why}."

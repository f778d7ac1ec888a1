"""Block Kit of the controls' forms, as pure functions: the custom window extension (a typed
duration, validated with the plan's duration rules), the redeploy confirm dialog, which
names the tag going back in and the tag it replaces, the Link a run… form, and the reason to
override a freeze for a refused Dispatch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from slack_sdk.models.blocks import InputBlock, PlainTextInputElement

from bot.adapters.slack.actions import (
    AdoptOverrideMetadata,
    Callback,
    ExtendMetadata,
    LinkMetadata,
    OverrideMetadata,
    RedeployMetadata,
)
from bot.adapters.slack.blocks import ViewJson, modal, plain, section, submitted
from bot.adapters.slack.limits import INPUT_HINT, INPUT_LABEL, PLACEHOLDER
from bot.adapters.slack.messages import slack_time
from bot.domain.durations import HINT, parse_duration
from bot.domain.errors import InvalidCommand
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.domain.run_link import RunReference, parse_run_reference
from bot.domain.text import PASTED_CREDENTIAL, TOKEN_SHAPE, clean_text, shown
from bot.domain.unfollowed_runs import UnfollowedRun
from bot.services.redeploy import RedeployOffer

DURATION_BLOCK = "duration"
DURATION_ACTION = "duration"
LINK_BLOCK = "link_url"
LINK_ACTION = "link_url"
REASON_BLOCK = "override_reason"
REASON_ACTION = "override_reason"
_MAX_REASON_TEXT = 500
_MAX_LINK_TEXT = 300
_MAX_DURATION_TEXT = 40

T = TypeVar("T")


def one_field_modal(
    title: str,
    about: str,
    *,
    block: str,
    action: str,
    label: str,
    hint: str,
    placeholder: str,
    max_length: int,
    submit: str,
    callback_id: Callback,
    private_metadata: str,
) -> ViewJson:
    """A form of one typed field (`block`/`action`, read back with `parse_one`) under a
    section saying what it is about."""
    field = InputBlock(
        block_id=block,
        label=plain(label, INPUT_LABEL),
        hint=plain(hint, INPUT_HINT),
        element=PlainTextInputElement(
            action_id=action,
            max_length=max_length,
            placeholder=plain(placeholder, PLACEHOLDER),
        ),
    )
    return modal(
        title,
        [section(about), field],
        submit=submit,
        callback_id=callback_id,
        private_metadata=private_metadata,
    )


def parse_one(
    values: Mapping[str, Any], block: str, action: str, read: Callable[[str], T]
) -> tuple[T | None, dict[str, str]]:
    """What `read` makes of the text typed in a one-field form, or, when it raises
    ValueError or InvalidCommand, Slack's `errors` keyed by block id with its message."""
    try:
        return read(submitted(values, block, action)), {}
    except (ValueError, InvalidCommand) as error:
        return None, {block: str(error)}


def extend_modal(
    rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str, channel_id: str
) -> ViewJson:
    """Ask how much longer the stage's window should run."""
    plan_track = plan.track(track)
    spec = plan_track.stage(stage)
    ends = rollout.track(track).stage(stage).window_ends_at
    until = f", until {slack_time(ends)} now" if ends is not None else ""
    metadata = ExtendMetadata(
        rollout_id=rollout.id,
        track=track,
        stage=stage,
        version=rollout.version,
        channel_id=channel_id,
    )
    return one_field_modal(
        "Extend window",
        f"*{rollout.tag}* · {plan_track.label} · *{spec.label}* observes{until}. "
        "The gate decides when the window ends.",
        block=DURATION_BLOCK,
        action=DURATION_ACTION,
        label="Extend the window by",
        hint=f"A duration: {HINT} (at most 30 days).",
        placeholder="45m",
        max_length=_MAX_DURATION_TEXT,
        submit="Extend",
        callback_id=Callback.EXTEND,
        private_metadata=metadata.encode(),
    )


def parse_extension(values: Mapping[str, Any]) -> tuple[timedelta | None, dict[str, str]]:
    """The duration typed in the extend modal, or Slack's `errors` keyed by block id."""
    return parse_one(values, DURATION_BLOCK, DURATION_ACTION, parse_duration)


def redeploy_modal(offer: RedeployOffer, *, channel_id: str) -> ViewJson:
    """The confirm dialog of a redeploy: which tag goes back in, which it replaces, and how."""
    how = (
        f"the rollback workflow *{offer.workflow}* is dispatched with `{offer.tag}`"
        if offer.workflow is not None
        else f"a new rollout of `{offer.tag}` starts, with its own preflight and stages"
    )
    metadata = RedeployMetadata(
        rollout_id=offer.rollout_id, track=offer.track, tag=offer.tag, channel_id=channel_id
    )
    blocks = [
        section(
            f":rewind: Roll {offer.track_label} back from `{offer.replaced_tag}` to "
            f"`{offer.tag}`, the last good release before it?"
        ),
        section(f"On confirm, {how}. `{offer.replaced_tag}` stays live until it lands."),
    ]
    if offer.still:
        still = " and ".join(offer.still)
        blocks.append(
            section(
                f":warning: {still} completed `{offer.replaced_tag}` too and stays on it: "
                f"this workflow puts back {offer.track_label} only."
            )
        )
    return modal(
        "Roll back?",
        blocks,
        submit=f"Redeploy {offer.tag}",
        callback_id=Callback.REDEPLOY,
        private_metadata=metadata.encode(),
    )


def link_modal(rollout: Rollout, plan: RolloutPlan, *, channel_id: str) -> ViewJson:
    """Ask for the run (its page or number) to follow for a dispatch the bot could not identify."""
    metadata = LinkMetadata(rollout_id=rollout.id, channel_id=channel_id)
    return one_field_modal(
        "Link a run",
        f"The run of `{rollout.tag}`'s dispatch could not be identified. If *{plan.workflow.name}* "
        "did start, name its run: the bot follows it and dispatches nothing again.",
        block=LINK_BLOCK,
        action=LINK_ACTION,
        label="Run URL or number",
        hint=f"A run of {plan.workflow.file} on {plan.workflow.ref}, started after this "
        "preflight and still going: https://HOST/OWNER/REPO/actions/runs/ID",
        placeholder="https://github.com/owner/repo/actions/runs/123",
        max_length=_MAX_LINK_TEXT,
        submit="Link",
        callback_id=Callback.LINK_RUN,
        private_metadata=metadata.encode(),
    )


def parse_link(values: Mapping[str, Any]) -> tuple[RunReference | None, dict[str, str]]:
    """The run named in the Link a run… form, or Slack's `errors` keyed by block id."""
    return parse_one(values, LINK_BLOCK, LINK_ACTION, parse_run_reference)


def override_modal(rollout: Rollout, *, channel_id: str) -> ViewJson:
    """Ask an approver's reason to override the freeze for this rollout's dispatch."""
    metadata = OverrideMetadata(
        rollout_id=rollout.id, version=rollout.version, channel_id=channel_id
    )
    about = (
        f"Deploys are frozen. Overriding the freeze lets `{rollout.tag}` be dispatched until "
        "the freeze ends; Dispatch then goes on at once (unless the plan's two-person rule "
        "needs another approver to click it)."
    )
    return _reason_modal(about, "Override and dispatch", Callback.OVERRIDE_FREEZE, metadata)


def adopt_override_modal(card: UnfollowedRun, *, channel_id: str) -> ViewJson:
    """Ask an approver's reason to override the freeze and adopt a run the bot did not start."""
    metadata = AdoptOverrideMetadata(run_id=card.run_id, channel_id=channel_id)
    about = (
        f"Deploys are frozen. Overriding the freeze adopts run {card.run_id} as a rollout of "
        f"`{shown(card.tag or card.ref)}` at once: its waiting stage is approved, and you "
        "confirm its feature flags are ready."
    )
    return _reason_modal(about, "Override and adopt", Callback.OVERRIDE_ADOPT, metadata)


def _reason_modal(
    about: str,
    submit: str,
    callback: Callback,
    metadata: OverrideMetadata | AdoptOverrideMetadata,
) -> ViewJson:
    """The form asking the reason to deploy through a freeze."""
    return one_field_modal(
        "Override freeze",
        about,
        block=REASON_BLOCK,
        action=REASON_ACTION,
        label="Why deploy through the freeze?",
        hint="Said in the thread and kept in the audit trail.",
        placeholder="hotfix for INC-123",
        max_length=_MAX_REASON_TEXT,
        submit=submit,
        callback_id=callback,
        private_metadata=metadata.encode(),
    )


def parse_reason(values: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The override's reason as typed (a form's value comes raw, and is kept so: the thread
    escapes it when it says it), or Slack's `errors` keyed by block id (a reason is
    required)."""
    return parse_one(values, REASON_BLOCK, REASON_ACTION, _reason)


def _reason(text: str) -> str:
    reason = clean_text(text).strip()
    if not reason:
        raise ValueError("An override needs a reason.")
    if TOKEN_SHAPE.search(reason):  # said in the thread and kept
        raise ValueError(PASTED_CREDENTIAL)
    return reason


def notice_modal(text: str) -> ViewJson:
    """A submitted form the bot cannot act on, turned into the reason (nothing was changed)."""
    return modal("Nothing changed", [section(text)], close="Close")

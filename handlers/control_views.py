"""Block Kit of the controls' forms, as pure functions: the custom window extension (a typed
duration, validated with the plan's duration rules) and the redeploy confirm dialog, which
names the tag going back in and the tag it replaces."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bot.controls import RedeployOffer
from bot.domain.durations import HINT, parse_duration
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout, slack_time
from handlers.actions import Callback, ExtendMetadata, RedeployMetadata
from handlers.views import Block

DURATION_BLOCK = "duration"
DURATION_ACTION = "duration"
_MAX_DURATION_TEXT = 40


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def extend_modal(
    rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str, channel_id: str
) -> dict[str, Any]:
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
    return {
        "type": "modal",
        "callback_id": str(Callback.EXTEND),
        "private_metadata": metadata.encode(),
        "title": _plain("Extend window"),
        "submit": _plain("Extend"),
        "close": _plain("Cancel"),
        "blocks": [
            _section(
                f"*{rollout.tag}* · {plan_track.label} · *{spec.label}* observes{until}. "
                "The gate decides when the window ends."
            ),
            {
                "type": "input",
                "block_id": DURATION_BLOCK,
                "label": _plain("Extend the window by"),
                "hint": _plain(f"A duration: {HINT} (at most 30 days)."),
                "element": {
                    "type": "plain_text_input",
                    "action_id": DURATION_ACTION,
                    "max_length": _MAX_DURATION_TEXT,
                    "placeholder": _plain("45m"),
                },
            },
        ],
    }


def parse_extension(values: Mapping[str, Any]) -> tuple[timedelta | None, dict[str, str]]:
    """The duration typed in the extend modal, or Slack's `errors` keyed by block id."""
    block = values.get(DURATION_BLOCK)
    entry = block.get(DURATION_ACTION) if isinstance(block, Mapping) else None
    text = entry.get("value") if isinstance(entry, Mapping) else None
    try:
        return parse_duration(text if isinstance(text, str) else ""), {}
    except ValueError as error:
        return None, {DURATION_BLOCK: str(error)}


def redeploy_modal(offer: RedeployOffer, *, channel_id: str) -> dict[str, Any]:
    """The confirm dialog of a redeploy: which tag goes back in, which it replaces, and how."""
    how = (
        f"the rollback workflow *{offer.workflow}* is dispatched with `{offer.tag}`"
        if offer.workflow is not None
        else f"a new rollout of `{offer.tag}` starts, with its own preflight and stages"
    )
    metadata = RedeployMetadata(
        rollout_id=offer.rollout_id, track=offer.track, tag=offer.tag, channel_id=channel_id
    )
    return {
        "type": "modal",
        "callback_id": str(Callback.REDEPLOY),
        "private_metadata": metadata.encode(),
        "title": _plain("Roll back?"),
        "submit": _plain(f"Redeploy {offer.tag}"[:24]),
        "close": _plain("Cancel"),
        "blocks": [
            _section(
                f":rewind: Roll {offer.track_label} back from `{offer.replaced_tag}` to "
                f"`{offer.tag}`, the last release that completed before it?"
            ),
            _section(f"On confirm, {how}. `{offer.replaced_tag}` stays live until it lands."),
        ],
    }


def notice_modal(text: str) -> dict[str, Any]:
    """A submitted form the bot cannot act on, turned into the reason (nothing was changed)."""
    return {
        "type": "modal",
        "title": _plain("Nothing changed"),
        "close": _plain("Close"),
        "blocks": [_section(text)],
    }

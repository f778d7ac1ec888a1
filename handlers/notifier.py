"""What the release channel sees: one card per rollout, updated in place, and its thread.

A Slack failure never stops a rollout: the state is already saved and the next change
redraws the card, so errors here are logged, not raised.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from handlers import rollout_views
from handlers.actions import Action, ButtonValue

log = logging.getLogger(__name__)


def mention(approver: str) -> str:
    """A Slack mention of a user id or a user-group id."""
    return f"<!subteam^{approver}>" if approver.startswith("S") else f"<@{approver}>"


class SlackNotifier:
    def __init__(self, client: AsyncWebClient, *, approvers: tuple[str, ...]) -> None:
        self._client = client
        self._approvers = approvers

    async def publish(self, rollout: Rollout, plan: RolloutPlan) -> str | None:
        blocks = rollout_views.rollout_card(rollout, plan)
        text = rollout_views.rollout_text(rollout, plan)
        try:
            if rollout.message_ts is None:
                posted = await self._client.chat_postMessage(
                    channel=rollout.channel_id, blocks=blocks, text=text
                )
                return str(posted["ts"])
            await self._client.chat_update(
                channel=rollout.channel_id, ts=rollout.message_ts, blocks=blocks, text=text
            )
        except SlackApiError as error:
            log.warning(
                "could not draw the card of %s: %s", rollout.id, error.response.get("error")
            )
        return rollout.message_ts

    async def announce(self, rollout: Rollout, text: str) -> None:
        try:
            await self._client.chat_postMessage(
                channel=rollout.channel_id, thread_ts=rollout.message_ts, text=text
            )
        except SlackApiError as error:
            log.warning(
                "could not post to the thread of %s: %s", rollout.id, error.response.get("error")
            )

    async def ask_for_figures(
        self, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str
    ) -> None:
        spec = plan.track(track).stage(stage)
        who = " ".join(mention(a) for a in self._approvers)
        text = (
            f"{who} the window of *{spec.label}* ({plan.track(track).label}) has ended. "
            "Enter the observed rates so the gate can decide."
        )
        value = ButtonValue(rollout_id=rollout.id, track=track, stage=stage).encode()
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": Action.ENTER_FIGURES,
                        "text": {"type": "plain_text", "text": "Enter figures"},
                        "style": "primary",
                        "value": value,
                    }
                ],
            },
        ]
        try:
            await self._client.chat_postMessage(
                channel=rollout.channel_id, thread_ts=rollout.message_ts, text=text, blocks=blocks
            )
        except SlackApiError as error:
            log.warning(
                "could not ask for figures on %s: %s", rollout.id, error.response.get("error")
            )

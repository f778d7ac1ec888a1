"""What the release channel sees: one card per rollout, updated in place, and its thread.

A Slack failure never stops a rollout: the state is already saved and the next change
redraws the card, so errors here are logged, not raised.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.charts import CHARTS_OFF, MetricChart, charts_enabled, gate_charts, render_png
from bot.domain.gate import GateVerdict
from bot.domain.metrics import Reading
from bot.domain.plan import Notifications, RolloutPlan
from bot.domain.rollout import Rollout
from handlers import gate_views, rollout_views
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

    async def announce(
        self,
        rollout: Rollout,
        text: str,
        *,
        notifications: Notifications | None = None,
        failure: bool = False,
        detail: bool = False,
    ) -> None:
        if notifications is not None and not notifications.shows(failure=failure, detail=detail):
            return
        try:
            await self._client.chat_postMessage(
                channel=rollout.channel_id, thread_ts=rollout.message_ts, text=text
            )
        except SlackApiError as error:
            log.warning(
                "could not post to the thread of %s: %s", rollout.id, error.response.get("error")
            )
        elsewhere = notifications.failure_channel if notifications is not None else None
        if failure and elsewhere and elsewhere != rollout.channel_id:
            await self._post_failure(rollout, text, elsewhere)

    async def _post_failure(self, rollout: Rollout, text: str, channel: str) -> None:
        """A failure, in the plan's failure channel, with a link to the rollout's thread."""
        where = f"<#{rollout.channel_id}>"
        if rollout.message_ts is not None:
            message = rollout.message_ts.replace(".", "")
            link = f"https://slack.com/archives/{rollout.channel_id}/p{message}"
            where = f"<{link}|the thread in {where}>"
        try:
            await self._client.chat_postMessage(
                channel=channel, text=f"*Rollout `{rollout.tag}`* ({where}): {text}"
            )
        except SlackApiError as error:
            log.warning(
                "could not post a failure of %s to %s: %s",
                rollout.id,
                channel,
                error.response.get("error"),
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

    async def post_gate_card(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        *,
        track: str,
        stage: str,
        verdict: GateVerdict,
        reading: Reading | None,
    ) -> None:
        plan_track = plan.track(track)
        label = plan_track.stage(stage).label
        now = datetime.now(UTC)
        charts = gate_charts(rollout, plan, track=track, verdict=verdict, reading=reading, now=now)
        enabled = charts_enabled()
        note = None
        if charts and not enabled:
            note = CHARTS_OFF
        elif reading is not None and reading.metrics and not charts:
            note = "No chart: the source gave no series over the rollout."
        blocks = gate_views.gate_card(
            verdict=verdict,
            reading=reading,
            stage_label=label,
            track_label=plan_track.label,
            window=(reading.window if reading else None) or _stage_window(rollout, track, stage),
            chart_note=note,
        )
        try:
            await self._client.chat_postMessage(
                channel=rollout.channel_id,
                thread_ts=rollout.message_ts,
                text=gate_views.gate_card_text(verdict, label),
                blocks=blocks,
            )
            if charts and enabled:
                await self._upload_charts(rollout, charts, label)
        except SlackApiError as error:
            log.warning(
                "could not post the gate card of %s: %s", rollout.id, error.response.get("error")
            )

    async def _upload_charts(self, rollout: Rollout, charts: list[MetricChart], label: str) -> None:
        """One PNG per chart, rendered off the event loop, shared in the thread (upload v2)."""
        images = await asyncio.gather(*(asyncio.to_thread(render_png, c) for c in charts))
        await self._client.files_upload_v2(
            channel=rollout.channel_id,
            thread_ts=rollout.message_ts,
            initial_comment=f"{label} gate: the gated metrics over the rollout so far.",
            file_uploads=[
                {
                    "file": image,
                    "filename": chart.filename,
                    "title": chart.title,
                    "alt_txt": f"{chart.title}, with the {chart.limit_label} line",
                }
                for chart, image in zip(charts, images, strict=True)
            ],
        )


def _stage_window(rollout: Rollout, track: str, stage: str) -> tuple[datetime, datetime] | None:
    observed = rollout.track(track).stage(stage)
    if observed.window_started_at is None or observed.window_ends_at is None:
        return None
    return observed.window_started_at, observed.window_ends_at

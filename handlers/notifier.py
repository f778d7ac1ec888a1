"""What the release channel sees: one card per rollout, updated in place, and its thread.

The outbox (`bot.outbox`) calls this adapter to deliver what a state change wrote. Every
Slack failure comes out as `DeliveryFailed`: Slack's 429 with its Retry-After, network errors,
timeouts and 5xx as worth retrying, Slack's refusals (a channel the bot is not in, a message
Slack will not take) as permanent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.charts import CHARTS_OFF, MetricChart, charts_enabled, gate_charts, render_png
from bot.domain.gate import GateVerdict
from bot.domain.metrics import Reading
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.ports import DeliveryFailed
from handlers import gate_views, rollout_views
from handlers.actions import Action, ButtonValue

log = logging.getLogger(__name__)

T = TypeVar("T")

# Slack's own troubles (its documented "try again" errors); any other error is a refusal.
_TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def mention(approver: str) -> str:
    """A Slack mention of a user id or a user-group id."""
    return f"<!subteam^{approver}>" if approver.startswith("S") else f"<@{approver}>"


async def delivered(call: Awaitable[T]) -> T:
    """Await a Web API call; whatever keeps Slack from taking it raises DeliveryFailed."""
    try:
        return await call
    except SlackApiError as error:
        raise _failure(error) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryFailed(f"network error: {type(error).__name__}") from None


def _failure(error: SlackApiError) -> DeliveryFailed:
    response = error.response
    code = str(response.get("error") or "unknown")
    status = int(response.status_code)
    if status == 429 or code == "ratelimited":
        wait = _retry_after(response.headers)
        return DeliveryFailed(f"Slack rate limit ({code})", retry_after=wait)
    transient = status >= 500 or code in _TRANSIENT
    return DeliveryFailed(f"Slack answered {status} {code}", permanent=not transient)


def _retry_after(headers: Any) -> float:
    """Seconds Slack asked to wait (Retry-After); 1 s, Slack's usual answer, when unreadable."""
    for name in ("Retry-After", "retry-after"):
        value = headers.get(name) if headers is not None else None
        if isinstance(value, list):
            value = value[0] if value else None
        try:
            return max(0.0, float(str(value)))
        except ValueError:
            continue
    return 1.0


class SlackNotifier:
    def __init__(self, client: AsyncWebClient, *, approvers: tuple[str, ...]) -> None:
        self._client = client
        self._approvers = approvers

    async def publish(self, rollout: Rollout, plan: RolloutPlan) -> str:
        blocks = rollout_views.rollout_card(rollout, plan)
        text = rollout_views.rollout_text(rollout, plan)
        if rollout.message_ts is None:
            posted = await delivered(
                self._client.chat_postMessage(channel=rollout.channel_id, blocks=blocks, text=text)
            )
            return str(posted["ts"])
        await delivered(
            self._client.chat_update(
                channel=rollout.channel_id, ts=rollout.message_ts, blocks=blocks, text=text
            )
        )
        return rollout.message_ts

    async def announce(self, rollout: Rollout, text: str) -> None:
        await delivered(
            self._client.chat_postMessage(
                channel=rollout.channel_id, thread_ts=rollout.message_ts, text=text
            )
        )

    async def post_failure(self, rollout: Rollout, text: str, *, channel: str) -> None:
        where = f"<#{rollout.channel_id}>"
        if rollout.message_ts is not None:
            message = rollout.message_ts.replace(".", "")
            link = f"https://slack.com/archives/{rollout.channel_id}/p{message}"
            where = f"<{link}|the thread in {where}>"
        await delivered(
            self._client.chat_postMessage(
                channel=channel, text=f"*Rollout `{rollout.tag}`* ({where}): {text}"
            )
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
        await delivered(
            self._client.chat_postMessage(
                channel=rollout.channel_id, thread_ts=rollout.message_ts, text=text, blocks=blocks
            )
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
        await delivered(
            self._client.chat_postMessage(
                channel=rollout.channel_id,
                thread_ts=rollout.message_ts,
                text=gate_views.gate_card_text(verdict, label),
                blocks=blocks,
            )
        )
        if charts and enabled:
            try:
                await delivered(self._upload_charts(rollout, charts, label))
            except DeliveryFailed as failure:
                # The verdict and its figures are in the thread; the charts only illustrate
                # them, and sending the card again for them would say the verdict twice.
                log.warning("could not upload the charts of %s: %s", rollout.id, failure.reason)

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

"""What the release channel sees: one card per rollout, updated in place, and its thread.

The outbox (`bot.services.outbox`) calls this adapter to deliver what a state change wrote. Every
Slack failure comes out as `DeliveryFailed` (`bot.adapters.slack.delivery` says which are worth
retrying).

A message's charts (a gate card's, a summary's timeline) follow it: drawn and uploaded in the
background once it is posted, so neither the rest of the outbox nor a person's answer waits for
a drawing; `close` waits for those still on their way. A chart not shared is logged, not
retried (the message it illustrates is in the thread).

Every post carries a marker in its message metadata: the card its rollout's id, a thread line
(or a failure elsewhere) its outbox message's id. A retry whose earlier attempt may have reached
Slack looks for the marker (`conversations.history` / `conversations.replies` with
`include_all_metadata`) before posting again, so a lost answer does not post twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import ButtonElement
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.adapters.chart_worker import ChartFailed, ChartWorker
from bot.adapters.charts import (
    CHARTS_OFF,
    MetricChart,
    TimelineChart,
    charts_enabled,
    gate_charts,
    render_png,
    render_timeline_png,
    timeline_chart,
)
from bot.adapters.slack import gate_views, messages
from bot.adapters.slack.actions import Action, ButtonValue
from bot.adapters.slack.blocks import BlockJson, actions, as_json, button, section
from bot.adapters.slack.delivery import delivered, uploaded
from bot.adapters.slack.freeze_all_words import lanes_refused_text, lanes_text
from bot.adapters.slack.limits import MESSAGE_TEXT, clip
from bot.adapters.slack.looks import EarlierPosts
from bot.adapters.slack.refusal_words import refusal_text
from bot.adapters.slack.rollout_card import rerun_button, rollout_card, rollout_text
from bot.adapters.slack.summary_views import summary_text
from bot.adapters.slack.unfollowed_card import unfollowed_card, unfollowed_text
from bot.domain.gate import GateVerdict
from bot.domain.metrics import Reading
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Event, Rollout, TrackState
from bot.domain.rollout.events import FailureJobEnded
from bot.domain.rollout_summary import RolloutSummary
from bot.domain.unfollowed_runs import RunFate, UnfollowedRun
from bot.services.ports import BeforePost, DeliveryFailed, LaneNotice, RefusalNotice

log = logging.getLogger(__name__)

CARD_EVENT = "rollout_bot_card"
"""The metadata `event_type` of a rollout's card (payload: its `rollout_id`)."""
RUN_EVENT = "rollout_bot_unfollowed_run"
"""The metadata `event_type` of the card of a run the bot did not start (payload: `run_id`)."""
POST_EVENT = "rollout_bot_outbox"
"""The metadata `event_type` of every other post (payload: `rollout_id`, `outbox_id`)."""


def mention(approver: str) -> str:
    """A Slack mention of a user id or a user-group id."""
    return f"<!subteam^{approver}>" if approver.startswith("S") else f"<@{approver}>"


class SlackNotifier:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        approvers: Mapping[str, tuple[str, ...]],
        charts: ChartWorker,
    ) -> None:
        self._client = client
        self._charts = charts
        self._approvers = approvers
        """Each service's approvers, mentioned when a window ends waiting for figures."""
        self._named = len(approvers) > 1
        """Whether a card names its service (the bot releases several)."""
        self._following: set[asyncio.Task[None]] = set()
        """Charts on their way after the message they illustrate (`_follow`)."""
        self._find = EarlierPosts().find

    async def close(self, *, grace: float) -> None:
        """Wait `grace` seconds at most for the charts on their way, then stop them."""
        if not self._following:
            return
        _, late = await asyncio.wait(self._following, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def publish(self, rollout: Rollout, plan: RolloutPlan, before_post: BeforePost) -> str:
        blocks = rollout_card(rollout, plan, named=self._named)
        text = rollout_text(rollout, plan)
        await before_post()
        if rollout.message_ts is not None:
            try:
                await delivered(
                    self._client.chat_update(
                        channel=rollout.channel_id, ts=rollout.message_ts, blocks=blocks, text=text
                    )
                )
                return rollout.message_ts
            except DeliveryFailed as failure:
                if not failure.card_gone:
                    raise
                log.warning("the card of %s was deleted; posting it again", rollout.id)
                await before_post()  # the update may have taken a request's timeout
        posted = await delivered(
            self._client.chat_postMessage(
                channel=rollout.channel_id,
                blocks=blocks,
                text=text,
                metadata=_marker(CARD_EVENT, rollout_id=rollout.id),
            )
        )
        return str(posted["ts"])

    async def draw_unfollowed(
        self, card: UnfollowedRun, *, channel: str, before_post: BeforePost
    ) -> None:
        blocks = unfollowed_card(card, named=self._named)
        text = unfollowed_text(card, named=self._named)
        found = await self._at_top(channel, RUN_EVENT, since=card.asked_at, run_id=card.run_id)
        if found is not None and card.fate is RunFate.WAITING:
            return  # a retried first post, delivered after the answer: the card stays decided
        await before_post()
        if found is None:
            marker = _marker(RUN_EVENT, run_id=card.run_id)
            await delivered(
                self._client.chat_postMessage(
                    channel=channel, blocks=blocks, text=text, metadata=marker
                )
            )
            return
        await delivered(
            self._client.chat_update(channel=channel, ts=found["ts"], blocks=blocks, text=text)
        )

    async def find_card(self, rollout: Rollout) -> str | None:
        found = await self._at_top(
            rollout.channel_id, CARD_EVENT, since=rollout.created_at, rollout_id=rollout.id
        )
        return None if found is None else str(found["ts"])

    async def posted(self, rollout: Rollout, *, key: int, channel: str, since: datetime) -> bool:
        args: dict[str, Any] = {"channel": channel}
        read: Callable[..., Awaitable[AsyncSlackResponse]] = self._client.conversations_history
        in_thread = channel == rollout.channel_id
        if in_thread:
            args["ts"] = rollout.message_ts
            read = self._client.conversations_replies
        found = await self._find(
            read,
            lambda data: data.get("rollout_id") == rollout.id and data.get("outbox_id") == key,
            event_type=POST_EVENT,
            since=since,
            looking_for=key,
            newest_first=not in_thread,
            **args,
        )
        return found is not None

    async def _at_top(
        self, channel: str, event_type: str, *, since: datetime, **payload: str | int
    ) -> dict[str, Any] | None:
        """The post at the top of `channel` whose marker is `event_type` with `payload`."""
        return await self._find(
            self._client.conversations_history,
            lambda data: all(data.get(name) == value for name, value in payload.items()),
            event_type=event_type,
            since=since,
            looking_for=tuple(sorted(payload.items())),
            newest_first=True,
            channel=channel,
        )

    async def tell_refused(self, notice: RefusalNotice, before_post: BeforePost) -> None:
        text = refusal_text(
            notice.refusing, notice.refusal, notice.undelivered, replies_only=notice.replies_only
        )
        await self._post_once(notice, text, before_post)

    async def tell_lane(self, notice: LaneNotice, before_post: BeforePost) -> None:
        text = lanes_text(notice.told)
        await self._post_once(notice, text, before_post)

    async def tell_asker(self, notice: LaneNotice, *, refusal: str) -> None:
        told, text = notice.told, lanes_refused_text(notice.told, notice.channel, refusal)
        await delivered(
            self._client.chat_postEphemeral(channel=told.typed_in, user=told.actor, text=text)
        )

    async def _post_once(
        self, notice: RefusalNotice | LaneNotice, text: str, before_post: BeforePost
    ) -> None:
        """Post `text` at the top of the notice's channel as its outbox message, unless an
        earlier attempt did (looked for since its `look_since`, when given)."""
        channel, key, since = notice.channel, notice.key, notice.look_since
        if since and await self._at_top(channel, POST_EVENT, since=since, outbox_id=key):
            return
        await before_post()
        marker = _marker(POST_EVENT, outbox_id=key)
        await delivered(self._client.chat_postMessage(channel=channel, text=text, metadata=marker))

    async def announce(self, rollout: Rollout, told: Event | str, *, key: int) -> None:
        text = clip(told if isinstance(told, str) else messages.render(told), MESSAGE_TEXT)
        again = _rerun_offered(rollout, told)
        blocks = None if again is None else as_json([section(text), *actions([again])])
        await self._post_in_thread(rollout, key, text=text, blocks=blocks)

    async def post_failure(
        self, rollout: Rollout, told: Event | str, *, channel: str, key: int
    ) -> None:
        text = clip(told if isinstance(told, str) else messages.render(told), MESSAGE_TEXT // 2)
        where = messages.channel(rollout.channel_id)
        if rollout.message_ts is not None:  # a link's label takes no mention
            thread = messages.message_link(rollout.channel_id, rollout.message_ts, "the thread")
            where = f"{thread} in {where}"
        await delivered(
            self._client.chat_postMessage(
                channel=channel,
                text=f"*Rollout `{rollout.tag}`* ({where}): {text}",
                metadata=_post_marker(rollout, key),
            )
        )

    async def ask_for_figures(
        self, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str, key: int
    ) -> None:
        spec = plan.track(track).stage(stage)
        who = " ".join(mention(a) for a in self._approvers.get(rollout.service, ()))
        text = (
            f"{who} the window of *{spec.label}* ({plan.track(track).label}) has ended. "
            "Enter the observed rates so the gate can decide."
        )
        value = ButtonValue(rollout_id=rollout.id, track=track, stage=stage).encode()
        figures = button("Enter figures", Action.ENTER_FIGURES, value, style="primary")
        blocks = as_json([section(text), *actions([figures])])
        await self._post_in_thread(rollout, key, text=text, blocks=blocks)

    async def post_gate_card(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        *,
        track: str,
        stage: str,
        verdict: GateVerdict,
        reading: Reading | None,
        key: int,
        window: tuple[datetime, datetime] | None = None,
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
            window=(reading.window if reading else None)
            or window
            or _stage_window(rollout, track, stage),
            chart_note=note,
        )
        await self._post_in_thread(
            rollout, key, text=gate_views.gate_card_text(verdict, label), blocks=blocks
        )
        if charts and enabled:
            self._follow("charts", rollout, self._upload_charts(rollout, charts, label))

    async def post_summary(self, rollout: Rollout, summary: RolloutSummary, *, key: int) -> None:
        await self._post_in_thread(rollout, key, text=clip(summary_text(summary), MESSAGE_TEXT))
        if charts_enabled():
            self._follow(
                "timeline", rollout, self._upload_timeline(rollout, timeline_chart(summary))
            )

    async def _post_in_thread(
        self, rollout: Rollout, key: int, *, text: str, blocks: list[BlockJson] | None = None
    ) -> None:
        """Post outbox message `key` in the rollout's thread, marked so that a retry finds it."""
        await delivered(
            self._client.chat_postMessage(
                channel=rollout.channel_id,
                thread_ts=rollout.message_ts,
                text=text,
                blocks=blocks,
                metadata=_post_marker(rollout, key),
            ),
            reply=True,
        )

    def _follow(self, what: str, rollout: Rollout, upload: Coroutine[Any, Any, None]) -> None:
        """Draw and share a message's charts after it, in the background: the outbox goes on
        with the next message (and the caller to its answer) without waiting for a drawing."""
        task = asyncio.create_task(_shared(what, rollout, upload))
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def _upload_timeline(self, rollout: Rollout, chart: TimelineChart) -> None:
        (image,) = await self._drawn(render_timeline_png, [chart])
        await self._client.files_upload_v2(
            channel=rollout.channel_id,
            thread_ts=rollout.message_ts,
            initial_comment=f"{rollout.tag}: the stages over time, each gated figure, its limit.",
            file=image,
            filename=chart.filename,
            title=chart.title,
            alt_txt=f"{chart.title}: stages as bands, gated figures against their limits",
        )

    async def _upload_charts(self, rollout: Rollout, charts: list[MetricChart], label: str) -> None:
        """One PNG per chart, drawn in the chart worker, shared in the thread (upload v2)."""
        images = await self._drawn(render_png, charts)
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

    async def _drawn(self, draw: Callable[[Any], bytes], charts: Sequence[Any]) -> list[bytes]:
        """Each chart drawn in the worker; one not drawn fails its upload (logged, not retried)."""
        try:
            return await asyncio.gather(*(self._charts.run(draw, chart) for chart in charts))
        except ChartFailed as failure:
            raise DeliveryFailed(f"chart not drawn: {failure}", permanent=True) from None


async def _shared(what: str, rollout: Rollout, upload: Coroutine[Any, Any, None]) -> None:
    """Share a message's charts; ones not shared are logged, not retried."""
    try:
        await uploaded(upload)
    except DeliveryFailed as failure:
        # The message is in the thread; the charts only illustrate it, and sending it
        # again for them would say it twice.
        log.warning("could not upload the %s of %s: %s", what, rollout.id, failure.reason)
    except Exception:
        # Nothing awaits this task to raise to: said here, with its traceback.
        log.exception("the %s of %s were not shared", what, rollout.id)


def _rerun_offered(rollout: Rollout, told: Event | str) -> ButtonElement | None:
    """Re-run under the message that tells a failure job ran and failed (not one GitHub
    skipped, and not one told before the attempt was kept with it)."""
    if not isinstance(told, FailureJobEnded) or not told.track_key or not told.attempt:
        return None
    if told.outcome in (None, "skipped") or told.ended is not TrackState.FAILED:
        return None
    return rerun_button(
        rollout.id,
        told.track_key,
        told.attempt,
        job=told.job,
        label=told.track,
        desktop=told.desktop,
    )


def _marker(event_type: str, **payload: str | int) -> dict[str, Any]:
    return {"event_type": event_type, "event_payload": payload}


def _post_marker(rollout: Rollout, key: int) -> dict[str, Any]:
    return _marker(POST_EVENT, rollout_id=rollout.id, outbox_id=key)


def _stage_window(rollout: Rollout, track: str, stage: str) -> tuple[datetime, datetime] | None:
    observed = rollout.track(track).stage(stage)
    if observed.observed_since is None or observed.window_ends_at is None:
        return None
    return observed.observed_since, observed.window_ends_at

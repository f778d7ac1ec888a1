"""The harness acting as a person in Slack: signed commands, clicks and modal submissions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict, Unpack

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from handlers.app_keys import ACKS
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from sandbox.render import render_message
from sandbox.signing import (
    block_actions_payload,
    form_payload,
    slack_signature_headers,
    slash_command_body,
    view_submission_payload,
)
from sandbox.slack import ChannelMessage, ResponseUrlPost, SlackTestServer
from sandbox.slack_variation import interaction

Task = asyncio.Task[Any]

ANSWER_WAIT = 1.5
"""Seconds a click waits for an ephemeral answer when it cannot watch the bot's work (nor
count it on a `serve` process's `/metrics`)."""
WORK_WAIT = 120.0
"""Seconds at most a click waits while the bot in this process still works on a request it
acknowledged (a loaded machine): the work's end, not a moment, says no answer is coming. Only a
hung request reaches it (under pytest's 180 s): a click whose work waits on another person's
claim took more than 30 s at a load of 15."""


class CommandPlace(TypedDict, total=False):
    """Who types a command, in which channel, through which bot (`send_command`'s defaults)."""

    user: str
    channel: str
    replica: str | None


class ClickPlace(TypedDict, total=False):
    """Who clicks, in which channel, on which message, with which value (`click_body`'s
    defaults)."""

    user: str
    channel: str
    message: ChannelMessage | None
    value: str | None


class SlackUser:
    """`Sandbox`'s commands, clicks and modal submissions (a mixin), and the card they act on."""

    slack: SlackTestServer
    url: str
    _http: aiohttp.ClientSession | None
    _runner: web.AppRunner | None

    async def _post(self, body: str, *, url: str | None = None) -> tuple[int, str, set[Task]]:
        """POST a signed request; returns the status, the answer's body and the work the bot
        in this process started on it (none for a `serve` process: its work cannot be
        watched)."""
        assert self._http is not None
        headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
        before = asyncio.all_tasks()
        target = f"{url or self.url}/slack/events"
        async with self._http.post(target, data=body, headers=headers) as r:
            status, text = r.status, await r.text()
        self.slack.ack_received(text)
        if self._runner is None or url not in (None, self.url):
            return status, text, set()
        work = {task for task in asyncio.all_tasks() - before if not _serving(task)}
        return status, text, work

    def _interaction_body(self, payload: Mapping[str, Any]) -> str:
        """A click's or form's body, as the variation mode's Slack sends it when it is on."""
        return form_payload(payload if self.slack.variation is None else interaction(payload))

    async def post_signed(self, body: str) -> int:
        """POST a body of the test's own making, signed as Slack signs it; the status."""
        status, _, _ = await self._post(body)
        return status

    async def _answer(
        self,
        url: str,
        work: set[Task],
        *,
        ended: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[ResponseUrlPost]:
        """The posts to the response `url` once the bot answered, or once its `work` on the
        request ended without an answer (on a `serve` process: once it counted the click as
        `ended`, however long a loaded machine makes that); `ANSWER_WAIT` at most where the
        harness can neither watch nor count the work, unless the bot in this process is still
        working on what it acknowledged (`WORK_WAIT` at most)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not (posts := self.slack.responses(url)):
            waited = loop.time() - started
            if (
                (work and all(task.done() for task in work))
                or waited >= WORK_WAIT
                or (waited >= ANSWER_WAIT and ended is None and not self._working())
            ):
                return self.slack.responses(url)
            if ended is None:
                await asyncio.sleep(0.01)
            elif await ended():
                return self.slack.responses(url)
            else:  # a scrape reads the process's database: looked at again on news or soon
                await self.slack.changed(timeout=0.05)
        return posts

    def _working(self) -> bool:
        """Whether the bot in this process works on a request it acknowledged."""
        return self._runner is not None and self._runner.app[ACKS].work_under_way > 0

    async def command(
        self, text: str, *, answered_within: float = 30.0, **place: Unpack[CommandPlace]
    ) -> str:
        """Type `/rollout <text>` (through `replica`, a URL of `start_replica`, or the first
        bot); returns the ephemeral answer as the user sees it, which comes within
        `answered_within` seconds."""
        url = await self.send_command(text, **place)
        (post,) = await self.slack.wait_for_response(url, timeout=answered_within)
        return _shown(post.body)

    async def send_command(
        self,
        text: str,
        *,
        user: str = RELEASE_MANAGER,
        channel: str = RELEASE_CHANNEL,
        replica: str | None = None,
    ) -> str:
        """Type `/rollout <text>` and see it acknowledged; returns its response_url (where the
        answer comes, `slack.responses(url)`)."""
        url = self.slack.new_response_url(channel=channel, user=user)
        body = slash_command_body(text=text, user_id=user, channel_id=channel, response_url=url)
        status, _, _ = await self._post(body, url=replica)
        assert status == 200, f"/rollout {text} answered HTTP {status}"
        return url

    def click_body(
        self,
        action_id: str,
        *,
        user: str = RELEASE_MANAGER,
        channel: str = RELEASE_CHANNEL,
        message: ChannelMessage | None = None,
        value: str | None = None,
        trigger_id: str | None = None,
    ) -> tuple[str, str]:
        """The block_actions body of a click on `message` (default: the newest rollout card),
        with a fresh response_url of its own: (response_url, body), to sign and post."""
        target = message or self.card_message()
        found = value if value is not None else _button_value(target.blocks, action_id)
        url = self.slack.new_response_url(
            channel=channel, user=user, message_ts=target.ts, kind="actions"
        )
        payload = block_actions_payload(
            user_id=user,
            channel_id=channel,
            action_id=action_id,
            value=found,
            response_url=url,
            message_ts=target.ts,
            message=target.to_json(),
            trigger_id=trigger_id or self.slack.new_trigger_id(),
        )
        return url, self._interaction_body(payload)

    async def click(
        self,
        action_id: str,
        *,
        wait: bool = True,
        replica: str | None = None,
        **place: Unpack[ClickPlace],
    ) -> str | None:
        """Click the button `action_id` on `message` (default: the newest rollout card),
        through `replica` (a URL from `start_replica`) or the first bot.

        Returns the ephemeral answer, if the bot sent one (None once the bot's work on the
        click ended without one: on a `serve` process, once it counted the click; after
        `ANSWER_WAIT` where its `/metrics` cannot be read).
        """
        url, body = self.click_body(action_id, **place)
        bot = replica or self.url
        ended = (
            None
            if self._runner is not None and bot == self.url
            else await self._clicks_ended(bot, action_id)
        )
        status, _, work = await self._post(body, url=replica)
        assert status == 200, f"click {action_id} answered HTTP {status}"
        if not wait:
            return None
        posts = await self._answer(url, work, ended=ended)
        return _shown(posts[0].body) if posts else None

    async def _clicks_ended(self, bot: str, action_id: str) -> Callable[[], Awaitable[bool]] | None:
        """For a click on the `serve` process at `bot`: whether its work has ended, read from
        the process's `rollout_bot_clicks_total`, counted as each click's work ends (its answer
        sent); None when its `/metrics` cannot be read. Their ends are not told apart: it has
        ended once every click of `action_id` this harness sent there so far has (the count
        the process had before the first one, and one more for each since)."""
        key = (bot, action_id)
        sent = self.__dict__.setdefault("_clicks_sent", {})
        if key not in sent:
            sent[key] = (await self._clicks_counted(bot, action_id), 0)
        before, count = sent[key]
        sent[key] = (before, count + 1)
        if before is None:
            return None

        async def ended() -> bool:
            now = await self._clicks_counted(bot, action_id)
            return now is not None and now >= before + count + 1

        return ended

    async def _clicks_counted(self, bot: str, action_id: str) -> float | None:
        """How many clicks of `action_id` the `serve` process at `bot` has answered (None: its
        `/metrics` could not be read, e.g. behind a METRICS_TOKEN)."""
        assert self._http is not None
        try:
            async with self._http.get(f"{bot}/metrics") as r:
                if r.status != 200:
                    return None
                text = await r.text()
        except aiohttp.ClientError:
            return None
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "rollout_bot_clicks"
            for sample in family.samples
            if sample.name == "rollout_bot_clicks_total"
            and sample.labels.get("action") == action_id
        )

    async def submit_view(
        self,
        view_id: str,
        values: Mapping[str, Mapping[str, Mapping[str, Any]]],
        *,
        user: str = RELEASE_MANAGER,
    ) -> dict[str, Any]:
        """Submit a modal the bot opened; returns Slack's answer body (errors, if any)."""
        payload = view_submission_payload(
            user_id=user, view=self.slack.views[view_id], values=values
        )
        body = self._interaction_body(payload)
        _, text, _ = await self._post(body)
        return json.loads(text) if text else {}

    # -- the card they act on -----------------------------------------------------------------

    def card_message(self, channel: str = RELEASE_CHANNEL) -> ChannelMessage:
        """The newest top-level message of the bot in the channel (the rollout card)."""
        messages = self.slack.messages(channel)
        assert messages, "no message in the channel yet"
        return messages[-1]

    def thread(self, channel: str = RELEASE_CHANNEL) -> list[str]:
        return [reply.rendered for reply in self.card_message(channel).replies]


def _serving(task: Task) -> bool:
    """An aiohttp server's connection handler: it lives as long as the keep-alive connection,
    not as long as the request."""
    coroutine = task.get_coro()
    return getattr(coroutine, "__qualname__", "") == "RequestHandler.start"


def button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any] | None:
    """The button `action_id`, in an actions block or as a section's accessory (None: none)."""
    for block in blocks:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("action_id") == action_id:
                return dict(element)
    return None


def _button_value(blocks: list[dict[str, Any]], action_id: str) -> str:
    """The value of a button, in an actions block or as a section's accessory."""
    found = button(blocks, action_id)
    assert found is not None, f"no {action_id} button on the message"
    return str(found.get("value", ""))


def _shown(body: Mapping[str, Any]) -> str:
    return render_message(str(body.get("text", "")), list(body.get("blocks") or []))

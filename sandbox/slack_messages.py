"""The sandbox Slack's message store: channels, threads and ephemerals, posted as Slack does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sandbox.slack_records import (
    ChannelMessage,
    EphemeralMessage,
    ResponseTarget,
    blocks_arg,
    str_arg,
)


class MessageStore:
    """A workspace's channels, threads and ephemeral messages, as its bot posts them."""

    def __init__(self, *, team_id: str, bot_user_id: str, bot_id: str, app_id: str) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self._channels: dict[str, list[ChannelMessage]] = {}
        self._messages: dict[tuple[str, str], ChannelMessage] = {}
        self._ephemerals: list[EphemeralMessage] = []
        self._last_ts_us = 0
        self.ts_clock: Callable[[], datetime] = partial(datetime.now, UTC)
        """The time messages are stamped at: the harness's clock, the bot's and the GitHub
        simulator's, so that a test's jump moves Slack's time too (a look for the bot's own
        post since a time on its clock finds it, as it does in Slack)."""

    def messages(self, channel: str) -> list[ChannelMessage]:
        """Top-level messages of a channel, oldest first; each carries its thread replies."""
        return list(self._channels.get(channel, []))

    def message(self, channel: str, ts: str) -> ChannelMessage:
        """One message (top-level or reply) by its ts; KeyError when there is none."""
        return self._messages[(channel, ts)]

    def ephemerals(
        self, *, user: str | None = None, channel: str | None = None
    ) -> list[EphemeralMessage]:
        """Ephemeral messages (chat.postEphemeral, ephemeral response_url posts), oldest first."""
        return [
            e
            for e in self._ephemerals
            if (user is None or e.user == user) and (channel is None or e.channel == channel)
        ]

    def _next_ts(self) -> str:
        """Message timestamps like Slack's: unique, increasing, `<seconds>.<6 digits>`."""
        now_us = int(self.ts_clock().timestamp() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _post(
        self,
        channel: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        parent: ChannelMessage | None,
        files: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ChannelMessage:
        message = ChannelMessage(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            app_id=self.app_id,
            team=self.team_id,
            thread_ts=parent.ts if parent else None,
            files=files or [],
            metadata=metadata,
        )
        if parent is None:
            self._channels.setdefault(channel, []).append(message)
        else:
            parent.replies.append(message)
        self._messages[(channel, message.ts)] = message
        return message

    def _thread_parent(self, channel: str, thread_ts: str) -> ChannelMessage | None:
        """The top-level message of the thread `thread_ts` belongs to (a reply's ts works too)."""
        parent = self._messages.get((channel, thread_ts))
        if parent is not None and parent.thread_ts is not None:
            return self._messages.get((channel, parent.thread_ts))
        return parent

    def _apply_response(self, target: ResponseTarget, body: dict[str, Any]) -> None:
        """What Slack shows for a response_url post: replace/delete, in_channel or ephemeral."""
        original = (
            self._messages.get((target.channel, target.message_ts))
            if target.channel and target.message_ts
            else None
        )
        text = str_arg(body, "text")
        blocks = blocks_arg(body) or []
        if body.get("delete_original"):
            if original is not None:
                self._delete(original)
            return
        if body.get("replace_original") and original is not None:
            original.text, original.blocks = text, blocks
            original.updates += 1
            return
        if body.get("response_type") == "in_channel" and target.channel:
            thread_ts = str_arg(body, "thread_ts")
            parent = self._thread_parent(target.channel, thread_ts) if thread_ts else None
            self._post(target.channel, text=text, blocks=blocks, parent=parent)
            return
        self._ephemerals.append(
            EphemeralMessage(
                channel=target.channel,
                user=target.user,
                text=text,
                blocks=blocks,
                thread_ts=str_arg(body, "thread_ts") or None,
                message_ts=self._next_ts(),
                via=target.url,
            )
        )

    def delete_message(self, channel: str, ts: str) -> None:
        """A person (the author or a workspace admin) deletes a message, as chat.delete does:
        chat.update of it then answers `message_not_found`, and a reply to its thread
        `thread_not_found` (https://github.com/slackapi/bolt-js/issues/2307)."""
        self._delete(self._messages[(channel, ts)])

    def _delete(self, message: ChannelMessage) -> None:
        del self._messages[(message.channel, message.ts)]
        if message.thread_ts is None:
            self._channels[message.channel].remove(message)
        else:
            self._messages[(message.channel, message.thread_ts)].replies.remove(message)

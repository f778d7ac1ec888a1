"""The sandbox Slack's workspace: the views, files and members it stores (its messages are a
`slack_messages.MessageStore`), and the Web API methods that act on them (no HTTP here:
`sandbox.slack` serves them)."""

from __future__ import annotations

import functools
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.signing import SANDBOX_APP_ID, SANDBOX_BOT_USER_ID, SANDBOX_TEAM_ID, new_trigger_id
from sandbox.slack_markup import MarkupError
from sandbox.slack_messages import MessageStore
from sandbox.slack_records import (
    DEFAULT_SCOPES,
    SANDBOX_BOT_ID,
    ApiResult,
    EphemeralMessage,
    ResponseUrlPost,
    SlackCall,
    UploadedFile,
    file_object,
    history_page,
    message_content,
    required_arg,
    slack_error,
    str_arg,
)
from sandbox.slack_views import open_view, publish_view, update_view


class SlackWorkspace(MessageStore):
    """One workspace's state and the Web API methods on it, each `(args) -> Slack's answer`."""

    def __init__(
        self,
        *,
        team_id: str = SANDBOX_TEAM_ID,
        bot_user_id: str = SANDBOX_BOT_USER_ID,
        bot_id: str = SANDBOX_BOT_ID,
        app_id: str = SANDBOX_APP_ID,
        scopes: Sequence[str] = DEFAULT_SCOPES,
    ) -> None:
        super().__init__(team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id)
        self.scopes = tuple(scopes)
        self.enterprise_id: str | None = None
        """The Enterprise Grid organisation of the workspace (`auth.test` names it), if any."""
        self.calls: list[SlackCall] = []
        self.usergroups: dict[str, list[str]] = {}
        self.time_zones: dict[str, str] = {}
        """Each person's IANA time zone, for `users.info` (others: UTC; ids not starting with
        U or W: user_not_found)."""
        self.channel_members: dict[str, list[str]] = {}
        """Members of each channel, for `conversations.members` (unknown: channel_not_found)."""
        self.shut_out: dict[str, str] = {}
        """Channels the bot can no longer post in, each with what Slack answers chat.postMessage
        and chat.update there: `not_in_channel` once the bot is removed (`channel_not_found` in
        a private channel), `is_archived` once the channel is archived."""
        self.replies_shut_out: dict[str, str] = {}
        """Channels whose posting permissions let the bot post but not reply in threads, each
        with what Slack answers a thread reply there (`restricted_action`)."""
        self.views: dict[str, dict[str, Any]] = {}
        self.home_tabs: dict[str, dict[str, Any]] = {}
        self.triggers: dict[str, float | None] = {}
        """The trigger_ids `new_trigger_id` issued: when (on `trigger_clock`), None once used."""
        self.trigger_clock: Callable[[], float] = time.monotonic
        self.files: dict[str, UploadedFile] = {}
        self.all_responses: list[ResponseUrlPost] = []
        self.markup_errors: list[MarkupError] = []
        """The mrkdwn the bot sent that Slack would render badly (`sandbox.slack_markup`)."""
        self._upload_paths: dict[str, str] = {}
        self._tickets: set[str] = set()
        self._methods: dict[str, Callable[[dict[str, Any]], ApiResult]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": functools.partial(open_view, self),
            "views.update": functools.partial(update_view, self),
            "views.publish": functools.partial(publish_view, self),
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.members": self._conversations_members,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }

    port = 0
    """The port it answers on, once served (`sandbox.slack`)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The Web API base to pass as `AsyncWebClient(base_url=...)` / `SLACK_API_URL`."""
        return f"{self.base_url}/api/"

    # -- what tests look at -------------------------------------------------------------------

    def new_trigger_id(self) -> str:
        """A trigger_id for a click's payload, issued now: views.open takes it once, within
        3 seconds on `trigger_clock`."""
        trigger_id = new_trigger_id()
        self.triggers[trigger_id] = self.trigger_clock()
        return trigger_id

    def calls_to(self, method: str) -> list[SlackCall]:
        return [call for call in self.calls if call.method == method]

    def responses(self, url: str) -> list[ResponseUrlPost]:
        return [r for r in self.all_responses if r.url == url]

    # -- the Web API methods ------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> ApiResult:
        return {
            "ok": True,
            "url": "https://sandbox.slack.com/",
            "team": "Sandbox",
            "user": "rollout-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
            **({"enterprise_id": self.enterprise_id} if self.enterprise_id else {}),
        }

    def _chat_post_message(self, args: dict[str, Any]) -> ApiResult:
        channel = required_arg(args, "channel", "channel_not_found")
        if channel in self.shut_out:
            return slack_error(self.shut_out[channel])
        content = message_content(args)
        parent = None
        thread_ts = str_arg(args, "thread_ts")
        if thread_ts:
            if channel in self.replies_shut_out:
                return slack_error(self.replies_shut_out[channel])
            parent = self._thread_parent(channel, thread_ts)
            if parent is None:
                return slack_error("thread_not_found")
        metadata = args.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            return slack_error("invalid_metadata_format")
        message = self._post(
            channel, text=content.text, blocks=content.blocks, parent=parent, metadata=metadata
        )
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.to_json()}

    def _chat_update(self, args: dict[str, Any]) -> ApiResult:
        channel = required_arg(args, "channel", "channel_not_found")
        if channel in self.shut_out:
            return slack_error(self.shut_out[channel])
        message = self._messages.get((channel, str_arg(args, "ts")))
        if message is None:
            return slack_error("message_not_found")
        content = message_content(args)
        message.text = content.text
        # Slack keeps the previous blocks unless the update passes `blocks` (empty removes them).
        if "blocks" in args:
            message.blocks = content.blocks
        message.updates += 1
        return {
            "ok": True,
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.to_json(),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> ApiResult:
        channel = required_arg(args, "channel", "channel_not_found")
        user = required_arg(args, "user", "user_not_in_channel")
        content = message_content(args)
        message_ts = self._next_ts()
        self._ephemerals.append(
            EphemeralMessage(
                channel=channel,
                user=user,
                text=content.text,
                blocks=content.blocks,
                thread_ts=str_arg(args, "thread_ts") or None,
                message_ts=message_ts,
                via="chat.postEphemeral",
            )
        )
        return {"ok": True, "message_ts": message_ts}

    def _usergroups_users_list(self, args: dict[str, Any]) -> ApiResult:
        group = required_arg(
            args, "usergroup", "invalid_arguments", "missing required field: usergroup"
        )
        if group not in self.usergroups:
            return slack_error("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _users_info(self, args: dict[str, Any]) -> ApiResult:
        """A user object as Slack documents it (`tz`, `tz_label`, `tz_offset` now; the label
        is the zone's abbreviation here, where Slack writes it out)."""
        user = required_arg(args, "user", "invalid_arguments", "missing required field: user")
        if not user.startswith(("U", "W")):
            return slack_error("user_not_found")
        zone = self.time_zones.get(user, "UTC")
        now = datetime.now(ZoneInfo(zone))
        offset = now.utcoffset()
        return {
            "ok": True,
            "user": {
                "id": user,
                "team_id": self.team_id,
                "name": user.lower(),
                "deleted": False,
                "real_name": user,
                "tz": zone,
                "tz_label": now.tzname(),
                "tz_offset": int(offset.total_seconds()) if offset is not None else 0,
                "is_bot": False,
                "profile": {"real_name": user, "display_name": user.lower()},
            },
        }

    def _conversations_members(self, args: dict[str, Any]) -> ApiResult:
        channel = required_arg(
            args, "channel", "invalid_arguments", "missing required field: channel"
        )
        if channel not in self.channel_members:
            return slack_error("channel_not_found")
        # Slack pages the members: `limit` under 1000 (default 100), the cursor an offset here.
        try:
            limit, start = int(args.get("limit") or 100), int(args.get("cursor") or 0)
        except ValueError:
            return slack_error("invalid_cursor")
        if not 0 < limit < 1000:
            return slack_error("invalid_limit")
        members = list(self.channel_members[channel])
        more = start + limit < len(members)
        return {
            "ok": True,
            "members": members[start : start + limit],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conversations_history(self, args: dict[str, Any]) -> ApiResult:
        """A channel's top-level messages, newest first, as Slack pages them."""
        channel = required_arg(args, "channel", "channel_not_found")
        newest_first = list(reversed(self._channels.get(channel, [])))
        return history_page(newest_first, args)

    def _conversations_replies(self, args: dict[str, Any]) -> ApiResult:
        """A thread, oldest first: its parent, then the replies, as Slack pages them."""
        channel = str_arg(args, "channel")
        ts = str_arg(args, "ts")
        if not channel or not ts:
            return slack_error("invalid_arguments", "missing required field: channel or ts")
        parent = self._thread_parent(channel, ts)
        if parent is None:
            return slack_error("thread_not_found")
        return history_page([parent, *parent.replies], args)

    def _files_get_upload_url(self, args: dict[str, Any]) -> ApiResult:
        try:
            length = int(args.get("length", ""))
        except ValueError:
            return slack_error("invalid_arguments", "length must be an integer")
        filename = required_arg(
            args, "filename", "invalid_arguments", "missing required field: filename"
        )
        file_id = "F" + secrets.token_hex(5).upper()
        key = secrets.token_urlsafe(24)
        self._upload_paths[key] = file_id
        self.files[file_id] = UploadedFile(
            id=file_id, filename=filename, length=length, alt_txt=args.get("alt_txt")
        )
        return {"ok": True, "upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": file_id}

    def _files_complete_upload(self, args: dict[str, Any]) -> ApiResult:
        items = args.get("files")
        if not isinstance(items, list) or not items:
            return slack_error("invalid_arguments", "missing required field: files")
        uploads: list[UploadedFile] = []
        for item in items:
            upload = self.files.get(item.get("id", "")) if isinstance(item, dict) else None
            if upload is None or upload.data is None:
                return slack_error("file_not_found")
            upload.title = item.get("title") or upload.title
            uploads.append(upload)
        channel = str_arg(args, "channel_id")
        channels = [channel] if channel else [c for c in str_arg(args, "channels").split(",") if c]
        thread_ts = str_arg(args, "thread_ts")
        parent = None
        if thread_ts:
            if len(channels) != 1:
                return slack_error("invalid_arguments", "thread_ts needs exactly one channel")
            parent = self._thread_parent(channels[0], thread_ts)
            if parent is None:
                return slack_error("thread_not_found")
        objects = []
        for upload in uploads:
            upload.completed = True
            objects.append(file_object(self, upload, channels))
        for shared_to in channels:
            self._post(
                shared_to,
                text=str_arg(args, "initial_comment"),
                blocks=[],
                parent=parent,
                files=objects,
            )
        return {"ok": True, "files": objects}

    def _apps_connections_open(self, args: dict[str, Any]) -> ApiResult:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"
        return {"ok": True, "url": url}

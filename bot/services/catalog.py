"""The services the transport layer calls: one object per capability, wired by the app factory.

Listeners and HTTP handlers receive a `Services` and call one method on it; they change no
state themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.domain.errors import NotAReleaseChannel
from bot.domain.rollout_command import (
    Command,
    allowed_in_direct_messages,
    allowed_outside_release_channels,
    is_direct_message,
    parse_command,
)
from bot.domain.service import Service
from bot.services.authz import Approvers, Audience
from bot.services.controls import ControlService
from bot.services.lane import ReleaseLane
from bot.services.npm_walkthrough import NpmTokenService
from bot.services.reports import RolloutReports
from bot.services.rollouts import RolloutService
from bot.services.store_ports import Database
from bot.services.telemetry import Backlog, Telemetry
from bot.services.webhooks import GitHubWebhooks
from bot.services.words import Words


@dataclass(frozen=True)
class CommandService:
    """Routes a `/rollout` command: parse it, check where it came from, answer or refuse."""

    release_channels: tuple[str, ...]
    words: Words

    def route(self, *, text: str, channel_id: str) -> Command:
        """The parsed command, if it may run in this channel; raises a RolloutError otherwise."""
        command = parse_command(text)
        direct = is_direct_message(channel_id) and allowed_in_direct_messages(command)
        if (
            channel_id not in self.release_channels
            and not allowed_outside_release_channels(command)
            and not direct
        ):
            channels = ", ".join(self.words.channel(channel) for channel in self.release_channels)
            where = f"a release channel: {channels}"
            if allowed_in_direct_messages(command):
                where = f"a direct message with the bot or in {where}"
            raise NotAReleaseChannel(f"`/rollout {command.name}` only works in {where}.")
        return command


@dataclass(frozen=True)
class Services:
    """Everything a listener or handler may call for one service (`bot.services.directory`
    finds the service of a request), built once per application."""

    service: Service
    settings: Settings
    database: Database
    commands: CommandService
    rollouts: RolloutService
    approvers: Approvers
    audience: Audience
    """Who may see the rollouts on the App Home."""
    npm_token: NpmTokenService
    webhooks: GitHubWebhooks
    controls: ControlService
    reports: RolloutReports
    lane: ReleaseLane
    """The release lane's freezes and lock, as `/rollout status` shows them."""
    telemetry: Telemetry
    """What the listeners count (commands, clicks, refusals)."""
    backlog: Backlog
    """The gauges read from the database when Prometheus scrapes."""

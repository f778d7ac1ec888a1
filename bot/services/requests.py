"""A person's request as the controls see it: who asks, from where, how; and its audit entry.

Each command, click and form is one audit event; while it is handled, the controls fill in
what it acts on (the rollout, the track, the stage) through the entry of the request in hand.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Via(StrEnum):
    """How a request reached the bot."""

    COMMAND = "command"
    CLICK = "click"
    FORM = "form"
    """A modal submitted, from the channel of the click that opened it (its metadata)."""
    SCHEDULE = "schedule"
    """The bot, at the time a person scheduled (`/rollout start ... --at`)."""


@dataclass(frozen=True)
class Origin:
    """Who asks, from which channel, in which Slack delivery (its `trigger_id` and body's digest:
    `handlers.origin.delivery`) and retry."""

    actor: str
    channel_id: str
    via: Via
    delivery: str | None = None
    retry: int = 0


@dataclass
class Entry:
    """The audit event of one command, click or form, filled in while it is handled."""

    origin: Origin
    name: str
    rollout_id: str | None = None
    track: str | None = None
    stage: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    delivered: bool = False
    """The Slack delivery was claimed (a command promoting two tracks claims it once)."""
    recorded: bool = False
    """Its audit events were written with what it changed (`/rollout freeze --all`: one per
    service, in the transaction of the holds): it is not appended again when it ends."""

    def fill(
        self,
        *,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
    ) -> None:
        """Name what the request acts on, where it is not named yet."""
        self.rollout_id = self.rollout_id or rollout_id
        self.track = self.track or track
        self.stage = self.stage or stage


current_entry: ContextVar[Entry | None] = ContextVar("control_entry", default=None)
"""The entry of the request being handled (None outside a request)."""


def fill(
    *, rollout_id: str | None = None, track: str | None = None, stage: str | None = None
) -> None:
    """Name what the request in hand acts on (nothing outside a request)."""
    entry = current_entry.get()
    if entry is not None:
        entry.fill(rollout_id=rollout_id, track=track, stage=stage)

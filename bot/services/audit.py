"""One rollout's audit trail as a timeline: for `/rollout history <tag>` and for
`rollout-bot audit <tag> --json`, which exports it for a change record or an incident review.

Every command, click and form (`command:*`, `click:*`, `form:*`, with its outcome), every
state change the service made (`start`, `dispatch`, `promote`, ...), every gate verdict
(`gate`) and every state-changing GitHub call (`github_approved`, `github_rejected`,
`redeploy`) is an event with its actor, in the order it happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.errors import RolloutError
from bot.domain.service import DEFAULT_SERVICE
from bot.services.records import AuditEvent
from bot.services.store_ports import AuditLog, Rollouts


class UnknownTag(RolloutError):
    """No rollout of this tag is on record."""

    code = "unknown_tag"


@dataclass(frozen=True)
class Timeline:
    """The newest rollout of a tag and its audit events, oldest first."""

    rollout_id: str
    tag: str
    service: str
    channel_id: str
    started_by: str
    state: str
    created_at: datetime
    ended_at: datetime | None
    events: tuple[AuditEvent, ...]

    def to_json(self) -> dict[str, Any]:
        """The timeline as JSON-ready data (times in ISO 8601 UTC)."""
        return {
            "rollout": {
                "id": self.rollout_id,
                "tag": self.tag,
                "service": self.service,
                "channel_id": self.channel_id,
                "started_by": self.started_by,
                "state": self.state,
                "created_at": self.created_at.isoformat(),
                "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            },
            "events": [
                {
                    "at": event.at.isoformat(),
                    "actor": event.actor,
                    "action": event.action,
                    "result": event.result,
                    "track": event.track,
                    "stage": event.stage,
                    "detail": event.detail,
                }
                for event in self.events
            ],
        }


class AuditTrail:
    """Reads the timeline of a tag's newest rollout from the database."""

    def __init__(self, *, rollouts: Rollouts, log: AuditLog) -> None:
        self._rollouts = rollouts
        self._log = log

    async def timeline(self, tag: str, *, service: str | None = None) -> Timeline:
        """The newest rollout of `tag` (of `service`, when given: the same tag may be released
        by several services) with its events; raises UnknownTag when there is none."""
        found = [
            rollout
            for rollout in await self._rollouts.by_tag(tag)
            if service is None or rollout.service == service
        ]
        if not found:
            unnamed = service is None or service == DEFAULT_SERVICE
            of = f"`{tag}`" if unnamed else f"`{tag}` of the service `{service}`"
            raise UnknownTag(
                f"No rollout of {of} is on record. `/rollout history` lists the recent ones."
            )
        rollout = found[0]
        events = await self._log.list_for_rollout(rollout.id)
        return Timeline(
            rollout_id=rollout.id,
            tag=rollout.tag,
            service=rollout.service,
            channel_id=rollout.channel_id,
            started_by=rollout.started_by,
            state=rollout.phase.value,
            created_at=rollout.created_at,
            ended_at=rollout.ended_at,
            events=tuple(events),
        )

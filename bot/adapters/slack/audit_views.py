"""`/rollout history <tag>`: one rollout's audit timeline as ephemeral Block Kit, built by pure
functions. Long timelines keep their newest events within Slack's limits and say how to get
the whole export."""

from __future__ import annotations

import re

from slack_sdk.models.blocks import Block

from bot.adapters.slack.audit_reasons import reason_mrkdwn
from bot.adapters.slack.blocks import BlockJson, as_json, context, header, section
from bot.adapters.slack.late_words import judged_late
from bot.adapters.slack.limits import MESSAGE_BLOCKS, clip, pack
from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.mrkdwn import escape, escape_quoted
from bot.domain.reasons import Reason
from bot.domain.rollout.codec import late_from_json
from bot.services.audit import Timeline
from bot.services.records import AuditEvent

_MAX_LINE = 600
_DETAIL_KEYS = ("why", "error", "environment", "run_id", "by", "tag", "reason", "new")
_TYPED_KEYS = frozenset({"reason"})
"""What a person typed, kept as typed: escaped when shown (the others are the bot's words,
what they quote escaped as an error's answer is)."""
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def actor_words(actor: str) -> str:
    """A Slack user as a mention, the bot and its metrics sources as plain words."""
    return f"<@{actor}>" if _SLACK_USER.fullmatch(actor) else f"_{actor}_"


def event_line(event: AuditEvent) -> str:
    """One event: when, who, what, on which track and stage, and how it ended."""
    where = "/".join(part for part in (event.track, event.stage) if part)
    line = f"{slack_time(event.at)} {actor_words(event.actor)} `{event.action}` → *{event.result}*"
    if where:
        line += f" ({where})"
    detail = event.detail or {}
    reason = Reason.from_detail(detail)
    notes = [
        f"{key}: {reason_mrkdwn(reason) if key == 'why' and reason else _shown(key, detail[key])}"
        for key in _DETAIL_KEYS
        if detail.get(key) not in (None, "")
    ]
    if event.action == "gate" and detail.get("sample") is not None:
        notes.append(f"sample: {detail['sample']}")
    if event.action == "gate" and detail.get("baseline_sample") is not None:
        notes.append(f"baseline sample: {detail['baseline_sample']}")
    late = late_from_json(detail.get("late")) if event.action == "gate" else None
    if late is not None:
        notes.append(judged_late(late).strip())
    if notes:
        line += " · " + "; ".join(str(note) for note in notes)
    return clip(line, _MAX_LINE)


def _shown(key: str, value: object) -> str:
    """A detail as written: a person's words escaped; the bot's own, written by an earlier
    version as Slack text (a `why` without `names`), with what they quote escaped."""
    return (escape if key in _TYPED_KEYS else escape_quoted)(str(value))


def timeline_blocks(timeline: Timeline, *, service: str | None = None) -> list[BlockJson]:
    """The timeline, oldest first; when it does not fit, the newest events and a note; of
    `service`, named when the bot releases several."""
    facts = (
        f"{timeline.rollout_id} · started {slack_time(timeline.created_at)} by "
        f"<@{timeline.started_by}> · {timeline.state}"
    )
    of = f" of {service}" if service is not None else ""
    blocks: list[Block] = [header(f"Timeline of {timeline.tag}{of}"), context(facts)]
    if not timeline.events:
        return as_json([*blocks, section("No events recorded for this rollout.")])
    chunks = pack(event_line(event) for event in timeline.events)
    shown = chunks[-(MESSAGE_BLOCKS - 3) :]
    if len(shown) < len(chunks):
        hidden = sum(chunk.count("\n") + 1 for chunk in chunks[: len(chunks) - len(shown)])
        blocks.append(
            context(
                f"_{hidden} earlier events not shown: `rollout-bot audit {timeline.tag} --json` "
                "exports them all._"
            )
        )
    return as_json([*blocks, *(section(chunk) for chunk in shown)])


def timeline_text(timeline: Timeline) -> str:
    """The plain-text fallback."""
    return f"Timeline of {timeline.tag} ({timeline.rollout_id}): {len(timeline.events)} events"

"""`/rollout history <tag>`: one rollout's audit timeline as ephemeral Block Kit, built by pure
functions. Long timelines keep their newest events within Slack's limits and say how to get
the whole export."""

from __future__ import annotations

import re

from bot.audit import Timeline
from bot.domain.rollout import slack_time
from handlers.views import Block
from storage.repositories import AuditEvent

MAX_BLOCKS = 50
MAX_TEXT = 3000
_DETAIL_KEYS = ("why", "error", "environment", "run_id", "by", "tag", "reason", "new")
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
    notes = [f"{key}: {detail[key]}" for key in _DETAIL_KEYS if detail.get(key) not in (None, "")]
    if event.action == "gate" and detail.get("sample") is not None:
        notes.append(f"sample: {detail['sample']}")
    if notes:
        line += " · " + "; ".join(str(note) for note in notes)
    return line if len(line) <= 600 else line[:599] + "…"


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def timeline_blocks(timeline: Timeline) -> list[Block]:
    """The timeline, oldest first; when it does not fit, the newest events and a note."""
    header: Block = {
        "type": "header",
        "text": {"type": "plain_text", "text": f"Timeline of {timeline.tag}"[:150], "emoji": True},
    }
    facts = (
        f"{timeline.rollout_id} · started {slack_time(timeline.created_at)} by "
        f"<@{timeline.started_by}> · {timeline.state}"
    )
    context: Block = {"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]}
    if not timeline.events:
        return [header, context, _section("No events recorded for this rollout.")]
    chunks: list[str] = []
    for line in (event_line(event) for event in timeline.events):
        if chunks and len(chunks[-1]) + 1 + len(line) <= MAX_TEXT:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    room = MAX_BLOCKS - 3
    shown = chunks[-room:]
    blocks: list[Block] = [header, context]
    if len(shown) < len(chunks):
        hidden = sum(chunk.count("\n") + 1 for chunk in chunks[: len(chunks) - len(shown)])
        note = (
            f"_{hidden} earlier events not shown: `rollout-bot audit {timeline.tag} --json` "
            "exports them all._"
        )
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    return blocks + [_section(chunk) for chunk in shown]


def timeline_text(timeline: Timeline) -> str:
    """The plain-text fallback."""
    return f"Timeline of {timeline.tag} ({timeline.rollout_id}): {len(timeline.events)} events"

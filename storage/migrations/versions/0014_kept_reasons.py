"""What a timer that gave up keeps is stored as data, as the audit trail's reasons are (0013):
a held schedule's error (`rollouts.context`), the error of a missed gate's or a held schedule's
message in the outbox (`GateMissed`, `ScheduleHeld`), delivered or not, hold the words without
Slack markup and the people, channels, times and cards they name (`bot.domain.reasons.Reason`
as its fields); `timers.last_error` holds the words.

Rows written before held Slack text there (`<@U…>`, `<#C…>`, Slack dates, card links): they are
converted by 0013's rules, its `_as_data` (a migration is frozen, so reusing it is reusing a
frozen copy). The downgrade writes the data back as Slack text (0013's `_as_text`), which every
version at 0013 reads; `timers.last_error` keeps its words, an operator's note whose names were
not kept. Only data changes.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"

_AUDIT_REASONS = importlib.import_module("storage.migrations.versions.0013_audit_reasons")

_ROLLOUTS = sa.table("rollouts", sa.column("id", sa.String), sa.column("context", sa.JSON))
_OUTBOX = sa.table("outbox", sa.column("id", sa.BigInteger), sa.column("payload", sa.JSON))
_TIMERS = sa.table("timers", sa.column("id", sa.BigInteger), sa.column("last_error", sa.Text))

_NAMES = ("people", "channels", "times", "cards")
# A mark only the Slack words wrote: a last error with one is an answer's Slack text; one
# without may be any error's own words (`<`, `&` and all), left as it is.
_SLACK_MARK = re.compile(r"<(?:[@#!]|https://slack\.com/archives/)[^<>]*>")

Convert = Callable[[Any], Any]


def _as_reason(text: Any) -> Any:
    """Slack text as a Reason's fields (`text` and what it names); anything else unchanged."""
    if not isinstance(text, str):
        return text
    data = _AUDIT_REASONS._as_data(text)
    return {"text": data["why"], **{kind: data["names"].get(kind, []) for kind in _NAMES}}


def _as_slack_text(reason: Any) -> Any:
    """A Reason's fields as the Slack text the previous version wrote; anything else unchanged."""
    if not isinstance(reason, dict):
        return reason
    names = {kind: reason.get(kind) or [] for kind in _NAMES}
    return _AUDIT_REASONS._as_text(reason["text"], names)


def _held(held: Any, convert: Convert) -> Any:
    """A held schedule (`Held`'s fields) with its error converted."""
    if not isinstance(held, dict) or held.get("error") is None:
        return held
    return {**held, "error": convert(held["error"])}


def _context(context: Any, convert: Convert) -> Any:
    schedule = context.get("schedule") if isinstance(context, dict) else None
    if not isinstance(schedule, dict) or "held" not in schedule:
        return context
    return {**context, "schedule": {**schedule, "held": _held(schedule["held"], convert)}}


def _payload(payload: Any, convert: Convert) -> Any:
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("fields"), dict):
        return payload
    fields = event["fields"]
    if event.get("kind") == "GateMissed":
        fields = {**fields, "error": convert(fields.get("error"))}
    elif event.get("kind") == "ScheduleHeld":
        fields = {**fields, "held": _held(fields.get("held"), convert)}
    return {**payload, "event": {**event, "fields": fields}}


def _rewrite(table: sa.TableClause, column: str, like: str, change: Convert) -> None:
    """Write back each row whose `column` (as text) is `like` and which `change` changes."""
    bind = op.get_bind()
    value = table.c[column]
    rows = bind.execute(
        sa.select(table.c.id, value).where(sa.cast(value, sa.Text).like(like))
    ).all()
    for row_id, found in rows:
        changed = change(found)
        if changed != found:
            bind.execute(sa.update(table).where(table.c.id == row_id).values({column: changed}))


def _convert(convert: Convert) -> None:
    _rewrite(_ROLLOUTS, "context", '%"held"%', lambda context: _context(context, convert))
    for kind in ("GateMissed", "ScheduleHeld"):
        _rewrite(_OUTBOX, "payload", f'%"{kind}"%', lambda payload: _payload(payload, convert))


def _last_error_words(error: str) -> str:
    if not _SLACK_MARK.search(error):
        return error
    words: str = _AUDIT_REASONS._as_data(error)["why"]
    return words


def upgrade() -> None:
    _convert(_as_reason)
    _rewrite(_TIMERS, "last_error", "%<%", _last_error_words)


def downgrade() -> None:
    _convert(_as_slack_text)

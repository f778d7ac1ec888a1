"""A refused request's reason is stored as data: an audit event's `why` holds the answer's
words without Slack markup (a person `@U123`, a channel `#C123`, a time `2026-12-01 12:00 UTC`,
a link to a card as its label) and `names` what they name by id (people, channels, times,
cards: `bot.domain.reasons`), which `/rollout history` marks again.

Rows written before held the answer as Slack text (`<@U…>`, `<#C…>`, Slack dates, card
links): they are converted as this release converts an answer (frozen here: a migration does
not import code that may change after it). The downgrade writes them back as Slack text. Only
data changes; a replica of the previous version shows a converted row's words as written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"

_EVENTS = sa.table("audit_events", sa.column("id", sa.BigInteger), sa.column("detail", sa.JSON))

_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}
_QUOTED = re.compile("`[^`]*`")
_UNESCAPED = re.compile(r"[<>]|&(?!(?:amp|lt|gt);)")
_FORMATTED = re.compile(r"<([^<>]*)>|&(?:amp|lt|gt);")
_SLACK_CHARACTERS = re.compile("[<>&]")
_CARD = re.compile(r"https://slack\.com/archives/([A-Z0-9]+)/p(\d+)(\d{6})")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _decoded(text: str) -> str:
    return re.sub("&(?:amp|lt|gt);", lambda entity: _ENTITIES[entity[0]], text)


def _as_data(why: str) -> dict[str, Any]:
    """The Slack text as the words a person read and the ids they name."""
    marked = _QUOTED.sub(lambda quoted: _UNESCAPED.sub(lambda c: _escape(c[0]), quoted[0]), why)
    names: dict[str, list[Any]] = {"people": [], "channels": [], "times": [], "cards": []}

    def words(found: re.Match[str]) -> str:
        if found[1] is None:
            return _ENTITIES[found[0]]
        target, _, label = found[1].partition("|")
        target, label = _decoded(target), _decoded(label)
        if target.startswith("@"):
            names["people"].append(target[1:])
        elif target.startswith("#"):
            names["channels"].append(target[1:])
        elif target.startswith("!date^"):
            at = datetime.fromtimestamp(int(target.split("^")[1]), UTC)
            names["times"].append(at.isoformat())
        elif card := _CARD.fullmatch(target):
            ts = f"{card[2]}.{card[3]}"
            names["cards"].append({"channel_id": card[1], "ts": ts, "label": label})
        if target.startswith(("@", "#")):
            return target[0] + (label or target[1:])
        if target.startswith("!"):
            said = label or target[1:].split("^")[-1]
            return said if said.startswith("@") or target.startswith("!date^") else f"@{said}"
        return label or target

    text = _FORMATTED.sub(words, marked)
    kept = {
        kind: [v for i, v in enumerate(found) if v not in found[:i]]
        for kind, found in names.items()
        if found
    }
    return {"why": text, "names": kept}


def _as_text(why: str, names: dict[str, Any]) -> str:
    """The words and their names as the Slack text the previous version wrote."""
    text = _escape(why)
    for actor in names.get("people", ()):
        text = re.sub(rf"(?<![\w@])@{re.escape(actor)}(?!\w)", f"<@{actor}>", text)
    for channel in names.get("channels", ()):
        text = re.sub(rf"(?<![\w#&])#{re.escape(channel)}(?!\w)", f"<#{channel}>", text)
    for at in names.get("times", ()):
        moment = datetime.fromisoformat(at)
        fallback = f"{moment:%Y-%m-%d %H:%M} UTC"
        slack = f"<!date^{int(moment.timestamp())}^{{time}} ({{date_short_pretty}})|{fallback}>"
        text = text.replace(fallback, slack)
    for card in names.get("cards", ()):
        label = _escape(card["label"])
        url = f"https://slack.com/archives/{card['channel_id']}/p{card['ts'].replace('.', '')}"
        text = text.replace(label, f"<{url}|{label}>", 1)
    return text


def _convert(*, upgrading: bool) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_EVENTS.c.id, _EVENTS.c.detail).where(
            sa.cast(_EVENTS.c.detail, sa.Text).like('%"why"%')
        )
    ).all()
    for event_id, detail in rows:
        why = detail.get("why") if isinstance(detail, dict) else None
        if not isinstance(why, str) or ("names" in detail) is upgrading:
            continue
        if upgrading and not _SLACK_CHARACTERS.search(why):
            continue  # plain words already (a `not_stopped` event's `completed`): read alike
        if upgrading:
            changed = {**detail, **_as_data(why)}
        else:
            changed = {k: v for k, v in detail.items() if k != "names"}
            changed["why"] = _as_text(why, detail["names"] or {})
        bind.execute(sa.update(_EVENTS).where(_EVENTS.c.id == event_id).values(detail=changed))


def upgrade() -> None:
    _convert(upgrading=True)


def downgrade() -> None:
    _convert(upgrading=False)

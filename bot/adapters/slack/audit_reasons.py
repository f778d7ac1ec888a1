"""A reason between the Slack words and what the bot stores (`bot.domain.reasons`): `recorded`
takes the markup out of an answer (a refusal, a known error that ended a timer's work), keeping
what it names by id; `reason_mrkdwn` puts it back (`/rollout history`, the thread and the card
of a timer that gave up), so a person reads the mentions, dates and links they were told."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.adapters.slack.mrkdwn import (
    as_typed,
    channel,
    escape,
    escape_quoted,
    message_link,
    person,
    slack_time,
)
from bot.domain.reasons import CardLink, Reason

_MARK = re.compile(r"<([^<>]*)>")
_CARD = re.compile(r"https://slack\.com/archives/([A-Z0-9]+)/p(\d+)(\d{6})")


def recorded(answer: str) -> Reason:
    """An answer the Slack words made (mrkdwn, as `escape_quoted` sends it) as data: its words
    as `plain_answer` reads them, and the people, channels, times and cards it marks."""
    marked = escape_quoted(answer)  # what it quotes escaped: its `<...>` are its marks
    people: list[str] = []
    channels: list[str] = []
    times: list[datetime] = []
    cards: list[CardLink] = []
    for found in _MARK.finditer(marked):
        target, _, label = found[1].partition("|")
        if target.startswith("@"):
            people.append(target[1:])
        elif target.startswith("#"):
            channels.append(target[1:])
        elif target.startswith("!date^"):
            times.append(datetime.fromtimestamp(int(target.split("^")[1]), UTC))
        elif card := _CARD.fullmatch(target):
            cards.append(CardLink(card[1], f"{card[2]}.{card[3]}", as_typed(label)))
    return Reason(
        as_typed(marked),
        people=tuple(dict.fromkeys(people)),
        channels=tuple(dict.fromkeys(channels)),
        times=tuple(dict.fromkeys(times)),
        cards=tuple(dict.fromkeys(cards)),
    )


def reason_mrkdwn(reason: Reason) -> str:
    """The reason as mrkdwn: its words shown as written, with the people, channels, times and
    cards it names marked as the answer marked them."""
    text = escape(reason.text)
    for actor in reason.people:
        text = re.sub(rf"(?<![\w@])@{re.escape(actor)}(?!\w)", person(actor), text)
    for channel_id in reason.channels:
        text = re.sub(rf"(?<![\w#&])#{re.escape(channel_id)}(?!\w)", channel(channel_id), text)
    for moment in reason.times:
        text = text.replace(f"{moment:%Y-%m-%d %H:%M} UTC", slack_time(moment))
    for card in reason.cards:
        link = message_link(card.channel_id, card.ts, escape(card.label))
        text = text.replace(escape(card.label), link, 1)
    return text

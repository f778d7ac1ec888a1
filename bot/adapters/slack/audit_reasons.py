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
    text = _marked_times(text, reason.times)
    for card in reason.cards:
        link = message_link(card.channel_id, card.ts, escape(card.label))
        text = text.replace(escape(card.label), link, 1)
    return text


def _marked_times(text: str, times: tuple[datetime, ...]) -> str:
    """`text` with the `times` it names marked where their words stand, in one pass: two times
    in one minute read alike (`2026-12-01 12:30 UTC`), and marked one after the other, each
    was marked again inside the other's label. Alike words are marked with those times in
    the order they were named (as `recorded` read them), the last again for any after."""
    alike: dict[str, list[datetime]] = {}
    for moment in times:
        alike.setdefault(f"{moment:%Y-%m-%d %H:%M} UTC", []).append(moment)
    if not alike:
        return text
    marked: dict[str, int] = {}

    def mark(found: re.Match[str]) -> str:
        moments = alike[found[0]]
        nth = marked.get(found[0], 0)
        marked[found[0]] = nth + 1
        return slack_time(moments[min(nth, len(moments) - 1)])

    return re.sub("|".join(map(re.escape, alike)), mark, text)

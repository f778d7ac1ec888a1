"""A reason as the bot keeps it: data, not Slack text.

An answer a person is given (a refusal, a card out of date, an effect already done) is written
with the Slack edge's `Words`, so it names people as mentions and times as Slack dates; so is
a known error that ends a timer's work. What is stored keeps the same words without any markup
(a person `@U123`, a channel `#C123`, a time `2026-12-01 12:00 UTC`, a link to a rollout's card
as its label) and, beside them, what they name by id: the audit trail's refusals, a timer's
last error, and the reason a timer gave up (a window's missed gate, a held schedule). The Slack
edge marks them again (`/rollout history`, the thread, the card); `rollout-bot audit` prints
the words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CardLink:
    """A link an answer gave to one message (a rollout's card), read as `label`."""

    channel_id: str
    ts: str
    label: str


@dataclass(frozen=True, slots=True)
class Reason:
    """Why, in words without markup, and the people, channels, times and cards they name."""

    text: str
    people: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    times: tuple[datetime, ...] = ()
    cards: tuple[CardLink, ...] = ()

    def detail(self) -> dict[str, Any]:
        """The audit detail: `why` (the words) and `names` (what they name, by id)."""
        names: dict[str, Any] = {}
        if self.people:
            names["people"] = list(self.people)
        if self.channels:
            names["channels"] = list(self.channels)
        if self.times:
            names["times"] = [moment.isoformat() for moment in self.times]
        if self.cards:
            names["cards"] = [
                {"channel_id": c.channel_id, "ts": c.ts, "label": c.label} for c in self.cards
            ]
        return {"why": self.text, "names": names}

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> Reason | None:
        """The reason an audit detail holds, or None when it holds none in this form (no
        `why`, or one an earlier version wrote as Slack text, without `names`)."""
        why, names = detail.get("why"), detail.get("names")
        if not isinstance(why, str) or not isinstance(names, Mapping):
            return None
        return cls(
            why,
            people=tuple(str(person) for person in names.get("people", ())),
            channels=tuple(str(channel) for channel in names.get("channels", ())),
            times=tuple(datetime.fromisoformat(str(at)) for at in names.get("times", ())),
            cards=tuple(
                CardLink(str(c["channel_id"]), str(c["ts"]), str(c["label"]))
                for c in names.get("cards", ())
            ),
        )

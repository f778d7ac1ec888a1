"""The words of the Slack edge that the services' answers use: the `Words` port."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot.domain.permissions import TwoPersonRefusal
from bot.domain.reasons import Reason
from bot.domain.rollout import StopPutBack


class Words(Protocol):
    """The words of the Slack edge that the services' answers use (a refusal, a card out of
    date, an effect already done); `bot.adapters.slack.messages` is one. A person or a channel
    an answer names goes through `person` and `channel`: only the edge knows Slack's markup."""

    def slack_time(self, moment: datetime) -> str:
        """A time every reader sees in their own zone."""
        ...

    def two_person_text(self, refused: TwoPersonRefusal) -> str:
        """The two-person rule's refusal, naming the starter."""
        ...

    def person(self, actor: str) -> str:
        """A person an answer names, by their Slack user id (a mention)."""
        ...

    def channel(self, channel_id: str) -> str:
        """A channel an answer names, by its id (a link to it)."""
        ...

    def message_link(self, channel_id: str, ts: str, label: str) -> str:
        """A link to one message (a rollout's card), read as `label`."""
        ...

    def stop_put_back_answer(self, event: StopPutBack) -> str:
        """How an answer that a stop was done ends when it was put back on some tracks."""
        ...

    def recorded(self, answer: str) -> Reason:
        """An answer made with these words as the audit trail keeps it: its words without
        markup and what they name, by id (`bot.domain.reasons`)."""
        ...

"""What Slack sends, as pydantic models: every request is validated into one of these at the
edge (`handlers.slack_events`), before Bolt or a listener reads it.

Only the fields the bot reads are kept; Bolt is handed the validated model again, so no
listener (and none of Bolt's own lookups) ever meets a list where a dict belongs, a missing
key, or text the database cannot store. Anything that does not fit is refused with HTTP 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from bot.adapters.slack.actions import InvalidPayload
from bot.domain.text import clean_text

Text = Annotated[str, StringConstraints(max_length=4000), AfterValidator(clean_text)]
"""Free text (a command's text, a button's value): cleaned of what the database cannot store."""

CommandText = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(clean_text)]
"""A slash command's text: the 4,000 characters Slack takes as typed, each `&` of them sent as
`&amp;` (`<`, `>` as `&lt;`, `&gt;`), so up to five times as long; what the parser refuses
then is answered as any refusal, in words."""

SlackId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,32}$")]
"""A user, team or user-group id (`U0RELMGR01`): it is stored in 32 characters."""

ChannelId = Annotated[str, StringConstraints(pattern=r"^[CDG][A-Z0-9]{1,31}$")]
"""A conversation id as Slack writes them: a channel (`C…`, a private one `G…`) or a direct
message (`D…`), in capitals and digits; anything else is no conversation a message can name."""

ResponseUrl = Annotated[str, StringConstraints(pattern=r"^https?://[!-~]{1,2000}$")]
"""Where Slack takes the answer to a command or click: an http(s) URL, nothing else."""

TriggerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
"""Slack's `trigger_id` (`<digits>.<digits>.<hex>`): the key of a delivery's claim."""

M = TypeVar("M", bound=BaseModel)


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SlashCommand(_Part):
    """A `/rollout` invocation (form-encoded)."""

    command: Text
    text: CommandText = ""
    user_id: SlackId
    channel_id: ChannelId
    response_url: ResponseUrl
    trigger_id: TriggerId | None = None
    team_id: SlackId | None = None
    enterprise_id: SlackId | None = None


class User(_Part):
    id: SlackId
    team_id: SlackId | None = None


class Team(_Part):
    id: SlackId
    enterprise_id: SlackId | None = None


class Enterprise(_Part):
    id: SlackId


class Channel(_Part):
    id: ChannelId


class Container(_Part):
    type: Text | None = None
    channel_id: ChannelId | None = None
    message_ts: Text | None = None
    is_ephemeral: bool | None = None


class Clicked(_Part):
    """One button of a `block_actions` payload."""

    action_id: Text
    value: Text = ""
    block_id: Text | None = None


class _ByAPerson(_Part):
    """What Slack sends with every click and submitted form alike: who, from which workspace
    (and organisation), and the `trigger_id` of the request."""

    user: User
    team: Team | None = None
    enterprise: Enterprise | None = None
    trigger_id: TriggerId | None = None


class BlockActions(_ByAPerson):
    """A click on a button of a message the bot posted."""

    type: Literal["block_actions"]
    channel: Channel | None = None
    container: Container | None = None
    response_url: ResponseUrl | None = None
    actions: list[Clicked] = Field(min_length=1, max_length=1)

    @property
    def action(self) -> Clicked:
        return self.actions[0]

    @property
    def channel_id(self) -> str:
        """Where the button was clicked ("" when the payload names no channel)."""
        if self.channel is not None:
            return self.channel.id
        return (self.container.channel_id if self.container else None) or ""


class Entry(_Part):
    """One input of a submitted modal, as Slack's `state.values` holds it."""

    type: Text | None = None
    value: Text | None = None


class ViewState(_Part):
    values: dict[Text, dict[Text, Entry]] = Field(default_factory=dict)


class View(_Part):
    type: Text = "modal"
    id: Text | None = None
    callback_id: Text = ""
    private_metadata: Text = ""
    state: ViewState = Field(default_factory=ViewState)


class ViewSubmission(_ByAPerson):
    """A modal the bot opened, submitted."""

    type: Literal["view_submission"]
    view: View

    def values(self) -> dict[str, Any]:
        """`view.state.values` as plain data, for the forms' parsers."""
        return self.view.state.model_dump(mode="json")["values"]  # type: ignore[no-any-return]


class Event(_Part):
    type: Text
    user: SlackId | None = None
    channel: ChannelId | None = None
    tab: Text | None = None


class EventCallback(_Part):
    """An Events API delivery (the App Home being opened)."""

    type: Literal["event_callback"]
    team_id: SlackId | None = None
    enterprise_id: SlackId | None = None
    event_id: Text | None = None
    event: Event


class UrlVerification(_Part):
    """The challenge Slack sends when the Events API URL is set."""

    type: Literal["url_verification"]
    challenge: Text


Interaction = BlockActions | ViewSubmission | EventCallback | UrlVerification

HANDLED_INTERACTIONS = frozenset({"block_actions", "view_submission"})
"""The interaction payload types a listener takes (`BlockActions`, `ViewSubmission`)."""
HANDLED_EVENTS = frozenset({"app_home_opened"})
"""The events a listener takes (`handlers.home`); the manifest subscribes to these alone."""


def parse(model: type[M], body: object) -> M:
    """`body` as `model`; raises InvalidPayload (a clear answer, never a traceback) otherwise."""
    try:
        return model.model_validate(body)
    except ValidationError:
        raise InvalidPayload(
            "The bot could not read this request (it is not shaped as Slack sends it), so "
            "nothing was changed. Use a fresh card or type the command again."
        ) from None

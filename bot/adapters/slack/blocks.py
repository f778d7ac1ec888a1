"""Block Kit pieces every view shares, built with `slack_sdk.models` and cut to Slack's limits
(`bot.adapters.slack.limits`), and `as_json`, the JSON Slack receives.

The views build slack_sdk objects and hand out their JSON (`to_dict()`, which also checks
Slack's limits), so the notifier, the listeners and the tests see plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.adapters.slack.limits import (
    ACTIONS_ELEMENTS,
    BUTTON_TEXT,
    CONFIRM_BUTTON,
    CONFIRM_TEXT,
    CONFIRM_TITLE,
    CONTEXT_TEXT,
    HEADER_TEXT,
    MODAL_TITLE,
    SECTION_TEXT,
    clip,
    pack,
)

BlockJson = dict[str, Any]
"""A block as Slack receives it (what the views hand out)."""

ViewJson = dict[str, Any]
"""A view (a modal, the Home tab) as Slack receives it."""

Style = Literal["primary", "danger"]


def plain(text: str, limit: int) -> PlainTextObject:
    """Plain text (emoji shortcodes shown as emoji), cut to `limit` characters."""
    return PlainTextObject(text=clip(text, limit), emoji=True)


def section(
    text: str, *, block_id: str | None = None, accessory: ButtonElement | None = None
) -> SectionBlock:
    """A mrkdwn section, optionally with a button beside it."""
    return SectionBlock(
        text=MarkdownTextObject(text=clip(text, SECTION_TEXT)),
        block_id=block_id,
        accessory=accessory,
    )


def sections(lines: Iterable[str]) -> list[Block]:
    """Lines packed into as few sections as Slack's 3000 characters per text allow."""
    return [section(chunk) for chunk in pack(lines, SECTION_TEXT)]


def context(text: str) -> ContextBlock:
    """A line of small print."""
    return ContextBlock(elements=[MarkdownTextObject(text=clip(text, CONTEXT_TEXT))])


def header(text: str) -> HeaderBlock:
    return HeaderBlock(text=plain(text, HEADER_TEXT))


def confirm(title: str, text: str, yes: str, *, danger: bool) -> ConfirmObject:
    """The dialog Slack shows before a button acts."""
    return ConfirmObject(
        title=plain(title, CONFIRM_TITLE),
        text=plain(text, CONFIRM_TEXT),
        confirm=plain(yes, CONFIRM_BUTTON),
        deny=plain("Cancel", CONFIRM_BUTTON),
        style="danger" if danger else "primary",
    )


def button(
    label: str,
    action_id: str,
    value: str,
    *,
    style: Style | None = None,
    confirm: ConfirmObject | None = None,
) -> ButtonElement:
    return ButtonElement(
        text=plain(label, BUTTON_TEXT),
        action_id=str(action_id),
        value=value,
        style=style,
        confirm=confirm,
    )


def actions(buttons: Sequence[ButtonElement]) -> list[Block]:
    """The buttons in as many actions blocks as Slack's 25 elements per block need."""
    return [
        ActionsBlock(elements=list(buttons[i : i + ACTIONS_ELEMENTS]))
        for i in range(0, len(buttons), ACTIONS_ELEMENTS)
    ]


def modal(
    title: str,
    blocks: Sequence[Block],
    *,
    submit: str | None = None,
    close: str = "Cancel",
    callback_id: str | None = None,
    private_metadata: str | None = None,
) -> ViewJson:
    """A modal view, as views.open and a `response_action: update` take it; a form when it
    has a `submit` label, its `callback_id` and what it acts on (`private_metadata`)."""
    return View(
        type="modal",
        callback_id=str(callback_id) if callback_id is not None else None,
        private_metadata=private_metadata,
        title=plain(title, MODAL_TITLE),
        submit=plain(submit, MODAL_TITLE) if submit is not None else None,
        close=plain(close, MODAL_TITLE),
        blocks=list(blocks),
    ).to_dict()


def as_json(blocks: Iterable[Block]) -> list[BlockJson]:
    """The blocks as Slack receives them (slack_sdk checks its limits here)."""
    return [block.to_dict() for block in blocks]


def submitted(values: Mapping[str, Any], block_id: str, action_id: str) -> str:
    """What a person typed in a modal's input (its `view.state.values`), "" when nothing."""
    block = values.get(block_id)
    entry = block.get(action_id) if isinstance(block, Mapping) else None
    value = entry.get("value") if isinstance(entry, Mapping) else None
    return value if isinstance(value, str) else ""

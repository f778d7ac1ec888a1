"""Slack's limits on what a message, a modal and their parts may hold, and the helpers that keep
every view within them (a text cut with an ellipsis, lines packed into sections, blocks cut with
a note). Slack refuses a whole message when one part is over, so every view goes through these.

The numbers are those of Slack's Block Kit reference (https://docs.slack.dev/reference/block-kit/)
and of the Web API methods that carry it. slack_sdk.models checks the same limits when a view is
turned into JSON (`to_dict()`), so a view that would break one fails in the tests, not in Slack;
the few numbers no view needs to cut to (ACTION_ID, CONTEXT_ELEMENTS, VIEW_BLOCKS) are here so
that this module lists every limit the views live within.
"""

from __future__ import annotations

from collections.abc import Iterable

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject

# -- a message and a view --------------------------------------------------------------------

MESSAGE_BLOCKS = 50
"""Blocks in one message (chat.postMessage `blocks`: "up to 50 blocks in each message")."""

VIEW_BLOCKS = 100
"""Blocks in a modal or the Home tab (views.open / views.publish: "up to 100 blocks")."""

MESSAGE_TEXT = 40_000
"""A message's `text` (chat.postMessage, "Truncating content": Slack truncates beyond 40,000
characters, and lists `msg_too_long` among its errors): a text-only post is cut to it."""

FALLBACK_TEXT = 3000
"""The bot's cap on a message's `text` fallback: Slack advises at most 4,000 characters and
truncates at 40,000 (chat.postMessage, "Truncating content"); the bot keeps to a section's."""

RESPONSE_URL_USES = 5
"""Answers one response_url takes ("up to 5 times within 30 minutes": Slack's guide to
handling user interaction, "Responding to interactions")."""

RESPONSE_URL_LIFETIME = 30 * 60.0
"""How long a response_url takes answers, in seconds (30 minutes, same source)."""

# -- blocks ----------------------------------------------------------------------------------

SECTION_TEXT = 3000
"""A section block's `text` (Block Kit reference, section block: "maximum length 3000")."""

CONTEXT_TEXT = 3000
"""A text element of a context block (a text object: "maximum length 3000")."""

CONTEXT_ELEMENTS = 10
"""Elements in one context block (Block Kit reference, context block: "maximum of 10")."""

HEADER_TEXT = 150
"""A header block's text (Block Kit reference, header block: "maximum length 150")."""

ACTIONS_ELEMENTS = 25
"""Elements in one actions block (Block Kit reference, actions block: "maximum of 25")."""

INPUT_LABEL = 2000
"""An input block's `label` (Block Kit reference, input block: "maximum length 2000")."""

INPUT_HINT = 2000
"""An input block's `hint` (Block Kit reference, input block: "maximum length 2000")."""

PLACEHOLDER = 150
"""An input's `placeholder` (Block Kit reference, plain-text input: "maximum length 150")."""

# -- elements --------------------------------------------------------------------------------

BUTTON_TEXT = 75
"""A button's label (Block Kit reference, button element `text`: "maximum length 75")."""

ACTION_ID = 255
"""An element's `action_id` and a block's `block_id` ("maximum length 255")."""

BUTTON_VALUE = 2000
"""A button's `value` (Block Kit reference, button element: "maximum length 2000")."""

CONFIRM_TITLE = 100
"""A confirmation dialog's `title` (confirmation dialog object: "maximum length 100")."""

CONFIRM_TEXT = 300
"""A confirmation dialog's `text` (confirmation dialog object: "maximum length 300")."""

CONFIRM_BUTTON = 30
"""A confirmation dialog's `confirm` and `deny` labels ("maximum length 30")."""

# -- modals ----------------------------------------------------------------------------------

MODAL_TITLE = 24
"""A modal's `title`, `submit` and `close` labels (view object: "maximum length 24")."""

PRIVATE_METADATA = 3000
"""A view's `private_metadata` (view object: "maximum length 3000")."""


def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters: cut with an ellipsis when longer, never inside a
    `<url|label>`, a mention or an `&amp;`, which Slack would show half-written."""
    if len(text) <= limit:
        return text
    kept = text[: limit - 1]
    opened = kept.rfind("<")
    if opened > kept.rfind(">"):
        kept = kept[:opened]
    entity = kept.rfind("&")
    if entity >= 0 and ";" not in kept[entity:] and len(kept) - entity < len("&amp;"):
        kept = kept[:entity]
    return kept + "…"


def pack(lines: Iterable[str], limit: int = SECTION_TEXT) -> list[str]:
    """Lines joined into as few texts of at most `limit` characters as they fit in (a line
    longer than `limit` is clipped)."""
    chunks: list[str] = []
    for line in lines:
        line = clip(line, limit)
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    return chunks


def fit(blocks: list[Block], what: str, limit: int = MESSAGE_BLOCKS) -> list[Block]:
    """At most `limit` blocks: dividers go first, then the tail, replaced by a note that says
    `what` shows the rest."""
    if len(blocks) <= limit:
        return blocks
    blocks = [block for block in blocks if block.type != "divider"]
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    note = f"_{len(blocks) - len(kept)} more blocks not shown: {what}_"
    return [*kept, ContextBlock(elements=[MarkdownTextObject(text=clip(note, CONTEXT_TEXT))])]

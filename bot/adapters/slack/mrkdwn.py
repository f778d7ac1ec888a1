"""The marks every message uses: a time each reader sees in their own zone, a mention (of a
person or a channel), and text shown as written; and the way back, from what Slack sends to
what a person typed.

One rule for people's words: decoded once where Slack hands them over (`as_typed`, a slash
command's text; a form's `plain_text_input` value comes raw), kept and sent to GitHub as plain
text, escaped (`escape`) only when a message shows them. The bot's own answers are mrkdwn;
where Slack shows plain text only (a form's field error), `plain_answer` makes them readable.
"""

from __future__ import annotations

import re
from datetime import datetime

_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}
_QUOTED = re.compile("`[^`]*`")
_ENTITY = re.compile("&(?:amp|lt|gt);")
_FORMATTED = re.compile(rf"<([^<>]*)>|{_ENTITY.pattern}")
_UNESCAPED = re.compile(rf"[<>]|&(?!{_ENTITY.pattern[1:]})")
"""A control character that does not start one of Slack's entities."""


def slack_time(moment: datetime) -> str:
    """Slack date formatting: every reader sees the time in their own zone."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{time}} ({{date_short_pretty}})|{moment:%Y-%m-%d %H:%M} UTC>"


def person(actor: str) -> str:
    """A mention of one Slack user."""
    return f"<@{actor}>"


def channel(channel_id: str) -> str:
    """A link to one Slack channel; a direct message (its id starts with D) has no link and is
    named in words."""
    return "a direct message" if channel_id.startswith("D") else f"<#{channel_id}>"


def message_link(channel_id: str, ts: str, label: str) -> str:
    """A link to one message of a channel (its permalink's form), read as `label`."""
    return f"<https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}|{label}>"


def escape(text: str) -> str:
    """Text shown as written in mrkdwn: Slack's three control characters escaped, so a
    person's `<!channel>` or `<https://x|approved>` reads as typed instead of notifying or
    linking."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_quoted(text: str) -> str:
    """The bot's own mrkdwn (an error's message, a refusal) with what it quotes between
    backticks escaped: a placeholder (`/rollout start <tag>`, as the domain writes its usage),
    a person's words or a branch's name read as written, while its mentions and links outside
    the quotes still work. What the Slack words escaped already (`&lt;tag&gt;`, an `escape`d
    name) is not escaped twice: Slack's three entities are kept as they are (so a typed `&lt;`
    between backticks reads `<`, the one thing this cannot tell apart)."""
    return _QUOTED.sub(lambda quoted: _UNESCAPED.sub(_escaped, quoted[0]), text)


def plain_answer(answer: str) -> str:
    """The bot's own answer (mrkdwn, as `escape_quoted` sends it) as a plain_text field shows
    it readably: a form's field error, which Slack shows as written, resolving no mention
    (`<@U123>` would show raw). A person reads `@U123` and a channel `#C123`: their ids, the one
    name the bot has (it does not ask Slack for a name while Slack waits 3 s for the form's
    answer), marked as Slack marks them; a link reads as its label, `&lt;` as `<`."""
    return as_typed(escape_quoted(answer))


def _escaped(character: re.Match[str]) -> str:
    return escape(character[0])


def as_typed(text: str) -> str:
    """Text as Slack sends it (a slash command's: `&`, `<`, `>` escaped, links, mentions and
    channels as `<...>`) back to what the person typed, once: `a &amp; b &lt;c&gt;` is
    `a & b <c>`, `<https://x>` the URL, `<@U1|ann>` `@ann`, `<#C1|releases>` `#releases`,
    `<!subteam^S1|@team>` `@team`, `<!here>` `@here`. Mentions become words: a reason kept
    and shown again later must not ping anyone, and GitHub knows no Slack ids."""
    return _FORMATTED.sub(_typed, text)


def _typed(found: re.Match[str]) -> str:
    if found[1] is None:
        return _ENTITIES[found[0]]
    target, _, label = found[1].partition("|")
    target, label = _decoded(target), _decoded(label)
    if target.startswith(("@", "#")):  # <@U1|ann>, <#C1|releases>; without a name, the id
        return target[0] + (label or target[1:])
    if target.startswith("!"):  # <!here>, <!subteam^S1|@team>, <!date^...|fallback>
        words = label or target[1:].split("^")[-1]
        return words if words.startswith("@") or target.startswith("!date^") else f"@{words}"
    return label or target  # a link: what was typed (`<http://x.io|x.io>`), else the URL


def _decoded(text: str) -> str:
    return _ENTITY.sub(lambda entity: _ENTITIES[entity[0]], text)

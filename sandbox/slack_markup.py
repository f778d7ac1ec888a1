"""The sandbox Slack's look at the mrkdwn the bot sends: a `<...>` that is not one of Slack's
control sequences, or a `&`, `<`, `>` that is not escaped, is what a real workspace renders
badly (a broken link, a dropped word; Slack's "Formatting text for app surfaces", "Escaping
text"). Slack takes such a message all the same, so the sandbox answers as Slack does and
records the problem (`SlackTestServer.markup_errors`); the tests fail on any
(`watching`, tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_SEQUENCE = re.compile(r"<([^<>]*)>")
_TARGET = re.compile(
    r"@[UW][A-Z0-9]+"  # a person: <@U123> or <@U123|ann>
    r"|#[CG][A-Z0-9]+"  # a channel
    r"|!(?:here|channel|everyone)"
    r"|!subteam\^[A-Z0-9]+"  # a user group
    r"|!date\^\d+\^[^^|]+(?:\^[^^|\s]+)?"  # a time each reader sees in their zone
    r"|(?:https?://|mailto:)[^\s|]+"  # a link
)
_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")
_QUOTE_MARK = re.compile(r"^[ \t]*>", re.MULTILINE)
"""A `>` that starts a line marks a block quote (mrkdwn), the one `>` sent raw."""


@dataclass(frozen=True)
class MarkupError:
    """A piece of mrkdwn Slack would render badly: where it was sent, the text, what is wrong."""

    where: str
    text: str
    problem: str


def markup_problems(text: str) -> list[str]:
    """What Slack would render badly in `text` (mrkdwn), each in a few words; [] when none."""
    problems: list[str] = []
    for found in _SEQUENCE.finditer(text):
        target, bar, label = found[1].partition("|")
        if not _TARGET.fullmatch(target):
            problems.append(f"{found[0]!r} is no Slack link, mention or date: send it escaped")
        elif target.startswith("!date^") and not label:
            problems.append(f"{found[0]!r}: a date needs its fallback text after `|`")
        elif bar and _BARE_AMPERSAND.search(label):
            problems.append(f"{found[0]!r}: a bare '&' in its label (send '&amp;')")
    rest = _QUOTE_MARK.sub("", _SEQUENCE.sub("\x00", text))  # what is outside the sequences
    if "<" in rest or ">" in rest:
        problems.append("a '<' or '>' outside a link, mention or date (send '&lt;' / '&gt;')")
    if _BARE_AMPERSAND.search(rest):
        problems.append("a bare '&' not starting '&amp;', '&lt;' or '&gt;' (send '&amp;')")
    return problems


def mrkdwn_texts(content: Mapping[str, Any]) -> Iterator[str]:
    """The mrkdwn of a message (its `text`, unless `mrkdwn` is false, and every mrkdwn text
    object of its blocks) or of a view (its blocks), as Slack parses it."""
    text = content.get("text")
    if isinstance(text, str) and content.get("mrkdwn", True) is not False:
        yield text
    for key in ("blocks", "view"):
        yield from _text_objects(content.get(key))


SHOWING = frozenset(
    {"chat.postMessage", "chat.update", "chat.postEphemeral", "views.open", "views.update"}
    | {"views.publish", "files.completeUploadExternal"}
)
"""The Web API methods whose arguments Slack shows as mrkdwn."""


def shown(method: str, args: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a Web API call shows (`mrkdwn_texts` of it): nothing unless `SHOWING`; a file's
    upload shows its `initial_comment` as a message."""
    if method not in SHOWING:
        return {}
    if method == "files.completeUploadExternal":
        return {"text": args.get("initial_comment")}
    return args


def acknowledged(body: str) -> Mapping[str, Any]:
    """What Slack shows of an acknowledgement's body over HTTP: a JSON object (a command's
    answer, a form's `response_action`), else nothing (an empty ack, or plain text that Slack
    shows as is)."""
    try:
        answer = json.loads(body) if body.startswith("{") else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _text_objects(part: Any) -> Iterator[str]:
    if isinstance(part, Mapping):
        if part.get("type") == "mrkdwn" and isinstance(part.get("text"), str):
            yield part["text"]
            return
        for value in part.values():
            yield from _text_objects(value)
    elif isinstance(part, list):
        for value in part:
            yield from _text_objects(value)


_WATCHERS: list[list[MarkupError]] = []


def problems_in(content: Mapping[str, Any], where: str = "") -> list[MarkupError]:
    """What Slack would render badly in what `content` shows (`mrkdwn_texts`)."""
    return [
        MarkupError(where, text, problem)
        for text in mrkdwn_texts(content)
        for problem in markup_problems(text)
    ]


def record(into: list[MarkupError], where: str, content: Mapping[str, Any]) -> None:
    """Look at what `content` shows: each problem goes `into` the server's record and to
    every `watching` list."""
    for error in problems_in(content, where):
        into.append(error)
        for watcher in _WATCHERS:
            watcher.append(error)


@contextlib.contextmanager
def watching() -> Iterator[list[MarkupError]]:
    """Every markup error any sandbox Slack of this process records meanwhile (a test's)."""
    seen: list[MarkupError] = []
    _WATCHERS.append(seen)
    try:
        yield seen
    finally:
        _WATCHERS.remove(seen)


def described(errors: list[MarkupError]) -> str:
    """The errors as a failing test names them (the first few)."""
    lines = [f"{e.where}: {e.problem} in {e.text[:200]!r}" for e in errors[:5]]
    more = f"\n... and {len(errors) - 5} more" if len(errors) > 5 else ""
    return "\n".join(lines) + more

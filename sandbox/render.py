"""Block Kit as plain text: what a reader of a Slack message sees, for test assertions and the demo.

Mrkdwn is kept as written (`*bold*`, `<!date^...>`), buttons show as `[Label]`, so an assertion
can match the words a user reads without depending on the block structure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _text(obj: Any) -> str:
    """The visible text of a text object (`plain_text` / `mrkdwn`) or a bare string."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, Mapping):
        value = obj.get("text", "")
        return value if isinstance(value, str) else ""
    return ""


def _element(element: Mapping[str, Any]) -> str:
    """An interactive or context element as one short token."""
    kind = element.get("type")
    if kind == "button":
        return f"[{_text(element.get('text'))}]"
    if kind in ("plain_text", "mrkdwn"):
        return _text(element)
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind == "overflow":
        return "[...]"
    if kind in ("static_select", "external_select", "users_select", "conversations_select"):
        chosen = element.get("initial_option")
        label = _text(chosen.get("text")) if isinstance(chosen, Mapping) else ""
        return f"[{label or _text(element.get('placeholder'))} v]"
    if kind == "datepicker":
        return f"[{element.get('initial_date', 'date')}]"
    if kind == "plain_text_input":
        return f"[{element.get('initial_value', '') or '____'}]"
    return f"[{kind}]"


def _rich_text(elements: Iterable[Any]) -> str:
    """Flatten rich_text sections/lists into their characters."""
    parts: list[str] = []
    for element in elements:
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        if kind == "text":
            parts.append(str(element.get("text", "")))
        elif kind == "link":
            parts.append(str(element.get("text") or element.get("url", "")))
        elif kind == "user":
            parts.append(f"<@{element.get('user_id', '')}>")
        elif kind == "channel":
            parts.append(f"<#{element.get('channel_id', '')}>")
        elif kind == "emoji":
            parts.append(f":{element.get('name', '')}:")
        elif "elements" in element:
            parts.append(_rich_text(element["elements"]))
            if kind in ("rich_text_section", "rich_text_preformatted", "rich_text_quote"):
                parts.append("\n")
    return "".join(parts)


def _block(block: Mapping[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"# {_text(block.get('text'))}"]
    if kind == "divider":
        return ["---"]
    if kind == "section":
        lines: list[str] = []
        text = _text(block.get("text"))
        accessory = block.get("accessory")
        if isinstance(accessory, Mapping):
            text = f"{text} {_element(accessory)}".strip()
        if text:
            lines.append(text)
        fields = block.get("fields") or []
        lines.extend(_text(f) for f in fields)
        return lines
    if kind == "context":
        return [" · ".join(_element(e) for e in block.get("elements", []))]
    if kind == "actions":
        return [" ".join(_element(e) for e in block.get("elements", []))]
    if kind == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    if kind == "input":
        element = block.get("element")
        shown = _element(element) if isinstance(element, Mapping) else ""
        return [f"{_text(block.get('label'))}: {shown}".rstrip()]
    if kind == "rich_text":
        return _rich_text(block.get("elements", [])).rstrip("\n").split("\n")
    return [f"[{kind} block]"]


def render_blocks(blocks: Sequence[Mapping[str, Any]]) -> str:
    """Render Block Kit blocks as lines of plain text (mrkdwn kept, buttons as `[Label]`)."""
    lines: list[str] = []
    for block in blocks:
        lines.extend(_block(block))
    return "\n".join(lines)


def render_message(text: str | None, blocks: Sequence[Mapping[str, Any]] | None) -> str:
    """What a message shows: its blocks when it has them, else its text (the fallback)."""
    if blocks:
        return render_blocks(blocks)
    return text or ""


def render_view(view: Mapping[str, Any]) -> str:
    """A modal or Home tab as text: title, blocks and its submit/close buttons."""
    lines: list[str] = []
    title = _text(view.get("title"))
    if title:
        lines.append(f"## {title}")
    body = render_blocks(view.get("blocks", []))
    if body:
        lines.append(body)
    buttons = [f"[{_text(view[key])}]" for key in ("close", "submit") if view.get(key)]
    if buttons:
        lines.append(" ".join(buttons))
    return "\n".join(lines)

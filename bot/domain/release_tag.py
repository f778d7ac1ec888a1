"""Release tags: the rule a tag follows (an image tag, as the workflow's `relay_image_tag` takes
it), read strictly from GitHub's refs and as pasted from a person's command."""

from __future__ import annotations

import difflib
import re

from bot.domain.errors import InvalidTag
from bot.domain.text import (
    CLOSING_QUOTE,
    PASTED_CREDENTIAL,
    TOKEN_SHAPE,
    character_name,
    shown,
    without_invisible_ends,
)

TAG_RULE = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
"""A container image tag, as the workflow's `relay_image_tag` takes it."""

_TAG = re.compile(TAG_RULE)
_TAG_CHARACTER = re.compile(r"[A-Za-z0-9_.-]")


def parse_tag(text: str) -> str:
    """`text` if it is a valid image tag; raises InvalidTag quoting the rule, and naming the
    first character it does not allow, otherwise."""
    return _checked(text, text)


def typed_tag(text: str) -> str:
    """The tag a person typed or pasted in a command: without the quotes or backticks around it
    or the invisible characters at its ends (a zero-width space from a document), which no tag
    holds; refused as `parse_tag` refuses otherwise. A ref GitHub names is read by `parse_tag`
    alone: a branch may be named `"v1.4.2"`."""
    tag = without_invisible_ends(text)
    if len(tag) > 2 and CLOSING_QUOTE.get(tag[0], "`" if tag[0] == "`" else None) == tag[-1]:
        tag = tag[1:-1]
    return _checked(tag, text)


def _checked(tag: str, typed: str) -> str:
    """`tag` if valid; else InvalidTag quoting `typed`, the text it was read from."""
    if TOKEN_SHAPE.search(typed):  # it would be posted on the release channel's cards
        raise InvalidTag(PASTED_CREDENTIAL)
    if _TAG.fullmatch(tag):
        return tag
    odd = next((c for c in tag if not _TAG_CHARACTER.fullmatch(c)), None)
    rule = (
        f"`{shown(odd)}` ({character_name(odd)}) is not allowed in a tag, which must match "
        f"`{TAG_RULE}`"
        if odd is not None
        else f"a tag must match `{TAG_RULE}` (a letter, digit or _, then up to 127 letters, "
        "digits, _, . or -)"
    )
    raise InvalidTag(f"`{shown(typed)}` is not a valid release tag: {rule}.")


def tag_family(tag: str) -> str:
    """What a tag's siblings start with, to list them in one request: up to its last `.` or
    `-` (`v1.4.x` → `v1.4.`), else its first character."""
    cut = max(tag.rfind("."), tag.rfind("-"))
    return tag[: cut + 1] if cut > 0 else tag[:1]


def nearest_tags(typed: str, tags: list[str], *, most: int = 3) -> list[str]:
    """The tags most like `typed` (a typo's likely meaning), the likest first."""
    return difflib.get_close_matches(typed, tags, n=most, cutoff=0.5)

"""Text people type, made storable: PostgreSQL refuses a NUL byte in text, and UTF-8 cannot
encode a lone surrogate (JSON's `\\ud800` decodes to one). Neither may cost a person their
action, least of all a kill-switch whose reason happens to carry one.
"""

from __future__ import annotations

import re

# In a Python str every surrogate code point is a lone one (pairs decode to one code point).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` without NUL characters, with each lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(lambda found: "" if found.group() == "\x00" else "\ufffd", text)


def shown(text: str) -> str:
    """User text quoted in a message: short, and without backticks that would break the quote."""
    text = text.replace("`", "'")
    return text if len(text) <= 60 else text[:57] + "..."

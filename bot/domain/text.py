"""Text people type, made storable: PostgreSQL refuses a NUL byte in text, and UTF-8 cannot
encode a lone surrogate (JSON's `\\ud800` decodes to one). Neither may cost a person their
action, least of all a kill-switch whose reason happens to carry one.
"""

from __future__ import annotations

import re
import unicodedata

# In a Python str every surrogate code point is a lone one (pairs decode to one code point).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

TOKEN_SHAPE = re.compile(
    r"\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]+|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]*"
    r"|\bnpm_[A-Za-z0-9]{36}\b|\bxox[a-z]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+"
)
"""Credentials by their shape, which no setting names: GitHub's (`ghs_` installation tokens,
`ghp_` classic and `github_pat_` fine-grained personal tokens, `gho_`/`ghu_`/`ghr_` OAuth, user
and refresh tokens) and a GitHub App's JWT (base64url JSON, `eyJ…`, from its header on: a cut
one too); npm's access tokens (`npm_` and 36 characters); Slack's (`xoxb-`, `xoxp-`, `xapp-`)."""

CLOSING_QUOTE = {
    '"': '"',
    "'": "'",
    "\N{LEFT DOUBLE QUOTATION MARK}": "\N{RIGHT DOUBLE QUOTATION MARK}",
    "\N{RIGHT DOUBLE QUOTATION MARK}": "\N{RIGHT DOUBLE QUOTATION MARK}",
    "\N{LEFT SINGLE QUOTATION MARK}": "\N{RIGHT SINGLE QUOTATION MARK}",
    "\N{RIGHT SINGLE QUOTATION MARK}": "\N{RIGHT SINGLE QUOTATION MARK}",
}
"""The quote that closes what each quote opens: straight, or as Slack's clients and documents
curl them (`\u201ctue 09:00\u201d`, `\u2018hotfix\u2019`)."""

NOT_REPEATED = "[a token, not repeated]"

PASTED_CREDENTIAL = (
    "That looks like a token: nothing was done, and the bot neither repeats nor keeps it. Never "
    "paste a token into Slack (Slack keeps what is typed): revoke it where it was made (an npm "
    "token: Access Tokens on npmjs.com) and make a new one. `/rollout npm-token` shows where "
    "NPM_TOKEN goes instead: the repository's Actions secrets, on GitHub."
)
"""The answer to a command whose argument is shaped as a token (`TOKEN_SHAPE`)."""


def whole_number(text: str) -> int | None:
    """`text` as a whole number written in ASCII digits (a header, an argument), or None:
    `str.isdigit` takes characters `int` refuses ("²") and `int` takes more than digits
    (" 1", "+1", "1_0", other scripts' digits)."""
    return int(text) if text.isascii() and text.isdigit() else None


def clean_text(text: str) -> str:
    """`text` without NUL characters, with each lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(lambda found: "" if found.group() == "\x00" else "\ufffd", text)


_SPACE = re.compile(r"[^\S\n]")
_WORD = re.compile(r"\S+")


def plain_spaces(text: str) -> str:
    """`text` with each space but a line break a plain one: a no-break space (a Mac's
    Option-Space, a document's) or a narrow one (macOS writes `9:00\u202fAM`) reads as the
    space it shows, wherever a word must be told from the next."""
    return _SPACE.sub(" ", text)


def shown(text: str) -> str:
    """User text quoted in a message: short, without backticks that would break the quote, and
    without anything shaped as a token (a person who pasted one is not shown it again, nor is
    it written to the log or the audit trail with the answer)."""
    text = TOKEN_SHAPE.sub(NOT_REPEATED, text).replace("`", "'")
    return text if len(text) <= 60 else text[:57] + "..."


# The direction controls that reorder what follows them on screen: `\u202e2.4.1v` shows as
# `v1.4.2`. Kept, so refused in a tag (shown what was read) rather than read as another one.
_REORDERING = frozenset({"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})


def without_invisible_ends(text: str) -> str:
    """`text` without the invisible characters at its ends (Unicode's format category: a
    zero-width space, a joiner, a direction mark, a byte order mark) that a copy from a document
    or a web page brings along; not an override or embedding of direction, which changes how
    the rest reads."""
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def words_without_invisible_ends(text: str) -> str:
    """`text` with each word `without_invisible_ends`: a zero-width space a document left
    between two words (`--flags-ready\u200b --at 9:00`) is no part of either."""
    return _WORD.sub(lambda word: without_invisible_ends(word[0]), text)


def _invisible(character: str) -> bool:
    return (
        unicodedata.category(character) == "Cf"
        and unicodedata.bidirectional(character) not in _REORDERING
    )


def character_name(character: str) -> str:
    """A character as a person can find it in what they typed: `U+2013 EN DASH`."""
    return f"U+{ord(character):04X} {unicodedata.name(character, 'without a name')}"


def closing_quote(text: str, start: int) -> int | None:
    """Where the text quoted at `start` (a quote of CLOSING_QUOTE) ends: at its closing quote
    that ends a word (`"don't wait"`), else the first within a word (`"a"b`). None when it is
    not closed: no closing quote, or its quote opening a word before one ends (`"hotfix --at
    "tue 09:00"`): a value left open must not swallow the option after it."""
    opening, closing = text[start], CLOSING_QUOTE[text[start]]
    within: int | None = None
    for i in range(start + 1, len(text)):
        if text[i] not in (opening, closing):
            continue
        if text[i] == closing and (i + 1 == len(text) or text[i + 1].isspace()):
            return i
        if text[i - 1].isspace():
            return None
        within = i if within is None and text[i] == closing else within
    return within

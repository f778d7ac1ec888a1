"""One logging setup for every entry point.

Lines about a rollout carry its id (set with `rollout_context`), in text and JSON alike, and
every configured secret value, Slack's hook URLs (`SLACK_HOOK`), the ticket of a Socket Mode
URL (`SOCKET_TICKET`), and anything shaped like a
token (`bot.domain.text.TOKEN_SHAPE`: an App's installation tokens are minted at run time, so
no list can name them, and a person may paste an npm or Slack token where a command's argument
goes), is scrubbed from every line as a last line of defence: code should never log a secret,
and this makes sure a slip does not leak one. PyGithub, for one, logs whole responses at
DEBUG, the minted installation token included.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from urllib.parse import unquote, unquote_plus, urlsplit

from bot.domain.text import TOKEN_SHAPE

_rollout_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("rollout_id", default=None)

REDACTED = "[redacted]"

SLACK_HOOK = re.compile(r"https://hooks\.slack\.com/[^\s'\"<>]+")
"""A Slack response_url or incoming webhook: whoever has it may post with it (a response_url
five times in 30 minutes), and an aiohttp error about a call to one (a redirect, a bad URL)
names it whole."""


SOCKET_TICKET = re.compile(r"(?<=[?&]ticket=)[^&\s'\"<>)]+")
"""The ticket of a Socket Mode URL (`apps.connections.open`): until used, whoever has it may
open the app's socket and receive what Slack sends the bot. The SDK's ERROR line about a
handshake Slack's end refused names the URL whole (aiohttp's error does)."""


def password_forms(url: str) -> set[str]:
    """The passwords inside a URL (before its host, and a `password` query parameter, where
    libpq and asyncpg take one) as the URL writes them (percent-encoded) and as they are meant
    (decoded): a line may carry either, and the scrubber must know both."""
    parts = urlsplit(url)
    forms = {parts.password, unquote(parts.password)} if parts.password else set()
    for name, _, written in (pair.partition("=") for pair in parts.query.split("&")):
        if name == "password" and written:  # a query writes a space as `+`, too
            forms |= {written, unquote_plus(written)}
    return forms


@contextlib.contextmanager
def rollout_context(rollout_id: str) -> Iterator[None]:
    """Tag every log line emitted inside the block (and tasks it starts) with the rollout id."""
    token = _rollout_id.set(rollout_id)
    try:
        yield
    finally:
        _rollout_id.reset(token)


class _ContextFilter(logging.Filter):
    """Adds `rollout_id` to each record and scrubs known secret values from it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = SOCKET_TICKET.sub(REDACTED, text)
        return SLACK_HOOK.sub(REDACTED, TOKEN_SHAPE.sub(REDACTED, text))

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "rollout_id"):
            record.rollout_id = _rollout_id.get()
        record.msg = self._scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rollout_id = getattr(record, "rollout_id", None)
        return f"{line} rollout={rollout_id}" if rollout_id else line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rollout_id = getattr(record, "rollout_id", None)
        if rollout_id:
            entry["rollout_id"] = rollout_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


QUIETED_LIBRARIES = ("slack_bolt", "slack_sdk", "github", "aiohttp.access")
"""Loggers held at WARNING at least: their chatter at INFO carries request details we do not
need in production logs."""


def configure_logging(*, level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Install the one root handler (stderr) with the rollout-id and secret filters."""
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter(secrets))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in QUIETED_LIBRARIES:
        library = logging.getLogger(noisy)
        library.setLevel(max(logging.getLevelName(level), logging.WARNING))
        # PyGithub adds a stderr handler of its own to `github` on import: its lines would be
        # written twice, once unscrubbed. They go through the one handler above instead.
        library.handlers[:] = []
        library.propagate = True

"""Block Kit built by pure functions from domain values: easy to test, easy to look at."""

from __future__ import annotations

from typing import Any

from bot.domain.commands import HELP

Block = dict[str, Any]


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def help_blocks() -> list[Block]:
    """Every subcommand with a line each."""
    lines = "\n".join(f"`{usage}`  {description}" for usage, description in HELP)
    return [
        {"type": "header", "text": {"type": "plain_text", "text": "/rollout: staged releases"}},
        _section(lines),
    ]


def help_text() -> str:
    """The plain-text fallback of the help (notifications, screen readers)."""
    return "/rollout subcommands: " + "; ".join(usage for usage, _ in HELP)


def error_blocks(message: str, *, with_help: bool = False) -> list[Block]:
    """A refusal or error, said plainly, optionally followed by the help."""
    blocks = [_section(f":warning: {message}")]
    return blocks + help_blocks() if with_help else blocks


def note(text: str) -> tuple[str, list[Block]]:
    """A one-line ephemeral answer: (fallback text, blocks)."""
    return text, [_section(text)]

"""Block Kit of the short answers (the help, a refusal or error, a one-line note) and the App
Home tab."""

from __future__ import annotations

from slack_sdk.models.views import View

from bot.adapters.slack.blocks import BlockJson, ViewJson, as_json, context, header, section
from bot.adapters.slack.limits import VIEW_BLOCKS
from bot.adapters.slack.mrkdwn import escape
from bot.domain.rollout_help import HELP
from bot.version import Build


def help_blocks() -> list[BlockJson]:
    """Every subcommand with a line each (its usage as typed: `<tag>` escaped for mrkdwn)."""
    lines = "\n".join(f"`{escape(usage)}`  {description}" for usage, description in HELP)
    return as_json([header("/rollout: staged releases"), section(lines), context(SEVERAL_SERVICES)])


SEVERAL_SERVICES = (
    "In a channel of several services, name the service right after the subcommand: "
    "`/rollout start &lt;service&gt; &lt;tag&gt;`."
)


def help_text() -> str:
    """The plain-text fallback of the help (notifications, screen readers)."""
    return "/rollout subcommands: " + "; ".join(escape(usage) for usage, _ in HELP)


def error_blocks(message: str, *, with_help: bool = False) -> list[BlockJson]:
    """A refusal or error, said plainly, optionally followed by the help."""
    blocks = as_json([section(f":warning: {message}")])
    return blocks + help_blocks() if with_help else blocks


def note(text: str) -> tuple[str, list[BlockJson]]:
    """A one-line ephemeral answer: (fallback text, blocks)."""
    return text, as_json([section(text)])


def home_tab(shown: list[BlockJson], *, running: Build) -> ViewJson:
    """The App Home tab: what the person may see (rollouts, or why not; `HOME_ROOM` blocks at
    most), the help, and the running version (what an admin asks first)."""
    about = as_json([context(str(running))])
    return View(type="home", blocks=[*shown, *help_blocks(), *about]).to_dict()


HOME_ROOM = VIEW_BLOCKS - len(help_blocks()) - 1
"""Blocks the Home tab has for rollouts: a view's 100, less the help and the version."""

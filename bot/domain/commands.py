"""`/rollout` commands: the slash command's text parsed into typed values, and the help as data.

The parser raises only InvalidCommand (or its InvalidTag), whose message is safe to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, NamedTuple

from bot.domain.errors import InvalidCommand, InvalidTag
from bot.domain.text import clean_text

TAG_RULE = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
"""A container image tag, as the workflow's `relay_image_tag` takes it."""

_TAG = re.compile(TAG_RULE)
_MAX_REASON = 500
# Slack's desktop clients may turn a typed "--" into an em dash.
_FLAGS_READY = ("--flags-ready", "\N{EM DASH}flags-ready")


class Subcommand(StrEnum):
    START = "start"
    STATUS = "status"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    KILL = "kill"
    HISTORY = "history"
    NPM_TOKEN = "npm-token"  # noqa: S105 (a subcommand, not a token)
    HELP = "help"


@dataclass(frozen=True)
class Start:
    """Check the preflight for `tag`; `flags_ready` confirms the feature flags up front."""

    name: ClassVar[Subcommand] = Subcommand.START
    tag: str
    flags_ready: bool = False


@dataclass(frozen=True)
class Status:
    name: ClassVar[Subcommand] = Subcommand.STATUS


@dataclass(frozen=True)
class Promote:
    name: ClassVar[Subcommand] = Subcommand.PROMOTE


@dataclass(frozen=True)
class Rollback:
    name: ClassVar[Subcommand] = Subcommand.ROLLBACK


@dataclass(frozen=True)
class Kill:
    """Trip the desktop kill-switch; `reason` is the rest of the text as Slack sent it (escaped)."""

    name: ClassVar[Subcommand] = Subcommand.KILL
    reason: str | None = None


@dataclass(frozen=True)
class History:
    """The last rollouts, or one rollout's timeline when `tag` is given."""

    name: ClassVar[Subcommand] = Subcommand.HISTORY
    tag: str | None = None


@dataclass(frozen=True)
class NpmToken:
    name: ClassVar[Subcommand] = Subcommand.NPM_TOKEN


@dataclass(frozen=True)
class Help:
    name: ClassVar[Subcommand] = Subcommand.HELP


Command = Start | Status | Promote | Rollback | Kill | History | NpmToken | Help


class HelpEntry(NamedTuple):
    usage: str
    description: str


HELP: tuple[HelpEntry, ...] = (
    HelpEntry(
        "/rollout start <tag> [--flags-ready]",
        "Check the preflight for a release tag, then dispatch the Deployment Strategy workflow",
    ),
    HelpEntry("/rollout status", "Show the active rollouts and where each one stands"),
    HelpEntry("/rollout promote", "Approve the next stage once the current stage's gate passed"),
    HelpEntry("/rollout rollback", "Roll the relay back: stop at once and run the rollback job"),
    HelpEntry(
        "/rollout kill [reason]",
        "Trip the desktop/CLI kill-switch: stop promotion and keep the current ring",
    ),
    HelpEntry("/rollout history [tag]", "Show the last rollouts, or the timeline of one release"),
    HelpEntry("/rollout npm-token", "Set up and verify the NPM_TOKEN secret of the npm Release"),
    HelpEntry("/rollout help", "Show this help"),
)

_OUTSIDE_RELEASE_CHANNELS = frozenset({Subcommand.HELP})
# The npm walkthrough changes no rollout; a person may prefer to set a secret up in private.
_IN_DIRECT_MESSAGES = frozenset({Subcommand.HELP, Subcommand.NPM_TOKEN})


def allowed_outside_release_channels(command: Command | Subcommand) -> bool:
    """Whether a subcommand may run in a channel that is not a release channel."""
    name = command if isinstance(command, Subcommand) else command.name
    return name in _OUTSIDE_RELEASE_CHANNELS


def is_direct_message(channel_id: str) -> bool:
    """Whether a Slack conversation id is a direct message (Slack's DM ids start with D)."""
    return channel_id.startswith("D")


def allowed_in_direct_messages(command: Command | Subcommand) -> bool:
    """Whether a subcommand may run in a direct message with the bot."""
    name = command if isinstance(command, Subcommand) else command.name
    return name in _IN_DIRECT_MESSAGES


def parse_command(text: str) -> Command:
    """The command in the slash command's text; empty text is help. Characters the database
    cannot store are dropped first, so a kill-switch goes through whatever its reason says."""
    parts = clean_text(text).strip().split(maxsplit=1)
    if not parts:
        return Help()
    word, rest = parts[0], parts[1] if len(parts) > 1 else ""
    try:
        subcommand = Subcommand(word.lower())
    except ValueError:
        raise InvalidCommand(f"`{_shown(word)}` is not a /rollout subcommand.") from None
    args = rest.split()
    if subcommand is Subcommand.START:
        return _start(args)
    if subcommand is Subcommand.KILL:
        reason = rest.strip()
        if len(reason) > _MAX_REASON:
            raise InvalidCommand(f"The kill reason is too long (at most {_MAX_REASON} characters).")
        return Kill(reason=reason or None)
    if subcommand is Subcommand.HISTORY:
        if len(args) > 1:
            raise _unexpected(subcommand, args[1])
        return History(tag=parse_tag(args[0]) if args else None)
    if args:
        raise _unexpected(subcommand, args[0])
    simple: dict[Subcommand, Command] = {
        Subcommand.STATUS: Status(),
        Subcommand.PROMOTE: Promote(),
        Subcommand.ROLLBACK: Rollback(),
        Subcommand.NPM_TOKEN: NpmToken(),
        Subcommand.HELP: Help(),
    }
    return simple[subcommand]


def parse_tag(text: str) -> str:
    """`text` if it is a valid image tag; raises InvalidTag quoting the rule otherwise."""
    if not _TAG.fullmatch(text):
        raise InvalidTag(
            f"`{_shown(text)}` is not a valid release tag: a tag must match `{TAG_RULE}` "
            "(a letter, digit or _, then up to 127 letters, digits, _, . or -)."
        )
    return text


def _start(args: list[str]) -> Start:
    flags_ready = False
    tags: list[str] = []
    for arg in args:
        if arg in _FLAGS_READY:
            flags_ready = True
        elif arg.startswith(("--", "\N{EM DASH}")):
            raise InvalidCommand(
                f"`{_shown(arg)}` is not an option of start; it takes --flags-ready."
            )
        else:
            tags.append(arg)
    if not tags:
        raise InvalidCommand("start needs a release tag: `/rollout start <tag> [--flags-ready]`.")
    if len(tags) > 1:
        raise _unexpected(Subcommand.START, tags[1])
    return Start(tag=parse_tag(tags[0]), flags_ready=flags_ready)


def _unexpected(subcommand: Subcommand, arg: str) -> InvalidCommand:
    usage = next(entry.usage for entry in HELP if entry.usage.split()[1] == subcommand)
    return InvalidCommand(f"Unexpected `{_shown(arg)}`: the usage is `{usage}`.")


def _shown(text: str) -> str:
    """User text quoted in a message: short, and without backticks that would break the quote."""
    text = text.replace("`", "'")
    return text if len(text) <= 60 else text[:57] + "..."

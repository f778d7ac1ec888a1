"""`/rollout` commands: the slash command's text parsed into typed values (the help's words,
which a refusal quotes for a command's usage, are `bot.domain.rollout_help`).

The parser raises only InvalidCommand (or its InvalidTag), whose message is safe to show.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar

from bot.domain.errors import InvalidCommand
from bot.domain.freeze_until import every_service, one_lane, zone_after_end
from bot.domain.period_report import DEFAULT_PERIOD, Period, parse_period
from bot.domain.release_tag import typed_tag
from bot.domain.rollout_help import HELP
from bot.domain.run_link import USAGE, RunReference, parse_run_reference
from bot.domain.text import (
    CLOSING_QUOTE,
    NOT_REPEATED,
    PASTED_CREDENTIAL,
    TOKEN_SHAPE,
    clean_text,
    closing_quote,
    plain_spaces,
    shown,
    without_invisible_ends,
    words_without_invisible_ends,
)

_MAX_REASON = 500
_QUOTES = "".join(CLOSING_QUOTE)
# start's options, wherever they stand; Slack's desktop clients may turn a typed "--" into an
# em dash (a document, into an en dash). A quoted value is taken as it is (a reason may say
# `--at 9`).
_START_OPTION = re.compile(
    r"(?<!\S)(?:--|\N{EM DASH}|\N{EN DASH})(flags-ready|at|override-freeze)(?=\s|$|=)",
    re.IGNORECASE,
)
_START_OPTIONS = 'it takes `--flags-ready`, `--at "<time>"` and `--override-freeze "<reason>"`'
# An unquoted time: one word, and a time of day after it (`--at tue 09:00`, `--at tomorrow
# 9am`, `--at tue 09:00+01:00`), so a tag after it stays the tag.
_UNQUOTED_AT = re.compile(
    r"\S+(?:\s+[0-9]{1,2}(?::[0-9]{2})?(?:am|pm)?(?:[+-][0-9]{2}:?[0-9]{2}|Z)?(?!\S))?",
    re.IGNORECASE,
)
_WORD = re.compile(r"\S+")
# A word that goes on a time (a zone, an offset, am or pm, a time of day) typed after an
# unquoted `--at` value, which takes only a word and a time of day (`--at tue 09:00 UTC`).
_TIME_WORD = re.compile(
    r"(?-i:[A-Z]{2,5})|utc|gmt|am|pm|[a-z_]+/[a-z_/]+"
    r"|(?:utc|gmt)?[+-][0-9]{1,2}(?::?[0-9]{2})?|[0-9]{1,2}(?::[0-9]{2})?(?:am|pm)?",
    re.IGNORECASE,
)


class Subcommand(StrEnum):
    START = "start"
    STATUS = "status"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    KILL = "kill"
    HISTORY = "history"
    REPORT = "report"
    NPM_TOKEN = "npm-token"  # noqa: S105 (a subcommand, not a token)
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    LOCK = "lock"
    UNLOCK = "unlock"
    LINK = "link"
    HELP = "help"


@dataclass(frozen=True)
class Start:
    """Check the preflight for `tag`; `flags_ready` confirms the feature flags up front."""

    name: ClassVar[Subcommand] = Subcommand.START
    tag: str
    flags_ready: bool = False
    override_freeze: str | None = None
    """An approver's reason to start (and dispatch) while deploys are frozen."""
    at: str | None = None
    """When to dispatch, as typed (`tue 09:00`): read in the starter's time zone by the
    service (`bot.domain.schedule.start_schedule`)."""


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
    """Trip the desktop kill-switch; `reason` is the rest of the text, as typed."""

    name: ClassVar[Subcommand] = Subcommand.KILL
    reason: str | None = None


@dataclass(frozen=True)
class History:
    """The last rollouts, or one rollout's timeline when `tag` is given."""

    name: ClassVar[Subcommand] = Subcommand.HISTORY
    tag: str | None = None


@dataclass(frozen=True)
class Report:
    """The rollouts that ended in `period`, summed up."""

    name: ClassVar[Subcommand] = Subcommand.REPORT
    period: Period = field(default_factory=lambda: parse_period(DEFAULT_PERIOD))


@dataclass(frozen=True)
class NpmToken:
    name: ClassVar[Subcommand] = Subcommand.NPM_TOKEN


@dataclass(frozen=True)
class Link:
    """Attach an existing run to the rollout whose dispatch could not be identified."""

    name: ClassVar[Subcommand] = Subcommand.LINK
    run: RunReference


@dataclass(frozen=True)
class Help:
    name: ClassVar[Subcommand] = Subcommand.HELP


@dataclass(frozen=True)
class Freeze:
    """Freeze starts and dispatches until `until` (a duration or a time, read by the service
    against its clock: `bot.domain.freeze_until.freeze_end`), for `reason`."""

    name: ClassVar[Subcommand] = Subcommand.FREEZE
    until: str
    reason: str
    every: bool = False  # `--all`: every service's lane (`bot.services.freeze_all`)


@dataclass(frozen=True)
class Unfreeze:
    name: ClassVar[Subcommand] = Subcommand.UNFREEZE
    every: bool = False  # `--all`: every service's lane


@dataclass(frozen=True)
class Lock:
    name: ClassVar[Subcommand] = Subcommand.LOCK
    reason: str = ""


@dataclass(frozen=True)
class Unlock:
    """Unlock the lane: the holder, or another approver giving `reason`."""

    name: ClassVar[Subcommand] = Subcommand.UNLOCK
    reason: str = ""


Command = (
    Freeze
    | Unfreeze
    | Lock
    | Unlock
    | Start
    | Status
    | Promote
    | Rollback
    | Kill
    | History
    | Report
    | NpmToken
    | Link
    | Help
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
    parts = _words(text, 1)
    if not parts:
        return Help()
    word, rest = parts[0], parts[1] if len(parts) > 1 else ""
    try:
        subcommand = Subcommand(word.lower())
    except ValueError:
        unknown = f"`{shown(word)}` is not a /rollout subcommand."
        raise InvalidCommand(PASTED_CREDENTIAL if TOKEN_SHAPE.search(text) else unknown) from None
    if subcommand is not Subcommand.KILL and TOKEN_SHAPE.search(rest):
        # Wherever it is (after other words too): the person is told to revoke it, never
        # only that a word before it was unexpected.
        raise InvalidCommand(PASTED_CREDENTIAL)
    args = rest.split()
    if subcommand is Subcommand.START:
        return _start(rest)
    if subcommand is Subcommand.KILL:
        # The kill-switch goes through whatever its reason says: a token pasted in it is not
        # said in the thread, nor kept, and a long one (a stack trace pasted) is cut, never
        # refused (in an incident, retyping it would hold the kill-switch back).
        return Kill(reason=_reason(TOKEN_SHAPE.sub(NOT_REPEATED, rest), "kill", cut=True) or None)
    if subcommand is Subcommand.FREEZE:
        every, rest = every_service(rest)
        return replace(_freeze(rest), every=every)
    if subcommand is Subcommand.UNFREEZE and every_service(rest)[0]:
        if len(args) > 1:
            raise _unexpected(subcommand, args[1])
        return Unfreeze(every=True)
    if subcommand is Subcommand.LOCK:
        return Lock(reason=_reason(one_lane(rest, "lock"), "lock"))
    if subcommand is Subcommand.UNLOCK:
        return Unlock(reason=_reason(one_lane(rest, "unlock"), "unlock"))
    if subcommand is Subcommand.HISTORY:
        if len(args) > 1:
            raise _unexpected(subcommand, args[1])
        return History(tag=typed_tag(args[0]) if args else None)
    if subcommand is Subcommand.REPORT:
        if len(args) > 1:
            raise _unexpected(subcommand, args[1])
        return Report(parse_period(args[0])) if args else Report()
    if subcommand is Subcommand.LINK:
        if len(args) != 1:
            raise InvalidCommand(f"link takes one run: {USAGE}.")
        return Link(run=parse_run_reference(args[0]))
    if args:
        raise _unexpected(subcommand, args[0])
    simple: dict[Subcommand, Command] = {
        Subcommand.STATUS: Status(),
        Subcommand.PROMOTE: Promote(),
        Subcommand.ROLLBACK: Rollback(),
        Subcommand.NPM_TOKEN: NpmToken(),
        Subcommand.HELP: Help(),
        Subcommand.UNFREEZE: Unfreeze(),
    }
    return simple[subcommand]


def _words(text: str, splits: int) -> list[str]:
    """The command's words (`splits` splits at most), cleaned to be stored, each without
    invisible characters at its ends (a zero-width space of a command pasted from a document)."""
    return words_without_invisible_ends(clean_text(text)).split(maxsplit=splits)


def named_service(text: str, names: Collection[str]) -> tuple[str | None, str, Subcommand | None]:
    """The service the command's text names right after its subcommand (`start billing-api
    v1.4.2`: a word that is one of `names`, in any case), the text without it, and the
    subcommand (None when the text has none, or an unknown one: the parser says so)."""
    parts = _words(text, 2)
    try:
        subcommand = Subcommand(parts[0].lower()) if parts else None
    except ValueError:
        return None, text, None
    if subcommand is None or subcommand is Subcommand.HELP or len(parts) < 2:
        return None, text, subcommand
    if (name := parts[1].lower()) not in names:
        return None, text, subcommand
    return name, " ".join([parts[0], *parts[2:]]), subcommand


def _reason(text: str, what: str, *, cut: bool = False) -> str:
    """A reason as typed: it is said in the channel and kept (`parse_command` has refused a
    token in it); quotes and invisible characters around it are no part of it. A long one is
    refused, or `cut` to _MAX_REASON characters."""
    reason = without_invisible_ends(text.strip().strip(_QUOTES)).strip()
    if len(reason) > _MAX_REASON and cut:
        return reason[: _MAX_REASON - 1].rstrip() + "…"
    if len(reason) > _MAX_REASON:
        raise InvalidCommand(f"The {what} reason is too long (at most {_MAX_REASON} characters).")
    return reason


_FREEZE_USAGE = "`/rollout freeze <duration or until> <reason>` (`/rollout freeze 2h code freeze`)"
_UNTIL = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{1,2}:[0-9]{2}\S*|\S+)\s*(.*)", re.DOTALL)


def _freeze(text: str) -> Freeze:
    found = _UNTIL.fullmatch(plain_spaces(text).strip())
    if found is None:
        raise InvalidCommand(f"freeze needs an end and a reason: {_FREEZE_USAGE}.")
    until, reason = zone_after_end(found[1], _reason(found[2], "freeze"))
    if not reason:
        raise InvalidCommand(f"freeze needs a reason after its end: {_FREEZE_USAGE}.")
    return Freeze(until=until, reason=reason)


def _start(text: str) -> Start:
    """start's tag and options, each option once, in any order."""
    values: dict[str, str] = {}
    tags: list[str] = []
    flags_ready = False
    at = 0
    while (word := _WORD.search(text, at)) is not None:
        option = _START_OPTION.match(text, word.start())
        if option is None:
            if word[0].startswith(("--", "\N{EM DASH}", "\N{EN DASH}")):
                raise InvalidCommand(
                    f"`{shown(word[0])}` is not an option of start; {_START_OPTIONS}."
                )
            tags.append(word[0])
            at = word.end()
            continue
        name, at = option[1].lower(), option.end()
        if name == "flags-ready":
            if text.startswith("=", at):
                raise InvalidCommand(f"`--flags-ready` takes no value; {_START_OPTIONS}.")
            flags_ready = True
            continue
        if name in values:
            raise InvalidCommand(f"`--{name}` is given twice: give it once.")
        values[name], at = _option_value(text, at + text.startswith("=", at), name)
        following = _WORD.search(text, at)
        unquoted = name == "at" and not text[:at].rstrip().endswith(tuple(_QUOTES))
        if unquoted and following is not None and _TIME_WORD.fullmatch(following[0]):
            time = f"{values[name]} {following[0]}"
            raise InvalidCommand(
                f"`{shown(following[0])}` stands after `--at {shown(values[name])}`, which "
                f'takes a word and a time of day unquoted: quote the whole time, `--at "'
                f'{shown(time)}"`.'
            )
    if not tags:
        raise InvalidCommand("start needs a release tag: `/rollout start <tag> [--flags-ready]`.")
    if len(tags) > 1:
        raise _unexpected(Subcommand.START, tags[1])
    when = values.get("at")
    if when is not None and not when:
        raise InvalidCommand('--at needs a time: `/rollout start <tag> --at "tue 09:00"`.')
    override = values.get("override-freeze")
    if override is not None:
        override = _reason(override, "override")
        if not override:
            raise InvalidCommand(
                'An override needs a reason: `/rollout start <tag> --override-freeze "<reason>"`.'
            )
    return Start(tag=typed_tag(tags[0]), flags_ready=flags_ready, override_freeze=override, at=when)


def _option_value(text: str, at: int, name: str) -> tuple[str, int]:
    """The value of option `name` from `at` on, and where it ends: a quoted text as it is (up to
    its closing quote that ends a word: `"don't wait"`); else a time (`--at`), or a reason up
    to the next option or the end (`--override-freeze`)."""
    start = len(text) - len(text[at:].lstrip())
    if start < len(text) and text[start] in _QUOTES:
        end = closing_quote(text, start)
        if end is None:
            raise InvalidCommand(f"The quote after `--{name}` is not closed.")
        return text[start + 1 : end].strip(), end + 1
    if name == "at":
        found = _UNQUOTED_AT.match(text, start)
        return (found[0], found.end()) if found is not None else ("", start)
    following = _START_OPTION.search(text, start)
    end = following.start() if following is not None else len(text)
    return text[start:end].strip(), end


def _unexpected(subcommand: Subcommand, arg: str) -> InvalidCommand:
    usage = next(entry.usage for entry in HELP if entry.usage.split()[1] == subcommand)
    return InvalidCommand(f"Unexpected `{shown(arg)}`: the usage is `{usage}`.")

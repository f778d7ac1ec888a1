"""The end a `/rollout freeze` names: a duration or a time, read in the asker's Slack time
zone unless it gives its offset (or `UTC` follows it); any other zone typed after it is refused
rather than read wrongly, and so is a local time the clocks skip or pass twice
(`bot.domain.freeze` applies it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.domain.durations import MAX_DURATION, format_duration, parse_duration
from bot.domain.errors import InvalidCommand
from bot.domain.schedule import ZoneNeeded, offset_zone
from bot.domain.text import shown, without_invisible_ends

_OFFSET = re.compile(r"[+-][0-9]{2}:?[0-9]{2}$")
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?(?:Z|[+-].*)?")


_UTC_WORDS = frozenset({"UTC", "GMT", "Z"})
_ZONE_ABBREVIATIONS = frozenset(
    {"CET", "CEST", "EET", "EEST", "WET", "WEST", "BST", "IST", "EST", "EDT", "CST", "CDT"}
    | {"MST", "MDT", "PST", "PDT", "AKST", "AKDT", "HST", "JST", "KST", "AEST", "AEDT"}
    | {"ACST", "ACDT", "AWST", "NZST", "NZDT", "MSK", "SGT", "HKT"}
)
"""Zone abbreviations a person may type after a freeze's end (`18:00 CET`, `18:00 pst`: in any
case): ambiguous (IST, CST, BST name several zones), so they are refused rather than read as
UTC."""
_ENGLISH_WORDS = frozenset({"wet", "west"})
"""Abbreviations that are English words: unless in capitals, they begin a reason (`West
region move`)."""
_TYPED_OFFSET = re.compile(r"(?:UTC|GMT)?[+-][0-9]{1,2}(?::?[0-9]{2})?", re.IGNORECASE)
"""An offset typed apart from the end (`18:00 +01:00`, `18:00 GMT-5`): refused too, since the
end would be read as UTC with the offset taken for the reason."""


_ALL = re.compile(r"(?:--|\N{EM DASH}|\N{EN DASH})all", re.IGNORECASE)
"""`--all` (a dash pasted as an em or en dash too): a freeze or unfreeze of every service. An
option, never a word: `all` may be a service's name (`/rollout freeze all 2h ...`)."""


def every_service(text: str) -> tuple[bool, str]:
    """Whether a freeze's or unfreeze's text (after its subcommand) starts with `--all`, and
    the text after it."""
    parts = text.strip().split(maxsplit=1)
    if parts and _ALL.fullmatch(without_invisible_ends(parts[0])):
        return True, parts[1] if len(parts) > 1 else ""
    return False, text


def one_lane(text: str, what: str) -> str:
    """`text` after `/rollout lock` or `unlock` (`what`), refused when it starts with `--all`:
    those take one service's lane, and `--all` would be read as their reason's first word."""
    if every_service(text)[0]:
        raise InvalidCommand(
            f"`/rollout {what}` takes one service's lane (`--all` is for freeze and unfreeze): "
            f"`/rollout {what} <reason>` in its release channel; nothing was changed."
        )
    return text


def zone_after_end(until: str, reason: str) -> tuple[str, str]:
    """The end and the reason of `/rollout freeze <until> <reason>`, once a zone typed after
    an end time is taken off the reason: `UTC` or `GMT` makes the end UTC (`Z`); a zone
    abbreviation (`CET`), an IANA name (`Europe/Berlin`) or an offset apart from the time
    (`+01:00`, `GMT-5`) raises InvalidCommand, since the end would be read in another zone.
    So does `--all` typed as the end or after it: the freeze of one lane, `--all` its reason,
    would leave the other services open (it goes right after the subcommand)."""
    if every_service(until)[0] or every_service(reason)[0]:
        raise InvalidCommand(
            "`--all` goes right after `freeze`, before the end: `/rollout freeze --all 2h "
            "<reason>` freezes every service; nothing was changed."
        )
    word, _, rest = reason.partition(" ")
    if not _ISO.fullmatch(until) or until.endswith("Z") or _OFFSET.search(until[10:]):
        return until, reason
    if word.upper() in _UTC_WORDS:
        return f"{until}Z", rest.strip()
    english = not word.isupper() and word.lower() in _ENGLISH_WORDS
    abbreviation = word.upper() in _ZONE_ABBREVIATIONS and not english
    if abbreviation or _TYPED_OFFSET.fullmatch(word) or _is_zone_name(word):
        raise InvalidCommand(
            f"`{shown(word)}` is not a time zone I read: a freeze's end is read in your Slack "
            f"time zone (in UTC with `UTC` after it), or give its offset, such as "
            f"`{until.replace(' ', 'T')}+01:00`."
        )
    return until, reason


def _is_zone_name(word: str) -> bool:
    if "/" not in word:
        return False
    try:
        ZoneInfo(word)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def freeze_end(text: str, now: datetime, zone: ZoneInfo | None = None) -> datetime:
    """When an ad hoc freeze ends: `now` plus a duration (`2h`, `72h`), or a time
    (`2026-12-24 18:00`, read in `zone` unless it names an offset such as `+01:00`, or `Z`).
    Raises ZoneNeeded for a time with no offset and no `zone`; InvalidCommand for an
    unreadable text, a local time the clocks skip or pass twice in `zone`, or an end that is
    not in the future or is more than MAX_DURATION (30 days) away."""
    if _ISO.fullmatch(text):
        too_far = InvalidCommand(
            f"`{text}` is too far ahead: a freeze lasts at most 30 days "
            f"(`{format_duration(MAX_DURATION)}`)."
        )
        try:
            # `9:00`, which `_ISO` takes, as `fromisoformat` reads it: `09:00`.
            until = datetime.fromisoformat(re.sub(r"T([0-9]):", r"T0\1:", text.replace(" ", "T")))
            if until.tzinfo is None:
                if zone is None:
                    raise ZoneNeeded(f"`{text}` needs a time zone to be read in.")
                until = _local(until, zone, text)
            until = until.astimezone(UTC)
        except InvalidCommand:
            raise
        except ValueError:
            raise InvalidCommand(f"`{text}` is not a date and time I can read.") from None
        except OverflowError:  # past datetime's last year once in UTC
            raise too_far from None
        if until <= now:
            raise InvalidCommand(f"`{text}` is in the past: a freeze must end in the future.")
        if until > now + MAX_DURATION:
            raise too_far
        return until
    try:
        return now + parse_duration(text)
    except ValueError as error:
        raise InvalidCommand(
            f"{error}; or give an end time such as `2026-12-24 18:00` (your Slack time zone) "
            "or `2026-12-24T18:00+01:00`."
        ) from None


def _local(naive: datetime, zone: ZoneInfo, text: str) -> datetime:
    """`naive` in `zone`; raises InvalidCommand when the clocks skip it (going forward) or
    pass it twice (going back) there: which end was meant is not guessed."""
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    typed = naive.isoformat(timespec="minutes")
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise InvalidCommand(
            f"`{text}` does not exist in your time zone ({zone.key}): the clocks skip it. "
            f"Give a time before or after it, or its offset, such as "
            f"`{typed}{offset_zone(first).removeprefix('UTC')}` (the clocks' offset before "
            f"they skip: {first.astimezone(UTC).astimezone(zone):%H:%M} there, after it)."
        )
    raise InvalidCommand(
        f"`{text}` happens twice in your time zone ({zone.key}): the clocks go back then. "
        f"Give its offset: `{typed}{offset_zone(first).removeprefix('UTC')}` for the first, "
        f"`{typed}{offset_zone(second).removeprefix('UTC')}` for the second."
    )

"""Values of a closed set (an enum) as the database keeps them, read by a version that may not
know them all: during a rolling upgrade a replica of the next version writes values this one
never had (a gate's reason, a track's stop kind), and the rows that hold them must still load
on this version's replicas, their card, buttons, timers and thread messages with them.

`known` is the one reader: the value, or None when none is stored or this version does not
know it; each caller says what an unknown value reads as (a reason unsaid; a stop's kind,
`or_else`, a legacy stop)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import BeforeValidator

from bot.domain.gate import GateReason

E = TypeVar("E", bound=StrEnum)


def known(kind: type[E], value: object) -> E | None:
    """The stored value as a member of `kind`, or None: none stored, or one this version
    does not know."""
    if value is None or isinstance(value, kind):
        return value
    try:
        return kind(str(value)) if value else None
    except ValueError:
        return None


def or_else(kind: type[E], unknown: E) -> BeforeValidator:
    """A stored field's validator (`Annotated[kind, or_else(...)]`): a member of `kind`, or
    `unknown` for a value this version does not know."""
    return BeforeValidator(lambda value: known(kind, value) or unknown)


def known_reason(value: object) -> GateReason | None:
    """A stored gate reason, or None: none stored, or one this version does not know, read as
    unsaid, as in rows stored before reasons were (the verdict kept)."""
    return known(GateReason, value)


StoredReason = Annotated[GateReason | None, BeforeValidator(known_reason)]
"""A gate's reason in a stored event (`known_reason`)."""

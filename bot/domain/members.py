"""A track of a rollout or a stage of a track, found by its name or key, or replaced by a new
value of the same name or key: the domain's values, the plan and storage's records alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def member(members: Iterable[T], wanted: str, *, by: Callable[[T], str], missing: str) -> T:
    """The first of `members` that `by` names `wanted`; KeyError(`missing`) when none is."""
    for one in members:
        if by(one) == wanted:
            return one
    raise KeyError(missing)


def replaced(members: Iterable[T], new: T, *, by: Callable[[T], str]) -> tuple[T, ...]:
    """`members` with the one that `by` names as it names `new` replaced by `new`."""
    return tuple(new if by(one) == by(new) else one for one in members)

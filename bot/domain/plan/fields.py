"""The plan's building blocks: the frozen model base, field types, and problems at a key's path."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
)

from bot.domain.durations import HINT, format_duration, parse_duration
from bot.domain.rates import baseline_problem, error_threshold_problem, percentage

Path_ = tuple[str | int, ...]
"""A key's location in the plan: ("tracks", "relay", "stages", 1, "observe")."""


def _duration(value: object) -> object:
    if isinstance(value, timedelta):
        # Same rules as the written form: whole seconds, positive, at most MAX_DURATION.
        return parse_duration(format_duration(value))
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not a duration ({HINT})")


Duration = Annotated[
    timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)
]


STORED_PLAN: dict[str, bool] = {"stored": True}
"""Validation context of a plan read back from storage: the plan a rollout started with. The
rules below came after some rollouts started; a stored plan that breaks them stays readable
(to roll it back, to draw its card), and a plan file that breaks them is refused."""


def loaded(info: ValidationInfo) -> bool:
    """Whether the plan is being loaded from its file (its rules all apply), not read back
    from storage (`STORED_PLAN`: a rule that came after the rollout started is not applied)."""
    return not (isinstance(info.context, dict) and info.context.get("stored"))


def _unsigned(value: Decimal, info: ValidationInfo) -> Decimal:
    # `ge=0` lets -0 through, and no gate can use a signed figure (`bot.domain.gate`).
    if value.is_signed() and loaded(info):
        raise ValueError(f"{value} is negative: write 0")
    return value


def _fraction(value: Decimal, info: ValidationInfo) -> Decimal:
    if value > 1 and loaded(info):
        raise ValueError(f"{value} is above 1 (100%): rates are fractions (0.01 = 1%)")
    return value


def _refusing(problem_of: Callable[[Decimal], str | None]) -> AfterValidator:
    """A threshold a gate cannot use (`bot.domain.rates`, in the `gate` command's words too)
    is refused in a plan file; a stored plan keeps it (its gate holds: `evaluate_track`)."""

    def check(value: Decimal, info: ValidationInfo) -> Decimal:
        problem = problem_of(value)
        if problem is not None and loaded(info):
            raise ValueError(problem)
        return value

    return AfterValidator(check)


def _not_a_percentage(value: object) -> object:
    if isinstance(value, str) and (fraction := percentage(value)) is not None:
        raise ValueError(f"{value!r} is a percentage; {fraction}")
    return value


Rate = Annotated[
    Decimal,
    BeforeValidator(_not_a_percentage),
    Field(ge=0, allow_inf_nan=False),
    AfterValidator(_unsigned),
]
"""A finite non-negative figure: a multiplier, or a rate."""
Fraction_ = Annotated[Rate, AfterValidator(_fraction)]
"""A rate: a fraction from 0 to 1 (0.01 = 1%), as SPEC writes every rate."""
ErrorThreshold = Annotated[Rate, _refusing(error_threshold_problem)]
BaselineRate = Annotated[Rate, _refusing(baseline_problem)]
"""A baseline crash rate: a fraction below 1 (0.001 = 0.1%)."""
_KEY = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")


def _key(value: str) -> str:
    if not _KEY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid key: a lowercase letter, then up to 31 lowercase letters, "
            "digits, '-' or '_'"
        )
    return value


def _input_name(value: str) -> str:
    if not _INPUT_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid workflow input name")
    return value


Key = Annotated[str, StringConstraints(strict=True), AfterValidator(_key)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=255, strict=True)]
InputName = Annotated[str, StringConstraints(strict=True), AfterValidator(_input_name)]
Count = Annotated[int, Field(ge=0, strict=True)]


class PlanModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Problems(ValueError):
    """Several problems found by one cross-check, each at a path relative to the model checked."""

    def __init__(self, problems: list[tuple[Path_, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{dotted(path)}: {problem}" for path, problem in problems))


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue  # the error is about the key itself, and its message quotes it
        else:
            text += f".{part}" if text else part
    return text or "(the plan)"

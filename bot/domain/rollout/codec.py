"""The rollout's values as JSON for storage: verdicts, checks, stop reasons, thread events."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from bot.domain.gate import GateKind, GateVerdict, Verdict
from bot.domain.late_gate import LateGate
from bot.domain.release_contents import ReleaseContents
from bot.domain.rollout.events import Event
from bot.domain.rollout.state import Check, CheckState, StopKind, StopReason
from bot.domain.schedule import Schedule
from bot.domain.stored_reason import known_reason

T = TypeVar("T")


def verdict_to_json(verdict: GateVerdict) -> dict[str, Any]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "gate": verdict.gate.value,
        "verdict": verdict.verdict.value,
        "reason": verdict.reason.value if verdict.reason else None,
        "current_crash": text(verdict.current_crash),
        "baseline_crash": text(verdict.baseline_crash),
        "crash_multiplier": str(verdict.crash_multiplier),
        "crash_limit": text(verdict.crash_limit),
        "current_error": text(verdict.current_error),
        "error_threshold": text(verdict.error_threshold),
        "sample": verdict.sample,
        "min_sample": verdict.min_sample,
        **({} if verdict.clock_offset is None else {"clock_offset": verdict.clock_offset}),
        "baseline_origin": verdict.baseline_origin,
        **({"baseline_sample_only": True} if verdict.baseline_sample_only else {}),
    }


def verdict_from_json(data: Mapping[str, Any]) -> GateVerdict:
    def number(key: str) -> Decimal | None:
        value = data.get(key)
        return None if value is None else Decimal(value)

    return GateVerdict(
        gate=GateKind(data["gate"]),
        verdict=Verdict(data["verdict"]),
        reason=known_reason(data.get("reason")),
        current_crash=number("current_crash"),
        baseline_crash=number("baseline_crash"),
        crash_multiplier=Decimal(data["crash_multiplier"]),
        crash_limit=number("crash_limit"),
        current_error=number("current_error"),
        error_threshold=number("error_threshold"),
        sample=data.get("sample"),
        min_sample=int(data.get("min_sample", 0)),
        clock_offset=data.get("clock_offset"),
        baseline_origin=data.get("baseline_origin", "plan"),
        baseline_sample_only=data.get("baseline_sample_only") is True,
    )


_LATE: TypeAdapter[LateGate] = TypeAdapter(LateGate)


def late_to_json(late: LateGate | None) -> dict[str, Any]:
    """A late gate's two stretches and verdicts, for its audit entry (`late`; nothing when the
    gate ran on time): which one decided is said too, as a reader of the trail wants it."""
    if late is None:
        return {}
    decided = "latest" if late.latest_decided else "window"
    return {"late": {**_dumped(_LATE, late), "decided": decided}}


def late_from_json(data: object) -> LateGate | None:
    """A late gate as its audit entry keeps it (`late_to_json`); None when the entry has none,
    or one in a shape this version does not read (a newer one's)."""
    if not isinstance(data, Mapping):
        return None
    try:
        return _LATE.validate_python(dict(data))
    except ValidationError:
        return None


def check_to_json(check: Check) -> dict[str, str]:
    data = {"state": check.state.value, "detail": check.detail}
    if check.confirmed_by is not None:
        data["confirmed_by"] = check.confirmed_by
    return data


def check_from_json(data: Mapping[str, str]) -> Check:
    return Check(CheckState(data["state"]), data.get("detail", ""), data.get("confirmed_by"))


_CONTENTS: TypeAdapter[ReleaseContents] = TypeAdapter(ReleaseContents)


def contents_to_json(contents: ReleaseContents) -> dict[str, Any]:
    return _dumped(_CONTENTS, contents)


def contents_from_json(data: Mapping[str, Any]) -> ReleaseContents:
    return _CONTENTS.validate_python(data)


Kinds = Mapping[str, TypeAdapter[Any]]
"""The types of a union stored with their kind (`kinds_of`), each by its name."""


def kinds_of(union: Any) -> Kinds:
    """Each type of the union `union` by its name, as `kind_to_json` stores it."""
    return {kind.__name__: TypeAdapter(kind) for kind in union.__args__}


def kind_to_json(kinds: Kinds, value: Any) -> dict[str, Any]:
    """A value of one of `kinds` as stored: its kind and its fields."""
    kind = type(value).__name__
    return {"kind": kind, "fields": _dumped(kinds[kind], value)}


def kind_from_json(kinds: Kinds, data: Mapping[str, Any]) -> Any:
    """A value `kind_to_json` stored; one of a kind a newer version added raises NewerEvent."""
    adapter = kinds.get(str(data["kind"]))
    if adapter is None:
        raise NewerEvent(str(data["kind"]))
    return adapter.validate_python(data["fields"])


_EVENTS = kinds_of(Event)
_REASON: TypeAdapter[StopReason] = TypeAdapter(StopReason)


def event_to_json(event: Event) -> dict[str, Any]:
    """A thread event as the outbox stores it: its kind and its fields."""
    return kind_to_json(_EVENTS, event)


class NewerEvent(LookupError):
    """A stored thread event (or another value stored with its kind: `kind_from_json`) of a
    kind this version does not know: a newer version wrote it (a rolling upgrade under way),
    and only its replicas can word it."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"a thread event of kind {kind!r}, which a newer version wrote")
        self.kind = kind


def event_from_json(data: Mapping[str, Any]) -> Event:
    event: Event = kind_from_json(_EVENTS, data)
    return event


def reason_to_json(reason: StopReason) -> str:
    """A stop reason as the track row stores it (JSON text)."""
    return _REASON.dump_json(reason, exclude_defaults=True).decode()


def reason_from_json(text: str) -> StopReason:
    """A stored stop reason; text stored before reasons were data reads as a legacy reason."""
    if text.startswith("{"):
        return _REASON.validate_json(text)
    return StopReason(StopKind.LEGACY, detail=text)


_SCHEDULE: TypeAdapter[Schedule] = TypeAdapter(Schedule)


def schedule_to_json(schedule: Schedule) -> dict[str, Any]:
    return _dumped(_SCHEDULE, schedule)


def schedule_from_json(data: Mapping[str, Any]) -> Schedule:
    return _SCHEDULE.validate_python(data)


def _dumped(adapter: TypeAdapter[T], value: T) -> dict[str, Any]:
    """A value as JSON-ready data (its fields by name), through its TypeAdapter."""
    data: dict[str, Any] = adapter.dump_python(value, mode="json")
    return data

"""What the bot stores keeps its form across versions: each family's samples encode to the
saved copy under `tests/stored/`, and the saved copy decodes to the samples, so a replica of the
previous version reads what this one writes, and this one what it wrote (`stored_forms`)."""

from __future__ import annotations

from typing import Any

import pytest
from event_samples import EVENTS
from stored_forms import SAVING, Family, Sample, defaults_left_out, drift, earlier
from stored_kinds import CLAIMS, FAMILIES, OUTBOX, TIMERS
from stored_values import ROLLOUT_STATE, SLACK

from bot.domain.controls import _SCOPE
from bot.domain.rollout import event_from_json, event_to_json
from bot.domain.rollout import events as told
from bot.services.effects import TIMER_KINDS
from bot.services.outbox_messages import KINDS


def _named(events: list[told.Event]) -> list[tuple[str, told.Event]]:
    """Each sample named by its kind, and its place among the kind's samples from the second
    on: a sample added to another kind renames none."""
    seen: dict[str, int] = {}
    named = []
    for event in events:
        kind = type(event).__name__
        seen[kind] = seen.get(kind, 0) + 1
        named.append((kind if seen[kind] == 1 else f"{kind}:{seen[kind]}", event))
    return named


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = data["fields"]
    return fields


def _firsts_with_defaults(events: list[told.Event]) -> list[tuple[str, told.Event]]:
    firsts: dict[str, told.Event] = {}
    for event in events:
        kind, fields = type(event).__name__, _fields(event_to_json(event))
        if kind not in firsts and defaults_left_out(event, fields) != fields:
            firsts[kind] = event
    return list(firsts.items())


EVENT_FAMILY = Family(
    "events",
    "Every thread event kind (the `Event` union) as the outbox stores it "
    "(bot/domain/rollout/codec.py), from tests/event_samples.py.",
    [
        *(Sample(name, event, event_to_json, event_from_json) for name, event in _named(EVENTS)),
        # Each kind's first sample with a field at its default, as stored before that field
        # existed: read back, it is the default still.
        *(
            earlier(Sample(kind, event, event_to_json, event_from_json), at=_fields)
            for kind, event in _firsts_with_defaults(EVENTS)
        ),
    ],
)
ALL = (EVENT_FAMILY, *FAMILIES, ROLLOUT_STATE, SLACK)


@pytest.fixture(params=ALL, ids=lambda family: family.name)
def family(request: pytest.FixtureRequest) -> Family:
    chosen: Family = request.param
    if SAVING:
        chosen.save()
    return chosen


def test_the_saved_copy_has_every_sample_and_no_other(family: Family) -> None:
    saved, names = set(family.saved()), [sample.name for sample in family.samples]
    assert len(names) == len(set(names)), f"{family.name}: two samples share a name"
    lines = [f"{name}: a sample with no saved copy" for name in sorted(set(names) - saved)]
    lines += [f"{name}: saved, and no sample any more" for name in sorted(saved - set(names))]
    assert not lines, drift(family, "lists other samples than the saved copy", lines)


def test_the_samples_are_stored_as_saved(family: Family) -> None:
    saved = family.saved()
    lines = [
        f"{name}:\n    saved: {saved[name]!r}\n    now:   {now!r}"
        for name, now in family.encoded().items()
        if name in saved and now != saved[name]
    ]
    assert not lines, drift(family, "is no longer what the saved copy holds", lines)


def test_the_saved_copy_still_reads(family: Family) -> None:
    saved = family.saved()
    lines = []
    for sample in family.samples:
        if sample.decode is None or sample.name not in saved:
            continue
        try:
            read: Any = sample.decode(saved[sample.name])
        except Exception as exc:  # any failure to read is the finding
            lines.append(f"{sample.name}: does not read any more: {exc!r}")
            continue
        if read != sample.expected():
            lines.append(
                f"{sample.name}:\n    reads as: {read!r}\n    sample:   {sample.expected()!r}"
            )
    assert not lines, drift(family, "saved before no longer reads as it did", lines)


def test_every_kind_has_a_sample() -> None:
    """A kind added (an event, a timer, an outbox message, a control) needs its sample here,
    and its saved copy."""
    assert {*told.Event.__args__} == {type(s.value) for s in EVENT_FAMILY.samples}  # type: ignore[attr-defined]
    assert {s.encode(s.value)["kind"] for s in TIMERS.samples} == TIMER_KINDS
    assert {s.encode(s.value)["kind"] for s in OUTBOX.samples} == KINDS
    assert {f"effect:{c.value}" for c in _SCOPE} <= {s.name for s in CLAIMS.samples}

"""A rollout's `context` column: what the domain holds beyond the columns (the preflight's
checks, the dispatch time, the schedule, a stop's line owed and who waits on it, the run's
attempt), as JSON (`storage.rollout_store` maps the rest)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.domain.rollout import Preflight, Rollout, codec
from bot.domain.schedule import Schedule


def context_of(rollout: Rollout) -> dict[str, Any]:
    """The rollout's context column: what the domain holds beyond the columns."""
    preflight = rollout.preflight
    return {
        "preflight": {
            "flags": codec.check_to_json(preflight.flags),
            "migrations": codec.check_to_json(preflight.migrations),
            "image": codec.check_to_json(preflight.image),
        },
        "contents": (
            None if preflight.contents is None else codec.contents_to_json(preflight.contents)
        ),
        # Beside "preflight", whose values an older version reads as checks; absent: not known.
        **({} if preflight.tag_commit is None else {"tag_commit": preflight.tag_commit}),
        **({} if preflight.moved_to is None else {"tag_moved_to": preflight.moved_to}),
        "dispatched_at": _iso(rollout.dispatched_at),
        "gave_up_at": _iso(rollout.gave_up_at),
        "schedule": None if rollout.schedule is None else codec.schedule_to_json(rollout.schedule),
        "told_outside": list(rollout.told_outside),
        "unread_since": _iso(rollout.unread_since),
        "told_unread": rollout.told_unread,
        **({"untold_stops": list(rollout.untold_stops)} if rollout.untold_stops_kept else {}),
        # Only while a stop is decided (an e248966 replica's save drops it: `operating.md`).
        **({"stop_waiters": [*map(list, rollout.stop_waiters)]} if rollout.stop_waiters else {}),
        # Only while GitHub refuses an approval (a 38840bf replica's save drops it: `operating.md`).
        **(
            {"refused_approvals": list(rollout.refused_approvals)}
            if rollout.refused_approvals
            else {}
        ),
        # Only while GitHub fails a review (an e750548d replica's save drops it: `operating.md`).
        **(
            {"unreviewed_since": {name: _iso(at) for name, at in rollout.unreviewed_since}}
            if rollout.unreviewed_since
            else {}
        ),
        "attempt": rollout.attempt,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def from_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The rollout's fields its context holds (`context_of`), by name."""
    return {
        "preflight": _preflight(context),
        "dispatched_at": _moment(context.get("dispatched_at")),
        "gave_up_at": _moment(context.get("gave_up_at")),
        "schedule": _schedule(context.get("schedule")),
        "told_outside": tuple(context.get("told_outside", ())),
        "unread_since": _moment(context.get("unread_since")),
        "told_unread": bool(context.get("told_unread", False)),
        "untold_stops": tuple(context.get("untold_stops", ())),
        "untold_stops_kept": "untold_stops" in context,
        "stop_waiters": tuple((track, actor) for track, actor in context.get("stop_waiters", ())),
        "refused_approvals": tuple(context.get("refused_approvals", ())),
        "unreviewed_since": tuple(
            (name, datetime.fromisoformat(at))
            for name, at in context.get("unreviewed_since", {}).items()
        ),
        "attempt": context.get("attempt"),
    }


def _preflight(context: Mapping[str, Any]) -> Preflight:
    data, contents = context["preflight"], context.get("contents")
    commit, moved = context.get("tag_commit"), context.get("tag_moved_to")
    return Preflight(
        flags=codec.check_from_json(data["flags"]),
        migrations=codec.check_from_json(data["migrations"]),
        image=codec.check_from_json(data["image"]),
        contents=None if contents is None else codec.contents_from_json(contents),
        tag_commit=None if commit is None else str(commit),
        moved_to=None if moved is None else str(moved),
    )


def _schedule(data: Mapping[str, Any] | None) -> Schedule | None:
    return None if data is None else codec.schedule_from_json(data)


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)

"""Migration 0014: what a timer that gave up kept as Slack text (a held schedule's error, a
missed gate's or a held schedule's message in the outbox, `timers.last_error`) becomes words
and the ids they name; the downgrade writes back the Slack text; other rows stay as they were."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import column, insert, table
from sqlalchemy.engine import Connection
from test_audit_reasons import stored_markup
from test_storage_migrations import _migrated, _on_connection

from bot.adapters.slack.audit_reasons import reason_mrkdwn
from bot.domain.reasons import CardLink, Reason
from bot.domain.rollout import event_from_json, schedule_from_json

AT = datetime(2026, 1, 1, tzinfo=UTC)
SINCE = "<!date^1764590400^{time} ({date_short_pretty})|2025-12-01 12:00 UTC>"
CARD = "<https://slack.com/archives/C0RELEASES/p1764590400123456|r-0123456789ab>"
MISSED = f"held by <@U0SECOND01> since {SINCE} in <#C0RELEASES>, see {CARD} &amp; `a <b>`"
HELD = f"Already being done by <@U0SECOND01> since {SINCE}"
BEING_DONE = f"BeingDone: {HELD}"
OWN_WORDS = "ClientResponseError: 502, message='<html>' &amp; more"
"""An error's own words, with `<` and `&` but no mark of the Slack words: left as it is."""


def _schedule(held: dict[str, Any] | None) -> dict[str, Any]:
    return {"schedule": {"at": "2026-01-02T09:00:00Z", "by": "U1", "zone": "UTC", "held": held}}


def _held(error: str | None = None, blocking: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "blocking": list(blocking),
        "lane": None,
        "two_person": False,
        "error": error,
        "not_approver": None,
    }


# Rows as the version before stored them: rollouts' context, outbox payloads, last errors.
CONTEXTS = {
    "r-held": _schedule(_held(HELD)),
    "r-refused": _schedule(_held("GitHub refused it: no workflow_dispatch trigger")),
    "r-blocked": _schedule(_held(blocking=("Image tag: not published",))),
    "r-pending": _schedule(None),
}
PAYLOADS = {
    "thread": {
        "event": {
            "kind": "GateMissed",
            "fields": {
                "track": "Relay",
                "stage": "5%",
                "due_at": "2026-01-01T00:00:00Z",
                "attempts": 8,
                "error": MISSED,
                "manual": False,
            },
        }
    },
    "failure": {"event": {"kind": "ScheduleHeld", "fields": {"at": "2026-01-02T09:00:00Z"}}},
    "card": {},
    "figures": {"track": "relay", "stage": "canary"},
}
PAYLOADS["failure"]["event"]["fields"]["held"] = _held(HELD)
LAST_ERRORS = {"window:1": BEING_DONE, "window:2": OWN_WORDS, "window:3": None}

SECOND_SINCE = Reason(
    "Already being done by @U0SECOND01 since 2025-12-01 12:00 UTC",
    people=("U0SECOND01",),
    times=(datetime(2025, 12, 1, 12, tzinfo=UTC),),
)


def _insert(connection: Connection, name: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        connection.execute(insert(table(name, *map(column, row))).values(row))


def _legacy_rows(connection: Connection) -> None:
    at = {"created_at": AT, "due_at": AT}
    _insert(
        connection,
        "rollouts",
        [
            {"id": rollout_id, "tag": rollout_id, "channel_id": "C1", "started_by": "U1"}
            | {"state": "preflight", "plan": "{}", "context": json.dumps(context), "version": 1}
            | {"created_at": AT, "updated_at": AT}
            for rollout_id, context in CONTEXTS.items()
        ],
    )
    _insert(
        connection,
        "outbox",
        [
            {"rollout_id": "r-held", "channel_id": "C1", "kind": kind}
            | {"payload": json.dumps(payload), "attempts": 0, **at}
            for kind, payload in PAYLOADS.items()
        ],
    )
    _insert(
        connection,
        "timers",
        [
            {"rollout_id": "r-held", "key": key, "kind": "window_end", "attempts": 8}
            | {"last_error": error, **at}
            for key, error in LAST_ERRORS.items()
        ],
    )


async def _rows(url: str, revision: str, *, down: bool = False) -> dict[str, dict[str, Any]]:
    """Up (or `down`) to `revision`, then each table's rows by their key."""

    def read(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    rows = {
        "rollouts": "SELECT id, context FROM rollouts",
        "outbox": "SELECT kind, payload FROM outbox",
        "timers": "SELECT key, last_error FROM timers",
    }
    found = {}
    for name, select in rows.items():
        got = await _migrated(url, revision, select, down=down)
        found[name] = {k: v if name == "timers" else read(v) for k, v in got.items()}
    return found


async def test_kept_reasons_stored_as_slack_text_become_data_and_come_back(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await _rows(url, "0013")
    await _on_connection(url, _legacy_rows)

    upgraded = await _rows(url, "head")

    held = schedule_from_json(upgraded["rollouts"]["r-held"]["schedule"]).held
    assert held is not None and held.error == SECOND_SINCE
    refused = schedule_from_json(upgraded["rollouts"]["r-refused"]["schedule"]).held
    assert refused is not None
    assert refused.error == Reason("GitHub refused it: no workflow_dispatch trigger")
    missed: Any = event_from_json(upgraded["outbox"]["thread"]["event"])
    assert missed.error == Reason(
        "held by @U0SECOND01 since 2025-12-01 12:00 UTC in #C0RELEASES, see r-0123456789ab & "
        "`a <b>`",
        people=("U0SECOND01",),
        channels=("C0RELEASES",),
        times=(datetime(2025, 12, 1, 12, tzinfo=UTC),),
        cards=(CardLink("C0RELEASES", "1764590400.123456", "r-0123456789ab"),),
    )
    assert reason_mrkdwn(missed.error) == MISSED.replace("`a <b>`", "`a &lt;b&gt;`")
    schedule_held: Any = event_from_json(upgraded["outbox"]["failure"]["event"])
    assert schedule_held.held.error == SECOND_SINCE
    assert reason_mrkdwn(SECOND_SINCE) == HELD
    assert upgraded["timers"] == {
        "window:1": "BeingDone: Already being done by @U0SECOND01 since 2025-12-01 12:00 UTC",
        "window:2": OWN_WORDS,
        "window:3": None,
    }
    # What held no reason is as it was; nothing stored holds Slack markup any more.
    for rollout_id in ("r-blocked", "r-pending"):
        assert upgraded["rollouts"][rollout_id] == CONTEXTS[rollout_id]
    assert upgraded["outbox"]["card"] == {} and upgraded["outbox"]["figures"] == PAYLOADS["figures"]
    assert await stored_markup(url) == []
    assert await _rows(url, "head") == upgraded  # converted once

    downgraded = await _rows(url, "0013", down=True)

    assert downgraded["rollouts"] == CONTEXTS  # the same Slack text
    # What it quotes is escaped: the previous version shows it as it did.
    assert downgraded["outbox"]["thread"]["event"]["fields"]["error"] == MISSED.replace(
        "`a <b>`", "`a &lt;b&gt;`"
    )
    assert downgraded["outbox"]["failure"] == PAYLOADS["failure"]
    assert downgraded["timers"] == upgraded["timers"]  # words: any version reads them

"""What a person reads of a gate judged late (its window and the latest stretch read, the worse
deciding): the thread's verdict line, the audit entry and a Re-evaluate's interim line say it
ran late and which stretch decided, not the gate card alone.

Through the whole bot: the desktop ring reads a local Sentry (`sandbox.sentry`), whose
sessions are stamped at the times the test picks, and the bot's clock is moved past the
window's end as a bot that was down finds it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from figures import CANARY_OK
from sandbox_views import dispatched, value_of
from test_sentry import PREVIOUS, RELEASE

from bot.adapters.slack.audit_views import event_line
from bot.adapters.slack.messages import render
from bot.domain.gate import Verdict
from bot.domain.late_gate import LateGate
from bot.domain.rollout import (
    Rollout,
    StageState,
    TrackState,
    event_from_json,
    event_to_json,
    window_timer_key,
)
from bot.domain.rollout.codec import late_to_json
from bot.domain.rollout.events import GateFailed, GateInconclusive, GatePassed, Reevaluated
from bot.services.records import AuditEvent
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.plans import SENTRY_RINGS
from sandbox.sentry import SentryTestServer
from storage.timers import TimerStore

WINDOW = timedelta(minutes=10)
"""Longer than the harness skips on its own: the window ends only when the test moves time."""
LATE = timedelta(hours=2)


def sessions(sentry: SentryTestServer, at: datetime, *, crashed: int) -> None:
    """The ring's sessions of the release at `at` (`crashed` of 10,000; the limit is 20) and
    the baseline's (0.1%) from the release before."""
    sentry.add_sessions(
        release=RELEASE, environment="internal", count=10000, crashed=crashed, at=at
    )
    sentry.add_sessions(release=PREVIOUS, environment="internal", count=20000, crashed=20, at=at)


async def observing(box: Sandbox) -> Rollout:
    write_figures(box.figures, "relay", {"canary": CANARY_OK, "half": CANARY_OK})
    await dispatched(box)
    return await box.wait_until(
        lambda r: r.track("desktop").stage("internal").state is StageState.OBSERVING
    )


async def ring_gates(box: Sandbox, rollout: Rollout) -> list[AuditEvent]:
    """The audit trail's gate entries of the desktop track."""
    events = await box.audit.list_for_rollout(rollout.id)
    return [e for e in events if e.action == "gate" and e.track == "desktop"]


def sentry_box(sentry: SentryTestServer, tmp_path: Path, database_url: str) -> Sandbox:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml", window="10m"))
    plan["tracks"]["desktop"]["metrics"] = SENTRY_RINGS
    return Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=yaml.safe_dump(plan, sort_keys=False),
        extra_env=sentry.environment(),
    )


async def test_a_late_gate_says_so_in_the_thread_and_the_audit_trail(
    sentry: SentryTestServer, tmp_path: Path, sqlite_database_url: str
) -> None:
    """The ring's window was healthy; its timer fires two hours late and the ring crashes now:
    the kill-switch trips on the latest stretch, and the thread's verdict line (not the card
    alone) and the audit entry say the gate ran late and the latest stretch decided."""
    async with sentry_box(sentry, tmp_path, sqlite_database_url) as box:
        started = (await observing(box)).track("desktop").stage("internal").window_started_at
        assert started is not None
        sessions(sentry, started, crashed=1)
        sessions(sentry, started + LATE, crashed=25)
        await box.pass_time(LATE + timedelta(minutes=1))
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        line = await box.wait_for_thread("internal ring gate *KILL_SWITCH*")
        assert re.search(
            r":hourglass: Judged 1h5\dm(\d+s)? after its window ended: the latest 10m decided "
            r"\(KILL_SWITCH; its window gave PASS\)\.",
            line,
        ), line
        (gate,) = await ring_gates(box, halted)
        assert gate.detail is not None
        late = gate.detail["late"]
        assert (late["window_verdict"], late["latest_verdict"], late["decided"]) == (
            "PASS",
            "KILL_SWITCH",
            "latest",
        )
        ends = started + WINDOW
        assert [datetime.fromisoformat(t) for t in late["window"]] == [started, ends]
        latest = [datetime.fromisoformat(t) for t in late["latest"]]
        assert latest[1] - latest[0] == WINDOW and latest[1] - ends > LATE - WINDOW


async def test_re_evaluate_after_the_window_ended_says_the_gate_ran_late(
    sentry: SentryTestServer, tmp_path: Path, sqlite_database_url: str
) -> None:
    """A replica claimed the ring's window timer and died: its lease runs for hours, the stage
    still observes past its end, and a person clicks Re-evaluate. Healthy then and now: the
    interim line and its audit entry say both stretches were read and the window decided."""
    async with sentry_box(sentry, tmp_path, sqlite_database_url) as box:
        rollout = await observing(box)
        internal = rollout.track("desktop").stage("internal")
        assert internal.window_started_at is not None and internal.window_ends_at is not None
        key = window_timer_key(rollout.id, "desktop", "internal", internal.window_ends_at)
        await box.wait_for_timer(key, lambda timer: timer.claimed_by is None)
        timers = TimerStore(box.services.database.sessions)
        died = await timers.claim_due(
            now=internal.window_ends_at, owner="replica-died", lease=3 * LATE
        )
        assert key in {timer.key for timer in died}
        sessions(sentry, internal.window_started_at, crashed=1)
        sessions(sentry, internal.window_started_at + LATE - timedelta(minutes=1), crashed=2)
        await box.pass_time(LATE)
        await box.click("reevaluate", value=await value_of(box, "reevaluate", "desktop"))
        line = await box.wait_for_thread("re-evaluated *internal ring*")
        assert re.search(
            r"while observing: PASS \(.*\)\. :hourglass: Judged 1h50m(\d+s)? after its window "
            r"ended: its window decided \(PASS; the latest 10m gave PASS\)\. The window ended at "
            r".*; the gate decides when its late timer fires\.",
            line,
        ), line
        current = await box.rollout()
        assert current.track("desktop").stage("internal").state is StageState.OBSERVING
        (interim,) = await ring_gates(box, current)
        assert interim.detail is not None and interim.detail["interim"] is True
        assert interim.detail["late"]["decided"] == "window"


LATE_GATE = LateGate(
    window=(datetime.fromisoformat("2026-12-01T12:00:00+00:00"),) * 2,
    window_verdict=Verdict.PASS,
    latest=(
        datetime.fromisoformat("2026-12-01T13:30:00+00:00"),
        datetime.fromisoformat("2026-12-01T14:00:00+00:00"),
    ),
    latest_verdict=Verdict.INCONCLUSIVE,
)


@pytest.mark.parametrize(
    "event",
    [
        GatePassed("5% canary", "fine", "25%", False, LATE_GATE),
        GateInconclusive("5% canary", "no data", late=LATE_GATE),
        GateFailed(
            "Relay", "5% canary", Verdict.ROLLBACK, None, "bad", None, False, "rb", LATE_GATE
        ),
        Reevaluated("U1", "Relay", "5% canary", Verdict.PASS, "fine", None, LATE_GATE),
    ],
    ids=lambda event: type(event).__name__,
)
def test_every_verdict_line_of_a_late_gate_says_so_and_old_events_still_read(
    event: GatePassed | GateInconclusive | GateFailed | Reevaluated,
) -> None:
    """Each verdict line the thread shows says the gate ran late (as the outbox keeps it); one
    stored before the field existed reads as on time and says nothing of it."""
    kept = event_to_json(event)
    assert event_from_json(kept) == event
    assert "Judged 2h after its window ended: the latest 30m decided (INCONCLUSIVE; its " in (
        render(event_from_json(kept))
    )
    fields = {k: v for k, v in kept["fields"].items() if k != "late"}
    before = event_from_json({"kind": kept["kind"], "fields": fields})
    assert "Judged" not in render(before)


@pytest.mark.parametrize(
    ("late", "said"),
    [
        (
            late_to_json(LATE_GATE)["late"],
            "Judged 2h after its window ended: the latest 30m decided (INCONCLUSIVE; its window "
            "gave PASS).",
        ),
        (None, None),
        ({"window": "a newer version's shape"}, None),
        ("late", None),
    ],
)
def test_rollout_history_shows_a_gate_judged_late(late: object, said: str | None) -> None:
    """`/rollout history <tag>` showed a late gate's entry as if judged on time: its two
    stretches and which decided were kept in the audit entry but never shown. An entry without
    them, or in a shape this version does not read, shows the rest as before."""
    detail = {"sample": 5000, **({} if late is None else {"late": late})}
    event = AuditEvent(
        id=1,
        at=datetime.fromisoformat("2026-12-01T14:00:05+00:00"),
        actor="prometheus",
        action="gate",
        result="INCONCLUSIVE",
        rollout_id="r-1",
        detail=detail,
    )
    line = event_line(event)
    assert "sample: 5000" in line
    if said is None:
        assert "Judged" not in line
    else:
        assert line.endswith(f"sample: 5000; :hourglass: {said}")

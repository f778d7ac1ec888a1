"""`/rollout report [period]` end to end: signed slash commands through the real app, over
finished rollouts stored with known times (start, gate, promotion, end) on the sandbox's clock;
and the periods it refuses. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cleared import cleared_rollout
from figures import running_sandbox

from bot.adapters.slack.report_views import report_text
from bot.domain.period_report import PeriodReport, parse_period
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Phase,
    Rollout,
    StageState,
    StopKind,
    StopReason,
    TrackState,
    verdict_to_json,
)
from bot.services.records import BOT, NewAuditEvent
from sandbox.config import BYSTANDER, RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from storage.db import create_engine, create_session_factory
from storage.rollout_store import RolloutStore

CRASHED = StopReason(
    StopKind.GATE_FAILED, subject="5% canary", outcome="ROLLBACK", detail="crash_rate"
)


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with running_sandbox(tmp_path, database_url) as sandbox:
        yield sandbox


class Scene:
    """Finished rollouts written straight to the bot's database, at known times."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.engine = create_engine(box.database_url)
        self.store = RolloutStore(create_session_factory(self.engine), clock=box.clock)
        self.plan: RolloutPlan = box.services.rollouts.plan
        self.count = 0

    async def finished(
        self,
        *,
        ago: timedelta,
        lead: timedelta,
        held: timedelta = timedelta(0),
        relay: StopReason | None = None,
        redeployed: bool = False,
    ) -> Rollout:
        """A rollout started `ago`, ended `lead` later; its relay canary held `held` between
        its gate and its promotion; the relay rolled back for `relay` when given, or (with
        `redeployed`) rolled back after it completed, an hour after the end."""
        self.count += 1
        start = self.box.clock() - ago
        rollout = cleared_rollout(
            self.plan, now=start, rollout_id=f"r-{self.count:012d}", tag=f"v1.{self.count}.0"
        )
        created = await self.store.create(rollout=rollout, plan=self.plan)
        gate_at = start + timedelta(minutes=1)
        end = start + lead
        tracks = []
        for track in created.tracks:
            stopped = relay if track.name == "relay" else None
            state = TrackState.ROLLED_BACK if stopped else TrackState.COMPLETED
            first = replace(
                track.stages[0],
                state=StageState.FAILED_GATE if stopped else StageState.PASSED,
                window_started_at=start,
                window_ends_at=gate_at,
            )
            reason = stopped or StopReason(StopKind.COMPLETED, subject="100%")
            tracks.append(
                replace(
                    track,
                    state=state,
                    stages=(first, *track.stages[1:]),
                    ended_at=end,
                    ended_reason=reason,
                )
            )
        verdict = self.plan.track("relay").evaluate_gate(
            baseline_crash=Decimal("0.001"),
            current_crash=Decimal("0.003" if relay else "0.001"),
            current_error=Decimal("0"),
            sample=5000,
        )

        def event(
            at: datetime, actor: str, action: str, result: str = "ok", **detail: object
        ) -> NewAuditEvent:
            return NewAuditEvent(
                at=at,
                actor=actor,
                action=action,
                result=result,
                rollout_id=created.id,
                track="relay",
                stage="canary",
                detail=detail or None,
            )

        trail = [event(gate_at, BOT, "gate", verdict.verdict, **verdict_to_json(verdict))]
        if not relay:
            trail.append(event(gate_at + held, RELEASE_MANAGER, "promote"))
        if redeployed:
            trail.append(event(end + timedelta(hours=1), RELEASE_MANAGER, "redeploy", tag="v0"))
        ended = replace(
            created, phase=Phase.ENDED, run_id=self.count, ended_at=end, tracks=tuple(tracks)
        )
        return await self.store.save(ended, audit=trail)


async def test_the_report_sums_up_the_rollouts_of_the_period(box: Sandbox) -> None:
    scene = Scene(box)
    try:
        hour = timedelta(hours=1)
        await scene.finished(ago=5 * hour, lead=hour, held=timedelta(minutes=30))
        await scene.finished(ago=6 * hour, lead=2 * hour, held=timedelta(minutes=50))
        await scene.finished(ago=7 * hour, lead=4 * hour)
        await scene.finished(ago=8 * hour, lead=hour, relay=CRASHED)
        await scene.finished(ago=timedelta(days=10), lead=10 * hour)  # outside 7d
    finally:
        await scene.engine.dispose()

    week = await box.command("report 7d")
    assert "Rollouts of 7d" in week
    assert "4 rollout(s), 3 to 100%: success rate 75%" in week
    # Leads of the three at 100%: 1h, 2h, 4h. Held: 30m, 50m, 0s, 0s.
    assert "median 2h, p90 4h" in week
    assert "median time held waiting for a person: 15m" in week
    assert "`v1.4.0` Hosted relay: rolled back (5% canary gate ROLLBACK: crash" in week

    month = await box.command("report")  # 30d by default
    assert "Rollouts of 30d" in month
    assert "5 rollout(s), 4 to 100%: success rate 80%" in month
    assert "median 3h, p90 10h" in month

    empty = await box.command("report 2020-01")
    assert "no rollout ended in this period" in empty


async def test_a_month_is_read_in_the_askers_slack_time_zone(box: Sandbox) -> None:
    """A rollout that ended half an hour into a month in Berlin ended the month before in UTC:
    a release engineer in Berlin asking for the month counts it, one in UTC does not, and each
    report says which zone its month was read in."""
    berlin = ZoneInfo("Europe/Berlin")
    local = box.clock().astimezone(berlin)
    began = (local.replace(day=1) - timedelta(days=1)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )  # the first of last month, midnight in Berlin
    ended = began + timedelta(minutes=30)
    scene = Scene(box)
    try:
        lead = timedelta(hours=1)
        await scene.finished(ago=box.clock() - ended + lead, lead=lead)
    finally:
        await scene.engine.dispose()
    box.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
    month = f"{began:%Y-%m}"

    in_berlin = await box.command(f"report {month}")
    assert f"Rollouts of {month}* (Europe/Berlin: " in in_berlin, in_berlin
    assert "1 rollout(s), 1 to 100%" in in_berlin
    in_utc = await box.command(f"report {month}", user=BYSTANDER)
    assert f"Rollouts of {month}* (UTC: " in in_utc, in_utc
    assert "no rollout ended in this period" in in_utc


async def test_a_release_rolled_back_after_it_completed_is_no_success(box: Sandbox) -> None:
    scene = Scene(box)
    try:
        hour = timedelta(hours=1)
        await scene.finished(ago=5 * hour, lead=hour)
        await scene.finished(ago=4 * hour, lead=2 * hour, redeployed=True)
    finally:
        await scene.engine.dispose()

    week = await box.command("report 7d")
    assert "2 rollout(s), 2 to 100% (1 rolled back after): success rate 50%" in week
    assert "median 1h30m, p90 2h" in week  # both reached 100%: their lead times stand
    assert "`v1.2.0` Hosted relay: rolled back after it completed (redeployed the previous" in week
    assert "`v1.1.0`" not in week.split("*Rollbacks, kills and other stops*")[1]
    # Nor does `/rollout history` read it as a plain "completed".
    newer, older = (await box.command("history")).split("*v1.1.0*")
    assert "*v1.2.0*" in newer and "rolled back after it completed" in newer
    assert "rolled back" not in older


@pytest.mark.parametrize(
    ("rollouts", "succeeded", "said"),
    [(200, 199, "99%"), (1000, 999, "99%"), (201, 1, "1%"), (4, 3, "75%"), (200, 0, "0%")],
)
def test_the_success_rate_reads_100_only_when_every_rollout_succeeded(
    rollouts: int, succeeded: int, said: str
) -> None:
    """199 of 200 rounds to 100%, which a team reads as no failure at all, beside the stop
    the report lists; one success in 201 is not 0%."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    period = parse_period("30d")
    report = PeriodReport(
        period=period,
        start=period.bounds(now)[0],
        end=now,
        rollouts=rollouts,
        reached_the_end=succeeded,
        succeeded=succeeded,
        stopped=(),
        lead_median=None,
        lead_p90=None,
        held_median=None,
    )
    assert f"success rate {said}" in report_text(report)


@pytest.mark.story  # refused before any query: no database reads a bad period
@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("report 0d", "`0d` is not a period of 1 to 366 days"),
        ("report 400d", "`400d` is not a period of 1 to 366 days"),
        ("report soon", "`soon` is not a period: use 7d, 30d (up to 366d) or a month"),
        ("report 2026-13", "`2026-13` is not a month"),
        ("report 2999-01", "`2999-01` has not begun yet"),
    ],
)
async def test_a_bad_period_gets_one_clear_line_and_changes_nothing(
    box: Sandbox, text: str, said: str
) -> None:
    answer = await box.command(text)
    assert said in answer
    assert "\n" not in answer.strip()  # the reason alone, without the help
    assert await box.services.rollouts.history() == []
    assert box.slack.messages(RELEASE_CHANNEL) == []

"""A track's `metrics.settle`: its gate waits that long after the window's end before reading
the window, so figures the window's last minutes send late count. A desktop app reports a crash
when it next starts, and Sentry files it in the hour its session started: a ring's crash rate
read as the window ends is lower than the window's, and the ring passed on it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import yaml
from figures import CANARY_OK
from sandbox_views import dispatched
from test_sentry import PREVIOUS, RELEASE

from bot.domain.gate import Verdict
from bot.domain.plan import SentryMetrics, settle_of
from bot.domain.rollout import Rollout, StageState
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.plans import SENTRY_RINGS
from sandbox.sentry import SentryTestServer

WINDOW = timedelta(minutes=10)
SETTLE = timedelta(minutes=30)


def ring_box(
    sentry: SentryTestServer, tmp_path: Path, database_url: str, settle: str | None
) -> Sandbox:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml", window="10m"))
    plan["tracks"]["desktop"]["metrics"] = {
        **SENTRY_RINGS,
        **({"settle": settle} if settle else {}),
    }
    return Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=yaml.safe_dump(plan, sort_keys=False),
        extra_env=sentry.environment(),
    )


def internal(rollout: Rollout) -> StageState:
    return rollout.track("desktop").stage("internal").state


async def crashes_reported_after_the_window(
    box: Sandbox, sentry: SentryTestServer, wait: timedelta
) -> Rollout:
    """The ring's sessions in its window look healthy as it ends (2 crashes in 10,000; the limit
    is 20); 28 more of those sessions' crashes are reported at the apps' next start, after the
    window's end, and Sentry files them in the sessions' hour. Then `wait` passes."""
    write_figures(box.figures, "relay", {"canary": CANARY_OK, "half": CANARY_OK})
    await dispatched(box)
    rollout = await box.wait_until(lambda r: internal(r) is StageState.OBSERVING)
    started = rollout.track("desktop").stage("internal").window_started_at
    assert started is not None
    sentry.add_sessions(release=RELEASE, environment="internal", count=10000, crashed=2, at=started)
    sentry.add_sessions(
        release=PREVIOUS, environment="internal", count=20000, crashed=20, at=started
    )
    await box.pass_time(WINDOW + timedelta(seconds=5))
    if wait == timedelta(0):  # no settle: its gate reads as the window ends, before the 28
        await box.wait_until(lambda r: internal(r) is not StageState.OBSERVING)
        await box.wait_until(lambda r: internal(r) is not StageState.EVALUATING)
    sentry.add_sessions(release=RELEASE, environment="internal", count=0, crashed=28, at=started)
    await box.pass_time(wait)
    return await box.rollout()


async def test_without_settle_the_ring_passed_on_crashes_not_yet_reported(
    sentry: SentryTestServer, tmp_path: Path, sqlite_database_url: str
) -> None:
    async with ring_box(sentry, tmp_path, sqlite_database_url, None) as box:
        await crashes_reported_after_the_window(box, sentry, timedelta(0))
        passed = await box.wait_until(lambda r: internal(r) is StageState.HOLDING)
        verdict = passed.track("desktop").stage("internal").verdict
        assert verdict is not None and verdict.verdict is Verdict.PASS
        assert verdict.current_crash == Decimal("0.0002")


async def test_a_settled_gate_counts_the_crashes_reported_after_the_window(
    sentry: SentryTestServer, tmp_path: Path, sqlite_database_url: str
) -> None:
    async with ring_box(sentry, tmp_path, sqlite_database_url, "30m") as box:
        rollout = await crashes_reported_after_the_window(box, sentry, timedelta(minutes=5))
        assert internal(rollout) is StageState.OBSERVING  # settling: no gate yet
        await box.pass_time(SETTLE - timedelta(minutes=5))
        halted = await box.wait_until(lambda r: internal(r) is StageState.FAILED_GATE)
        verdict = halted.track("desktop").stage("internal").verdict
        assert verdict is not None and verdict.verdict is Verdict.KILL_SWITCH
        assert verdict.current_crash == Decimal("0.003")
        line = await box.wait_for_thread("internal ring gate *KILL_SWITCH*")
        assert "Judged" not in line  # read once, on its window: not a late gate


def test_settle_is_opt_in() -> None:
    """A plan without `settle` (every plan before it) judges as its window ends, as before."""
    assert settle_of(SentryMetrics.model_validate({**SENTRY_RINGS, "settle": "30m"})) == SETTLE
    assert settle_of(SentryMetrics.model_validate(SENTRY_RINGS)) == timedelta(0)

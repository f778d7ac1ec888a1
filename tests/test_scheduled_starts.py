"""Scheduled starts end to end: `/rollout start <tag> --at <time>` through the real app, read in
the starter's Slack time zone (the sandbox's users.info), dispatched at the time by the
durable timer through the Dispatch click's exactly-once claim, across a restart and two
replicas; cancelled by a button; held, saying why, when frozen, locked or blocked then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from figures import every_gate_passes, passing_sandbox
from replicas import in_process_replica
from test_controls import sandbox_for

from bot.domain.rollout import Phase
from bot.domain.schedule import dispatch_timer_key
from bot.services.records import BOT
from handlers.app_keys import SERVICES
from sandbox.config import BYSTANDER, RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from sandbox.slack_records import ChannelMessage
from storage.timers import TimerStore

pytestmark = pytest.mark.story

OTHER = "U0APPROVE2"
BERLIN = ZoneInfo("Europe/Berlin")
APPROVERS_ENV = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{OTHER}"}
SCHEDULED = 'start v1.4.2 --flags-ready --at "tomorrow 09:00"'


def tomorrow_nine(box: Sandbox) -> datetime:
    """09:00 tomorrow in Berlin, the release manager's Slack time zone, in UTC."""
    local = box.clock().astimezone(BERLIN) + timedelta(days=1)
    return local.replace(hour=9, minute=0, second=0, microsecond=0).astimezone(UTC)


def slack_date(moment: datetime) -> str:
    return f"<!date^{int(moment.timestamp())}^"


def preflight_card(box: Sandbox) -> ChannelMessage:
    """The preflight card (announcements of a freeze or a lock may come after it)."""
    return next(m for m in box.slack.messages(RELEASE_CHANNEL) if "Preflight:" in m.rendered)


async def told_in_thread(box: Sandbox, needle: str) -> str:
    """Wait until a reply in the preflight card's thread says `needle`; returns it."""

    def found() -> str | None:
        replies = [reply.rendered for reply in preflight_card(box).replies]
        return next((reply for reply in replies if needle in reply), None)

    await box.slack.wait_for(lambda: found() is not None, timeout=30)
    said = found()
    assert said is not None
    return said


async def scheduled(box: Sandbox, text: str = SCHEDULED) -> datetime:
    """Start `text`; the time it was scheduled for, once its card and thread line are posted."""
    at = tomorrow_nine(box)
    said = await box.command(text)
    assert f"dispatch scheduled for {slack_date(at)}" in said, said
    assert "Europe/Berlin" in said
    await told_in_thread(box, "scheduled the dispatch for")
    return at


async def reach(box: Sandbox, at: datetime) -> None:
    """Move the bot's clock to `at` and let its loops look."""
    await box.pass_time(at - box.clock() + timedelta(seconds=1))


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """Two approvers, the release manager in Berlin, every gate passing."""
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=APPROVERS_ENV) as box:
        box.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
        yield box


async def audit_of(box: Sandbox, action: str, actor: str = BOT) -> list[tuple[str, object]]:
    return [
        (event.result, (event.detail or {}).get("at"))
        for event in await box.audit.list_for_actor(actor)
        if event.action == action
    ]


async def recorded(box: Sandbox, action: str) -> list[tuple[str, object]]:
    """The bot's audit events of `action`, once there is one (it is written as the request
    ends, a moment after the rollout it records was saved)."""
    async with asyncio.timeout(10):
        while not (events := await audit_of(box, action)):  # noqa: ASYNC110 - the database
            await asyncio.sleep(0.05)
    return events


async def test_a_scheduled_start_posts_its_preflight_now_and_dispatches_at_the_time(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    card = preflight_card(sandbox).rendered
    assert f"*Scheduled:* dispatch at {slack_date(at)}" in card
    assert "[Dispatch now]" in card and "[Cancel schedule]" in card
    assert f"<@{RELEASE_MANAGER}> scheduled the dispatch for {slack_date(at)}" in (
        preflight_card(sandbox).replies[0].rendered
    )
    assert f"dispatch scheduled for {slack_date(at)}" in await sandbox.command("status")
    started = await audit_of(sandbox, "command:start", RELEASE_MANAGER)
    assert started == [("ok", at.isoformat())]

    await sandbox.pass_time(at - sandbox.clock() - timedelta(minutes=1))
    assert sandbox.github.dispatches == []  # not a minute early
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT

    await reach(sandbox, at)
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1
    assert await recorded(sandbox, "schedule:dispatch") == [("ok", at.isoformat())]
    assert sandbox.slack.calls_to("users.info")  # the zone came from Slack


@pytest.mark.database_matters
async def test_a_restart_while_scheduled_keeps_the_schedule(sandbox: Sandbox) -> None:
    at = await scheduled(sandbox)
    await sandbox.stop_bot()
    await sandbox.start_bot()
    await reach(sandbox, at)
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1


@pytest.mark.database_matters
async def test_a_bot_back_long_after_the_time_holds_it_instead_of_dispatching(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    await sandbox.stop_bot()
    sandbox.clock.advance(at - sandbox.clock() + timedelta(minutes=20))
    await sandbox.start_bot()
    said = await told_in_thread(sandbox, "did not go")
    assert "the bot was not running then (it is back 20 minutes late)" in said
    assert sandbox.github.dispatches == []


@pytest.mark.database_matters
async def test_a_bot_back_a_few_minutes_late_dispatches_and_says_it_went_late(
    sandbox: Sandbox,
) -> None:
    """Before, the thread said only `Dispatched ...`: read after the scheduled `09:00`, it
    looked as if the release had gone at 09:00, not ten minutes later."""
    at = await scheduled(sandbox)
    await sandbox.stop_bot()
    sandbox.clock.advance(at - sandbox.clock() + timedelta(minutes=10))
    await sandbox.start_bot()
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    said = await told_in_thread(sandbox, "Dispatched *Deployment Strategy*")
    assert "for `v1.4.2` 10 minutes after the time it was scheduled for: <http" in said, said
    assert len(sandbox.github.dispatches) == 1


@pytest.mark.database_matters
async def test_two_replicas_dispatch_a_schedule_once(sandbox: Sandbox) -> None:
    async with in_process_replica(sandbox):
        at = await scheduled(sandbox)
        await reach(sandbox, at)  # both schedulers wake on the clock and race for the timer
        await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert len(sandbox.github.dispatches) == 1
        assert await recorded(sandbox, "schedule:dispatch") == [("ok", at.isoformat())]


@pytest.mark.database_matters
async def test_the_timer_fired_on_both_replicas_at_once_dispatches_once(sandbox: Sandbox) -> None:
    """Past the timers table's own claim (a lease run out mid-dispatch): the dispatch's
    exactly-once claim still lets one through."""
    async with in_process_replica(sandbox) as second_replica:
        at = await scheduled(sandbox)
        rollout = await sandbox.rollout()
        timers = TimerStore(sandbox.services.database.sessions)
        timer = await timers.get(key=dispatch_timer_key(rollout.id, at))
        assert timer is not None and timer.due_at == at
        sandbox.clock.advance(at - sandbox.clock() + timedelta(seconds=1))
        first, second = sandbox.services.rollouts, second_replica[SERVICES].rollouts
        await asyncio.gather(first.on_timer(timer), second.on_timer(timer))
        await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert len(sandbox.github.dispatches) == 1


async def test_a_second_start_scheduled_for_the_same_time_is_refused_naming_the_schedule(
    sandbox: Sandbox,
) -> None:
    """Before, the refusal said `v1.4.2` was "already rolling out": nothing was deployed, and
    would not be before the time scheduled."""
    at = await scheduled(sandbox)
    refused = await sandbox.command('start v1.4.3 --flags-ready --at "tomorrow 09:00"', user=OTHER)
    assert f"`v1.4.2` is scheduled to dispatch at {slack_date(at)}" in refused, refused
    assert "already rolling out" not in refused
    assert [r.tag for r in await sandbox.services.rollouts.active()] == ["v1.4.2"]
    await reach(sandbox, at)
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1


async def test_cancel_schedule_leaves_the_preflight_for_a_person(sandbox: Sandbox) -> None:
    at = await scheduled(sandbox)
    refused = await sandbox.click("cancel_schedule", user=BYSTANDER)
    assert refused is not None and "Only release approvers may cancel a scheduled dispatch" in (
        refused
    )
    await sandbox.click("cancel_schedule", user=OTHER)
    await told_in_thread(sandbox, f"<@{OTHER}> cancelled the dispatch scheduled for")
    await sandbox.slack.wait_for(lambda: "Scheduled:" not in preflight_card(sandbox).rendered)
    card = preflight_card(sandbox).rendered
    assert "Scheduled:" not in card and "[Cancel schedule]" not in card and "[Dispatch]" in card

    await reach(sandbox, at)
    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT
    assert await audit_of(sandbox, "click:cancel_schedule", OTHER) == [("ok", None)]
    assert await audit_of(sandbox, "schedule:dispatch") == []


async def test_dispatch_now_goes_at_once_and_the_time_then_does_nothing(sandbox: Sandbox) -> None:
    at = await scheduled(sandbox)
    await sandbox.click("dispatch", message=preflight_card(sandbox))
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    await reach(sandbox, at)
    assert len(sandbox.github.dispatches) == 1
    assert await audit_of(sandbox, "schedule:dispatch") == []


async def test_frozen_at_the_time_it_waits_and_says_why(sandbox: Sandbox) -> None:
    at = await scheduled(sandbox)
    await sandbox.command("freeze 48h INC-123 investigation", user=OTHER)
    await reach(sandbox, at)
    said = await told_in_thread(sandbox, "did not go")
    assert f"Deploys are frozen by <@{OTHER}>" in said and "INC-123 investigation" in said
    await sandbox.slack.wait_for(lambda: "did not go" in preflight_card(sandbox).rendered)
    card = preflight_card(sandbox).rendered
    assert "[Cancel schedule]" not in card and "[Dispatch]" in card
    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT
    assert await recorded(sandbox, "schedule:dispatch") == [("held", at.isoformat())]


async def test_the_status_says_a_freeze_declared_after_the_schedule_will_hold_it(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    await sandbox.command("freeze 1h quick db check", user=OTHER)  # ends before the time
    assert "will be held then" not in await sandbox.command("status")

    await sandbox.command("freeze 48h INC-123 investigation", user=OTHER)
    status = await sandbox.command("status")
    assert f":warning: The dispatch scheduled for {slack_date(at)}" in status
    assert f"will be held then: Deploys are frozen by <@{OTHER}> until" in status
    assert "INC-123 investigation. It goes only if that freeze is lifted" in status
    said = await told_in_thread(sandbox, "will be held then")  # the thread is told once
    assert f"Deploys are frozen by <@{OTHER}>" in said and "INC-123 investigation" in said
    held = [r for r in preflight_card(sandbox).replies if "will be held then" in r.rendered]
    assert len(held) == 1  # not for the 1h freeze, which ends before the time


async def test_the_thread_told_a_freeze_would_hold_it_is_told_when_that_freeze_is_lifted(
    sandbox: Sandbox,
) -> None:
    """Before, the thread's last word was `will be held then`: the unfreeze was said in the
    channel only, and whoever read the thread expected the dispatch not to go."""
    at = await scheduled(sandbox)
    await sandbox.command("freeze 48h INC-123 investigation", user=OTHER)
    await told_in_thread(sandbox, "will be held then")
    await sandbox.command("unfreeze", user=OTHER)
    said = await told_in_thread(sandbox, "lifted the freeze")
    assert f"<@{OTHER}> lifted the freeze by <@{OTHER}> (INC-123 investigation)" in said, said
    assert f"the dispatch scheduled for {slack_date(at)}" in said and "> goes then" in said
    await reach(sandbox, at)
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)


async def test_a_freeze_known_for_the_time_refuses_the_schedule_unless_overridden(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 48h INC-123 investigation", user=OTHER)
    at = tomorrow_nine(sandbox)
    refused = await sandbox.command(SCHEDULED)
    assert f":warning: At {slack_date(at)}" in refused and "Deploys are frozen by" in refused
    assert sandbox.slack.messages(RELEASE_CHANNEL) == [] or all(
        "Preflight" not in m.rendered for m in sandbox.slack.messages(RELEASE_CHANNEL)
    )

    overridden = await sandbox.command(SCHEDULED + ' --override-freeze "hotfix for INC-123"')
    assert "overrode the freeze for `v1.4.2`: hotfix for INC-123" in overridden
    await told_in_thread(sandbox, "scheduled the dispatch for")
    await reach(sandbox, at)
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1


async def test_someone_elses_lock_at_the_time_holds_it_naming_them(sandbox: Sandbox) -> None:
    at = await scheduled(sandbox)
    await sandbox.command("lock migrating the billing db", user=OTHER)
    await reach(sandbox, at)
    said = await told_in_thread(sandbox, "did not go")
    assert f"The release lane is locked by <@{OTHER}>" in said
    assert sandbox.github.dispatches == []


async def test_the_two_person_rule_on_dispatch_holds_the_starters_schedule(
    tmp_path: Path, database_url: str
) -> None:
    approvers = f"{RELEASE_MANAGER},{OTHER}"
    plan = {"two_person": ["dispatch"]}
    async with sandbox_for(tmp_path, database_url, approvers=approvers, plan_changes=plan) as box:
        box.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
        every_gate_passes(box)
        at = await scheduled(box)
        await reach(box, at)
        said = await told_in_thread(box, "did not go")
        assert "two-person rule needs an approver other than the starter" in said
        assert box.github.dispatches == []
        await box.click("dispatch", message=preflight_card(box), user=OTHER)
        await box.wait_until(lambda r: r.phase is Phase.RUNNING)


async def test_a_blocked_preflight_at_the_time_holds_it(sandbox: Sandbox) -> None:
    at = await scheduled(sandbox, 'start v1.4.2 --at "tomorrow 09:00"')  # flags not confirmed
    await reach(sandbox, at)
    said = await told_in_thread(sandbox, "did not go")
    assert "Dispatch is blocked by: Feature flags" in said
    assert sandbox.github.dispatches == []


@pytest.mark.parametrize(
    ("at", "answer"),
    [
        ('"today 00:00"', "is in the past"),
        ('"2020-01-01 09:00"', "is in the past"),
        ('"2099-01-01 09:00"', "is too far ahead: a start is scheduled at most 14 days ahead"),
        ("banana", "`banana` is not a time I can read"),
        ('"tue"', "`tue` names no time of day"),
        ('"09:00 CET"', "`CET` is not a time zone I read"),
        ("2h", "`2h` is a duration: --at takes the time the dispatch goes"),
        ('"09:00 10:00"', "names more than one time"),
    ],
)
async def test_a_time_that_cannot_be_scheduled_changes_nothing(
    sandbox: Sandbox, at: str, answer: str
) -> None:
    said = await sandbox.command(f"start v1.4.2 --flags-ready --at {at}")
    assert answer in said, said
    assert sandbox.slack.messages(RELEASE_CHANNEL) == []
    assert await sandbox.services.rollouts.active() == []
    assert await TimerStore(sandbox.services.database.sessions).next_due() is None
    assert await audit_of(sandbox, "command:start", RELEASE_MANAGER) == [("invalid_command", None)]

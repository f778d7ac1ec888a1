"""Scheduled starts at their edges (a review's findings): a Cancel schedule landing while the
time's recheck runs, a dispatch by hand before the time whose run the bot gave up looking for,
GitHub refusing the scheduled dispatch, a starter no longer an approver at the time, an
override with nothing frozen, a time zone Slack cannot give, and Override freeze… from two
approvers at once (its reason shown as typed)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from figures import passing_sandbox
from test_audit_reasons import stored_markup
from test_controls import GROUP, sandbox_for
from test_freeze_sandbox import open_override, refused_dispatch, typed_reason
from test_github_faults import DISPATCHES
from test_scheduled_starts import (
    APPROVERS_ENV,
    OTHER,
    SCHEDULED,
    audit_of,
    preflight_card,
    reach,
    recorded,
    sandbox,
    scheduled,
    slack_date,
    told_in_thread,
    tomorrow_nine,
)

from bot.domain.controls import CardRef, Control, effect_key
from bot.domain.rollout import DISPATCH_SEARCH, Phase, Rollout
from bot.domain.schedule import dispatch_timer_key
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from storage.claims import ClaimStore
from storage.timers import TimerStore

__all__ = ["sandbox"]  # the fixture this module's tests use

pytestmark = pytest.mark.story


async def fired(box: Sandbox, rollout: Rollout, at: datetime) -> None:
    """Wait until the scheduler has fired (or given up) the schedule's timer."""
    timers = TimerStore(box.services.database.sessions)
    key = dispatch_timer_key(rollout.id, at)
    async with asyncio.timeout(20):
        while (timer := await timers.get(key=key)) is not None and timer.is_pending:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_cancel_landing_during_the_times_recheck_stops_the_dispatch(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    rollout = await sandbox.rollout()
    service = sandbox.services.rollouts
    original = service.recheck
    rechecked, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_recheck(**kwargs: str) -> Rollout:  # the cancel lands during GitHub's reads
        done = await original(**kwargs)
        rechecked.set()
        await cancelled.wait()
        return done

    service.recheck = slow_recheck  # type: ignore[method-assign]
    timer = await TimerStore(sandbox.services.database.sessions).get(
        key=dispatch_timer_key(rollout.id, at)
    )
    assert timer is not None
    sandbox.clock.advance(at - sandbox.clock() + timedelta(seconds=1))
    firing = asyncio.create_task(service.on_timer(timer))
    await rechecked.wait()
    await sandbox.click("cancel_schedule", user=OTHER, message=preflight_card(sandbox))
    assert (await sandbox.rollout()).schedule is None
    cancelled.set()
    await firing

    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT
    # The scheduler may have fired the same timer meanwhile: each firing found it cancelled.
    assert set(await recorded(sandbox, "schedule:dispatch")) == {
        ("invalid_transition", at.isoformat())
    }


async def test_a_dispatch_by_hand_consumes_the_schedule_even_when_its_run_is_never_found(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    sandbox.github.fault_next("POST", DISPATCHES, "server_error")  # went through, unclear
    await sandbox.click("dispatch", message=preflight_card(sandbox), wait=False)
    await sandbox.wait_for_thread("no run of it appeared", timeout=30)
    sent = await sandbox.rollout()
    assert sent.schedule is None  # the person's dispatch took the schedule's place
    await sandbox._store.save(replace(sent, dispatched_at=sent.dispatched_at - DISPATCH_SEARCH))
    await sandbox.wait_for_thread("could be identified")
    back = await sandbox.wait_until(lambda r: r.phase is Phase.PREFLIGHT)
    assert back.gave_up_at is not None and back.schedule is None

    await reach(sandbox, at)
    await fired(sandbox, back, at)
    assert sandbox.github.dispatches == []  # never the bot on its own
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT
    assert await audit_of(sandbox, "schedule:dispatch") == []


async def test_github_refusing_the_scheduled_dispatch_holds_it_at_once_saying_why(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    sandbox.github.fail_next("POST", DISPATCHES, 422, times=100)
    await reach(sandbox, at)
    said = await told_in_thread(sandbox, "did not go")
    assert "GitHub refused it" in said and "422" in said
    for minutes in (1, 2, 4, 8, 16):  # the timer's retries would have come by now
        await sandbox.pass_time(timedelta(minutes=minutes))

    posts = [r for r in sandbox.github.requests if r.method == "POST" and "dispatches" in r.path]
    assert len(posts) == 1
    replies = [reply.rendered for reply in preflight_card(sandbox).replies]
    assert not any("was not running" in reply for reply in replies)
    assert await recorded(sandbox, "schedule:dispatch") == [("held", at.isoformat())]
    back = await sandbox.rollout()
    assert back.phase is Phase.PREFLIGHT and back.schedule is not None and back.schedule.held


async def test_a_starter_no_longer_an_approver_at_the_time_holds_it(
    tmp_path: Path, database_url: str
) -> None:
    async with sandbox_for(tmp_path, database_url, approvers=f"{GROUP},{OTHER}") as box:
        box.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
        box.slack.usergroups[GROUP] = [RELEASE_MANAGER]
        at = await scheduled(box)
        await box.stop_bot()
        box.slack.usergroups[GROUP] = []  # left the release managers' group meanwhile
        await box.start_bot()
        await reach(box, at)
        said = await told_in_thread(box, "did not go")
        assert f"<@{RELEASE_MANAGER}>, who scheduled it, is no longer a release approver" in said
        assert box.github.dispatches == []


async def test_an_override_with_nothing_frozen_starts_once_and_answers_the_start(
    sandbox: Sandbox,
) -> None:
    at = tomorrow_nine(sandbox)
    said = await sandbox.command(SCHEDULED + ' --override-freeze "hotfix"')
    assert f"dispatch scheduled for {slack_date(at)}" in said and "already" not in said
    assert len(await sandbox.services.rollouts.active()) == 1
    assert await audit_of(sandbox, "command:start", RELEASE_MANAGER) == [("ok", at.isoformat())]


async def test_an_override_says_when_the_scheduled_dispatch_goes(sandbox: Sandbox) -> None:
    await sandbox.command("freeze 48h INC-123 investigation", user=OTHER)
    at = tomorrow_nine(sandbox)
    said = await sandbox.command(SCHEDULED + ' --override-freeze "hotfix for INC-123"')
    assert "overrode the freeze for `v1.4.2`: hotfix for INC-123" in said
    assert f"Its dispatch is scheduled for {slack_date(at)}" in said


async def test_a_time_zone_slack_cannot_give_is_refused_unless_an_offset_is_given(
    sandbox: Sandbox,
) -> None:
    sandbox.slack.fail_next("users.info", error="missing_scope")
    refused = await sandbox.command(SCHEDULED)
    assert "users:read" in refused and '`--at "tue 09:00+01:00"`' in refused
    assert sandbox.slack.messages(RELEASE_CHANNEL) == []
    assert await sandbox.services.rollouts.active() == []
    assert await audit_of(sandbox, "command:start", RELEASE_MANAGER) == [("invalid_command", None)]

    asked = len(sandbox.slack.calls_to("users.info"))
    said = await sandbox.command('start v1.4.2 --flags-ready --at "tomorrow 09:00+01:00"')
    assert f"dispatch scheduled for {slack_date(tomorrow_nine(sandbox))}" in said, said
    assert "at the offset you gave, UTC+01:00" in said
    assert len(sandbox.slack.calls_to("users.info")) == asked  # an offset needs no zone


@pytest.mark.database_matters
async def test_two_approvers_overriding_at_once_override_once_and_the_reason_reads_as_typed(
    sandbox: Sandbox,
) -> None:
    _, value = await refused_dispatch(sandbox)
    mine = await open_override(sandbox, value)
    theirs = await open_override(sandbox, value, user=OTHER)
    reason = "<!channel> see <https://x.example|approved>"
    await asyncio.gather(
        sandbox.submit_view(mine, typed_reason(reason)),
        sandbox.submit_view(theirs, typed_reason(reason), user=OTHER),
    )
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1
    thread = [reply.rendered for reply in sandbox.slack.messages(RELEASE_CHANNEL)[0].replies]
    overrides = [reply for reply in thread if "overrode the freeze" in reply]
    assert len(overrides) == 1, thread
    assert "&lt;!channel&gt; see &lt;https://x.example|approved&gt;" in overrides[0]
    assert "<!channel>" not in overrides[0]


@pytest.mark.database_matters
async def test_a_dispatch_claimed_again_after_a_crash_is_held_when_long_past_its_time(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    timers = TimerStore(sandbox.services.database.sessions)
    await sandbox.stop_bot()
    # A replica claims the due timer at the time, then is killed (deploy, OOM) before it ends.
    claimed = await timers.claim_due(
        now=at + timedelta(seconds=1), owner="killed-replica", lease=timedelta(minutes=2)
    )
    assert "scheduled_dispatch" in [t.kind for t in claimed], claimed
    sandbox.clock.advance(at - sandbox.clock() + timedelta(hours=3))  # back three hours later
    await sandbox.start_bot()
    await sandbox.pass_time(timedelta(seconds=5))
    await fired(sandbox, await sandbox.rollout(), at)  # the scheduler fired it again
    assert sandbox.github.dispatches == [], "dispatched three hours after the time chosen"
    said = await told_in_thread(sandbox, "did not go")
    assert "not running" in said
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT


async def test_users_info_failing_without_json_asks_for_an_offset_not_an_internal_error(
    sandbox: Sandbox,
) -> None:
    sandbox.slack.time_zones[RELEASE_MANAGER] = "Europe/Atlantis"  # the sandbox answers 500
    said = await sandbox.command(SCHEDULED)
    assert "Something went wrong" not in said and "give it with an offset" in said, said
    assert await sandbox.services.rollouts.active() == []
    assert sandbox.slack.messages(RELEASE_CHANNEL) == []


@pytest.mark.database_matters
async def test_a_dispatch_another_request_keeps_holding_is_held_and_stored_without_markup(
    tmp_path: Path, database_url: str
) -> None:
    """Another request (a person's Dispatch on another replica) claimed the dispatch and keeps
    holding it: the time's dispatch waits for it, fails, and the timer gives up (one attempt
    here), holding the schedule. The thread and the card name that person as a mention; what
    the bot stores (the timer's last error, the held schedule, the outbox's event) holds the
    words without Slack markup."""
    env = {**APPROVERS_ENV, "TIMER_MAX_ATTEMPTS": "1"}
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=env) as box:
        box.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
        at = await scheduled(box)
        rollout = await box.rollout()
        claims = ClaimStore(box.services.database.sessions)
        for version in range(rollout.version, rollout.version + 3):  # the card, rechecked
            key = effect_key(Control.DISPATCH, CardRef(rollout.id, version=version))
            claimed = await claims.claim(  # at the time: its lease (5 minutes) holds then
                key=key, action="dispatch", actor=OTHER, now=at, rollout_id=rollout.id
            )
            assert claimed is not None

        await reach(box, at)
        said = await told_in_thread(box, "did not go")
        await box.wait_until(lambda r: r.schedule is not None and not r.schedule.pending)
        timer = await box.wait_for_timer(
            dispatch_timer_key(rollout.id, at), lambda t: t.dead_at is not None
        )

    assert await stored_markup(database_url) == []
    assert f"did not go: Already being done by <@{OTHER}> since <!date^" in said
    assert f"Already being done by <@{OTHER}>" in preflight_card(box).rendered
    assert box.github.dispatches == []
    assert (timer.last_error or "").startswith(f"BeingDone: Already being done by @{OTHER} since")

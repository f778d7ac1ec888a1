"""Freezes and the lock end to end: signed `/rollout` commands to the real app and to two
`rollout-bot serve` processes, the sandbox's Slack recording what people see."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from figures import every_gate_passes, passing_sandbox, two_serve_processes
from sandbox_views import audit_results, dispatched, finish, released, value_of
from test_controls import sandbox_for

from bot.adapters.slack.control_views import REASON_ACTION, REASON_BLOCK
from bot.domain.freeze import LANE_FREEZE, LANE_LOCK, ROLL_BACK_LASTS, LaneHold
from bot.domain.rollout import Phase, Rollout, holding_tracks
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from sandbox.slack_records import ChannelMessage

pytestmark = pytest.mark.story

OTHER = "U0APPROVE2"
THIRD = "U0APPROVE3"
APPROVERS = f"{RELEASE_MANAGER},{OTHER}"
APPROVERS_ENV = {"ROLLOUT_APPROVERS": APPROVERS}


def holding(rollout: Rollout) -> bool:
    return rollout.phase is Phase.RUNNING and bool(holding_tracks(rollout))


def card(box: Sandbox) -> ChannelMessage | None:
    """The preflight card (whichever message of the channel has a Dispatch button)."""
    return next(
        (m for m in box.slack.messages(RELEASE_CHANNEL) if '"dispatch"' in json.dumps(m.blocks)),
        None,
    )


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=APPROVERS_ENV) as box:
        yield box


async def test_a_freeze_refuses_start_names_who_and_why_and_an_override_goes_through(
    sandbox: Sandbox,
) -> None:
    said = await sandbox.command("freeze 2h INC-123 investigation", user=OTHER)
    assert f"<@{OTHER}> froze deploys until" in said and "INC-123 investigation" in said

    refused = await sandbox.command("start v1.4.2 --flags-ready")
    assert f"Deploys are frozen by <@{OTHER}> until" in refused
    assert "INC-123 investigation" in refused and "--override-freeze" in refused
    # The Slack words' placeholders, escaped once (the refusal's quotes are not escaped again).
    assert '`/rollout start &lt;tag&gt; --override-freeze "&lt;reason&gt;"`' in refused
    assert card(sandbox) is None  # no preflight card
    status = await sandbox.command("status")
    assert f"Deploys are frozen by <@{OTHER}>" in status

    overridden = await sandbox.command(
        'start v1.4.2 --flags-ready --override-freeze "hotfix for INC-123"'
    )
    assert (
        f"<@{RELEASE_MANAGER}> overrode the freeze for `v1.4.2`: hotfix for INC-123" in overridden
    )
    # The card and the channel's announcement arrive in either order.
    await sandbox.slack.wait_for(lambda: card(sandbox) is not None, timeout=30)
    await sandbox.click("dispatch", message=card(sandbox))  # the override covers its dispatch
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)

    events = await sandbox.audit.list_for_actor(RELEASE_MANAGER)
    starts = [
        (e.result, (e.detail or {}).get("override_freeze"))
        for e in events
        if e.action == "command:start"
    ]
    assert starts == [("lane_closed", None), ("ok", "hotfix for INC-123")]

    lifted = await sandbox.command("unfreeze")
    assert f"lifted the freeze by <@{OTHER}>" in lifted
    assert "Nothing to unfreeze" in await sandbox.command("unfreeze")


async def test_an_override_passes_only_the_freeze_it_overrode_not_one_declared_later(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 6h planned maintenance", user=OTHER)
    await sandbox.command('start v1.4.2 --flags-ready --override-freeze "hotfix"')
    await sandbox.slack.wait_for(lambda: card(sandbox) is not None, timeout=30)
    await sandbox.command("unfreeze", user=OTHER)
    said = await sandbox.command("freeze 2h INC-9 outage, hands off", user=OTHER)
    assert "INC-9" in said
    refused = await sandbox.click("dispatch", message=card(sandbox))
    assert sandbox.github.dispatches == [], "dispatched through a freeze nobody overrode"
    assert refused is not None and "INC-9" in refused and "*Override freeze…*" in refused


async def test_a_second_freeze_never_shortens_the_first_and_says_which_is_in_force(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 72h holiday freeze", user=OTHER)
    said = await sandbox.command("freeze 1h quick db check")
    assert f"The freeze by <@{OTHER}> until" in said and "stays in force: holiday freeze" in said
    assert f"<@{RELEASE_MANAGER}>'s freeze until" in said and "(quick db check)" in said
    await sandbox.pass_time(timedelta(hours=2))
    refused = await sandbox.command("start v1.4.2 --flags-ready")
    assert "holiday freeze" in refused, f"the 72h holiday freeze ended after 1 hour: {refused}"
    # A longer freeze extends it: the lane then says the later one.
    longer = await sandbox.command("freeze 96h year-end freeze")
    assert f"<@{RELEASE_MANAGER}> froze deploys until" in longer and "year-end freeze" in longer
    await sandbox.pass_time(timedelta(hours=80))
    assert "year-end freeze" in await sandbox.command("start v1.4.2 --flags-ready")


async def test_the_audit_says_why_deploys_were_frozen_and_what_an_unfreeze_lifted(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 2h INC-123 investigation", user=OTHER)
    await sandbox.command("lock migrating the billing db", user=OTHER)
    await sandbox.command("unfreeze")
    trail = await sandbox.audit.list_for_actor(OTHER) + await sandbox.audit.list_for_actor(
        RELEASE_MANAGER
    )
    details = {e.action: e.detail or {} for e in trail}
    froze = details["command:freeze"]
    assert froze["reason"] == "INC-123 investigation" and froze["until"], details
    assert details["command:lock"]["reason"] == "migrating the billing db", details
    lifted = details["command:unfreeze"]
    assert (lifted["lifted_by"], lifted["lifted_reason"]) == (OTHER, "INC-123 investigation")
    assert lifted["lifted_until"] == froze["until"], details


def typed_reason(text: str) -> dict[str, dict[str, dict[str, str]]]:
    return {REASON_BLOCK: {REASON_ACTION: {"type": "plain_text_input", "value": text}}}


async def refused_dispatch(box: Sandbox) -> tuple[str, str]:
    """A preflight whose Dispatch a freeze refuses: the refusal, and the value of the
    *Override freeze…* button under it."""
    await box.command("start v1.4.2 --flags-ready")
    await box.slack.wait_for(lambda: card(box) is not None, timeout=30)
    await box.command("freeze 2h INC-123 investigation", user=OTHER)
    refused = await box.click("dispatch", message=card(box))
    assert refused is not None and "INC-123 investigation" in refused
    (answer,) = [e for e in box.slack.ephemerals(user=RELEASE_MANAGER) if "[Override" in e.rendered]
    buttons = [
        element
        for block in answer.blocks
        if block.get("type") == "actions"
        for element in block["elements"]
    ]
    (override,) = [b for b in buttons if b["action_id"] == "override_freeze"]
    return refused, str(override["value"])


async def open_override(box: Sandbox, value: str, *, user: str = RELEASE_MANAGER) -> str:
    """Click *Override freeze…*; the id of the form it opened."""
    before = len(box.slack.calls_to("views.open"))
    await box.click("override_freeze", value=value, message=card(box), user=user)
    opened = await box.slack.wait_for_call("views.open", count=before + 1)
    return str(opened[-1].response["view"]["id"])


async def test_a_dispatch_refused_by_a_freeze_is_overridden_from_the_card(
    sandbox: Sandbox,
) -> None:
    refused, value = await refused_dispatch(sandbox)
    assert "click Dispatch on the card, then *Override freeze…* with a reason" in refused
    assert "[Override freeze…]" in refused and "/rollout start &lt;tag&gt;" not in refused
    assert sandbox.github.dispatches == []

    not_approver = await sandbox.click("override_freeze", value=value, user=THIRD)
    assert not_approver is not None and "Only release approvers may override a freeze" in (
        not_approver
    )
    view_id = await open_override(sandbox, value)
    empty = await sandbox.submit_view(view_id, typed_reason("   "))
    assert empty == {
        "response_action": "errors",
        "errors": {REASON_BLOCK: "An override needs a reason."},
    }
    # A reason is said in the thread and kept: a token pasted there is neither.
    pasted = await sandbox.submit_view(view_id, typed_reason("npm_" + "0vr1" * 9))
    assert pasted["response_action"] == "errors"
    assert "That looks like a token: nothing was done" in pasted["errors"][REASON_BLOCK]
    assert sandbox.github.dispatches == []

    assert await sandbox.submit_view(view_id, typed_reason("hotfix for INC-123")) == {}
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1
    first = sandbox.slack.messages(RELEASE_CHANNEL)[0]  # the card, before the freeze's note
    thread = [reply.rendered for reply in first.replies]
    assert any(
        f"<@{RELEASE_MANAGER}> overrode the freeze for `v1.4.2`: hotfix for INC-123" in reply
        for reply in thread
    )

    async def said() -> list[tuple[str, str, object]]:
        events = await sandbox.audit.list_for_actor(RELEASE_MANAGER)
        return [(e.action, e.result, (e.detail or {}).get("override_freeze")) for e in events]

    # The dispatch's event is written as its request ends, a moment after the rollout ran.
    async with asyncio.timeout(10):
        while ("form:dispatch", "ok", None) not in await said():  # noqa: ASYNC110 - the database
            await asyncio.sleep(0.05)
    assert ("form:override_freeze", "ok", "hotfix for INC-123") in await said()
    assert ("click:dispatch", "lane_closed", None) in await said()


async def test_the_two_person_rule_holds_an_override_from_the_card_for_a_second_approver(
    tmp_path: Path, database_url: str
) -> None:
    plan = {"two_person": ["override_freeze"]}
    async with sandbox_for(tmp_path, database_url, approvers=APPROVERS, plan_changes=plan) as box:
        every_gate_passes(box)
        _, value = await refused_dispatch(box)
        view_id = await open_override(box, value)
        assert await box.submit_view(view_id, typed_reason("hotfix for INC-123")) == {}
        await box.slack.wait_for(
            lambda: any("two-person rule" in e.rendered for e in box.slack.ephemerals()),
            timeout=30,
        )
        assert box.github.dispatches == []
        await box.click("dispatch", message=card(box), user=OTHER)
        await box.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert len(box.github.dispatches) == 1


async def test_a_freeze_never_blocks_a_rollback(sandbox: Sandbox) -> None:
    await dispatched(sandbox)
    await sandbox.command("freeze 1h change freeze", user=OTHER)
    said = await sandbox.command("rollback")
    assert said.startswith("Rolling back `v1.4.2`"), said


async def two_releases(box: Sandbox) -> tuple[Rollout, ChannelMessage, str]:
    """v1.4.1 released before (`released`), then v1.4.2 rolled out to the end: v1.4.2's
    rollout, its card and the value of its relay lane's Roll back to the previous release… (no
    rollback workflow in the plan)."""
    every_gate_passes(box)
    await released(box, "v1.4.1")
    replaced = await finish(box, "v1.4.2")
    return replaced, box.card_message(), await value_of(box, "redeploy", "relay")


async def roll_back_to_the_previous(box: Sandbox, message: ChannelMessage, value: str) -> None:
    """Roll back to the previous release… on `message`'s lane, confirmed in its dialog."""
    await box.click("redeploy", value=value, message=message)
    opened = await box.slack.wait_for_call("views.open")
    assert await box.submit_view(opened[-1].response["view"]["id"], {}) == {}


async def flags_confirmed(box: Sandbox) -> None:
    """Confirm flags on the preflight `card` once it shows the button (a roll back's card may
    come after its row), and wait for its Dispatch button."""
    await box.wait_for_button("confirm_flags")
    await box.click("confirm_flags", message=card(box))
    await box.wait_for_button("dispatch")


async def test_a_roll_back_of_a_completed_release_passes_the_freeze_and_the_lock(
    tmp_path: Path, database_url: str
) -> None:
    # No rollback workflow in the plan: Roll back to the previous release… starts a new
    # rollout of v1.4.1, whose Dispatch and run link no freeze or lock may hold.
    async with sandbox_for(tmp_path, database_url, window="1s", approvers=APPROVERS) as box:
        replaced, replaced_card, redeploy = await two_releases(box)
        await box.command("freeze 2h holiday freeze", user=OTHER)
        await box.command("lock INC-7 triage", user=OTHER)
        refused = await box.command("start v1.4.3 --flags-ready")
        assert f"The release lane is locked by <@{OTHER}>" in refused  # an ordinary start

        await roll_back_to_the_previous(box, replaced_card, redeploy)
        started = await box.wait_until(lambda r: r.tag == "v1.4.1" and r.id != replaced.id)
        told = (
            "A roll back: not held by the freeze or the lock; its Dispatch goes through within "
            "24h, unless a newer release goes out first."
        )
        await box.slack.wait_for(lambda: any(told in r.rendered for r in replaced_card.replies))

        await flags_confirmed(box)
        assert await box.click("dispatch", message=card(box)) is None
        await box.wait_until(lambda r: r.id == started.id and r.phase is Phase.RUNNING)
        assert len(box.github.dispatches) == 2  # v1.4.2, and the roll back
        assert await audit_results(box, started.id, "click:dispatch", 1) == ["ok"]
        (event,) = [
            e for e in await box.audit.list_for_rollout(started.id) if e.action == "click:dispatch"
        ]
        assert (event.detail or {})["lane"] == "a roll back: not held by the freeze or the lock"
        assert (event.detail or {})["roll_back"] == "a roll back of `v1.4.2`"
        (redeploy,) = [
            e for e in await box.audit.list_for_rollout(replaced.id) if e.action == "redeploy"
        ]
        assert (redeploy.detail or {})["locked_by"] == OTHER


async def test_a_roll_back_left_in_its_preflight_for_a_day_is_stale_and_held_by_the_freeze(
    tmp_path: Path, database_url: str
) -> None:
    async with sandbox_for(tmp_path, database_url, window="1s", approvers=APPROVERS) as box:
        replaced, replaced_card, redeploy = await two_releases(box)
        await box.command("freeze 72h holiday freeze", user=OTHER)
        await roll_back_to_the_previous(box, replaced_card, redeploy)
        await box.wait_until(lambda r: r.tag == "v1.4.1" and r.id != replaced.id)
        await flags_confirmed(box)

        await box.pass_time(ROLL_BACK_LASTS)

        refused = await box.click("dispatch", message=card(box))
        assert refused is not None and "This roll back is stale: it was clicked at" in refused
        assert "more than 24h ago" in refused and f"Deploys are frozen by <@{OTHER}>" in refused
        assert "[Override freeze…]" in refused  # an approver may still override it
        assert len(box.github.dispatches) == 1  # v1.4.2 only (v1.4.1 was `released` before)


async def test_a_roll_back_through_a_freeze_keeps_the_two_person_rule_and_dispatches_once(
    tmp_path: Path, database_url: str
) -> None:
    plan = {"two_person": ["dispatch"]}
    async with sandbox_for(
        tmp_path, database_url, window="1s", approvers=APPROVERS, plan_changes=plan
    ) as box:
        every_gate_passes(box)
        await released(box, "v1.4.1")
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
        await box.wait_for_button("dispatch")
        await box.click("dispatch", user=OTHER)  # the starter does not dispatch alone
        while (await box.wait_until(lambda r: r.phase is Phase.ENDED or holding(r))).active:
            await box.command("promote")
        replaced_card = box.card_message()
        redeploy = await value_of(box, "redeploy", "relay")
        await box.command("freeze 2h holiday freeze", user=OTHER)
        await roll_back_to_the_previous(box, replaced_card, redeploy)
        await box.wait_until(lambda r: r.tag == "v1.4.1" and r.phase is Phase.PREFLIGHT)
        await flags_confirmed(box)

        alone = await box.click("dispatch", message=card(box))
        assert alone is not None and "two-person rule" in alone
        await asyncio.gather(*(box.click("dispatch", message=card(box), user=OTHER) for _ in "ab"))
        await box.wait_until(lambda r: r.tag == "v1.4.1" and r.phase is Phase.RUNNING)
        assert len(box.github.dispatches) == 2  # v1.4.2, and the roll back once


async def test_a_lock_holds_the_lane_for_one_person(sandbox: Sandbox) -> None:
    locked = await sandbox.command("lock migrating the billing db", user=OTHER)
    assert f"locked by <@{OTHER}>" in locked
    refused = await sandbox.command("start v1.4.2 --flags-ready")
    assert f"The release lane is locked by <@{OTHER}>" in refused and "billing db" in refused
    status = await sandbox.command("status")
    # Before, the status drew the lock with the freeze's :snowflake:, as if deploys were frozen.
    assert f":lock: The release lane is locked by <@{OTHER}>" in status, status
    assert ":snowflake:" not in status
    assert "unlock it with a reason" in await sandbox.command("unlock")

    unlocked = await sandbox.command("unlock they are on leave")
    assert f"unlocked the release lane held by <@{OTHER}>: they are on leave" in unlocked
    assert "Preflight" in await sandbox.command("start v1.4.2 --flags-ready")


async def test_an_unlock_leaves_a_lock_that_changed_hands_after_it_was_checked(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sandbox.command("lock migrating the billing db", user=OTHER)
    holds = sandbox.services.lane.holds
    read = holds.current

    async def read_then_hand_over() -> list[LaneHold]:
        """The unlock's read, after which OTHER unlocks and a third approver locks."""
        seen = await read()
        monkeypatch.setattr(holds, "current", read)
        await holds.release(LANE_LOCK)
        await holds.take(LaneHold(LANE_LOCK, THIRD, "their turn", seen[0].since))
        return seen

    monkeypatch.setattr(holds, "current", read_then_hand_over)
    said = await sandbox.command("unlock they are on leave")
    assert f"The lock changed hands meanwhile: <@{THIRD}> holds it now" in said, said
    assert [hold.actor for hold in await holds.current()] == [THIRD]


async def test_bad_freezes_say_one_line_and_change_nothing(sandbox: Sandbox) -> None:
    assert "is in the past" in await sandbox.command("freeze 2020-01-01 00:00 too late")
    assert "is not a duration" in await sandbox.command("freeze soonish reasons")
    assert "needs a reason" in await sandbox.command("freeze 2h")
    assert "Preflight" in await sandbox.command("start v1.4.2 --flags-ready")


@pytest.mark.postgres
async def test_a_freeze_and_a_lock_are_shared_by_replicas_and_survive_a_restart(
    tmp_path: Path, postgres_database_url: str
) -> None:
    async with two_serve_processes(tmp_path, postgres_database_url, APPROVERS_ENV) as (
        box,
        second,
    ):
        await box.command("freeze 2h release train paused", user=OTHER)
        refused = await box.command("start v1.4.2 --flags-ready", replica=second)
        assert "release train paused" in refused

        await box.kill_process()
        await box.start_process()
        assert "release train paused" in await box.command("start v1.4.2 --flags-ready")
        await box.command("unfreeze", user=OTHER, replica=second)
        await box.command("lock", user=OTHER, replica=second)
        assert f"locked by <@{OTHER}>" in await box.command("start v1.4.2 --flags-ready")


async def test_the_plans_calendar_names_itself_and_two_people_carry_an_override(
    tmp_path: Path, database_url: str
) -> None:
    always = {
        "name": "holidays",
        "reason": "holiday week",
        "timezone": "Europe/Berlin",
        "dates": {"from": "2000-01-01 00:00", "until": "2100-01-01 00:00"},
    }
    changes: dict[str, object] = {"freezes": [always], "two_person": ["override_freeze"]}
    async with sandbox_for(
        tmp_path, database_url, approvers=APPROVERS, plan_changes=changes
    ) as box:
        every_gate_passes(box)
        refused = await box.command("start v1.4.2 --flags-ready")
        assert "Deploys are frozen by the plan's `holidays` freeze until" in refused
        assert "holiday week" in refused
        assert "Nothing to unfreeze: the calendar's `holidays` freeze" in await box.command(
            "unfreeze"
        )

        await box.command('start v1.4.2 --flags-ready --override-freeze "hotfix"')
        await box.slack.wait_for(lambda: card(box) is not None, timeout=30)
        # A refused unfreeze changes nothing: the override still carries the dispatch.
        assert "Nothing to unfreeze" in await box.command("unfreeze")
        alone = await box.click("dispatch", message=card(box))
        assert alone is not None and "needs another approver to dispatch it" in alone
        assert box.github.dispatches == []

        await box.click("dispatch", user=OTHER, message=card(box))
        await box.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert [d.inputs["relay_image_tag"] for d in box.github.dispatches] == ["v1.4.2"]


async def test_a_freeze_end_is_read_in_the_askers_slack_time_zone(sandbox: Sandbox) -> None:
    """A release engineer in Berlin typing `18:00` means 18:00 in Berlin (17:00 UTC in
    winter); the channel is told the zone it was read in. `UTC` after it means UTC; Slack not
    saying the zone refuses the time (an offset or a duration still goes) and changes nothing."""
    berlin = ZoneInfo("Europe/Berlin")
    sandbox.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
    holds = sandbox.services.lane.holds
    day = (sandbox.clock() + timedelta(days=2)).astimezone(berlin).date()

    said = await sandbox.command(f"freeze {day} 18:00 holiday freeze")
    assert f"read in <@{RELEASE_MANAGER}>'s Slack time zone, Europe/Berlin" in said, said
    assert f"{day} 18:00 there" in said
    (freeze,) = [hold for hold in await holds.current() if hold.kind == LANE_FREEZE]
    assert freeze.until == datetime.combine(day, time(18), berlin).astimezone(UTC)

    said = await sandbox.command(f"freeze {day} 18:00 UTC holiday freeze, UTC")
    assert "Slack time zone" not in said, said
    (freeze,) = [hold for hold in await holds.current() if hold.kind == LANE_FREEZE]
    assert freeze.until == datetime.combine(day, time(18), UTC)  # later: it replaced the first
    assert freeze.reason == "holiday freeze, UTC"

    sandbox.slack.fail_next("users.info", error="missing_scope")
    said = await sandbox.command(f"freeze {day} 20:00 longer")
    assert "Slack did not tell me your time zone" in said and "+01:00" in said, said
    (kept,) = [hold for hold in await holds.current() if hold.kind == LANE_FREEZE]
    assert kept == freeze


async def test_a_freeze_end_in_a_zone_the_bot_does_not_know_is_refused(sandbox: Sandbox) -> None:
    """Slack gives a zone this host's time zone database lacks: a time with no offset is
    refused, asking for the end with an offset (not `--at`), and nothing is frozen; an offset
    still goes."""
    lane = sandbox.services.controls.lane

    async def unknown(_user: str) -> str:  # as Slack would say it: a zone newer than tzdata
        return "America/Ciudad_Juarez_Nueva"

    object.__setattr__(lane, "time_zone_of", unknown)  # the port, not the Slack client
    day = (sandbox.clock() + timedelta(days=2)).date()

    said = (await sandbox.command(f"freeze {day} 18:00 holiday freeze")).splitlines()[0]
    assert "America/Ciudad_Juarez_Nueva" in said and "database does not know" in said, said
    assert f"`{day}T18:00+01:00`" in said and "--at" not in said, said
    assert [hold for hold in await sandbox.services.lane.holds.current()] == []

    said = await sandbox.command(f"freeze {day}T18:00-06:00 holiday freeze")
    assert "Slack time zone" not in said, said
    (freeze,) = await sandbox.services.lane.holds.current()
    assert freeze.until == datetime.combine(day, time(18), UTC) + timedelta(hours=6)


async def test_an_override_form_refused_for_its_reason_is_audited_and_changes_nothing(
    sandbox: Sandbox,
) -> None:
    """A form answered with its field errors had no audit event, though every command, click
    and form is one (a `/rollout start ... --override-freeze ""` is audited `invalid_command`)."""
    _, value = await refused_dispatch(sandbox)
    view_id = await open_override(sandbox, value)

    empty = await sandbox.submit_view(view_id, typed_reason("   "))

    assert empty["errors"] == {REASON_BLOCK: "An override needs a reason."}
    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT
    rollout = await sandbox.rollout()
    assert await audit_results(sandbox, rollout.id, "form:override_freeze", 1) == [
        "invalid_command"
    ]
    events = await sandbox.audit.list_for_actor(RELEASE_MANAGER)
    assert [e.action for e in events if e.action.startswith("form:")] == ["form:override_freeze"]
    (refused,) = [e for e in events if e.action == "form:override_freeze"]
    assert (refused.detail or {}).get("why") == "An override needs a reason.", refused.detail

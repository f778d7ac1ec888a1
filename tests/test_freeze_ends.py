"""A freeze's end is told, once, in the thread of each rollout it held, with what still waits
for a person: `promote: auto` stages held for a Promote, a scheduled dispatch that did not go.
A freeze extended meanwhile is told at its own end; one lifted by `/rollout unfreeze` is told
by the unfreeze, not again at its old end. End to end: the real app, the sandbox's Slack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import every_gate_passes, passing_sandbox
from sandbox_views import held, holding, stage_state
from sqlalchemy.exc import OperationalError
from statement_faults import failing
from test_freeze_all import outbox_emptied
from test_freeze_auto_promote import (
    OTHER,
    WINDOW,
    auto_sandbox,
    held_in_a_freeze,
    in_thread,
    observing_canary,
    preflight_card,
    promote_value,
)
from test_scheduled_starts import preflight_card as scheduled_card
from test_scheduled_starts import reach, sandbox, scheduled, told_in_thread

from bot.domain.freeze import FREEZE_END_TIMER
from bot.domain.freeze_all import FREEZE_LIFTED_TIMER
from bot.domain.rollout import Phase, StageState
from bot.services.freeze_ends import FreezeEnds
from bot.services.records import Timer
from sandbox.config import SandboxService
from sandbox.harness import Sandbox
from sandbox.plans import fast_plan
from sandbox.slack_records import ChannelMessage

pytestmark = pytest.mark.story
__all__ = ["sandbox"]  # the fixture, shared with the scheduled starts' stories

ENDED = "The freeze that held this rollout ended at"


def told(card: ChannelMessage, needle: str) -> list[str]:
    return [reply.rendered for reply in card.replies if needle in reply.rendered]


def blink_on_watches(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], Callable[[], None]]:
    """The database blinks on each write of a freeze end's watch, until the function returned
    is called: the keys of the watches it failed to write."""
    timers = box.services.rollouts.effects.timers
    schedule, blinked = timers.schedule, []

    async def blinking(**timer: Any) -> Any:
        if timer["kind"] == FREEZE_END_TIMER:
            blinked.append(timer["key"])
            raise OperationalError("INSERT timers", {}, ConnectionResetError("reset"))
        return await schedule(**timer)

    monkeypatch.setattr(timers, "schedule", blinking)
    return blinked, lambda: monkeypatch.setattr(timers, "schedule", schedule)


async def until_failed(box: Sandbox, failed: list[str]) -> None:
    """Wait until the unfreeze's timer (`freeze_lifted`), fired at once, met the fault."""
    async with asyncio.timeout(30):
        while not failed:
            await box.slack.changed(timeout=0.1)


def calendar_window(start: datetime, hours: int) -> dict[str, object]:
    return {
        "name": "friday",
        "reason": "no deploys on friday afternoon",
        "timezone": "UTC",
        "dates": {
            "from": f"{start:%Y-%m-%d %H:%M}",
            "until": f"{start + hours * WINDOW:%Y-%m-%d %H:%M}",
        },
    }


async def test_a_calendar_freeze_that_held_auto_stages_is_told_once_when_it_ends(
    tmp_path: Path, database_url: str
) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=10)
    window = calendar_window(start, 2)
    async with auto_sandbox(tmp_path, database_url, freezes=[window]) as box:
        card = await observing_canary(box)
        await box.pass_time(WINDOW)  # both gates PASS in the freeze: held
        await held(box, "relay", "canary")
        rollout = await held(box, "desktop", "internal")
        assert told(card, ENDED) == []

        await box.pass_time(2 * WINDOW)  # the calendar window ended
        await box.slack.wait_for(lambda: bool(told(card, ENDED)))
        said = told(card, ENDED)
        assert len(said) == 1, said
        assert "*5% canary → 50%*" in said[0] and "Still held, not promoted" in said[0]
        assert "click Promote when ready" in said[0]
        stages = await box.rollout()
        assert stages.track("relay").stage("canary").state is StageState.HOLDING

        # Fired again (a replica that died before marking it fired; a retry): said once.
        timers = box.services.rollouts.effects.timers
        (watch,) = await timers.of_kind(kind=FREEZE_END_TIMER, due_since=start)
        assert watch.rollout_id == rollout.id and watch.due_at == start + 2 * WINDOW
        timer = await box.wait_for_timer(watch.key, lambda t: not t.is_pending)
        await box.services.rollouts.on_timer(timer)
        await box.pass_time(timedelta(minutes=1))
        assert len(told(card, ENDED)) == 1


@pytest.fixture
async def held_2h(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Sandbox, ChannelMessage]]:
    """Auto stages held by a `/rollout freeze 2h`, an hour into it: the sandbox and the card."""
    async with auto_sandbox(tmp_path, database_url) as box:
        yield box, await held_in_a_freeze(box, "2h")


async def test_a_freeze_extended_meanwhile_is_told_at_its_own_end(
    held_2h: tuple[Sandbox, ChannelMessage],
) -> None:
    box, card = held_2h
    await box.command("freeze 5h INC-9 investigation", user=OTHER)  # ends later: replaces

    await box.pass_time(2 * WINDOW)  # the first freeze's end: still frozen, nothing said
    assert told(card, ENDED) == []
    await box.pass_time(3 * WINDOW)
    await box.slack.wait_for(lambda: bool(told(card, ENDED)))
    assert len(told(card, ENDED)) == 1


async def test_a_lifted_freeze_is_told_by_the_unfreeze_and_not_again_at_its_end(
    held_2h: tuple[Sandbox, ChannelMessage],
) -> None:
    box, card = held_2h
    await box.command("unfreeze", user=OTHER)
    await box.slack.wait_for(lambda: bool(told(card, "lifted the freeze")))
    await outbox_emptied(box)  # no jump while its post is on its way (posted again)

    await box.pass_time(2 * WINDOW)
    assert told(card, ENDED) == []
    assert len(told(card, "lifted the freeze")) == 1


async def test_a_scheduled_dispatch_a_freeze_held_is_told_when_the_freeze_ends(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    await sandbox.command("freeze 48h INC-123 investigation", user=OTHER)
    await reach(sandbox, at)
    await told_in_thread(sandbox, "did not go")

    await reach(sandbox, at + timedelta(hours=48))
    said = await told_in_thread(sandbox, ENDED)
    assert "does not go by itself now: an approver clicks Dispatch when ready" in said
    assert sandbox.github.dispatches == []
    assert len(told(scheduled_card(sandbox), ENDED)) == 1


async def test_the_unfreeze_note_names_no_freeze_the_rollouts_override_covers(
    tmp_path: Path, database_url: str
) -> None:
    """The rollout overrode the plan's window, then a `/rollout freeze` held its canary: once
    that is lifted, nothing holds it (its override covers the window), and its thread was told
    `Deploys are frozen by the plan's friday freeze`, the lane's freeze for other rollouts."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    async with auto_sandbox(tmp_path, database_url, freezes=[calendar_window(start, 3)]) as box:
        every_gate_passes(box)
        await box.command('start v1.4.2 --flags-ready --override-freeze "hotfix for INC-9"')
        await box.slack.wait_for(lambda: preflight_card(box) is not None, timeout=30)
        card = preflight_card(box)
        assert card is not None
        await box.click("dispatch", message=card)
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING)
        await box.command("freeze 4h INC-9 investigation", user=OTHER)
        await box.pass_time(WINDOW)
        await held(box, "relay", "canary")

        await box.command("unfreeze", user=OTHER)
        said = await in_thread(box, card, "lifted the freeze")
        assert "Still held, not promoted automatically: *5% canary → 50%*" in said
        assert "friday" not in said, said


async def test_each_services_freeze_tells_its_own_rollouts_only(tmp_path: Path) -> None:
    """Two services release in one channel, each frozen, each with a held auto stage: lifting
    billing-api's freeze tells billing-api's rollout alone; relay's freeze, which ends later,
    tells relay's rollout alone, and billing-api's nothing more."""
    plan = tmp_path / "auto.yml"
    plan.write_text(fast_plan(tmp_path / "figures.yml", window="1h", promote="auto"))
    services = [
        SandboxService(name="relay", repository="scriptum/scriptum", plan=plan),
        SandboxService(name="billing-api", repository="scriptum/billing-api", plan=plan),
    ]
    async with passing_sandbox(tmp_path, rollout_services=services) as box:
        every_gate_passes(box)
        cards = {}
        for service, tag in (("relay", "v1.4.2"), ("billing-api", "v2.0.0")):
            assert "Preflight" in await box.command(f"start {service} {tag} --flags-ready")
            await box.wait_for_button("dispatch")
            cards[service] = box.card_message()
            await box.click("dispatch", message=cards[service])
            await box.wait_until(lambda r: r.phase is Phase.RUNNING, service=service)
            await box.command(f"freeze {service} {2 if service == 'relay' else 4}h change freeze")
        await box.pass_time(WINDOW)
        for service in cards:
            await box.wait_until(holding("relay", "canary"), service=service)

        await box.command("unfreeze billing-api")
        await box.slack.wait_for(lambda: bool(told(cards["billing-api"], "lifted the freeze")))
        assert told(cards["relay"], "lifted the freeze") == []
        await outbox_emptied(box)  # no jump while its post is on its way (posted again)

        await box.pass_time(3 * WINDOW)  # relay's freeze ended an hour ago
        await box.slack.wait_for(lambda: bool(told(cards["relay"], ENDED)))
        assert told(cards["billing-api"], ENDED) == []
        assert len(told(cards["relay"], ENDED)) == 1


async def test_an_unfreeze_while_the_calendar_holds_leaves_the_calendars_end_told(
    tmp_path: Path, database_url: str
) -> None:
    """The plan's window held the stages; a `/rollout freeze` declared and lifted meanwhile
    tells the thread the window still holds them, and the window's end is still told."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=10)
    async with auto_sandbox(tmp_path, database_url, freezes=[calendar_window(start, 3)]) as box:
        card = await observing_canary(box)
        await box.pass_time(WINDOW)
        await held(box, "relay", "canary")
        await box.command("freeze 1h quick db check", user=OTHER)
        await box.command("unfreeze", user=OTHER)
        lifted = await in_thread(box, card, "lifted the freeze")
        assert "the plan's `friday` freeze" in lifted
        await outbox_emptied(box)  # no jump while its post is on its way (posted again)

        await box.pass_time(3 * WINDOW)
        await box.slack.wait_for(lambda: bool(told(card, ENDED)))
        assert len(told(card, ENDED)) == 1


async def test_a_freeze_declared_again_to_the_same_end_after_an_unfreeze_is_told_at_its_end(
    tmp_path: Path, database_url: str
) -> None:
    """`/rollout freeze <until>`, `/rollout unfreeze` (its watch cancelled), the same freeze
    again: a stage it holds then is watched to that same end, and told when it comes (the
    cancelled watch's key must not swallow the new one)."""
    async with auto_sandbox(tmp_path, database_url) as box:
        card = await observing_canary(box)
        end = (box.clock() + 3 * WINDOW).replace(second=0, microsecond=0)
        until = f"{end:%Y-%m-%d %H:%M}"
        await box.command(f"freeze {until} friday change freeze", user=OTHER)
        await box.pass_time(WINDOW)
        await held(box, "relay", "canary")
        await box.command("unfreeze", user=OTHER)
        await box.slack.wait_for(lambda: bool(told(card, "lifted the freeze")))
        await outbox_emptied(box)  # no jump while its post is on its way (posted again)

        await box.command(f"freeze {until} friday change freeze", user=OTHER)
        await box.slack.wait_for(lambda: promote_value(card, "relay") is not None)
        await box.click("promote", value=promote_value(card, "relay"), message=card, wait=False)
        await box.wait_until(lambda r: stage_state(r, "relay", "half") is StageState.OBSERVING)
        await box.pass_time(WINDOW)  # the 50% stage's gate passes in the same freeze: held
        await held(box, "relay", "half")

        await box.pass_time(2 * WINDOW)  # the freeze ended
        await box.slack.wait_for(lambda: bool(told(card, ENDED)))
        said = told(card, ENDED)
        assert len(said) == 1 and "*50%" in said[0], said


async def test_a_fault_as_a_stage_is_held_leaves_its_freezes_end_watched(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database blinks as the freeze's end is to be watched: the gate is retried, and the
    stages it holds are told when the freeze ends (not held for good with nothing watching)."""
    async with auto_sandbox(tmp_path, database_url) as box:
        card = await observing_canary(box)
        await box.command("freeze 3h friday change freeze", user=OTHER)
        _, watched_again = blink_on_watches(box, monkeypatch)
        await box.pass_time(WINDOW)  # the gates PASS; their freeze's end cannot be watched
        watched_again()
        await box.pass_time(timedelta(minutes=5))  # retried
        await held(box, "relay", "canary")
        await held(box, "desktop", "internal")

        await box.pass_time(2 * WINDOW)  # the freeze ended
        await box.slack.wait_for(lambda: bool(told(card, ENDED)))
        assert len(told(card, ENDED)) == 1


async def test_a_fault_as_an_unfreeze_watches_the_calendar_leaves_an_end_watched(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `/rollout freeze` and the plan's window hold the stages, the freeze the longer; it is
    lifted while the window still holds them, and the database blinks as the window's end is
    to be watched instead of the freeze's (the unfreeze's timer does it). The timer is retried:
    the thread is told the lift once, and the end once. Before, the freeze's watch was
    cancelled first, and nothing told the thread: the `promote: auto` stages waited for a
    Promote nobody was prompted to give."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=10)
    async with auto_sandbox(tmp_path, database_url, freezes=[calendar_window(start, 2)]) as box:
        card = await held_in_a_freeze(box, "4h")
        blinked, watched_again = blink_on_watches(box, monkeypatch)
        assert "lifted the freeze" in await box.command("unfreeze", user=OTHER)
        await until_failed(box, blinked)
        watched_again()
        await in_thread(box, card, "lifted the freeze")  # retried, the window still holding
        await outbox_emptied(box)  # no jump while its post is on its way (posted again)
        await box.pass_time(4 * WINDOW)  # the window and the lifted freeze both ended
        await box.slack.wait_for(lambda: bool(told(card, ENDED)))
        assert len(told(card, ENDED)) == 1
        assert len(told(card, "lifted the freeze")) == 1


async def test_a_fault_as_an_unfreeze_cancels_the_lifted_freezes_watch_tells_the_end_once(
    tmp_path: Path, database_url: str
) -> None:
    """As above, but the database fails the cancel of the lifted freeze's watch, after the
    window's end could be watched. The end is told once: the window's watch and the cancels
    are one write, retried with the unfreeze's timer. Before, the window's watch was written on
    its own, and both told the end: at the window's end, then again at the lifted freeze's."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=10)
    async with auto_sandbox(tmp_path, database_url, freezes=[calendar_window(start, 2)]) as box:
        card = await held_in_a_freeze(box, "4h")

        def cancels(statement: str, _: Any) -> BaseException | None:
            cancelling = statement.startswith("UPDATE timers SET cancelled_at")
            return ConnectionResetError("reset") if cancelling else None

        with failing(cancels) as failed:
            said = await box.command("unfreeze", user=OTHER)
            await until_failed(box, failed)
        assert "lifted the freeze" in said, said  # it is, whatever its timer met
        await in_thread(box, card, "lifted the freeze")  # retried, the window still holding
        await outbox_emptied(box)  # no jump while its post is on its way (posted again)
        await box.pass_time(4 * WINDOW)  # the window and the lifted freeze both ended
        await box.slack.wait_for(lambda: bool(told(card, ENDED)))
        # Every watch fired (the clock is not moved while one still posts its reply).
        timers = box.services.rollouts.effects.timers
        for watch in await timers.of_kind(kind=FREEZE_END_TIMER, due_since=start - WINDOW):
            await box.wait_for_timer(watch.key, lambda t: not t.is_pending)
        assert len(told(card, ENDED)) == 1, told(card, ENDED)


async def lifted_timer_when(box: Sandbox, holds: Callable[[Timer], bool]) -> Timer:
    """The unfreeze's timer (`freeze_lifted`), once it `holds`: retried with backoff as the
    clock moves (a few minutes at a time)."""
    timers = box.services.rollouts.effects.timers
    (lifted,) = await timers.of_kind(kind=FREEZE_LIFTED_TIMER, due_since=box.clock() - WINDOW)
    async with asyncio.timeout(60):
        while not holds(timer := await box.wait_for_timer(lifted.key, lambda _: True)):
            await box.pass_time(timedelta(minutes=3))
    return timer


async def unfreeze_given_up(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> datetime:
    """`/rollout unfreeze`, whose timer fails every attempt (a database away for a quarter of
    an hour) and gives up: when the freeze was lifted."""
    handler = box.services.rollouts.handler_of(FREEZE_LIFTED_TIMER)
    assert handler is not None

    async def failing(_: Timer) -> None:
        raise OperationalError("SELECT rollouts", {}, ConnectionResetError("reset"))

    monkeypatch.setattr(handler, "on_timer", failing)
    assert "lifted the freeze" in await box.command("unfreeze", user=OTHER)
    await outbox_emptied(box)
    lifted = await lifted_timer_when(box, lambda t: t.dead_at is not None)  # gave up
    return datetime.fromisoformat(str((lifted.payload or {})["at"]))


async def test_an_unfreeze_whose_timer_gives_up_tells_the_end_as_lifted_not_at_the_old_end(
    held_2h: tuple[Sandbox, ChannelMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unfreeze's timer fails every attempt (a database away for a quarter of an hour) and
    gives up: the end of what the lifted freeze held is told then, as lifted when it was, once.
    Before, the lifted freeze's watches were left as they were: the thread heard nothing until
    the freeze's old end, an hour later, and was then told it ended at that time."""
    box, card = held_2h
    at = await unfreeze_given_up(box, monkeypatch)
    timers = box.services.rollouts.effects.timers
    said = await in_thread(box, card, ENDED)
    assert f"{at:%Y-%m-%d %H:%M} UTC" in said and "*5% canary → 50%*" in said, said
    await outbox_emptied(box)  # no jump while its post is on its way (posted again)
    await box.pass_time(2 * WINDOW)  # the lifted freeze's old end
    for watch in await timers.of_kind(kind=FREEZE_END_TIMER, due_since=at - WINDOW):
        await box.wait_for_timer(watch.key, lambda t: not t.is_pending)
    assert len(told(card, ENDED)) == 1, told(card, ENDED)


async def test_an_unfreezes_timer_retried_after_the_lane_was_frozen_again_tells_the_lift_once(
    held_2h: tuple[Sandbox, ChannelMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unfreeze's timer told the thread the lift (nothing holding the stages), then failed
    (the database blinks on a later step) while the lane was frozen again: retried, it says
    nothing more. Before, it told the lift a second time, naming the new freeze as holding."""
    box, card = held_2h
    ends = box.services.rollouts.handler_of(FREEZE_END_TIMER)
    assert isinstance(ends, FreezeEnds)
    tell_once, failed = ends.tell_once, []

    async def then_failing(*args: Any, **kwargs: Any) -> bool:
        said = await tell_once(*args, **kwargs)
        if not failed:
            failed.append(said)
            raise OperationalError("SELECT rollouts", {}, ConnectionResetError("reset"))
        return said

    monkeypatch.setattr(ends, "tell_once", then_failing)
    assert "lifted the freeze" in await box.command("unfreeze", user=OTHER)
    await until_failed(box, failed)
    await in_thread(box, card, "lifted the freeze")
    await outbox_emptied(box)  # no jump while its post is on its way (posted again)
    assert "froze deploys until" in await box.command("freeze 3h INC-9 again", user=OTHER)
    await lifted_timer_when(box, lambda t: t.fired_at is not None)  # retried, and done
    await outbox_emptied(box)
    assert len(told(card, "lifted the freeze")) == 1, told(card, "lifted the freeze")


async def test_an_unfreeze_whose_timer_gives_up_tells_the_end_of_a_freeze_run_into_a_window(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifted freeze ran straight into the plan's window (one wait: watched to the window's
    end, under the window's key), which had not begun when the unfreeze's timer gave up: the
    lane is free, and the thread is told the end then, as lifted. Before, only watches under
    the lifted freeze's own key were: this one told nothing until the window's end, hours
    later, and then that the freeze ended at that time."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=110)
    async with auto_sandbox(tmp_path, database_url, freezes=[calendar_window(start, 3)]) as box:
        card = await held_in_a_freeze(box, "2h")  # its end is past the window's start
        timers = box.services.rollouts.effects.timers
        (watch,) = await timers.of_kind(kind=FREEZE_END_TIMER, due_since=start)
        assert ":calendar:friday:" in watch.key, watch.key
        at = await unfreeze_given_up(box, monkeypatch)
        assert at + timedelta(minutes=30) < start  # the window not begun: nothing holds it
        said = await in_thread(box, card, ENDED)
        assert f"{at:%Y-%m-%d %H:%M} UTC" in said and "*5% canary → 50%*" in said, said
        await outbox_emptied(box)  # no jump while its post is on its way (posted again)
        await box.pass_time(start + 3 * WINDOW - box.clock())  # the window's end
        await box.wait_for_timer(watch.key, lambda t: t.fired_at is not None)  # kept, fired
        assert len(told(card, ENDED)) == 1, told(card, ENDED)

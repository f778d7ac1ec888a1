"""A claim whose "done" write failed: the action went through, marking its claim done did not, so
the claim stays held until its lease lapses. After that, the same button clicked again (a new
delivery of the same card's value) never acts twice: the rollout's state refuses it, or the
card's version (the rollout moved past it, perhaps by that very click) does.

Each row: a scene, one click whose done write fails, the lease lapsing on the bot's clock, the
same click again, and what GitHub or the rollout shows of the effect: once.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import every_gate_passes, passing_sandbox
from sandbox_views import dispatched, held, value_of
from sqlalchemy import event
from sqlalchemy.engine import Engine
from statement_faults import failing
from test_freeze_sandbox import APPROVERS_ENV, open_override, refused_dispatch, typed_reason

from bot.adapters.slack.actions import ButtonValue
from bot.adapters.slack.npm_views import NpmAction
from bot.domain.controls import CardRef, Control, effect_key
from bot.domain.rollout import Phase, Rollout, StageState
from bot.services.records import ClaimState
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan
from storage.claims import ClaimStore

LEASE = timedelta(seconds=1)
RELEASE_LEASE = timedelta(seconds=20)
"""The claim's lease of a Release click that must dispatch within it: the sandbox's clock runs
with real time, and a click on a loaded machine takes seconds; twice it is still short of the
first look's minute (`LEASE_SECONDS`), which the story lets pass only later."""
DONE_WRITE = re.compile(r"^\s*UPDATE action_claims SET state=")
"""`ClaimStore.complete`: the one statement that marks a claim done."""


@contextmanager
def the_next_done_write_fails() -> Iterator[list[str]]:
    """The next claim's done write fails as a lost database would (once); the statements failed."""
    lost: list[str] = []

    def once(statement: str, _params: Any) -> BaseException | None:
        if lost or not DONE_WRITE.match(statement):
            return None
        lost.append(statement)
        return ConnectionResetError("connection lost")

    with failing(once) as failed:
        yield failed


@dataclass(frozen=True)
class Row:
    """A control: its button, the scene it is clicked in, and how many times it took effect."""

    control: Control
    action_id: str
    scene: Callable[[Sandbox], Awaitable[str]]
    """Sets the scene; the value of the button to click."""
    effects: Callable[[Sandbox, Rollout], Awaitable[int]]


async def preflight(box: Sandbox) -> str:
    """The preflight card, its flags to confirm (the button is a section's accessory)."""
    assert "Preflight" in await box.command("start v1.4.2")
    rollout = await box.rollout()
    await box.slack.wait_for(lambda: "[Feature flags validated]" in box.card_message().rendered)
    return ButtonValue(rollout_id=rollout.id, version=rollout.version).encode()


async def preflight_cleared(box: Sandbox) -> str:
    assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
    return await value_of(box, "dispatch")


async def observing(box: Sandbox) -> str:
    """The relay canary observing its hour-long window."""
    await dispatched(box)
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.OBSERVING)
    return await value_of(box, "extend_window", "relay")


async def observing_to_roll_back(box: Sandbox) -> str:
    await observing(box)
    return await value_of(box, "rollback")


async def holding(box: Sandbox) -> str:
    """The relay canary held on its passed gate, once its hour has passed."""
    await observing(box)
    await box.pass_time(timedelta(hours=1))
    await held(box, "relay", "canary")
    return await value_of(box, "promote", "relay")


async def audited(box: Sandbox, rollout: Rollout, action: str) -> int:
    events = await box.audit.list_for_rollout(rollout.id)
    return sum(1 for e in events if e.action == action and e.result == "ok")


async def dispatches(box: Sandbox, _rollout: Rollout) -> int:
    return len(box.github.dispatches)


async def reviews(box: Sandbox, environment: str, state: str) -> int:
    return sum(
        1
        for review in box.github.reviews
        if environment in review.environments and review.state == state
    )


ROWS = [
    Row(
        Control.CONFIRM_FLAGS,
        "confirm_flags",
        preflight,
        lambda box, r: audited(box, r, "confirm_flags"),
    ),
    Row(
        Control.DISPATCH,
        "dispatch",
        preflight_cleared,
        dispatches,
    ),
    Row(
        Control.EXTEND,
        "extend_window",
        observing,
        lambda box, r: audited(box, r, "extend"),
    ),
    Row(
        Control.PROMOTE,
        "promote",
        holding,
        lambda box, _: reviews(box, "relay-rollout-50", "approved"),
    ),
    Row(
        Control.ROLLBACK,
        "rollback",
        observing_to_roll_back,
        lambda box, r: audited(box, r, "abort_relay"),
    ),
]


@asynccontextmanager
async def gates_passing(
    tmp_path: Path, database_url: str, *, lease: timedelta
) -> AsyncIterator[Sandbox]:
    """A sandbox whose claims lapse after `lease`, its gates passing (hour-long windows)."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h", extension="15m")
    env = {"CLAIM_LEASE_SECONDS": str(int(lease.total_seconds()))}
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, extra_env=env
    ) as box:
        every_gate_passes(box)
        yield box


@pytest.mark.parametrize("row", ROWS, ids=[row.control.value for row in ROWS])
async def test_after_a_failed_done_write_the_same_click_once_the_lease_lapsed_acts_once(
    tmp_path: Path, database_url: str, row: Row
) -> None:
    async with gates_passing(tmp_path, database_url, lease=LEASE) as box:
        value = await row.scene(box)
        rollout = await box.rollout()
        before = await row.effects(box, rollout)

        with the_next_done_write_fails() as failed:
            await box.click(row.action_id, value=value)
        assert failed, "the click's done write ran, and failed"
        acted = await box.wait_until(lambda r: r.version > rollout.version)
        assert await row.effects(box, acted) == before + 1
        card = _card_of(value)
        claim = await ClaimStore(box.services.database.sessions).get(effect_key(row.control, card))
        assert claim is not None and claim.state is ClaimState.CLAIMED  # held for its lease

        await box.pass_time(LEASE * 2)
        answer = await box.click(row.action_id, value=value)

        assert await row.effects(box, await box.rollout()) == before + 1, "it acted twice"
        # Told the truth: not "being done, click again after <a time already past>".
        assert answer is not None and answer.startswith(":warning: This card is out of date: <@")
        assert "could not record whether that was done" in answer


@contextmanager
def the_lease_runs_out_after_the_next_look(box: Sandbox, lease: timedelta) -> Iterator[list[str]]:
    """After the next read of a claim (a click's check of the card: the claim still held), and
    before the next statement on the claims, `lease` passes on the bot's clock: the interleaving
    of a lease that runs out between a look and a claim. The statements it came between."""
    seen: list[str] = []

    def advance(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if len(seen) == 1 and CLAIMS.search(statement):
            seen.append(statement)
            box.clock.advance(lease)
        if not seen and CLAIM_READ.match(statement):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", advance)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", advance)


CLAIM_READ = re.compile(r"^\s*SELECT .*\sFROM action_claims\b", re.DOTALL)
"""`ClaimStore.get`: a claim read by its key."""
CLAIMS = re.compile(r"\baction_claims\b")


async def test_a_lease_running_out_between_the_check_and_the_claim_does_not_act_twice(
    tmp_path: Path, database_url: str
) -> None:
    """Extend on a card the rollout moved past, its earlier click never recorded done: the
    check of the card sees that claim still held, and its lease runs out before the click
    claims the effect. The claim itself refuses to take it over. Before, the check and the
    claim were two statements: the click took the claim over and extended the window again."""
    lease = timedelta(minutes=2)  # longer than the test takes: only the clock moves it
    async with gates_passing(tmp_path, database_url, lease=lease) as box:
        value = await observing(box)
        rollout = await box.rollout()
        with the_next_done_write_fails() as failed:
            await box.click("extend_window", value=value)
        assert failed, "the click's done write ran, and failed"
        await box.wait_until(lambda r: r.version > rollout.version)

        with the_lease_runs_out_after_the_next_look(box, lease) as between:
            answer = await box.click("extend_window", value=value)
        assert len(between) == 2, "the click read the claim, then claimed"

        assert await audited(box, await box.rollout(), "extend") == 1, "it extended twice"
        assert answer is not None and answer.startswith(":warning: This card is out of date: <@")
        assert "could not record whether that was done" in answer, answer


def _card_of(value: str) -> CardRef:
    """The card the clicked button was drawn on, as the effect key reads it."""
    drawn = json.loads(value)
    return CardRef(
        drawn["rollout_id"], drawn.get("track"), drawn.get("stage"), drawn.get("version")
    )


async def test_a_release_never_recorded_dispatched_is_not_dispatched_again_by_another_replica(
    tmp_path: Path, database_url: str
) -> None:
    """The npm walkthrough's Release: Slack could not redraw "Dispatching", the dispatch went,
    its done write failed, and the same button is clicked on a replica that never saw the
    walkthrough once the claim's lease lapsed. Its claim is keyed by the walkthrough, not by
    a version the dispatch moved on: before, the click took the claim over and dispatched
    Release (which publishes packages) a second time. The click finds the run on GitHub and
    follows it (`tests/test_release_unrecorded.py`: the other outcomes of that look)."""
    env = {"CLAIM_LEASE_SECONDS": str(int(RELEASE_LEASE.total_seconds()))}
    async with Sandbox(workdir=tmp_path, database_url=database_url, extra_env=env) as box:
        assert "walkthrough posted" in await box.command("npm-token")
        (message,) = box.slack.messages(RELEASE_CHANNEL)
        box.slack.fail_next("chat.update", error="fatal_error")  # "Dispatching" is not drawn

        with the_next_done_write_fails() as failed:
            await box.click(str(NpmAction.RUN_RELEASE), message=message)
        assert failed, "the click's done write ran, and failed"
        (dispatch,) = box.github.dispatches
        assert "Dispatching" not in message.rendered

        await box.stop_bot()
        await box.start_bot()  # another replica: the walkthrough is not in its memory
        await box.pass_time(RELEASE_LEASE * 2)
        answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)

        assert len(box.github.dispatches) == 1, "Release was dispatched twice"
        assert answer is not None and answer.startswith(
            f":warning: This walkthrough is out of date: <@{RELEASE_MANAGER}> clicked it at "
        ), answer
        assert "It was, as far as GitHub can tell: it lists one run of release.yml" in answer
        assert f"run {dispatch.run_id}, and step 5 follows it now" in answer, answer
        await box.slack.wait_for(lambda: f"/actions/runs/{dispatch.run_id}|" in message.rendered)
        # The look written before the dispatch finds the chain gone on without it.
        await box.pass_time(timedelta(minutes=1))
        await box.slack.wait_for(lambda: "ENEEDAUTH" in message.rendered, timeout=30)
        assert len(box.github.dispatches) == 1


async def test_an_override_never_recorded_done_is_neither_written_nor_said_again(
    tmp_path: Path, database_url: str
) -> None:
    """Override freeze: its done write failed (its dispatch did not go), and the same override
    is given again once the claim's lease lapsed (the card did not move: the override saves
    no rollout). The freeze is overridden for that dispatch already: the hold stays as it was
    written, the thread is told once, and the dispatch goes, once. Before, the repeat wrote
    the hold again and said so in the thread a second time."""
    env = {"CLAIM_LEASE_SECONDS": str(int(LEASE.total_seconds())), **APPROVERS_ENV}
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=env) as box:
        _, value = await refused_dispatch(box)
        view_id = await open_override(box, value)
        with the_next_done_write_fails() as failed:
            await box.submit_view(view_id, typed_reason("hotfix for INC-123"))
            async with asyncio.timeout(30):  # the form is answered before its work is done
                while not failed:  # noqa: ASYNC110 - a statement of the bot's, nothing to wake
                    await asyncio.sleep(0.02)
        assert box.github.dispatches == []
        overrides = await box.services.lane.holds.current()
        assert [hold.kind for hold in overrides if hold.kind.startswith("override:")]

        await box.pass_time(LEASE * 2)
        view_id = await open_override(box, value)
        assert await box.submit_view(view_id, typed_reason("hotfix for INC-123")) == {}

        await box.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert len(box.github.dispatches) == 1
        card = box.slack.messages(RELEASE_CHANNEL)[0]  # before the freeze's note

        def thread(needle: str) -> list[str]:
            return [reply.rendered for reply in card.replies if needle in reply.rendered]

        # The dispatch's note is said after any override's.
        await box.slack.wait_for(lambda: thread("Dispatched"), timeout=30)
        assert len(thread("overrode the freeze")) == 1, thread("overrode the freeze")
        assert await box.services.lane.holds.current() == overrides, "the hold was rewritten"

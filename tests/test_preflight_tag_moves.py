"""The release tag moved while its preflight waits: what Re-check says and what it keeps, and a
tag moved while the preflight reads GitHub (each test's docstring says what went wrong before).
Signed Slack requests, the real app, the simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import test_scheduled_starts as starts
from figures import passing_sandbox
from sandbox_views import value_of
from test_dispatch_tag_moved import dispatches_once
from test_scheduled_starts import APPROVERS_ENV

from bot.domain.controls import Control
from bot.domain.rollout import CheckState, Phase, Rollout
from bot.services.exactly_once import ExactlyOnce
from sandbox.config import RELEASE_MANAGER
from sandbox.github_history import History
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

TAG = "v1.4.2"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=APPROVERS_ENV) as sb:
        sb.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
        yield sb


def _line(history: History) -> tuple[str, str]:
    """v1.4.1 released; one pull request, TAG on it; then another: (TAG's commit, the next)."""
    history.commit("Initial import", at=NOW, author="ana")
    history.tag("v1.4.1")
    history.publish("v1.4.1", NOW)
    tagged = history.squash("Add an index", 20, at=NOW, author="bo", files=("a.rs",)).sha
    history.tag(TAG)
    fix = history.squash("A fix pushed later", 21, at=NOW, author="cy", files=("b.rs",)).sha
    return tagged, fix


def _moved_while_compared(monkeypatch: pytest.MonkeyPatch, history: History, to: str) -> None:
    """TAG force-pushed to `to` right after GitHub resolved the comparison's head."""
    index = history.index

    def moving(ref: str, default_branch: str) -> int | None:
        found = index(ref, default_branch)
        if ref != "v1.4.1":
            history.tags[TAG] = to
        return found

    monkeypatch.setattr(history, "index", moving)


async def _held_for_the_move(box: Sandbox, at: datetime, old: str, new: str, then: str) -> Rollout:
    """At `at` the scheduled dispatch is held, saying TAG moved from `old` to `new`, and `then`
    (what a person does next); the rollout as it stands then."""
    await starts.reach(box, at)

    said = await starts.told_in_thread(box, "did not go")
    assert f"`{TAG}` was moved" in said and old[:12] in said and new[:12] in said, said
    assert then in said, said
    assert box.github.dispatches == []
    return await box.rollout()


async def _held_asking_for_the_flags(box: Sandbox, at: datetime, old: str, new: str) -> None:
    """At `at` the scheduled dispatch is held, saying TAG moved from `old` to `new`; the
    preflight keeps `new`, its flags waiting for the starter (no Dispatch on the card)."""
    # What happens next: the starter confirms the flags first (not "an approver clicks Dispatch").
    then = "the starter confirms the feature flags for the commit it is at now"
    rollout = await _held_for_the_move(box, at, old, new, then)
    assert rollout.preflight.tag_commit == new
    assert rollout.preflight.flags.state is CheckState.PENDING
    await box.slack.wait_for(lambda: "now points at another commit" in box.card_message().rendered)
    assert "[Dispatch" not in box.card_message().rendered
    assert box.github.dispatches == []


async def test_re_check_says_the_tag_moved_and_asks_for_the_flags_again(box: Sandbox) -> None:
    """Re-check read the tag where it was now and kept it silently, the flags confirmed for
    the old commit carried over: Dispatch released a commit nobody had confirmed."""
    old, new = _line(box.github.history)
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)
    await box.command(f"start {TAG} --flags-ready")
    recheck = await value_of(box, "recheck")
    assert (await box.rollout()).preflight.tag_commit == old
    box.github.history.tags[TAG] = new

    await box.click("recheck", value=recheck)

    await box.slack.wait_for(lambda: "[Re-check]" not in box.card_message().rendered)
    rollout = await box.rollout()
    assert rollout.preflight.tag_commit == new
    assert rollout.preflight.flags.state is CheckState.PENDING
    shown = box.card_message().rendered
    assert f"`{TAG}` now points at another commit: `{old[:12]}` → `{new[:12]}`" in shown, shown
    assert "[Dispatch]" not in shown and "[Feature flags validated]" in shown, shown

    assert await box.click("confirm_flags") is None
    await dispatches_once(box)


async def test_re_check_of_a_tag_still_there_keeps_the_flags(box: Sandbox) -> None:
    old, _ = _line(box.github.history)
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)
    await box.command(f"start {TAG} --flags-ready")

    await box.click("recheck", value=await value_of(box, "recheck"))

    await box.slack.wait_for(lambda: "[Re-check]" not in box.card_message().rendered)
    rollout = await box.rollout()
    assert rollout.preflight.tag_commit == old
    assert rollout.preflight.flags.state is CheckState.PASS
    assert "now points at another commit" not in box.card_message().rendered


async def test_a_tag_moved_while_the_preflight_reads_keeps_the_commit_it_checked(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preflight read the tag's commit after its checks: a tag moved meanwhile left a card
    describing one commit and a Dispatch that released another, unrefused."""
    old, new = _line(box.github.history)
    _moved_while_compared(monkeypatch, box.github.history, new)

    await box.command(f"start {TAG} --flags-ready")
    await box.slack.wait_for(lambda: "[Dispatch]" in box.card_message().rendered)

    assert box.github.history.tags[TAG] == new
    assert (await box.rollout()).preflight.tag_commit == old
    answer = await box.click("dispatch")
    assert answer is not None and f"`{TAG}` was moved since its preflight" in answer, answer
    assert box.github.dispatches == []


async def test_a_scheduled_start_keeps_the_commit_its_preflight_checked(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule read the tag once more after the preflight: a tag moved during the
    preflight's reads was scheduled at its new commit, which nobody had checked, and went."""
    old, new = _line(box.github.history)
    _moved_while_compared(monkeypatch, box.github.history, new)

    await starts.scheduled(box)

    rollout = await box.rollout()
    assert rollout.schedule is not None
    assert rollout.schedule.tag_commit == rollout.preflight.tag_commit == old


async def test_a_scheduled_dispatch_held_for_a_moved_tag_asks_for_the_flags_again(
    box: Sandbox,
) -> None:
    """The hold said the tag moved, but its recheck kept the new commit with the flags
    confirmed for the old one: an approver's Dispatch then released the new commit, its flags
    never confirmed for it."""
    old, new = _line(box.github.history)
    at = await starts.scheduled(box)
    box.github.history.tags[TAG] = new

    await _held_asking_for_the_flags(box, at, old, new)


async def test_a_scheduled_start_of_a_tag_the_preflight_could_not_follow_is_refused(
    box: Sandbox,
) -> None:
    """The schedule keeps the commit its preflight read; one the preflight could not read (a
    tag too deep to follow, GitHub failing) is read again, as before, and the start refused
    when it cannot be: a schedule that keeps no commit is never held for a moved tag."""
    box.github.push_tag(TAG, annotated=True, levels=5)

    said = await box.command(starts.SCHEDULED)

    assert f"Could not read which commit the tag `{TAG}` is at" in said, said
    assert box.github.dispatches == [] and await box.rollouts() == []


async def test_a_scheduled_start_whose_preflight_could_not_read_the_tag_asks_again_when_moved(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preflight's read of the tag failed and the schedule's own read kept its commit for
    the schedule only: the tag moved by then held the dispatch, but its recheck (nothing kept
    to compare with) left the flags confirmed for the old commit, and an approver's Dispatch
    released the new one."""
    from bot.services import preflight

    old, new = _line(box.github.history)
    reads = preflight.read_tag_commit

    async def failing_once(github: object, tag: str, *, before: str | None) -> str | None:
        monkeypatch.setattr(preflight, "read_tag_commit", reads)
        return before  # GitHub did not say: what a failed read keeps

    monkeypatch.setattr(preflight, "read_tag_commit", failing_once)
    at = await starts.scheduled(box)
    rollout = await box.rollout()
    assert rollout.schedule is not None and rollout.schedule.tag_commit == old
    box.github.history.tags[TAG] = new

    await _held_asking_for_the_flags(box, at, old, new)


async def test_a_scheduled_start_whose_tag_is_gone_is_held_though_it_kept_no_commit(
    box: Sandbox,
) -> None:
    """A schedule that kept no commit (as an older version saved it) held nothing for a tag
    gone from GitHub: its recheck read "" and nothing compared it, so the tag GitHub did not
    have was dispatched (its run then failed there)."""
    _line(box.github.history)
    at = await starts.scheduled(box)
    kept = await box.rollout()
    assert kept.schedule is not None
    await box._store.save(
        replace(
            kept,
            preflight=replace(kept.preflight, tag_commit=None),
            schedule=replace(kept.schedule, tag_commit=""),
        )
    )
    box.github.history.tags.pop(TAG)

    await starts.reach(box, at)

    said = await starts.told_in_thread(box, "did not go")
    assert f"`{TAG}` is not on GitHub, so there is nothing to release" in said, said
    assert "push the tag where it should be, then click Re-check on the card" in said, said
    assert box.github.dispatches == []
    assert (await box.rollout()).phase is Phase.PREFLIGHT
    await box.slack.wait_for(lambda: "[Re-check]" in box.card_message().rendered)


async def test_a_tag_moved_after_the_schedules_recheck_holds_it_offering_dispatch_then_re_check(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hold's "click Dispatch: refused for the move, it offers Re-check" (its recheck read
    the tag where the schedule kept it; the tag moved before the look that held it) had no
    test: what it tells a person to do is what happens."""
    old, new = _line(box.github.history)
    at = await starts.scheduled(box)
    _moved_while_compared(monkeypatch, box.github.history, new)  # during the recheck's reads

    then = "click Dispatch: refused for the move, it offers Re-check"
    rollout = await _held_for_the_move(box, at, old, new, then)
    assert rollout.preflight.tag_commit == old
    assert rollout.preflight.flags.state is CheckState.PASS
    answer = await box.click("dispatch")
    assert answer is not None and f"`{TAG}` was moved since its preflight" in answer, answer
    await box.slack.wait_for(lambda: "[Re-check]" in box.card_message().rendered)
    assert box.github.dispatches == []


async def test_a_scheduled_start_rechecked_by_hand_at_the_moved_tag_is_held_for_an_approver(
    box: Sandbox,
) -> None:
    """The hold's "an approver clicks Dispatch if the tag is where it should be" (a person's
    Re-check read the moved tag and the starter confirmed the flags for it before the time)
    had no test: the schedule still holds it (it was scheduled at the old commit), and an
    approver's Dispatch then goes."""
    old, new = _line(box.github.history)
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)
    at = await starts.scheduled(box)
    box.github.history.tags[TAG] = new
    await box.click("recheck", value=await value_of(box, "recheck"))
    await box.wait_until(lambda r: r.preflight.tag_commit == new)
    assert await box.click("confirm_flags") is None
    await box.wait_until(lambda r: r.preflight.flags.state is CheckState.PASS)

    then = "an approver clicks Dispatch if the tag is where it should be, else Cancel"
    await _held_for_the_move(box, at, old, new, then)
    await dispatches_once(box)


async def test_confirm_flags_from_a_card_drawn_before_the_tag_moved_is_refused(
    box: Sandbox,
) -> None:
    """A Confirm flags click from a card drawn before a Re-check that moved the tag confirmed
    the flags for the new commit, which its starter had never seen on a card."""
    _, new = _line(box.github.history)
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)
    await box.command(f"start {TAG}")
    await box.slack.wait_for(lambda: "[Feature flags validated]" in box.card_message().rendered)
    confirm = next(
        block["accessory"]["value"]
        for block in box.card_message().blocks
        if block.get("accessory", {}).get("action_id") == "confirm_flags"
    )
    box.github.history.tags[TAG] = new
    await box.click("recheck", value=await value_of(box, "recheck"))
    await box.wait_until(lambda r: r.preflight.tag_commit == new)

    answer = await box.click("confirm_flags", value=confirm)

    assert answer is not None and "This card is out of date" in answer, answer
    assert (await box.rollout()).preflight.flags.state is CheckState.PENDING
    assert await box.click("confirm_flags") is None  # the card drawn for the new commit
    await box.wait_until(lambda r: r.preflight.flags.state is CheckState.PASS)


async def test_flags_confirmed_before_the_tag_moved_are_confirmed_again_for_the_new_commit(
    box: Sandbox,
) -> None:
    """The starter confirms once per commit: the confirmation for the old commit must not
    refuse the one for the commit the tag moved to as already done."""
    _, new = _line(box.github.history)
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)
    await box.command(f"start {TAG}")
    recheck = await value_of(box, "recheck")
    assert await box.click("confirm_flags") is None
    await box.wait_until(lambda r: r.preflight.flags.state is CheckState.PASS)
    box.github.history.tags[TAG] = new
    await box.click("recheck", value=recheck)
    await box.wait_until(lambda r: r.preflight.flags.state is CheckState.PENDING)

    assert await box.click("confirm_flags") is None

    rollout = await box.wait_until(lambda r: r.preflight.flags.state is CheckState.PASS)
    assert rollout.preflight.tag_commit == new


async def test_the_migrations_are_checked_at_the_commit_the_preflight_read(box: Sandbox) -> None:
    """The migrations were read on the workflow's ref (`main`), not at the release's commit:
    a destructive migration in the release (not on `main`) passed the preflight."""
    old, new = _line(box.github.history)
    drop = "crates/relay/src/db/migrations/0002_drop.sql"
    box.github.files[old] = {**box.github.files["main"], drop: "ALTER TABLE t\n  DROP COLUMN c;\n"}
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)

    await box.command(f"start {TAG} --flags-ready")

    await box.slack.wait_for(lambda: "0002_drop.sql" in box.card_message().rendered)
    rollout = await box.rollout()
    assert rollout.preflight.migrations.state is CheckState.FAIL
    assert "[Dispatch]" not in box.card_message().rendered
    box.github.history.tags[TAG] = new  # moved to a commit without it: Re-check reads that
    await box.click("recheck", value=await value_of(box, "recheck"))
    rechecked = await box.wait_until(lambda r: r.preflight.tag_commit == new)
    assert rechecked.preflight.migrations.state is CheckState.PASS


async def test_confirm_flags_whose_look_came_before_a_re_check_moved_the_tag_confirms_nothing(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card's commit was compared before the rollout's lock was taken: a Re-check (another
    person's, on another replica) that found the tag moved and saved between that look and the
    lock had the click confirm the flags for the new commit, which no card had shown."""
    _, new = _line(box.github.history)
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)
    await box.command(f"start {TAG}")
    await box.slack.wait_for(lambda: "[Feature flags validated]" in box.card_message().rendered)
    recheck = await value_of(box, "recheck")
    once = ExactlyOnce.once

    async def re_checked_meanwhile(self: ExactlyOnce, *args: Any, **kwargs: Any) -> Any:
        if args[1] is Control.CONFIRM_FLAGS:  # after the click's look, before its lock
            box.github.history.tags[TAG] = new
            assert await box.click("recheck", value=recheck) is None
        return await once(self, *args, **kwargs)

    monkeypatch.setattr(ExactlyOnce, "once", re_checked_meanwhile)

    answer = await box.click("confirm_flags")

    assert answer is not None and f"a Re-check found it at `{new[:12]}` since" in answer, answer
    assert "nothing was confirmed" in answer, answer
    rollout = await box.rollout()
    assert rollout.preflight.tag_commit == new
    assert rollout.preflight.flags.state is CheckState.PENDING

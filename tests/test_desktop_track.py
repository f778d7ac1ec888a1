"""The desktop/CLI ring track end to end, in the same run as the relay (issue 4).

Signed Slack requests through the real app, PyGithub against the GitHub simulator, windows of
one or two seconds, figures from files. Covered: both tracks to the end; the kill-switch
tripping on a failed beta gate while the relay goes on; a manual kill during the internal
window, by command and by the Kill-switch button; a relay rollback that leaves the rings alone;
a kill that comes after GA. A story on SQLite (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import CANARY_CRASHING, RELAY_OK, RINGS_OK, running_sandbox
from replicas import in_process_replica
from sandbox_views import (
    HALTED_ON_BETA,
    HALTED_ON_INTERNAL,
    RELAY_COMPLETED,
    RELAY_ROLLED_BACK_AT_CANARY,
    RINGS_COMPLETED,
    button,
    card_button,
    dispatched,
    held,
    promote,
    reviews,
    stage_state,
)
from test_github_faults import REVIEWS
from test_protection_rule_faults import CALLBACK
from test_protection_rules import answers, app_box

from bot.domain.rollout import Phase, Rollout, StageState, TrackState, window_timer_key
from bot.domain.run import RunSnapshot
from handlers.app_keys import SERVICES
from sandbox.config import BYSTANDER, RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story

BETA_CRASHING = {"crash_rate": "0.0021"}
"""Above 2x the baseline of 0.001: the desktop gate trips the kill-switch."""

DESKTOP = "Desktop app and CLI"
RELAY = "Hosted relay"


async def halted_at(
    box: Sandbox, stage: str, state: StageState, reviewed: list[tuple[str, str]]
) -> Rollout:
    """The rollout once the desktop track halted, `stage` left in `state` and the desktop
    environments reviewed as `reviewed`."""
    halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
    assert halted.track("desktop").stage(stage).state is state
    assert reviews(box, "desktop") == reviewed
    return halted


def kill_button(box: Sandbox) -> dict[str, Any]:
    """The desktop lane's Kill-switch button on the card as it is now."""
    found = card_button(box, "kill", "desktop")
    assert found is not None, "no kill button for desktop on the card"
    return found


async def card_shows(box: Sandbox, *needles: str) -> str:
    """Wait until the card (updated in place) shows every needle; returns it."""
    await box.slack.wait_for(lambda: all(n in box.card_message().rendered for n in needles))
    return box.card_message().rendered


async def test_both_tracks_run_to_the_end_in_one_run(tmp_path: Path, database_url: str) -> None:
    async with running_sandbox(tmp_path, database_url) as box:
        await dispatched(box)
        assert len(box.github.dispatches) == 1
        await box.wait_until(
            lambda r: (
                stage_state(r, "relay", "canary") is StageState.HOLDING
                and stage_state(r, "desktop", "internal") is StageState.HOLDING
            )
        )
        card = await card_shows(box, "Promote to 50%", "Promote to beta ring")
        assert RELAY in card and DESKTOP in card
        assert "Promoted" in await box.command("promote")
        # The two windows are not in step: wait until both lanes reached their second stage.
        reached = (StageState.OBSERVING, StageState.EVALUATING, StageState.HOLDING)
        mid = await box.wait_until(
            lambda r: (
                stage_state(r, "relay", "half") in reached
                and stage_state(r, "desktop", "beta") in reached
            )
        )
        assert mid.track("desktop").stage("internal").state is StageState.PASSED
        status = await box.command("status")
        assert f"*{RELAY}*: at 50%" in status
        assert f"*{DESKTOP}*: at beta ring" in status
        await box.wait_until(
            lambda r: (
                stage_state(r, "relay", "half") is StageState.HOLDING
                and stage_state(r, "desktop", "beta") is StageState.HOLDING
            )
        )
        assert "Promoted" in await box.command("promote")
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)

        assert ended.track("relay").state is TrackState.COMPLETED
        assert ended.track("desktop").state is TrackState.COMPLETED
        assert ended.track("desktop").stage("ga").state is StageState.DEPLOYED
        assert reviews(box, "relay") == RELAY_COMPLETED
        assert reviews(box, "desktop") == RINGS_COMPLETED
        card = await card_shows(
            box, f"*{RELAY}*: completed (100%)", f"*{DESKTOP}*: completed (GA ring)"
        )
        assert "Rollout v1.4.2 · ended" in card
        assert "[Kill-switch]" not in card and "[Roll back]" not in card
        assert "completed" in await box.wait_for_thread("Rollout of `v1.4.2` ended")
        history = await box.command("history")
        assert "v1.4.2" in history
        assert f"*{RELAY}*: completed (100%)" in history
        assert f"*{DESKTOP}*: completed (GA ring)" in history


async def test_a_crashing_beta_ring_trips_the_kill_switch_while_the_relay_goes_on(
    tmp_path: Path, database_url: str
) -> None:
    desktop = {**RINGS_OK, "beta": BETA_CRASHING}
    async with running_sandbox(tmp_path, database_url, desktop=desktop) as box:
        rollout = await dispatched(box)
        await promote(box, "desktop", "internal")
        await promote(box, "relay", "canary")

        # That the kill-switch is approved only once the gate tripped is read from the audit
        # below, not from a look during beta's one-second window: a wait may skip it.
        verdict = await box.wait_for_thread("KILL_SWITCH")
        assert "crash rate" in verdict and "0.0021" in verdict
        assert "The release stays on the beta ring." in verdict
        halted = await halted_at(box, "beta", StageState.FAILED_GATE, HALTED_ON_BETA)
        assert halted.track("desktop").stage("ga").state is StageState.REJECTED
        # Approved when the gate tripped, not before: after the beta gate's verdict.
        events = await box.audit.list_for_rollout(rollout.id)
        (tripped,) = [e for e in events if e.action == "gate" and e.track == "desktop"][1:]
        assert tripped.result == "KILL_SWITCH"
        (kill_switch,) = [
            r for r in box.github.reviews if r.environments == ("desktop-kill-switch",)
        ]
        assert kill_switch.at >= tripped.at
        assert "Desktop/CLI kill-switch" in await box.wait_for_thread("finished")

        status = await box.command("status")
        assert f"*{DESKTOP}*: halted on beta ring" in status and RELAY in status
        await promote(box, "relay", "half")
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)
        assert ended.track("relay").state is TrackState.COMPLETED
        assert ended.track("desktop").state is TrackState.HALTED
        assert reviews(box, "relay") == RELAY_COMPLETED
        assert reviews(box, "desktop-kill-switch") == [("desktop-kill-switch", "approved")]
        card = await card_shows(box, f"*{RELAY}*: completed (100%)")
        assert f"*{DESKTOP}*: halted on beta ring: beta ring gate KILL_SWITCH: crash rate" in card
        history = await box.command("history")
        assert f"*{RELAY}*: completed (100%)" in history
        assert f"*{DESKTOP}*: halted on beta ring" in history


async def test_a_kill_during_the_internal_window_stops_it_before_its_gate(
    tmp_path: Path, database_url: str
) -> None:
    # A window far longer than the waits below skip (`SKIP_AT_MOST`): under load the kill's
    # answer may take several looks, and a 4 s window was skipped to its end meanwhile.
    async with running_sandbox(tmp_path, database_url, window="60s") as box:
        rollout = await dispatched(box)
        observing = await box.wait_until(
            lambda r: stage_state(r, "desktop", "internal") is StageState.OBSERVING
        )
        window_ends = observing.track("desktop").stage("internal").window_ends_at
        assert window_ends is not None

        answer = await box.command("kill crash reports from support")
        assert "Kill-switch tripped for `v1.4.2`" in answer
        announced = await box.wait_for_thread("crash reports from support")
        assert f"kill-switch by <@{RELEASE_MANAGER}>: crash reports from support" in announced
        assert "The release stays on the internal ring." in announced
        halted = await halted_at(box, "internal", StageState.STOPPED, HALTED_ON_INTERNAL)
        assert halted.track("desktop").stage("beta").state is StageState.REJECTED
        # The stop is saved before its effects run: the window's timer is cancelled after.
        timer = await box.wait_for_timer(
            window_timer_key(rollout.id, "desktop", "internal", window_ends),
            lambda t: t.cancelled_at is not None or t.fired_at is not None,
        )
        assert timer.cancelled_at is not None and timer.fired_at is None

        # Past the end of the internal window (the relay's canary gate decided meanwhile):
        # the internal gate was never evaluated.
        await box.pass_time(max(timedelta(0), window_ends - box.clock()) + timedelta(seconds=0.3))
        await held(box, "relay", "canary")
        events = await box.audit.list_for_rollout(rollout.id)
        assert [e.track for e in events if e.action == "gate"] == ["relay"]
        assert (await box.rollout()).track("desktop").state is TrackState.HALTED

        card = await card_shows(box, f"*{DESKTOP}*: halted on internal ring", "[Promote to 50%]")
        assert "crash reports from support" in card
        assert button(box, "kill", "desktop") is None
        assert reviews(box, "relay") == [("relay-canary-5", "approved")]


async def test_the_kill_switch_button_asks_to_confirm_and_trips(
    tmp_path: Path, database_url: str
) -> None:
    async with running_sandbox(tmp_path, database_url) as box:
        await dispatched(box)
        await held(box, "desktop", "internal")
        await card_shows(box, "Promote to beta ring")
        kill = kill_button(box)
        assert kill["text"]["text"] == "Kill-switch" and kill["style"] == "danger"
        confirm = kill["confirm"]
        assert confirm["title"]["text"] == f"Trip the kill-switch of {DESKTOP}?"
        assert "the release stays on the internal ring" in confirm["text"]["text"]
        assert confirm["confirm"]["text"] == "Trip the kill-switch"
        assert confirm["deny"]["text"] == "Cancel"

        refused = await box.click("kill", value=kill["value"], user=BYSTANDER)
        assert refused is not None and "approver" in refused
        assert reviews(box, "desktop") == [("desktop-internal", "approved")]

        await box.click("kill", value=kill["value"], wait=False)
        halted = await halted_at(box, "internal", StageState.STOPPED, HALTED_ON_INTERNAL)
        announced = await box.wait_for_thread(f"kill-switch by <@{RELEASE_MANAGER}>")
        assert "The release stays on the internal ring." in announced
        await card_shows(box, f"*{DESKTOP}*: halted on internal ring")
        assert halted.track("relay").state is TrackState.ACTIVE
        assert reviews(box, "relay-rollback") == []

        again = await box.click("kill", value=kill["value"])
        assert again is not None and "kill-switch" in again
        assert "Nothing more was done" in again or "nothing was changed" in again
        assert reviews(box, "desktop-kill-switch") == [("desktop-kill-switch", "approved")]


async def test_a_relay_rollback_leaves_the_desktop_track_going_to_ga(
    tmp_path: Path, database_url: str
) -> None:
    relay = {"canary": CANARY_CRASHING}
    async with running_sandbox(tmp_path, database_url, relay=relay) as box:
        await dispatched(box)
        rolled_back = await box.wait_until(
            lambda r: r.track("relay").state is TrackState.ROLLED_BACK
        )
        assert rolled_back.track("desktop").state is TrackState.ACTIVE
        assert "ROLLBACK" in await box.wait_for_thread("ROLLBACK")
        await promote(box, "desktop", "internal")
        await promote(box, "desktop", "beta")
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)

        assert ended.track("relay").state is TrackState.ROLLED_BACK
        assert ended.track("desktop").state is TrackState.COMPLETED
        assert reviews(box, "relay") == RELAY_ROLLED_BACK_AT_CANARY
        assert reviews(box, "desktop") == RINGS_COMPLETED
        await card_shows(
            box, f"*{RELAY}*: rolled back from 5% canary", f"*{DESKTOP}*: completed (GA ring)"
        )


async def test_a_kill_after_ga_changes_nothing(tmp_path: Path, database_url: str) -> None:
    async with running_sandbox(tmp_path, database_url) as box:
        await dispatched(box)
        await held(box, "desktop", "internal")
        stale_kill = kill_button(box)["value"]
        await promote(box, "desktop", "internal")
        await promote(box, "desktop", "beta")
        done = await box.wait_until(lambda r: r.track("desktop").state is TrackState.COMPLETED)
        assert done.phase is Phase.RUNNING  # the relay holds at its canary
        await card_shows(box, f"*{DESKTOP}*: completed (GA ring)")
        assert button(box, "kill", "desktop") is None

        before = list(box.github.reviews)
        thread = box.thread()
        answer = await box.command("kill too late")
        assert "already completed (GA ring)" in answer and "nothing was changed" in answer
        stale = await box.click("kill", value=stale_kill)
        assert stale is not None and "already completed (GA ring)" in stale
        assert box.github.reviews == before
        assert box.thread() == thread
        after = await box.rollout()
        assert after.track("desktop").state is TrackState.COMPLETED
        assert after.track("relay").state is TrackState.ACTIVE
        events = await box.audit.list_for_rollout(after.id)
        refusals = [e.result for e in events if e.action == "abort_desktop"]
        assert refusals and "ok" not in refusals

        # Once the whole rollout has ended, a kill says so too.
        assert "Rolling back" in await box.command("rollback")
        await box.wait_until(lambda r: r.phase is Phase.ENDED)
        reviewed = list(box.github.reviews)
        assert "no rollout in progress" in await box.command("kill")
        stale = await box.click("kill", value=stale_kill)
        assert stale is not None and "Desktop app and CLI" in stale and "completed" in stale
        assert box.github.reviews == reviewed
        assert reviews(box, "desktop-kill-switch") == []


async def test_a_kill_while_a_ring_deploys_keeps_the_release_on_that_ring(
    tmp_path: Path, database_url: str
) -> None:
    async with running_sandbox(tmp_path, database_url) as box:
        box.github.set_job_duration("Desktop/CLI ring deploy - beta", timedelta(minutes=10))
        await dispatched(box)
        await promote(box, "desktop", "internal")
        await box.wait_until(lambda r: stage_state(r, "desktop", "beta") is StageState.DEPLOYING)

        await box.command("kill beta crashes on startup")
        announced = await box.wait_for_thread("beta crashes on startup")
        # GitHub cannot stop an approved job: the beta deploy finishes, GA is what is refused.
        assert "The release stays on the beta ring." in announced
        await box.pass_time(timedelta(minutes=10))  # the beta deploy ends
        landed = await box.wait_for_thread("*beta ring* deployed")
        assert "not observed: the track is stopping" in landed
        await halted_at(box, "beta", StageState.STOPPED, HALTED_ON_BETA)
        await card_shows(box, f"*{DESKTOP}*: halted on beta ring: kill-switch by")


def ga_plan(tmp_path: Path) -> str:
    """The accelerated plan, each ring promoting itself on a PASS (`promote: auto`)."""
    return fast_plan(tmp_path / "figures.yml", window="1s", promote="auto")


async def ga_held_by_github(
    box: Sandbox, approvals: str, *, failing: Callable[[], None] | None = None
) -> None:
    """Dispatched, beta deploying, then GitHub failing every approval the bot posts to
    `approvals` (the reviewers' path, or the App's rule callback) with a 502, or as `failing`
    makes it fail from then on: once beta's deploy ends and
    its window passes, the GA ring is saved as deploying while GitHub still holds it, the
    bot's next look sending the approval again. Beta's deploy takes ten minutes so that the
    faults start while it runs: its one-second window could pass between two looks."""
    write_figures(box.figures, "relay", RELAY_OK)
    write_figures(box.figures, "desktop", RINGS_OK)
    box.github.set_job_duration("Desktop/CLI ring deploy - beta", timedelta(minutes=10))
    run = (await dispatched(box)).run_id or 0
    beta = box.github.run(run).job("desktop-cli-ring-beta")
    # Deploying on GitHub, not only saved as deploying: the bot saves a stage so before it
    # sends the approval, which the faults below would then fail.
    await box.wait_until(lambda _: beta.status == "in_progress")
    if failing is None:
        box.github.fault_next("POST", approvals, "server_error", times=10_000)
    else:
        failing()
    await box.pass_time(timedelta(minutes=10))  # the beta deploy ends
    await box.wait_until(lambda r: stage_state(r, "desktop", "ga") is StageState.DEPLOYING)
    assert box.github.run(run).job("desktop-cli-ring-ga").status == "waiting"


async def ga_rejected_once_github_answers(
    box: Sandbox, decisions: Callable[[Sandbox, str], list[tuple[str, str]]]
) -> None:
    """After a kill while GitHub still held the GA ring: once GitHub answers again, the desktop
    track halts with GA rejected (as `decisions` lists the bot's answers), never approved, and
    the card says the kill-switch halted it on the beta ring."""
    box.github.clear_faults()
    halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
    assert halted.track("desktop").stage("ga").state is StageState.REJECTED
    assert ("desktop-ga", "rejected") in decisions(box, "desktop")
    assert ("desktop-ga", "approved") not in decisions(box, "desktop")
    await card_shows(box, f"*{DESKTOP}*: halted on beta ring: kill-switch by")


async def test_a_kill_while_github_still_holds_the_ga_ring_the_bot_failed_to_approve(
    tmp_path: Path, database_url: str
) -> None:
    """Beta passed and promoted itself (`promote: auto`), but GitHub failed the bot's approval
    of the GA ring, which still waits there: a kill then rejects GA, rather than being refused
    as 'already deploying' and the bot approving GA on its next look."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)

        answer = await box.command("kill crash spike in beta")
        assert "Kill-switch tripped" in answer, answer
        announced = await box.wait_for_thread("crash spike in beta")
        assert "The release stays on the beta ring." in announced  # GA never deployed
        await ga_rejected_once_github_answers(box, reviews)


async def test_a_kill_while_github_cannot_be_read_is_kept_and_rejects_ga_once_it_answers(
    tmp_path: Path, database_url: str
) -> None:
    """GitHub failed the bot's approval of the GA ring, which still waits there, and then fails
    the kill's read of the run too: the bot cannot tell whether GA deploys. The kill is saved
    all the same, saying what the bot does not know and that nothing is rejected on GitHub
    yet (never 'tripped', never 'already deploying'). Once GitHub answers, the bot's next look
    rejects GA, where a refused kill would have left that look to send GA's approval again."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        box.github.fault_next("GET", REVIEWS, "server_error", times=10_000)

        answer = await box.command("kill crash spike in beta")
        assert "already deploying" not in answer and "tripped" not in answer, answer
        assert "GitHub could not be read" in answer, answer
        assert "nothing is rejected or approved on GitHub yet" in answer
        announced = await box.wait_for_thread("crash spike in beta")
        assert "could not read the run" in announced and "cannot tell yet" in announced
        assert "stays on" not in announced  # where the release stays is not known yet
        stopping = await box.rollout()
        assert stopping.track("desktop").state is TrackState.ABORTING

        await ga_rejected_once_github_answers(box, reviews)


async def test_in_app_mode_a_kill_rejects_the_ga_ring_the_rule_still_holds(
    tmp_path: Path, database_url: str
) -> None:
    """App mode, every environment on the App's rule: GitHub failed the bot's answer approving
    the GA ring (its request still open), and a kill then rejects GA through the rule."""
    async with app_box(tmp_path, database_url, plan_yaml=ga_plan(tmp_path)) as box:
        await ga_held_by_github(box, CALLBACK)

        answer = await box.command("kill crash spike in beta")
        assert "Kill-switch tripped" in answer, answer
        announced = await box.wait_for_thread("crash spike in beta")
        assert "The release stays on the beta ring." in announced
        await ga_rejected_once_github_answers(box, answers)


async def test_a_kill_is_not_lost_when_another_replica_saves_while_github_is_read(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill reads the run (GA saved as deploying); meanwhile another replica saves the
    rollout (its poller's look, say). The kill acts on the rollout as saved after the read: it
    trips the kill-switch, rather than failing its save and answering that the bot lost its
    connection, the stop not made."""
    async with (
        Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)) as box,
        in_process_replica(box) as other,
    ):
        await ga_held_by_github(box, REVIEWS)
        effects = box.services.rollouts.effects
        read = effects.read_run
        elsewhere = other[SERVICES].rollouts.effects
        rollout_id = (await box.rollout()).id

        async def save_elsewhere() -> None:
            await elsewhere.store.save(await elsewhere.get(rollout_id))

        async def read_while_another_replica_saves(run_id: int) -> RunSnapshot:
            snapshot = await read(run_id)
            monkeypatch.setattr(effects, "read_run", read)
            # As a replica saves: again when its own look lost a race to the pollers' looks
            # (each saves while GitHub fails approvals), never failing the kill's read.
            await elsewhere.serialised(rollout_id, save_elsewhere)
            return snapshot

        monkeypatch.setattr(effects, "read_run", read_while_another_replica_saves)
        answer = await box.command("kill crash spike in beta")
        assert "Kill-switch tripped" in answer, answer
        stopped = await box.rollout()
        assert stopped.track("desktop").state is not TrackState.ACTIVE

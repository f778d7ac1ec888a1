"""Rolling back while something else moves the run: what the card and the thread say.

Signed Slack requests through the real app, PyGithub against the GitHub simulator; the bot's
own poller asleep (`quiet`), so each look at the run is one the test asks for.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from figures import SECOND_APPROVER, passing_sandbox
from replicas import in_process_replica
from sandbox_views import (
    audit_results,
    deploying_canary,
    dispatched,
    figures_form_opened,
    held,
    reviews,
    stage_state,
    value_of,
)

from bot.domain.rollout import Rollout, StageState, TrackState
from bot.domain.run import RunSnapshot
from bot.services.ports import ReviewAhead, ReviewState
from handlers.app_keys import SERVICES
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan


async def test_a_roll_back_after_the_next_stage_was_approved_on_github_says_it_got_there(
    quiet: Sandbox,
) -> None:
    """A person approved 50% on github.com during the canary's window, and Roll back came
    before the bot looked: GitHub deploys the 50% all the same, so the release was at 50%, not
    at the canary, when the rollback started (the card said `rolled back from 5% canary`)."""
    rollout = await deploying_canary(quiet)
    assert rollout.run_id is not None
    await quiet.services.rollouts.reconcile(rollout.id)
    observing = await quiet.rollout()
    assert stage_state(observing, "relay", "canary") is StageState.OBSERVING

    quiet.github.review(rollout.run_id, ["relay-rollout-50"], "approved", actor="octocat")
    await quiet.command("rollback")

    landed = await quiet.wait_for_thread("*50%* deployed (Hosted relay)")
    assert "not observed: the track is stopping" in landed
    for _ in range(2):  # the rollback job's wait, then its end
        await quiet.services.rollouts.reconcile(rollout.id)
    rolled_back = await quiet.rollout()
    assert rolled_back.track("relay").state is TrackState.ROLLED_BACK
    assert stage_state(rolled_back, "relay", "half") is StageState.STOPPED
    assert reviews(quiet, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollout-50", "approved"),
        ("relay-rollout-100", "rejected"),
        ("relay-rollback", "approved"),
    ]
    await quiet.slack.wait_for(
        lambda: "*Hosted relay*: rolled back from 50%" in quiet.card_message().rendered
    )


async def test_figures_typed_after_a_roll_back_are_refused_in_the_words_of_the_card(
    tmp_path: Path,
) -> None:
    """The window ended and its figures were asked; a Roll back came while an approver typed
    them: the refusal says the relay is rolling back, as the card does (it said `aborting`,
    the bot's own name for the state; `rolled_back` once it ended)."""
    plan = fast_plan(tmp_path / "figures.yml", manual_tracks=("relay",))
    async with Sandbox(workdir=tmp_path, plan_yaml=plan) as box:
        view_id = await figures_form_opened(box)

        await box.command("rollback")
        await box.wait_until(lambda r: r.track("relay").state is not TrackState.ACTIVE)
        typed = {
            "crash_rate": {"figure": {"type": "number_input", "value": "0.001"}},
            "error_rate": {"figure": {"type": "number_input", "value": "0.001"}},
        }
        assert await box.submit_view(view_id, typed) == {}

        def answers() -> list[str]:  # to the form: chat.postEphemeral
            notes = box.slack.ephemerals(user=RELEASE_MANAGER)
            return [note.text for note in notes if note.via == "chat.postEphemeral"]

        await box.slack.wait_for(lambda: bool(answers()))
        (answer,) = answers()
        assert "Hosted relay: rolling back" in answer or "Hosted relay: rolled back" in answer
        assert "aborting" not in answer and "rolled_back" not in answer


def after_approving(
    box: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    environment: str,
    meanwhile: Callable[[], Awaitable[None]],
) -> None:
    """This replica's next approval of `environment` reaches GitHub, then `meanwhile` happens
    (another replica saves) before this replica saves its promotion."""
    gateway = box.services.rollouts.effects.github
    approve = gateway.review

    async def approved_then(
        *,
        run_id: int,
        environments: Sequence[str],
        state: ReviewState,
        comment: str,
        attempt: int | None = None,
        ahead: ReviewAhead | None = None,
    ) -> bool:
        sent = await approve(
            run_id=run_id,
            environments=environments,
            state=state,
            comment=comment,
            attempt=attempt,
            ahead=ahead,
        )
        if list(environments) == [environment]:
            monkeypatch.setattr(gateway, "review", approve)
            await meanwhile()
        return sent

    monkeypatch.setattr(gateway, "review", approved_then)


@pytest.mark.parametrize("via", ["click", "command"])
async def test_a_promote_whose_approval_met_a_roll_back_saved_on_another_replica_says_so(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """This replica approved 50% on GitHub; before it saved the promotion, another replica
    saved a Roll back. GitHub deploys the 50% and the relay rolls back: the person who
    promoted was told nothing (a click) or `Promoted` (the command), its audit saying ok."""
    async with (
        passing_sandbox(tmp_path, database_url=database_url) as box,
        in_process_replica(box) as other,
    ):
        await dispatched(box)
        await held(box, "desktop", "internal")
        rollout = await held(box, "relay", "canary")
        value = await value_of(box, "promote", "relay")

        async def rolled_back_elsewhere() -> None:
            await other[SERVICES].rollouts.abort(
                actor=SECOND_APPROVER, gate="relay", rollout_id=rollout.id
            )

        after_approving(box, monkeypatch, "relay-rollout-50", rolled_back_elsewhere)
        if via == "click":
            answer = await box.click("promote", value=value)
        else:
            answer = await box.command("promote")

        assert answer is not None
        assert "approved 50% (Hosted relay) on GitHub, which deploys it" in answer
        # Where the relay stands when the answer is given (the command's, once every lane
        # was tried: the roll back may be done by then).
        assert any(f"Hosted relay: {s}" in answer for s in ("rolling back", "rolled back")), answer
        assert ("relay-rollout-50", "approved") in reviews(box, "relay")
        promotes = await audit_results(box, rollout.id, "promote", 1)
        assert promotes[0] == "promoted_while_stopping"
        # The command promotes every held track: the desktop ring's Promote is not lost, and
        # the answer says so, never that the ring it promoted is still held.
        ring = ("desktop-beta", "approved") in reviews(box, "desktop")
        assert ring is (via == "command")
        if via == "command":
            assert "Promoted Desktop app and CLI to beta ring" in answer, answer
            assert "internal ring holding" not in answer, answer
        assert await audit_results(box, rollout.id, f"{via}:promote", 1) == [
            "promoted_while_stopping"
        ]
        if via == "click":  # the approval was made: a second click is told by whom
            again = await box.click("promote", value=value)
            assert again is not None and "Already done by <@" in again, again


async def test_a_promote_whose_last_stage_another_replica_saw_deployed_is_no_stop(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This replica approved 100% on GitHub; before it saved the promotion, GitHub deployed it
    and another replica saved the relay completed. That is the promotion asked for, done: the
    person is not told the track "was being stopped meanwhile", and the audit says ok."""
    async with (
        passing_sandbox(tmp_path, database_url=database_url) as box,
        in_process_replica(box) as other,
    ):
        await dispatched(box)
        await held(box, "relay", "canary")
        await box.click("promote", value=await value_of(box, "promote", "relay"))
        rollout = await held(box, "relay", "half")
        value = await value_of(box, "promote", "relay", stage="half")

        async def completed_elsewhere() -> None:
            await box.github.settle()
            await other[SERVICES].rollouts.reconcile(rollout.id)

        after_approving(box, monkeypatch, "relay-rollout-100", completed_elsewhere)
        answer = await box.click("promote", value=value)

        assert (await box.rollout()).track("relay").state is TrackState.COMPLETED
        assert answer is None or "stopped" not in answer, answer
        assert await audit_results(box, rollout.id, "promote", 2) == ["ok", "ok"]


async def test_a_promote_never_approves_after_a_roll_back_saved_while_it_read_the_run(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Promote read the rollout (relay held on its gate), then the run; meanwhile another
    replica saved a Roll back and was still reading the run to reject 50%. This replica must
    not approve 50% after that stop was saved: the relay rolls back at the canary, and the
    person who promoted is told the relay is no longer held (before, GitHub deployed 50% and
    the rollback ran after it)."""
    async with (
        passing_sandbox(tmp_path, database_url=database_url) as box,
        in_process_replica(box) as other,
    ):
        await dispatched(box)
        rollout = await held(box, "relay", "canary")
        value = await value_of(box, "promote", "relay")
        theirs = other[SERVICES].rollouts
        read = asyncio.Event()
        their_read = theirs.effects.github.reported

        async def slow_read(run_id: int) -> RunSnapshot:  # the other replica reads GitHub
            await read.wait()
            return await their_read(run_id)

        monkeypatch.setattr(theirs.effects.github, "reported", slow_read)
        ours = box.services.rollouts.effects
        our_read = ours.read_run
        stopping: list[asyncio.Task[Rollout]] = []

        async def read_then_stopped(run_id: int) -> RunSnapshot:
            snapshot = await our_read(run_id)
            if not stopping:  # a Roll back saved on the other replica while this one read
                stop = theirs.abort(actor=SECOND_APPROVER, gate="relay", rollout_id=rollout.id)
                # Another process's: none of this click's context (its claim) is the stop's.
                stopping.append(asyncio.create_task(stop, context=contextvars.Context()))
                await box.wait_until(lambda r: r.track("relay").state is not TrackState.ACTIVE)
            return snapshot

        monkeypatch.setattr(ours, "read_run", read_then_stopped)
        answer = await box.click("promote", value=value)
        read.set()
        await stopping[0]

        assert ("relay-rollout-50", "approved") not in reviews(box, "relay")
        assert answer is not None and "nothing to promote" in answer, answer
        assert stage_state(await box.rollout(), "relay", "half") is not StageState.DEPLOYING

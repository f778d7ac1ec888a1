"""Linking a run by hand, end to end: signed Slack requests to the real app, the GitHub simulator
answering the dispatch 502 so its run cannot be identified, and a person attaching the run that
did start (`/rollout link`, or the card's Link a run… form).

The run is attached exactly as a found dispatch is (the first stages approved, an `attach_run`
audit event with the person as actor, the thread says who linked which run); every refusal is
one line naming its rule and changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from figures import SECOND_APPROVER, TWO_APPROVERS, every_gate_passes
from sandbox_views import button, value_of
from test_controls import sandbox_for
from test_github_faults import DISPATCHES, sandbox

from bot.domain.rollout import DISPATCH_SEARCH, Phase, Rollout
from bot.domain.rollout.state import Stage, StageState
from sandbox.config import BYSTANDER, RELEASE_MANAGER
from sandbox.harness import Sandbox

__all__ = ["sandbox"]  # the fixture this module's tests use

LINK_URL = "link_url"
"""The block and action id of the run's URL in the Link a run… form."""


async def unclear_dispatch(box: Sandbox, *, by: str = RELEASE_MANAGER) -> Rollout:
    """Start v1.4.2 and dispatch it (`by` clicks Dispatch) while GitHub answers 502: the
    rollout is left dispatching, its run unknown (the bot keeps looking)."""
    await box.command("start v1.4.2 --flags-ready")
    box.github.fault_next("POST", DISPATCHES, "server_error")
    await box.click("dispatch", user=by, value=await value_of(box, "dispatch"), wait=False)
    await box.wait_for_thread("no run of it appeared", timeout=30)
    return await box.rollout()


async def gave_up(box: Sandbox, *, by: str = RELEASE_MANAGER) -> Rollout:
    """`unclear_dispatch`, then the search limit passes: the bot gives up, back to preflight."""
    sent = await unclear_dispatch(box, by=by)
    assert sent.dispatched_at is not None
    await box._store.save(replace(sent, dispatched_at=sent.dispatched_at - DISPATCH_SEARCH))
    await box.wait_for_thread("No run of the dispatch of `v1.4.2` could be identified")
    return await box.wait_until(lambda r: r.phase is Phase.PREFLIGHT)


def by_hand(box: Sandbox, **kwargs: object) -> int:
    """A run of the Deployment Strategy someone started on GitHub (the bot cannot tell it is
    the dispatch's: another account started it)."""
    return box.github.create_foreign_run(actor="octo-release", **kwargs)  # type: ignore[arg-type]


def page(box: Sandbox, run_id: int) -> str:
    return f"{box.github.html_url}/{box.github.repository}/actions/runs/{run_id}"


async def attached(box: Sandbox, rollout_id: str) -> list[tuple[str, str, object]]:
    """The rollout's `attach_run` audit events: (actor, result, run id)."""
    events = await box.audit.list_for_rollout(rollout_id)
    return [
        (e.actor, e.result, (e.detail or {}).get("run_id"))
        for e in events
        if e.action == "attach_run"
    ]


async def test_a_run_is_linked_after_the_bot_gave_up_and_is_followed(sandbox: Sandbox) -> None:
    back = await gave_up(sandbox)
    run_id = by_hand(sandbox)

    answer = await sandbox.command(f"link {page(sandbox, run_id)}/attempts/1")

    assert f"Run {run_id} linked to `v1.4.2`" in answer
    running = await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert running.run_id == run_id and running.id == back.id
    said = await sandbox.wait_for_thread(f"linked <{page(sandbox, run_id)}|run {run_id}>")
    assert f"<@{RELEASE_MANAGER}>" in said
    await sandbox.wait_for_thread("Approved *5% canary*")
    assert sandbox.github.dispatches == []  # nothing was dispatched again
    assert await attached(sandbox, back.id) == [
        ("rollout-bot", "gave_up", None),
        (RELEASE_MANAGER, "ok", run_id),
    ]


async def test_dispatch_after_the_bot_gave_up_takes_the_run_that_appeared_late(
    sandbox: Sandbox,
) -> None:
    """GitHub listed the run of the unclear dispatch only after the bot gave up looking for
    it. Dispatch again must look first: it follows that run, never starts a second one."""
    back = await gave_up(sandbox)
    late = sandbox.github.create_foreign_run(actor="release-bot")  # the bot's own dispatch

    await sandbox.click("dispatch", value=await value_of(sandbox, "dispatch"))

    running = await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert running.run_id == late and running.id == back.id
    assert sandbox.github.dispatches == []  # the first got 502 before it took effect
    await sandbox.wait_for_thread("Approved *5% canary*")
    assert await attached(sandbox, back.id) == [
        ("rollout-bot", "gave_up", None),
        ("rollout-bot", "ok", late),
    ]


async def test_dispatch_after_the_bot_gave_up_refuses_when_two_runs_appeared(
    sandbox: Sandbox,
) -> None:
    await gave_up(sandbox)
    runs = [sandbox.github.create_foreign_run(actor="release-bot") for _ in range(2)]

    answer = await sandbox.click("dispatch", value=await value_of(sandbox, "dispatch"))

    assert answer is not None and "2 runs of *Deployment Strategy* by the bot" in answer
    assert all(page(sandbox, run) in answer for run in runs), answer
    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT


async def test_a_re_run_s_first_attempt_approvals_do_not_promote_its_stages(
    sandbox: Sandbox,
) -> None:
    """Someone approved 5% and 50% of a run on github.com, cancelled it and re-ran it, then
    linked it. GitHub's review history names no attempt: the first attempt's approval of 50%
    must not read as a promotion on GitHub, skipping the 5% gate."""
    await gave_up(sandbox)
    run_id = by_hand(sandbox)
    engine = sandbox.github.engine
    for environment in ("relay-canary-5", "relay-rollout-50"):
        sandbox.github.review(run_id, [environment], "approved", actor="octo-release")
    engine.cancel(run_id)
    engine.rerun(run_id)
    engine.process()

    assert f"Run {run_id} linked" in await sandbox.command(f"link {run_id}")

    def canary(rollout: Rollout) -> Stage:
        return rollout.track("relay").stage("canary")

    await sandbox.wait_until(lambda r: canary(r).verdict is not None)  # its gate decided
    await sandbox.pass_time(timedelta(minutes=1))  # the bot looks at the run again
    held = canary(await sandbox.rollout())
    assert held.state is StageState.HOLDING  # for a person's Promote: nobody clicked it
    assert "relay-rollout-50" in {job.environment for job in engine.waiting_jobs(run_id)}


async def test_a_freeze_refuses_a_link_that_would_start_a_rollout_back_in_its_preflight(
    sandbox: Sandbox,
) -> None:
    back = await gave_up(sandbox)
    run_id = by_hand(sandbox)
    assert "froze" in await sandbox.command(
        "freeze 2h change freeze for the audit", user=SECOND_APPROVER
    )

    answer = await sandbox.command(f"link {run_id}")

    assert "frozen" in answer.casefold() and "change freeze for the audit" in answer
    assert "Linking a run approves its first stages" in answer  # not Dispatch's advice
    assert "Override freeze" not in answer and "Do not click Dispatch" in answer
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT
    assert await attached(sandbox, back.id) == [("rollout-bot", "gave_up", None)]


@pytest.mark.parametrize("waiting", ["dispatching", "gave_up"])
async def test_the_two_person_rule_on_dispatch_binds_the_starter_s_link(
    tmp_path: Path, database_url: str, waiting: str
) -> None:
    """A link picks the run whose first stages the bot approves: with `two_person: [dispatch]`
    the starter cannot link one alone, or they could start a run on GitHub (any inputs) and
    have it approved with nobody else's click, while the bot still looks for the second
    approver's dispatch or after it gave up."""
    changes: dict[str, object] = {"two_person": ["dispatch"]}
    approvers = f"{RELEASE_MANAGER},{SECOND_APPROVER}"
    async with sandbox_for(
        tmp_path, database_url, approvers=approvers, plan_changes=changes
    ) as box:
        every_gate_passes(box)
        wait = unclear_dispatch if waiting == "dispatching" else gave_up
        back = await wait(box, by=SECOND_APPROVER)
        run_id = by_hand(box)

        answer = await box.command(f"link {run_id}")

        assert "two-person rule" in answer and "link a run to `v1.4.2`" in answer
        assert (await box.rollout()).phase is back.phase
        assert await attached(box, back.id) == [
            ("rollout-bot", "gave_up", None) for _ in range(waiting == "gave_up")
        ]
        assert f"Run {run_id} linked" in await box.command(f"link {run_id}", user=SECOND_APPROVER)
        await box.wait_until(lambda r: r.phase is Phase.RUNNING)


async def test_a_run_is_linked_by_its_number_while_the_bot_still_looks(sandbox: Sandbox) -> None:
    await unclear_dispatch(sandbox)
    run_id = by_hand(sandbox)

    answer = await sandbox.command(f"link {run_id}", user=SECOND_APPROVER)

    assert f"Run {run_id} linked" in answer
    running = await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert running.run_id == run_id
    await sandbox.wait_for_thread(f"<@{SECOND_APPROVER}> linked")


async def refused(box: Sandbox, text: str, *, user: str = RELEASE_MANAGER) -> str:
    """The answer to a link that must change nothing: the rollout stays as it was."""
    before = await box.rollout()
    answer = await box.command(text, user=user)
    await asyncio.sleep(0.2)  # a wrong link would have been saved by now
    after = await box.rollout()
    assert (after.phase, after.run_id, after.version) == (before.phase, None, before.version)
    return answer


async def test_each_refusal_names_its_rule_and_changes_nothing(sandbox: Sandbox) -> None:
    back = await gave_up(sandbox)
    repository = sandbox.github.repository
    sandbox.github.refs.add("hotfix")
    good = by_hand(sandbox)

    assert "Only release approvers may link a run to a rollout" in await refused(
        sandbox, f"link {good}", user=BYSTANDER
    )
    other_workflow = by_hand(sandbox, workflow="release.yml")
    assert "not of the plan's workflow `deployment-strategy.yml`" in await refused(
        sandbox, f"link {other_workflow}"
    )
    other_branch = by_hand(sandbox, branch="hotfix")
    assert "runs on `hotfix`, not on the plan's ref `main`" in await refused(
        sandbox, f"link {other_branch}"
    )
    # A fork's pull request from its branch `main` changing the workflow: not a dispatch.
    pull = by_hand(sandbox, event="pull_request")
    assert f"Run {pull} was started by `pull_request`, not dispatched" in await refused(
        sandbox, f"link {pull}"
    )
    older = by_hand(sandbox, created_at=back.created_at - timedelta(minutes=5))
    assert "created before the preflight of `v1.4.2` started" in await refused(
        sandbox, f"link {older}"
    )
    done = by_hand(sandbox)
    sandbox.github.engine.cancel(done)
    assert "has already completed" in await refused(sandbox, f"link {done}")
    assert "is not a run: give its number or its page" in await refused(
        sandbox, "link https://example.com/not/a/run"
    )
    assert "`elsewhere/fork`; this bot follows" in await refused(
        sandbox, f"link {sandbox.github.html_url}/elsewhere/fork/actions/runs/{good}"
    )
    assert "is on `https://github.example`, but this bot's GitHub is" in await refused(
        sandbox, f"link https://github.example/{repository}/actions/runs/{good}"
    )
    assert "GitHub has no run of that number" in await refused(sandbox, "link 987654")
    assert await attached(sandbox, back.id) == [("rollout-bot", "gave_up", None)]
    events = await sandbox.audit.list_for_rollout(back.id)
    assert [e.result for e in events if e.action == "command:link"].count("link_refused") == 7


async def test_a_run_another_rollout_follows_is_refused(sandbox: Sandbox) -> None:
    await sandbox.command("start v1.4.1 --flags-ready")
    await sandbox.click("cancel_preflight", value=await value_of(sandbox, "cancel_preflight"))
    earlier = await sandbox.wait_until(lambda r: r.phase is Phase.ENDED)
    await gave_up(sandbox)
    run_id = by_hand(sandbox)
    # The earlier rollout followed that run (as if it had been linked there first).
    await sandbox._store.save(replace(earlier, run_id=run_id, run_url=page(sandbox, run_id)))

    answer = await refused(sandbox, f"link {run_id}")

    assert f"Run {run_id} is already followed by the rollout of `v1.4.1`" in answer


async def test_nothing_to_link_says_where_the_rollout_stands(sandbox: Sandbox) -> None:
    await sandbox.command("start v1.4.2 --flags-ready")

    answer = await refused(sandbox, f"link {by_hand(sandbox)}")

    assert "No rollout is waiting for its run" in answer
    assert "`v1.4.2` is in its preflight" in answer


async def test_the_card_offers_link_a_run_and_its_form_links_it(sandbox: Sandbox) -> None:
    await sandbox.command("start v1.4.2 --flags-ready")
    assert button(sandbox, "link_run") is None  # a plain preflight has nothing to link
    await gave_up(sandbox)
    run_id = by_hand(sandbox)

    await sandbox.click("link_run", value=await value_of(sandbox, "link_run"))
    opened = await sandbox.slack.wait_for_call("views.open")
    view_id = opened[-1].response["view"]["id"]

    def typed(text: str) -> dict[str, dict[str, dict[str, str]]]:
        return {LINK_URL: {LINK_URL: {"type": "plain_text_input", "value": text}}}

    garbage = await sandbox.submit_view(view_id, typed("run 12 please"))
    assert garbage["response_action"] == "errors"
    assert "is not a run: give its number or its page" in garbage["errors"][LINK_URL]
    assert await sandbox.submit_view(view_id, typed(page(sandbox, run_id))) == {}

    running = await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert running.run_id == run_id
    await sandbox.wait_for_thread(f"<@{RELEASE_MANAGER}> linked")
    await sandbox.slack.wait_for(lambda: button(sandbox, "link_run") is None)


async def test_the_card_offers_link_a_run_while_the_bot_still_looks(sandbox: Sandbox) -> None:
    await unclear_dispatch(sandbox)

    assert await value_of(sandbox, "link_run")


async def test_a_double_click_on_the_form_links_once(sandbox: Sandbox) -> None:
    await gave_up(sandbox)
    run_id = by_hand(sandbox)
    value = await value_of(sandbox, "link_run")
    views = []
    for user in (RELEASE_MANAGER, SECOND_APPROVER):
        await sandbox.click("link_run", value=value, user=user)
        opened = await sandbox.slack.wait_for_call("views.open", count=len(views) + 1)
        views.append((opened[-1].response["view"]["id"], user))
    typed = {LINK_URL: {LINK_URL: {"type": "plain_text_input", "value": str(run_id)}}}

    answers = await asyncio.gather(
        *(sandbox.submit_view(view_id, typed, user=user) for view_id, user in views)
    )

    assert answers == [{}, {}]
    rollout = await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    await sandbox.wait_for_thread("linked")
    await asyncio.sleep(0.3)  # a second link would have been recorded by now
    assert [e for e in await attached(sandbox, rollout.id) if e[1] == "ok"] in (
        [(RELEASE_MANAGER, "ok", run_id)],
        [(SECOND_APPROVER, "ok", run_id)],
    )
    assert sum("linked <" in line for line in sandbox.thread()) == 1


async def test_two_replicas_sharing_postgresql_link_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    async with Sandbox(
        workdir=tmp_path,
        database_url=postgres_database_url,
        in_process=False,
        extra_env=TWO_APPROVERS,
    ) as box:
        await gave_up(box)
        run_id = by_hand(box)
        second = await box.start_replica()

        answers = await asyncio.gather(
            box.command(f"link {run_id}"),
            box.command(f"link {run_id}", user=SECOND_APPROVER, replica=second),
        )

        assert sum(f"Run {run_id} linked" in answer for answer in answers) == 1, answers
        # The other is told who did it while the claim is held, or, when it comes after the
        # link was saved, that the rollout already follows that run.
        told = ("Already done by", f"already follows run {run_id}")
        assert sum(any(t in answer for t in told) for answer in answers) == 1, answers
        rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert rollout.run_id == run_id
        assert len([e for e in await attached(box, rollout.id) if e[1] == "ok"]) == 1

"""Controls end to end: who may press what (approvers, user groups, the two-person rule, release
channels), Re-evaluate now, the custom window extension, and Roll back after a completed track
(a redeploy of the previous good tag). Signed Slack requests, the real app, the simulators.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from cleared import cleared_rollout
from figures import HALF_OK, RELAY_OK, RINGS_OK, every_gate_passes
from sandbox_views import (
    audit_results,
    button,
    dispatched,
    figures_form_opened,
    finish,
    released,
    stage_state,
    value_of,
)
from sqlalchemy import text
from test_database_timeouts import locked

from bot.adapters.slack.messages import two_person_text
from bot.domain.controls import CardRef, Control, card_applies, effect_key
from bot.domain.gate import evaluate_relay
from bot.domain.permissions import TwoPersonRefusal, two_person_refusal
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Phase,
    Rollout,
    StageState,
    TrackState,
)
from bot.domain.rollout.state import WATCHED
from bot.plan_file import parse_plan
from handlers import form_refusals
from handlers.form_refusals import FORM_CHECK_S
from sandbox.config import BYSTANDER, OTHER_CHANNEL, RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.github_routes import Dispatch
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.slack import EphemeralMessage
from sandbox.workflows import Job, Step, Workflow, WorkflowInput
from storage.db import engine_for_one_task

pytestmark = pytest.mark.story

CANARY_BAD = {"crash_rate": "0.001", "error_rate": "0.02", "sample": 5000}
GROUP = "S0RELMGRS1"
SECOND = "U0SECOND01"
NOT_APPROVER = "Only release approvers may"


def posted_ephemerals(box: Sandbox) -> list[EphemeralMessage]:
    """What the bot told the release manager with chat.postEphemeral (answers to forms)."""
    return [
        note
        for note in box.slack.ephemerals(user=RELEASE_MANAGER)
        if note.via == "chat.postEphemeral"
    ]


def github_calls(box: Sandbox) -> tuple[int, int]:
    """Reviews and dispatches GitHub received so far."""
    return len(box.github.reviews), len(box.github.dispatches)


async def canary_observing(box: Sandbox) -> Rollout:
    """Dispatched on passing figures, with the relay canary's window open."""
    every_gate_passes(box)
    await dispatched(box)
    return await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING)


async def held_without_canary_figures(box: Sandbox) -> Rollout:
    """Dispatched with no canary figures: no data, one extension, then a hold (INCONCLUSIVE)."""
    write_figures(box.figures, "relay", {"half": HALF_OK})
    await dispatched(box)
    return await box.wait_until(
        lambda r: (
            stage_state(r, "relay", "canary") is StageState.HOLDING
            and r.track("relay").stage("canary").extensions == 1
        )
    )


def sandbox_for(
    tmp_path: Path,
    database_url: str,
    *,
    window: str = "2s",
    approvers: str = f"{RELEASE_MANAGER},{GROUP}",
    plan_changes: dict[str, object] | None = None,
) -> Sandbox:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml", window=window))
    plan.update(plan_changes or {})
    return Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=yaml.safe_dump(plan, sort_keys=False),
        extra_env={"ROLLOUT_APPROVERS": approvers},
    )


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with sandbox_for(tmp_path, database_url) as box:
        box.slack.usergroups[GROUP] = [SECOND]
        every_gate_passes(box)
        yield box


async def test_a_non_approver_is_refused_on_every_button_and_nothing_reaches_github(
    tmp_path: Path, database_url: str
) -> None:
    # An hour's window, which ends when the test passes its time: the five clicks below read
    # the card's buttons of an open window, and under load they can take longer than 4 s.
    async with sandbox_for(tmp_path, database_url, window="1h") as box:
        every_gate_passes(box)
        await box.command("start v1.4.2")
        for action in ("confirm_flags", "cancel_preflight"):
            answer = await box.click(action, user=BYSTANDER)
            assert answer is not None and NOT_APPROVER in answer, action
        await box.click("confirm_flags")
        await box.slack.wait_for(lambda: "[Dispatch]" in box.card_message().rendered)
        answer = await box.click("dispatch", user=BYSTANDER)
        assert answer is not None and NOT_APPROVER in answer
        assert box.github.dispatches == []

        await box.click("dispatch")
        observing = await box.wait_until(
            lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING
        )
        before = github_calls(box)
        for action in ("extend_window", "extend_custom", "reevaluate", "rollback", "kill"):
            track = "desktop" if action == "kill" else "relay"
            answer = await box.click(
                action, user=BYSTANDER, value=await value_of(box, action, track)
            )
            assert answer is not None and NOT_APPROVER in answer, action
        await box.pass_time(timedelta(hours=1))  # the refusals are in: the window ends
        held = await box.wait_until(
            lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING
        )
        answer = await box.click("promote", user=BYSTANDER, value=await value_of(box, "promote"))
        assert answer is not None and NOT_APPROVER in answer

        assert await box.acks.idle(within=60)  # the refused clicks' work all ended
        assert github_calls(box) == before
        assert box.slack.calls_to("views.open") == []
        ends = observing.track("relay").stage("canary").window_ends_at
        assert held.track("relay").stage("canary").window_ends_at == ends
        assert stage_state(await box.rollout(), "relay", "half") is StageState.PENDING
        events = await box.audit.list_for_rollout(held.id)
        refused = [e.action for e in events if e.actor == BYSTANDER and e.result == "refused"]
        assert sorted(refused) == sorted(
            [
                "click:confirm_flags",
                "click:cancel",
                "click:dispatch",
                "click:extend",
                "click:extend_by_form",
                "click:reevaluate",
                "click:rollback",
                "click:kill",
                "click:promote",
            ]
        )
        why = next(e for e in events if e.action == "click:promote" and e.actor == BYSTANDER)
        assert why.detail is not None and NOT_APPROVER in why.detail["why"]


async def test_a_member_of_an_approver_user_group_may_act(
    tmp_path: Path, database_url: str
) -> None:
    async with sandbox_for(tmp_path, database_url, approvers=GROUP) as box:
        box.slack.usergroups[GROUP] = [SECOND]
        every_gate_passes(box)

        refused = await box.command("start v1.4.2", user=RELEASE_MANAGER)
        assert NOT_APPROVER in refused
        answer = await box.command("start v1.4.2 --flags-ready", user=SECOND)
        assert "Preflight of `v1.4.2` posted" in answer
        await box.click("dispatch", user=SECOND)
        await box.wait_until(lambda r: r.phase is Phase.RUNNING)

        assert [d.inputs["relay_image_tag"] for d in box.github.dispatches] == ["v1.4.2"]
        lookups = box.slack.calls_to("usergroups.users.list")
        assert lookups and all(call.args["usergroup"] == GROUP for call in lookups)


async def test_the_two_person_rule_keeps_the_starter_from_promoting_to_100_alone(
    tmp_path: Path, database_url: str
) -> None:
    changes: dict[str, object] = {"two_person": ["promote_to_last"]}
    async with sandbox_for(tmp_path, database_url, plan_changes=changes) as box:
        box.slack.usergroups[GROUP] = [SECOND]
        every_gate_passes(box)
        await dispatched(box)
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)
        assert await box.click("promote", value=await value_of(box, "promote", "relay")) is None
        await box.wait_until(lambda r: stage_state(r, "relay", "half") is StageState.HOLDING)

        answer = await box.click(
            "promote", value=await value_of(box, "promote", "relay", stage="half")
        )

        assert answer is not None and "two-person rule" in answer
        assert "<@U0RELMGR01> started `v1.4.2`" in answer and "*100%*" in answer
        assert "Ask a second approver" in answer
        relay = [
            r.environments for r in box.github.reviews if "relay-rollout-100" in r.environments
        ]
        assert relay == []
        rollout = await box.rollout()
        events = await box.audit.list_for_rollout(rollout.id)
        refusal = [e for e in events if e.action == "click:promote" and e.result == "refused"]
        assert len(refusal) == 1 and refusal[0].stage == "half"

        assert (
            await box.click("promote", user=SECOND, value=await value_of(box, "promote", "relay"))
            is None
        )
        done = await box.wait_until(lambda r: r.track("relay").state is TrackState.COMPLETED)
        assert done.track("relay").stage("full").state is StageState.DEPLOYED


async def test_the_starter_cannot_alone_type_the_figures_that_promote_into_a_two_person_stage(
    tmp_path: Path, database_url: str
) -> None:
    """A stage that promotes itself on a PASS, with figures typed by hand: the figures are the
    promotion, so the two-person rule of the stage after it binds whoever types them."""
    raw = yaml.safe_load(fast_plan(tmp_path / "figures.yml", manual_tracks=("relay",)))
    stages = raw["tracks"]["relay"]["stages"]
    stages[0]["observe"]["promote"] = "auto"
    stages[1]["two_person"] = True
    plan_yaml = yaml.safe_dump(raw, sort_keys=False)
    approvers = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND}"}
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan_yaml, extra_env=approvers
    ) as box:
        write_figures(box.figures, "desktop", RINGS_OK)
        await dispatched(box)
        await box.wait_for_thread("Enter the observed rates")
        request = next(r for r in box.card_message().replies if "[Enter figures]" in r.rendered)

        opening = await box.click("enter_figures", message=request)

        assert opening is not None and "two-person rule" in opening
        assert "enter the figures whose PASS promotes Hosted relay to *50%*" in opening
        assert box.slack.calls_to("views.open") == []
        await box.click("enter_figures", message=request, user=SECOND)
        opened = await box.slack.wait_for_call("views.open")
        view_id = opened[-1].response["view"]["id"]
        good = {
            "crash_rate": {"figure": {"type": "number_input", "value": "0.001"}},
            "error_rate": {"figure": {"type": "number_input", "value": "0.001"}},
        }

        # The starter's submission of that form: taken by Slack, refused by the controls.
        assert await box.submit_view(view_id, good) == {}
        await box.slack.wait_for(
            lambda: any("two-person rule" in note.text for note in posted_ephemerals(box))
        )
        assert stage_state(await box.rollout(), "relay", "canary") is StageState.EVALUATING
        assert not [r for r in box.github.reviews if "relay-rollout-50" in r.environments]

        assert await box.submit_view(view_id, good, user=SECOND) == {}
        # Deployed, its window running or ended (2 s, which a wait may skip): asked for figures.
        await box.wait_until(lambda r: stage_state(r, "relay", "half") in WATCHED)
        assert [r.state for r in box.github.reviews if "relay-rollout-50" in r.environments] == [
            "approved"
        ]


async def test_clicks_from_outside_the_release_channels_are_refused(sandbox: Sandbox) -> None:
    await dispatched(sandbox)
    await sandbox.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)
    before = github_calls(sandbox)

    answer = await sandbox.click(
        "promote", channel=OTHER_CHANNEL, value=await value_of(sandbox, "promote", "relay")
    )

    assert answer is not None and "release channels only" in answer
    assert f"<#{RELEASE_CHANNEL}>" in answer and f"<#{OTHER_CHANNEL}>" in answer
    assert github_calls(sandbox) == before
    rollout = await sandbox.rollout()
    assert await audit_results(sandbox, rollout.id, "click:promote", 1) == ["refused"]


async def test_reevaluate_while_observing_rolls_back_at_once_on_a_failing_gate(
    tmp_path: Path, database_url: str
) -> None:
    async with sandbox_for(tmp_path, database_url, window="1h") as box:
        await canary_observing(box)

        first = await value_of(box, "reevaluate", "relay")
        assert await box.click("reevaluate", value=first) is None
        interim = await box.wait_for_thread("re-evaluated *5% canary*")
        assert "PASS" in interim and "The window runs on" in interim
        still = await box.rollout()
        assert stage_state(still, "relay", "canary") is StageState.OBSERVING

        write_figures(box.figures, "relay", {"canary": CANARY_BAD, "half": HALF_OK})
        # The card is redrawn with the rollout's new version a moment after the thread reply.
        await box.slack.wait_for(lambda: button(box, "reevaluate", "relay") != first, timeout=30)
        value = await value_of(box, "reevaluate", "relay")
        assert await box.click("reevaluate", value=value) is None
        ended = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)

        assert stage_state(ended, "relay", "canary") is StageState.FAILED_GATE
        relay = [(env, r.state) for r in box.github.reviews for env in r.environments]
        assert ("relay-rollout-50", "rejected") in relay and ("relay-rollback", "approved") in relay
        assert stage_state(ended, "desktop", "internal") is StageState.OBSERVING
        events = await box.audit.list_for_rollout(ended.id)
        gates = [(e.actor, e.result) for e in events if e.action == "gate" and e.track == "relay"]
        assert gates == [(RELEASE_MANAGER, "PASS"), (RELEASE_MANAGER, "ROLLBACK")]


async def test_reevaluate_on_an_inconclusive_hold_takes_the_new_verdict(sandbox: Sandbox) -> None:
    await held_without_canary_figures(sandbox)

    def promote_buttons() -> list[dict[str, object]]:
        return [
            element
            for block in sandbox.card_message().blocks
            for element in block.get("elements", [])
            if element.get("action_id") == "promote" and '"relay"' in element["value"]
        ]

    # The card is redrawn just after the state is saved: wait for it.
    await sandbox.slack.wait_for(lambda: bool(promote_buttons()))
    assert "confirm" in promote_buttons()[0]  # an override of INCONCLUSIVE asks first

    write_figures(sandbox.figures, "relay", RELAY_OK)
    await sandbox.click("reevaluate", value=await value_of(sandbox, "reevaluate", "relay"))

    passed = await sandbox.wait_until(
        lambda r: (
            (verdict := r.track("relay").stage("canary").verdict) is not None
            and verdict.verdict == "PASS"
        )
    )
    assert stage_state(passed, "relay", "canary") is StageState.HOLDING
    await sandbox.slack.wait_for(
        lambda: all("confirm" not in element for element in promote_buttons())
    )


async def test_extend_by_a_typed_duration_through_the_modal(
    tmp_path: Path, database_url: str
) -> None:
    async with sandbox_for(tmp_path, database_url, window="1h") as box:
        before = await canary_observing(box)
        await box.click("extend_custom", value=await value_of(box, "extend_custom", "relay"))
        opened = await box.slack.wait_for_call("views.open")
        view_id = opened[-1].response["view"]["id"]

        def typed(text: str) -> dict[str, dict[str, dict[str, str]]]:
            return {"duration": {"duration": {"type": "plain_text_input", "value": text}}}

        refused = await box.submit_view(view_id, typed("45 minutes"))
        assert refused["response_action"] == "errors"
        assert "is not a duration (use 90s, 30m or 1h)" in refused["errors"]["duration"]
        too_long = await box.submit_view(view_id, typed("800h"))
        assert "longer than" in too_long["errors"]["duration"]
        token = "npm_" + "T0k3n" * 7 + "X"  # 40 characters, as many as the field takes
        pasted = await box.submit_view(view_id, typed(token))
        assert "'[a token, not repeated]' is not a duration" in pasted["errors"]["duration"]
        # Each refusal audited as a command's is (none was), with what was said, not the token.
        refused = await audit_results(box, before.id, "form:extend_by", 3)
        assert refused == ["invalid_command"] * 3
        events = await box.audit.list_for_actor(RELEASE_MANAGER)
        assert "is not a duration" in str([e.detail for e in events])
        assert token[4:] not in repr(events)
        assert await box.submit_view(view_id, typed("45m")) == {}

        moved = await box.wait_until(
            lambda r: (
                r.track("relay").stage("canary").window_ends_at
                != before.track("relay").stage("canary").window_ends_at
            )
        )
        old_end = before.track("relay").stage("canary").window_ends_at
        new_end = moved.track("relay").stage("canary").window_ends_at
        assert old_end is not None and new_end is not None
        assert new_end - old_end == timedelta(minutes=45)
        assert "by 45m" in await box.wait_for_thread("extended the window")

        # The same form sent again (same card version): one extension, and the answer says so.
        assert await box.submit_view(view_id, typed("45m")) == {}
        await box.slack.wait_for(lambda: bool(posted_ephemerals(box)))
        (note,) = posted_ephemerals(box)
        assert note.text.startswith("Already done by <@U0RELMGR01>")
        again = await box.rollout()
        assert again.track("relay").stage("canary").window_ends_at == new_end


TYPED = {
    "crash_rate": {"figure": {"type": "number_input", "value": "0.001"}},
    "error_rate": {"figure": {"type": "number_input", "value": "0.001"}},
}
"""Passing canary figures, as the figures form's fields hold them."""


@contextlib.asynccontextmanager
async def group_members_form(
    tmp_path: Path, database_url: str, *, retry_after: int
) -> AsyncIterator[tuple[Sandbox, str]]:
    """The figures form opened, to be sent by a member of an approvers' group (`SECOND`),
    with Slack's next `usergroups.users.list` rate-limited for `retry_after` seconds: the
    sandbox and the form's view id."""
    plan_yaml = fast_plan(tmp_path / "figures.yml", manual_tracks=("relay",))
    approvers = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{GROUP}"}
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan_yaml, extra_env=approvers
    ) as box:
        box.slack.usergroups[GROUP] = [SECOND]
        view_id = await figures_form_opened(box)
        box.slack.fail_next(
            "usergroups.users.list", error="ratelimited", status=429, retry_after=retry_after
        )
        yield box, view_id


async def test_a_form_whose_approver_check_slack_rate_limits_is_answered_within_slacks_3_seconds(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A figures form is answered (acknowledged) once the bot knows whether its sender may
    submit it: for a member of an approvers' group, that asks Slack (`usergroups.users.list`).
    Slack rate-limiting that call had the answer wait out its Retry-After first (up to 30 s,
    twice), long past the 3 s Slack waits for it: Slack showed the person an error.

    The check gives up after `FORM_CHECK_S`, 2 of Slack's 3 s; here after a quarter of that,
    which leaves a loaded machine the rest of the 3 s for the answer's other work (it took
    0.75 s more at times: with 2 s gone, the answer then came after Bolt's own 3 s, which
    answers a form not acknowledged by then as one no listener took)."""
    assert FORM_CHECK_S < 3.0
    monkeypatch.setattr(form_refusals, "FORM_CHECK_S", FORM_CHECK_S / 4)
    async with group_members_form(tmp_path, database_url, retry_after=8) as (box, view_id):
        started = asyncio.get_running_loop().time()
        answer = await box.submit_view(view_id, TYPED, user=SECOND)
        took = asyncio.get_running_loop().time() - started

        assert FORM_CHECK_S / 4 <= took < 3.0
        assert answer["response_action"] == "errors"
        assert "try again in a moment" in next(iter(answer["errors"].values()))
        assert await box.submit_view(view_id, TYPED, user=SECOND) == {}  # Slack answered since


async def test_a_form_answered_after_slacks_3_s_is_told_the_bot_was_too_slow_and_nothing_is_done(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A form the bot takes longer than Slack's 3 s to answer (its event loop overloaded; here
    the approver check waits out Slack's rate limit, its own bound lifted): Bolt answers it
    as one no listener took, which told the person "does not carry a value the bot made"
    (untrue: in an incident, a hunt for a stale card that does not exist). The form now says
    the bot was too slow and nothing was done; the listener, once it answers (too late), does
    nothing; and the form sent again is judged once."""
    monkeypatch.setattr(form_refusals, "FORM_CHECK_S", 30.0)
    evaluating = StageState.EVALUATING
    async with group_members_form(tmp_path, database_url, retry_after=4) as (box, view_id):
        answer = await box.submit_view(view_id, TYPED, user=SECOND)

        assert answer["response_action"] == "errors"
        (said,) = answer["errors"].values()
        assert "too slow" in said and "nothing was done" in said, said
        assert "does not carry" not in said
        # The late listener asks Slack again after the Retry-After, then acknowledges: too late,
        # it stops there (logged), or, as before, goes on to judge the figures.
        await box.slack.wait_for_call("usergroups.users.list", count=2)
        async with asyncio.timeout(10):
            while "answered after Slack's 3 s" not in caplog.text:
                if stage_state(await box.rollout(), "relay", "canary") is not evaluating:
                    break
                await asyncio.sleep(0.02)
        assert stage_state(await box.rollout(), "relay", "canary") is evaluating
        assert await box.submit_view(view_id, TYPED, user=SECOND) == {}
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is not evaluating)
        told = [note.text for note in box.slack.ephemerals(user=SECOND)]
        assert not [text for text in told if "Already done" in text]  # judged once


async def test_a_form_whose_rollout_a_database_lock_holds_up_is_told_so_and_nothing_is_done(
    tmp_path: Path, postgres_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A figures form is answered once the bot has looked its rollout up. A lock on the
    rollouts (another connection's) held that look-up past the 3 s Slack waits: Bolt answered
    the form as one no listener took ("does not carry a value the bot made", untrue), and
    once the lock went away the listener went on and judged the figures all the same.

    The look-up and the sender's check share `FORM_CHECK_S` (a quarter of it here): the form
    says in time that nothing was done, and nothing is; sent again, it is judged once."""
    monkeypatch.setattr(form_refusals, "FORM_CHECK_S", FORM_CHECK_S / 4)
    plan_yaml = fast_plan(tmp_path / "figures.yml", manual_tracks=("relay",))
    async with Sandbox(
        workdir=tmp_path, database_url=postgres_database_url, plan_yaml=plan_yaml
    ) as box:
        view_id = await figures_form_opened(box)

        async with locked(postgres_database_url, "LOCK TABLE rollouts IN ACCESS EXCLUSIVE MODE"):
            started = asyncio.get_running_loop().time()
            answer = await box.submit_view(view_id, TYPED)
            took = asyncio.get_running_loop().time() - started

        assert answer["response_action"] == "errors"
        (said,) = answer["errors"].values()
        assert "nothing was done" in said and "does not carry" not in said
        assert took < 3.0
        assert stage_state(await box.rollout(), "relay", "canary") is StageState.EVALUATING
        assert await box.submit_view(view_id, TYPED) == {}
        await box.wait_until(
            lambda r: stage_state(r, "relay", "canary") is not StageState.EVALUATING
        )
        assert not [note for note in posted_ephemerals(box) if "does not carry" in note.text]


async def test_roll_back_after_completion_starts_a_rollout_of_the_previous_good_tag(
    tmp_path: Path, database_url: str
) -> None:
    async with sandbox_for(tmp_path, database_url, window="1s") as box:
        box.slack.usergroups[GROUP] = [SECOND]
        every_gate_passes(box)
        await released(box, "v1.4.1")
        latest = await finish(box, "v1.4.2")
        card = box.card_message()
        assert "[Roll back to the previous release…]" in card.rendered

        redeploy = await value_of(box, "redeploy", "relay")
        answer = await box.click("redeploy", user=BYSTANDER, value=redeploy)
        assert answer is not None and NOT_APPROVER in answer
        await box.click("redeploy", value=redeploy)
        opened = await box.slack.wait_for_call("views.open")
        view = opened[-1].response["view"]
        shown = " ".join(block["text"]["text"] for block in view["blocks"])
        assert "from `v1.4.2` to `v1.4.1`" in shown and "a new rollout of `v1.4.1`" in shown

        assert await box.submit_view(view["id"], {}) == {}
        started = await box.wait_until(lambda r: r.tag == "v1.4.1" and r.id != latest.id)
        assert started.phase is Phase.PREFLIGHT
        told = "is redeploying `v1.4.1` in place of `v1.4.2` as a new rollout"
        await box.slack.wait_for(lambda: any(told in reply.rendered for reply in card.replies))

        # The same dialog submitted again: one redeploy, and the answer says who did it.
        assert await box.submit_view(view["id"], {}) == {}
        await box.slack.wait_for(lambda: bool(posted_ephemerals(box)))
        (again,) = posted_ephemerals(box)
        assert again.text.startswith("Already done by <@U0RELMGR01>")


async def test_a_roll_back_dialog_naming_another_previous_release_is_refused_as_out_of_date(
    tmp_path: Path, database_url: str
) -> None:
    """The dialog names the release it puts back; when the previous good release is another one
    by the time it is submitted, nothing is redeployed and the person is told which it is now."""
    async with sandbox_for(tmp_path, database_url, window="1s") as box:
        every_gate_passes(box)
        await released(box, "v1.4.1")
        latest = await finish(box, "v1.4.2")
        await box.click("redeploy", value=await value_of(box, "redeploy", "relay"))
        opened = await box.slack.wait_for_call("views.open")
        view = opened[-1].response["view"]
        stored = box.slack.views[view["id"]]
        stored["private_metadata"] = stored["private_metadata"].replace("v1.4.1", "v1.4.0")

        await box.submit_view(view["id"], {})
        await box.slack.wait_for(lambda: bool(posted_ephemerals(box)))
        (told,) = posted_ephemerals(box)
        assert "This form is out of date: the previous good release of " in told.text
        assert "is now `v1.4.1`, not `v1.4.0`. Click Roll back again." in told.text
        newest = await box.rollouts()
        assert [r.tag for r in newest].count("v1.4.1") == 1  # the one released before only
        assert newest[0].id == latest.id and newest[0].version == latest.version


async def with_rollback_workflow(box: Sandbox) -> None:
    """The relay's plan redeploys through `relay-redeploy.yml`, which the repository has; the
    bot started again on that plan, every gate passing."""
    redeploy = {
        "workflow": "relay-redeploy.yml",
        "inputs": {"relay_image_tag": {"from": "tag"}, "replacing": {"from": "replaced_tag"}},
    }
    plan = yaml.safe_load(box.plan_file.read_text(encoding="utf-8"))
    plan["tracks"]["relay"]["redeploy"] = redeploy
    box.plan_file.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    await box.stop_bot()
    await box.start_bot()
    box.github.engine.workflows.append(
        Workflow(
            id=61_234_599,
            path=".github/workflows/relay-redeploy.yml",
            name="Relay redeploy",
            inputs=(WorkflowInput("relay_image_tag"), WorkflowInput("replacing")),
            jobs=(Job(key="redeploy", name="Redeploy relay", steps=(Step("Deploy"),)),),
        )
    )
    every_gate_passes(box)


async def test_roll_back_after_completion_dispatches_the_plans_rollback_workflow(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with sandbox_for(tmp_path, sqlite_database_url, window="1s") as box:
        await with_rollback_workflow(box)
        await released(box, "v1.4.1")
        await finish(box, "v1.4.2")

        await box.click("redeploy", value=await value_of(box, "redeploy", "relay"))
        opened = await box.slack.wait_for_call("views.open")
        view = opened[-1].response["view"]
        shown = " ".join(block["text"]["text"] for block in view["blocks"])
        assert "the rollback workflow *relay-redeploy.yml*" in shown and "`v1.4.1`" in shown
        # The workflow puts back the relay alone: the desktop track stays on the release.
        assert (
            "Desktop app and CLI completed `v1.4.2` too and stays on it: this workflow puts "
            "back Hosted relay only." in shown
        )
        assert await box.submit_view(view["id"], {}) == {}

        told = await box.wait_for_thread("through *relay-redeploy.yml*")
        assert "redeploying `v1.4.1` on *Hosted relay* in place of `v1.4.2`" in told
        assert "Still on `v1.4.2`: *Desktop app and CLI*; this workflow puts back" in told
        assert [d.inputs for d in rollback_dispatches(box)] == [
            {"relay_image_tag": "v1.4.1", "replacing": "v1.4.2"}
        ]

        # v1.4.2 was rolled back: once v1.4.3 completes, its previous good release is v1.4.1.
        await finish(box, "v1.4.3")
        await box.click("redeploy", value=await value_of(box, "redeploy", "relay"))
        opened = await box.slack.wait_for_call("views.open", count=2)
        shown = " ".join(block["text"]["text"] for block in opened[-1].response["view"]["blocks"])
        assert "from `v1.4.3` to `v1.4.1`" in shown


async def test_a_roll_back_whose_answer_was_lost_is_not_dispatched_again(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """The rollback workflow's dispatch went through, then the bot could not record GitHub's
    answer (the database failed that write): the click's claim is given back, as after any
    failure. A second Roll back must look first, not send the workflow a second time."""
    async with sandbox_for(tmp_path, sqlite_database_url, window="1s") as box:
        await with_rollback_workflow(box)
        await released(box, "v1.4.1")
        await finish(box, "v1.4.2")
        await on_the_database(box, LOSE_THE_ANSWER)

        await box.click("redeploy", value=await value_of(box, "redeploy", "relay"))
        opened = await box.slack.wait_for_call("views.open")
        assert await box.submit_view(opened[-1].response["view"]["id"], {}) == {}
        await box.slack.wait_for(lambda: len(posted_ephemerals(box)) == 1)
        assert len(rollback_dispatches(box)) == 1

        await on_the_database(box, "DROP TRIGGER lose_the_answer")  # the database is back
        await box.click("redeploy", value=await value_of(box, "redeploy", "relay"))
        opened = await box.slack.wait_for_call("views.open", count=2)
        assert await box.submit_view(opened[-1].response["view"]["id"], {}) == {}
        await box.slack.wait_for(
            lambda: len(posted_ephemerals(box)) == 2 or len(rollback_dispatches(box)) > 1
        )
        assert len(rollback_dispatches(box)) == 1, "the rollback workflow was dispatched twice"
        answers = [note.text for note in posted_ephemerals(box)]
        assert any(
            "was already sent to GitHub by <@U0RELMGR01>, and it may have started a run" in text
            for text in answers
        ), answers


LOSE_THE_ANSWER = """
CREATE TRIGGER lose_the_answer BEFORE INSERT ON audit_events
WHEN NEW.action = 'redeploy' AND NEW.result = 'ok'
BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END
"""
"""The database fails the write of the rollback's outcome (a connection lost at its commit)."""


def rollback_dispatches(box: Sandbox) -> list[Dispatch]:
    return [d for d in box.github.dispatches if d.inputs.get("replacing")]


async def on_the_database(box: Sandbox, statement: str) -> None:
    async with engine_for_one_task(box.database_url) as engine, engine.begin() as connection:
        await connection.execute(text(statement))


async def test_rollback_after_the_relay_completed_points_to_the_redeploy(
    sandbox: Sandbox,
) -> None:
    await dispatched(sandbox)
    for stage in ("canary", "half"):
        await sandbox.wait_until(
            lambda r, s=stage: stage_state(r, "relay", s) is StageState.HOLDING
        )
        await sandbox.click("promote", value=await value_of(sandbox, "promote", "relay"))
    await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.COMPLETED)
    before = github_calls(sandbox)

    answer = await sandbox.command("rollback")

    assert "Hosted relay already completed (100%)" in answer
    assert "*Roll back to the previous release…* on the rollout's card" in answer
    assert github_calls(sandbox) == before
    assert "[Roll back to the previous release…]" in sandbox.card_message().rendered


# -- the rules, as pure functions ----------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def plan_with(**changes: object) -> RolloutPlan:
    plan = yaml.safe_load(fast_plan(Path("/nonexistent/figures.yml")))
    plan.update(changes)
    return parse_plan(yaml.safe_dump(plan), "test plan")


HELD_ON_PASS = evaluate_relay(
    baseline_crash=Decimal("0.001"), current_crash=Decimal("0.001"), current_error=Decimal("0.001")
)


def held_at(plan: RolloutPlan, stage: str, *, started_by: str = RELEASE_MANAGER) -> Rollout:
    """A running rollout whose relay track holds at `stage` (earlier stages passed)."""
    rollout = cleared_rollout(plan, now=NOW, started_by=started_by)
    relay = rollout.track("relay")
    keys = [s.key for s in relay.stages]
    stages = tuple(
        replace(
            s,
            state=StageState.PASSED
            if keys.index(s.key) < keys.index(stage)
            else StageState.HOLDING
            if s.key == stage
            else StageState.PENDING,
            verdict=HELD_ON_PASS if s.key == stage else None,
        )
        for s in relay.stages
    )
    running = replace(rollout, phase=Phase.RUNNING, version=4)
    return running.with_track(replace(relay, state=TrackState.ACTIVE, stages=stages))


def test_effect_keys_tell_repeatable_controls_apart_by_card_version() -> None:
    v4 = CardRef("r-1", "relay", "canary", 4)
    v5 = CardRef("r-1", "relay", "canary", 5)
    assert effect_key(Control.PROMOTE, v4) == effect_key(Control.PROMOTE, v5)
    assert effect_key(Control.PROMOTE, v4) == "promote:r-1:relay:canary"
    assert effect_key(Control.EXTEND, v4) != effect_key(Control.EXTEND, v5)
    assert effect_key(Control.EXTEND, v4) != effect_key(Control.EXTEND_BY, v4)
    assert effect_key(Control.ROLLBACK, v4) == effect_key(Control.ROLLBACK, CardRef("r-1"))
    assert effect_key(Control.REDEPLOY, v4) == "redeploy:r-1:relay"


def test_a_promote_button_applies_only_to_the_stage_it_was_drawn_for() -> None:
    plan = plan_with()
    at_half = held_at(plan, "half")
    assert card_applies(Control.PROMOTE, at_half, plan, CardRef("r-1", "relay", "half", 1))
    assert not card_applies(Control.PROMOTE, at_half, plan, CardRef("r-1", "relay", "canary", 1))
    assert not card_applies(Control.EXTEND, at_half, plan, CardRef("r-1", "relay", "half", 1))
    assert card_applies(Control.REEVALUATE, at_half, plan, CardRef("r-1", "relay", "half", 1))
    assert card_applies(Control.ROLLBACK, at_half, plan, CardRef("r-1"))
    assert not card_applies(Control.DISPATCH, at_half, plan, CardRef("r-1"))


def test_reevaluate_does_not_apply_to_figures_typed_by_hand() -> None:
    plan = parse_plan(
        fast_plan(Path("/nonexistent/figures.yml"), manual_tracks=("relay",)), "manual plan"
    )
    at_half = held_at(plan, "half")
    assert not card_applies(Control.REEVALUATE, at_half, plan, CardRef("r-1", "relay", "half", 1))


def test_the_two_person_rule_binds_the_starter_for_the_actions_the_plan_names() -> None:
    plan = plan_with(two_person=["promote_to_last"])
    to_half, to_full = held_at(plan, "canary"), held_at(plan, "half")

    def refusal(rollout: Rollout, control: Control, actor: str) -> str | None:
        refused = two_person_refusal(plan, rollout, control=control, track="relay", actor=actor)
        return None if refused is None else two_person_text(refused)

    assert refusal(to_half, Control.PROMOTE, RELEASE_MANAGER) is None
    refused = refusal(to_full, Control.PROMOTE, RELEASE_MANAGER)
    assert refused is not None and "promote Hosted relay to *100%*" in refused
    assert refusal(to_full, Control.PROMOTE, SECOND) is None
    assert refusal(to_full, Control.ROLLBACK, RELEASE_MANAGER) is None
    assert refusal(to_full, Control.DISPATCH, RELEASE_MANAGER) is None

    every = plan_with(two_person=["promote", "dispatch"])
    assert two_person_refusal(
        every,
        held_at(every, "canary"),
        control=Control.PROMOTE,
        track="relay",
        actor=RELEASE_MANAGER,
    )
    assert two_person_refusal(
        every, held_at(every, "canary"), control=Control.DISPATCH, track=None, actor=RELEASE_MANAGER
    )


def test_a_stage_marked_two_person_needs_a_second_approver_to_promote_into_it() -> None:
    raw = yaml.safe_load(fast_plan(Path("/nonexistent/figures.yml")))
    raw["tracks"]["relay"]["stages"][1]["two_person"] = True
    plan = parse_plan(yaml.safe_dump(raw), "stage plan")
    refused = two_person_refusal(
        plan, held_at(plan, "canary"), control=Control.PROMOTE, track="relay", actor=RELEASE_MANAGER
    )
    assert refused == TwoPersonRefusal(
        RELEASE_MANAGER, "v1.4.2", Control.PROMOTE, track="Hosted relay", stage="50%"
    )
    assert (
        two_person_refusal(
            plan,
            held_at(plan, "half"),
            control=Control.PROMOTE,
            track="relay",
            actor=RELEASE_MANAGER,
        )
        is None
    )

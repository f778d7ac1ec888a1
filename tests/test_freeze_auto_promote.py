"""A freeze holds `promote: auto` stages: the bot never ships on its own during a freeze, and
not out of one either. A person's Promote, a roll back and the kill-switch are never held.
End to end: signed commands and clicks to the real app, the sandbox's Slack and GitHub."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from figures import every_gate_passes
from sandbox_views import dispatched, held, stage_state
from sqlalchemy.exc import OperationalError

from bot.domain.rollout import Phase, StageState
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from sandbox.plans import fast_plan
from sandbox.slack_records import ChannelMessage

pytestmark = pytest.mark.story

OTHER = "U0APPROVE2"
WINDOW = timedelta(hours=1)
"""Longer than the harness skips by itself: each window ends when the test passes its time."""


def auto_sandbox(tmp_path: Path, database_url: str, **changes: Any) -> Sandbox:
    """Every stage `promote: auto`, hour-long windows, gates that pass."""
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml", window="1h", promote="auto"))
    plan.update(changes)
    return Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=yaml.safe_dump(plan, sort_keys=False),
        extra_env={"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{OTHER}"},
    )


async def observing_canary(box: Sandbox) -> ChannelMessage:
    """The rollout dispatched, its canary and internal ring observing: its card."""
    every_gate_passes(box)
    await dispatched(box)
    await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING)
    await box.wait_until(lambda r: stage_state(r, "desktop", "internal") is StageState.OBSERVING)
    return box.card_message()


async def held_in_a_freeze(box: Sandbox, lasting: str) -> ChannelMessage:
    """The rollout's canary and internal ring observing, a `/rollout freeze` for `lasting`, and
    their windows ended in it (the gates PASS): both held. The card."""
    card = await observing_canary(box)
    await box.command(f"freeze {lasting} friday change freeze", user=OTHER)
    await box.pass_time(WINDOW)
    # The internal ring's window ends a moment after the canary's (its job was seen
    # completing later, in real time): a test that told the freeze's end before it held
    # would see that hold told on its own, rightly, in a second note.
    await held(box, "relay", "canary")
    await held(box, "desktop", "internal")
    return card


async def in_thread(box: Sandbox, card: ChannelMessage, needle: str) -> str:
    """The reply in the card's thread that contains `needle`, once posted."""

    def found() -> str | None:
        return next((r.rendered for r in card.replies if needle in r.rendered), None)

    await box.slack.wait_for(lambda: found() is not None)
    reply = found()
    assert reply is not None
    return reply


def promote_value(card: ChannelMessage, track: str) -> str | None:
    return card_button_value(card, "promote", track)


async def test_a_freeze_holds_an_auto_stage_a_promote_goes_on_and_an_unfreeze_ships_nothing(
    tmp_path: Path, database_url: str
) -> None:
    async with auto_sandbox(tmp_path, database_url) as box:
        card = await held_in_a_freeze(box, "4h")
        rollout = await held(box, "desktop", "internal")
        assert stage_state(rollout, "relay", "half") is StageState.PENDING
        assert stage_state(rollout, "desktop", "beta") is StageState.PENDING
        said = await in_thread(box, card, "Held, not promoted to *50%* automatically")
        assert f"Deploys are frozen by <@{OTHER}> until" in said
        assert "friday change freeze" in said and "click Promote to go on anyway" in said
        await box.slack.wait_for(lambda: "a freeze held its automatic promotion" in card.rendered)

        # A person's Promote during the freeze is theirs to make: it goes through.
        await box.slack.wait_for(lambda: promote_value(card, "relay") is not None)
        await box.click("promote", value=promote_value(card, "relay"), message=card, wait=False)
        await box.wait_until(lambda r: stage_state(r, "relay", "half") is not StageState.PENDING)

        # The freeze lifted: the thread is told, and the held ring stays held.
        await box.command("unfreeze", user=OTHER)
        lifted = await in_thread(box, card, f"<@{OTHER}> lifted the freeze by <@{OTHER}>")
        assert "Still held, not promoted automatically" in lifted
        assert "nothing goes on by itself" in lifted
        await box.pass_time(timedelta(minutes=5))
        rollout = await box.rollout()
        assert stage_state(rollout, "desktop", "internal") is StageState.HOLDING
        assert stage_state(rollout, "desktop", "beta") is StageState.PENDING


async def test_the_plans_calendar_holds_an_auto_stage_and_its_end_ships_nothing(
    tmp_path: Path, database_url: str
) -> None:
    # A calendar window that begins while the canary observes, and ends an hour after its gate.
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=10)
    friday = {
        "name": "friday",
        "reason": "no deploys on friday afternoon",
        "timezone": "UTC",
        "dates": {
            "from": f"{start:%Y-%m-%d %H:%M}",
            "until": f"{start + 2 * WINDOW:%Y-%m-%d %H:%M}",
        },
    }
    async with auto_sandbox(tmp_path, database_url, freezes=[friday]) as box:
        await observing_canary(box)
        await box.pass_time(WINDOW)
        rollout = await held(box, "relay", "canary")
        assert stage_state(rollout, "relay", "half") is StageState.PENDING
        said = await box.wait_for_thread("Held, not promoted to *50%* automatically")
        # The card is redrawn after the thread's reply (the outbox's order): wait for it.
        await box.slack.wait_for(
            lambda: "holding: a freeze held its automatic promotion" in box.card_message().rendered
        )
        assert "the plan's `friday` freeze" in said

        await box.pass_time(2 * WINDOW)  # the calendar window ended: nothing ships by itself
        rollout = await box.rollout()
        assert rollout.phase is Phase.RUNNING
        assert stage_state(rollout, "relay", "canary") is StageState.HOLDING
        assert stage_state(rollout, "relay", "half") is StageState.PENDING


async def test_a_rollout_whose_freeze_was_overridden_promotes_through_it(
    tmp_path: Path, database_url: str
) -> None:
    async with auto_sandbox(tmp_path, database_url) as box:
        every_gate_passes(box)
        await box.command("freeze 4h friday change freeze", user=OTHER)
        await box.command('start v1.4.2 --flags-ready --override-freeze "hotfix for INC-9"')
        await box.slack.wait_for(lambda: preflight_card(box) is not None, timeout=30)
        await box.click("dispatch", message=preflight_card(box))
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING)

        await box.pass_time(WINDOW)  # the override covers this freeze: the stage goes on
        await box.wait_until(lambda r: stage_state(r, "relay", "half") is not StageState.PENDING)
        assert stage_state(await box.rollout(), "relay", "canary") is StageState.PASSED


def preflight_card(box: Sandbox) -> ChannelMessage | None:
    """The preflight card (whichever message of the channel has a Dispatch button)."""
    return next(
        (m for m in box.slack.messages(RELEASE_CHANNEL) if '"dispatch"' in json.dumps(m.blocks)),
        None,
    )


async def test_a_lane_unreadable_at_the_gate_promotes_nothing_and_says_no_false_evaluating(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The freeze cannot be read when an auto stage's gate PASSes (the database blinked): the
    stage is not promoted (a freeze may be in force), and a Re-evaluate that fails on it
    leaves the stage as it was, not `evaluating` with nothing evaluating it."""
    async with auto_sandbox(tmp_path, database_url) as box:
        card = await observing_canary(box)
        await box.command("freeze 4h friday change freeze", user=OTHER)
        holds = box.services.lane.holds
        read = holds.current

        async def unreadable() -> list[Any]:
            raise OperationalError("SELECT lane_holds", {}, ConnectionResetError("reset"))

        monkeypatch.setattr(holds, "current", unreadable)
        await box.pass_time(WINDOW)  # the gates PASS; the lane cannot be read: retried
        rollout = await box.rollout()
        assert stage_state(rollout, "relay", "half") is StageState.PENDING
        assert not [r for r in box.github.reviews if "relay-rollout-50" in r.environments]

        monkeypatch.setattr(holds, "current", read)
        await box.pass_time(timedelta(minutes=5))  # the retry reads the freeze: held
        await held(box, "relay", "canary")
        await in_thread(box, card, "Held, not promoted to *50%* automatically")

        monkeypatch.setattr(holds, "current", unreadable)
        await box.slack.wait_for(lambda: card_button_value(card, "reevaluate", "relay") is not None)
        value = card_button_value(card, "reevaluate", "relay")
        await box.click("reevaluate", value=value, message=card, user=OTHER)
        rollout = await box.rollout()
        assert stage_state(rollout, "relay", "canary") is StageState.HOLDING
        assert stage_state(rollout, "relay", "half") is StageState.PENDING


def card_button_value(card: ChannelMessage, action: str, track: str) -> str | None:
    for block in card.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action and f'"track":"{track}"' in element["value"]:
                return str(element["value"])
    return None

"""Typed figures are for one window: a figures form opened for a stage's window, submitted after
that window was extended (INCONCLUSIVE: too small a sample) and the stage asks again, is refused
instead of judged as the figures of the newer window (a person's figures for 10:00-10:30
deciding 10:30-11:00 could pass a canary that failed since). A form a 38840bf replica opened
says no window: taken while the stage's window never moved, refused once it has. Signed Slack
requests, the real app, the simulators."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from figures import RINGS_OK
from sandbox_views import audit_results, dispatched, stage_state

from bot.domain.controls import typed_for_another_window
from bot.domain.rollout import Rollout, Stage, StageState
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story

SECOND = "U0SECOND01"
ASKED = "Enter the observed rates"
TOO_FEW = {
    "crash_rate": {"figure": {"type": "number_input", "value": "0.001"}},
    "error_rate": {"figure": {"type": "number_input", "value": "0.001"}},
    "sample": {"figure": {"type": "number_input", "value": "10"}},
}
"""Good rates on too small a sample: INCONCLUSIVE, the window extended."""
GOOD = {
    "crash_rate": {"figure": {"type": "number_input", "value": "0"}},
    "error_rate": {"figure": {"type": "number_input", "value": "0"}},
    "sample": {"figure": {"type": "number_input", "value": "50000"}},
}
"""Figures that pass the canary."""


@asynccontextmanager
async def canary_asking(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """The relay track's figures typed by hand (a sample of 1000 at least), its canary's window
    ended and its figures asked for in the thread."""
    raw = yaml.safe_load(fast_plan(tmp_path / "figures.yml", manual_tracks=("relay",)))
    raw["tracks"]["relay"]["thresholds"]["min_sample"] = 1000
    approvers = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND}"}
    async with Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=yaml.safe_dump(raw, sort_keys=False),
        extra_env=approvers,
    ) as box:
        write_figures(box.figures, "desktop", RINGS_OK)
        await dispatched(box)
        await box.wait_for_thread(ASKED)
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.EVALUATING)
        yield box


async def open_form(box: Sandbox, user: str) -> str:
    """Click the newest Enter figures prompt as `user`: the view id of the form it opened."""
    before = len(box.slack.calls_to("views.open"))
    request = [r for r in box.card_message().replies if "[Enter figures]" in r.rendered][-1]
    await box.click("enter_figures", message=request, user=user)
    opened = await box.slack.wait_for_call("views.open", before + 1)
    return str(opened[-1].response["view"]["id"])


async def extended_and_asking_again(box: Sandbox) -> Rollout:
    """Another form's figures, on too small a sample: the canary's window extended, ended, and
    its figures asked again."""
    first = await open_form(box, SECOND)
    assert await box.submit_view(first, TOO_FEW, user=SECOND) == {}
    asking = await box.wait_until(
        lambda r: (
            r.track("relay").stage("canary").extensions == 1
            and stage_state(r, "relay", "canary") is StageState.EVALUATING
        )
    )
    await box.slack.wait_for(lambda: sum(ASKED in line for line in box.thread()) == 2)
    return asking


async def refusal_told(box: Sandbox, needle: str) -> str:
    """What the bot told the release manager about their form (chat.postEphemeral)."""

    def told() -> list[str]:
        notes = box.slack.ephemerals(user=RELEASE_MANAGER)
        return [n.text for n in notes if n.via == "chat.postEphemeral" and needle in n.text]

    await box.slack.wait_for(lambda: bool(told()))
    return told()[-1]


async def open_a_38840bf_form(box: Sandbox) -> str:
    """A figures form opened by the release manager, its metadata as a 38840bf replica wrote
    it (no window): its view id."""
    view_id = await open_form(box, RELEASE_MANAGER)
    view: dict[str, Any] = box.slack.views[view_id]
    metadata = json.loads(view["private_metadata"])
    metadata.pop("window")
    view["private_metadata"] = json.dumps(metadata)
    return view_id


async def nothing_judged(box: Sandbox, asking: Rollout) -> None:
    """The canary still evaluating the window it asks for, no PASS said."""
    now = await box.rollout()
    assert stage_state(now, "relay", "canary") is StageState.EVALUATING
    assert now.track("relay").stage("canary") == asking.track("relay").stage("canary")
    assert not [line for line in box.thread() if "canary gate: PASS" in line]


@pytest.mark.database_matters  # the refused form gives back its claim of the evaluation
async def test_a_form_opened_for_a_window_since_extended_is_refused_and_judges_nothing(
    tmp_path: Path, database_url: str
) -> None:
    async with canary_asking(tmp_path, database_url) as box:
        first_window = (await box.rollout()).track("relay").stage("canary").window_ends_at
        stale = await open_form(box, RELEASE_MANAGER)
        asking = await extended_and_asking_again(box)
        reviews = len(box.github.reviews)

        assert await box.submit_view(stale, GOOD) == {}

        told = await refusal_told(box, "open the form again")
        assert first_window is not None and str(int(first_window.timestamp())) in told
        ends = asking.track("relay").stage("canary").window_ends_at
        assert ends is not None and str(int(ends.timestamp())) in told
        assert "Nothing was judged" in told
        await nothing_judged(box, asking)
        figures_forms = await audit_results(box, asking.id, "form:figures", 2)
        assert figures_forms == ["ok", "invalid_transition"]
        assert len(box.github.reviews) == reviews

        # The form opened again from the prompt is for the window asked now: taken, judged.
        fresh = await open_form(box, RELEASE_MANAGER)
        assert await box.submit_view(fresh, GOOD) == {}
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)


async def test_a_38840bf_form_is_taken_while_the_window_never_moved(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with canary_asking(tmp_path, sqlite_database_url) as box:
        assert await box.submit_view(await open_a_38840bf_form(box), GOOD) == {}

        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)


async def test_a_38840bf_form_is_refused_once_the_window_moved(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with canary_asking(tmp_path, sqlite_database_url) as box:
        old = await open_a_38840bf_form(box)
        asking = await extended_and_asking_again(box)

        assert await box.submit_view(old, GOOD) == {}

        told = await refusal_told(box, "open the form again")
        assert "previous version" in told and "does not say which window" in told
        await nothing_judged(box, asking)


START = datetime(2026, 12, 1, 10, tzinfo=UTC)
FIRST = timedelta(minutes=30)


@pytest.mark.parametrize(
    ("stage", "window", "another"),
    [
        # A form this version opened: for the window whose end it names, and no other.
        (Stage("canary", window_started_at=START, window_ends_at=START + FIRST), 1796121000, False),
        (Stage("canary", window_started_at=START, window_ends_at=START + FIRST), 1796119200, True),
        # A 38840bf form (no window): taken while the window ends where the deploy put it.
        (Stage("canary", window_started_at=START, window_ends_at=START + FIRST), None, False),
        # ... not once extended after INCONCLUSIVE, nor extended by hand (a missed gate).
        (
            Stage(
                "canary", window_started_at=START, window_ends_at=START + 2 * FIRST, extensions=1
            ),
            None,
            True,
        ),
        (Stage("canary", window_started_at=START, window_ends_at=START + 2 * FIRST), None, True),
        (Stage("canary"), None, True),  # no window: nothing tells which it was for
    ],
)
def test_which_window_a_form_was_typed_for(stage: Stage, window: int | None, another: bool) -> None:
    assert int((START + FIRST).timestamp()) == 1796121000
    assert typed_for_another_window(stage, FIRST, window) is another


async def test_the_card_of_figures_that_extended_the_window_names_the_window_they_judged(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """Typed figures on too small a sample extend the canary's window in the save that writes
    their gate card. The card was drawn from the rollout as delivered: it said the figures
    covered the extended window, ending in the future, not the window they were typed for."""
    async with canary_asking(tmp_path, sqlite_database_url) as box:
        judged = (await box.rollout()).track("relay").stage("canary")
        asking = await extended_and_asking_again(box)
        extended = asking.track("relay").stage("canary").window_ends_at

        (card,) = [line for line in box.thread() if "canary gate: INCONCLUSIVE" in line]
        assert judged.window_ends_at is not None and extended is not None
        assert str(int(judged.window_ends_at.timestamp())) in card, card
        assert str(int(extended.timestamp())) not in card, card

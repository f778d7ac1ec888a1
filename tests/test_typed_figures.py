"""Who may type a gate's figures: people type them for a track whose `metrics.source` is
`manual` only. A track gated on live metrics (here Sentry) never takes typed ones, through the
card's button or a form the bot never opened: good figures typed by hand would pass a ring its
live metrics fail. Signed Slack requests, the real app, the simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cleared import cleared_rollout
from figures import RELAY_OK
from sandbox_views import dispatched, stage_state

from bot.adapters.slack.actions import ButtonValue, FiguresMetadata
from bot.domain.controls import CardRef, Control
from bot.domain.permissions import Asker, Refused, refusal
from bot.domain.rollout import Phase, Rollout, StageState, TrackState
from bot.plan_file import parse_plan
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SENTRY_TOKEN
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.plans import SENTRY_RINGS
from sandbox.sentry import SentryTestServer
from sandbox.signing import view_submission_body
from storage.rollout_store import RolloutStore

pytestmark = pytest.mark.story

REFUSED = "Desktop app and CLI reads its gate's figures from Sentry: figures typed by hand"
GOOD = {"crash_rate": {"figure": {"type": "number_input", "value": "0"}}}
"""Figures that pass any ring: a crash rate of 0 (typed, not read)."""


@asynccontextmanager
async def ring_evaluating_on_sentry(workdir: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """A rollout whose desktop track is gated on Sentry (no sessions: the internal ring's gate
    is INCONCLUSIVE, then holds), with that ring evaluating, as a replica that stopped between
    saving the stage evaluating and reading its figures leaves it."""
    plan = yaml.safe_load(fast_plan(workdir / "figures.yml"))
    plan["tracks"]["desktop"]["metrics"] = SENTRY_RINGS
    async with (
        SentryTestServer(token=SENTRY_TOKEN) as sentry,
        Sandbox(
            workdir=workdir,
            database_url=database_url,
            plan_yaml=yaml.safe_dump(plan, sort_keys=False),
            extra_env=sentry.environment(),
        ) as box,
    ):
        write_figures(box.figures, "relay", RELAY_OK)
        await dispatched(box)
        held = await box.wait_until(
            lambda r: stage_state(r, "desktop", "internal") is StageState.HOLDING
        )
        desktop = held.track("desktop")
        stage = replace(desktop.stage("internal"), state=StageState.EVALUATING, verdict=None)
        store = RolloutStore(box.services.database.sessions, clock=box.clock)
        await store.save(held.with_track(desktop.with_stage(stage)))
        yield box


def approved_rings(box: Sandbox) -> list[str]:
    return [env for r in box.github.reviews for env in r.environments if "desktop" in env]


async def refusals(box: Sandbox, rollout: Rollout, action: str) -> list[str]:
    events = await box.audit.list_for_rollout(rollout.id)
    return [e.result for e in events if e.action == action]


async def test_a_click_for_the_figures_form_of_a_sentry_gated_ring_opens_no_form(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with ring_evaluating_on_sentry(tmp_path, sqlite_database_url) as box:
        rollout = await box.rollout()
        assert "enter_figures" not in str(box.card_message().blocks)  # never offered
        before = approved_rings(box)
        forged = ButtonValue(
            rollout_id=rollout.id, track="desktop", stage="internal", version=rollout.version
        )

        answer = await box.click("enter_figures", value=forged.encode())

        assert answer is not None and REFUSED in answer and "Re-evaluate now" in answer
        assert box.slack.calls_to("views.open") == []
        assert stage_state(await box.rollout(), "desktop", "internal") is StageState.EVALUATING
        assert approved_rings(box) == before
        assert await refusals(box, rollout, "click:figures_form") == ["refused"]


async def test_typed_figures_for_a_sentry_gated_ring_the_bot_never_asked_for_are_refused(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with ring_evaluating_on_sentry(tmp_path, sqlite_database_url) as box:
        rollout = await box.rollout()
        before = approved_rings(box)
        metadata = FiguresMetadata(
            rollout_id=rollout.id, track="desktop", stage="internal", channel_id=RELEASE_CHANNEL
        )
        view = {"id": "V0FORGED01", "callback_id": "figures", "private_metadata": metadata.encode()}
        body = view_submission_body(user_id=RELEASE_MANAGER, view=view, values=GOOD)

        assert await box.post_signed(body) == 200

        def answered() -> list[str]:
            refused = [e.text for e in box.slack.ephemerals(user=RELEASE_MANAGER)]
            passed = [line for line in box.thread() if "internal ring gate: PASS" in line]
            return [text for text in refused if REFUSED in text] + passed

        # The refusal, or (were typed figures taken) the ring's gate card.
        await box.slack.wait_for(lambda: bool(answered()))
        (answer,) = answered()
        assert stage_state(await box.rollout(), "desktop", "internal") is StageState.EVALUATING
        assert approved_rings(box) == before
        assert REFUSED in answer
        assert await refusals(box, rollout, "form:figures") == ["refused"]


@pytest.mark.parametrize(
    ("metrics", "source"),
    [
        (
            {"source": "prometheus", "baseline_crash_rate": "0.001", "crash_rate": {"query": "x"}},
            "Prometheus",
        ),
        (
            {"source": "static", "baseline_crash_rate": "0.001", "file": "f.yml"},
            "the plan's static figures",
        ),
        ({"source": "manual", "baseline_crash_rate": "0.001"}, None),
    ],
)
def test_only_a_manual_track_takes_typed_figures(
    metrics: dict[str, object], source: str | None
) -> None:
    raw = yaml.safe_load(fast_plan(Path("/nonexistent/figures.yml")))
    raw["tracks"]["desktop"]["metrics"] = metrics
    plan = parse_plan(yaml.safe_dump(raw), "plan")
    started = cleared_rollout(plan, now=datetime(2026, 12, 1, 12, tzinfo=UTC))
    desktop = started.track("desktop")
    evaluating = replace(desktop.stage("internal"), state=StageState.EVALUATING)
    active = replace(desktop, state=TrackState.ACTIVE).with_stage(evaluating)
    rollout = replace(started, phase=Phase.RUNNING).with_track(active)
    asker = Asker(actor=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, approver=True)
    card = CardRef(rollout.id, "desktop", "internal", rollout.version)

    refused = refusal(
        Control.FIGURES,
        asker,
        release_channels=(RELEASE_CHANNEL,),
        rollout=rollout,
        plan=plan,
        card=card,
    )

    if source is None:
        assert refused is None
        return
    assert refused is not None and refused.why is Refused.READ_FIGURES
    assert f"reads its gate's figures from {source}:" in refused.message
    held = active.with_stage(replace(evaluating, state=StageState.HOLDING))
    again = refusal(
        Control.FIGURES,
        asker,
        release_channels=(RELEASE_CHANNEL,),
        rollout=rollout.with_track(held),
        plan=plan,
        card=card,
    )
    assert again == refused  # held: the same answer, not "this card is out of date"

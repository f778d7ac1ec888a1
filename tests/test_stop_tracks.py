"""Roll back and Kill-switch stop every track of their gate that can still be stopped.

A plan may have several tracks of one gate (a relay-gated API beside the relay, a CLI beside
the desktop app). A Roll back stops each relay-gated track still running; one that already
completed (or already stopped) is left as it is and never keeps the others from stopping,
and whoever pressed it is told which tracks stayed on the release and what to do about them
(as after a failed gate, which stops its own track only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sandbox_views as views
import yaml
from cleared import cleared_rollout
from figures import RELAY_OK, RINGS_OK
from test_rollout_machine import (
    FULL,
    PLAN,
    PLAN_TEXT,
    T0,
    approved,
    at,
    desktop_at_ga,
    half_observing,
    passed,
    relay_verdict,
    snapshot,
    waiting,
)

from bot.adapters.slack.actions import Action
from bot.adapters.slack.messages import render
from bot.adapters.slack.rollout_card import rollout_card
from bot.domain.gate import GateKind
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Announce,
    InvalidTransition,
    Left,
    Rollout,
    StageState,
    TrackLeft,
    TracksLeft,
    TrackState,
    abort,
    begin_dispatch,
    dispatched,
    gate_evaluated,
    reconcile,
    tracks_left,
    tracks_to_stop,
    window_ended,
)
from bot.domain.run import JobConclusion, JobSnapshot, JobStatus, RunRef, RunSnapshot
from bot.plan_file import parse_plan
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story
"""The end-to-end tests here are stories: the database only keeps the rollout between two
commands, so they run on SQLite alone (README, Development)."""

RUN = RunRef(run_id=7, html_url="https://github.example/o/r/actions/runs/7")
API_JOB = "API deploy"
CANARY = "Relay rollout 5% canary (30m)"


def plan_with_an_api_track() -> RolloutPlan:
    """Scriptum's plan with a one-stage relay-gated `api` track first (so it is stopped first)."""
    data = yaml.safe_load(PLAN_TEXT)
    api = {
        "label": "API",
        "gate": "relay",
        "stages": [
            {"key": "all", "label": "100%", "percent": 100, "environment": "api", "job": API_JOB}
        ],
        "on_failure": {"environment": "api-rollback", "job": "API rollback"},
        "thresholds": {"error_threshold": "0.01"},
        "metrics": {"source": "manual", "baseline_crash_rate": "0.001"},
    }
    data["tracks"] = {"api": api, **data["tracks"]}
    return parse_plan(yaml.safe_dump(data, sort_keys=False), "plan.yml")


def job(name: str, *, done: bool) -> JobSnapshot:
    return JobSnapshot(
        name=name,
        status=JobStatus.COMPLETED if done else JobStatus.WAITING,
        conclusion=JobConclusion.SUCCESS if done else None,
        completed_at=at(2) if done else None,
    )


def run_going(
    *, api_done: bool, canary_done: bool, waiting: frozenset[str] = frozenset()
) -> RunSnapshot:
    """The run in progress, its API job and its relay canary job each done or not yet."""
    return RunSnapshot(
        run_id=RUN.run_id,
        status="in_progress",
        conclusion=None,
        html_url=RUN.html_url,
        jobs={API_JOB: job(API_JOB, done=api_done), CANARY: job(CANARY, done=canary_done)},
        waiting=waiting,
    )


def api_done_relay_deploying(plan: RolloutPlan) -> Rollout:
    rollout = dispatched(begin_dispatch(cleared_rollout(plan, now=T0), now=T0), plan, RUN).rollout
    waiting = run_going(
        api_done=False, canary_done=False, waiting=frozenset({"api", "relay-canary-5"})
    )
    rollout = reconcile(rollout, plan, waiting, at(1)).rollout
    done = run_going(api_done=True, canary_done=False)
    return reconcile(rollout, plan, done, at(3)).rollout


def test_a_completed_track_does_not_keep_another_of_its_gate_from_rolling_back() -> None:
    plan = plan_with_an_api_track()
    rollout = api_done_relay_deploying(plan)
    assert rollout.track("api").state is TrackState.COMPLETED
    assert rollout.track("relay").state is TrackState.ACTIVE

    assert tracks_to_stop(rollout, plan, gate=GateKind.RELAY) == ["relay"]
    assert tracks_to_stop(rollout, plan, gate=GateKind.DESKTOP) == ["desktop"]


def test_nothing_to_stop_says_why_of_the_first_track() -> None:
    plan = plan_with_an_api_track()
    rollout = api_done_relay_deploying(plan)
    rollout = abort(rollout, plan, track="relay", actor="U1", reason="", now=at(4)).rollout
    with pytest.raises(InvalidTransition, match="API already completed"):
        tracks_to_stop(rollout, plan, gate=GateKind.RELAY)


def test_the_roll_back_dialog_keeps_what_it_does_not_stop_whatever_the_labels() -> None:
    """Slack shows 300 characters of a confirm dialog's text: the track a Roll back leaves on
    the release is named first, so long labels cut what it stops, never what it leaves."""
    plan = plan_with_an_api_track()
    long = "Hosted relay for every customer region, " * 5
    plan = plan.model_copy(
        update={
            "tracks": {
                **plan.tracks,
                "relay": plan.tracks["relay"].model_copy(update={"label": long}),
            }
        }
    )
    rollout = api_done_relay_deploying(plan)

    (dialog,) = [
        element["confirm"]["text"]["text"]
        for block in rollout_card(rollout, plan)
        for element in block.get("elements", [])
        if element.get("action_id") == Action.ROLLBACK and "confirm" in element
    ]
    assert dialog.startswith("Not stopped: API stays on v1.4.2 (Roll back to the previous"), dialog


def card_actions(rollout: Rollout, plan: RolloutPlan) -> list[str]:
    """The action ids of the card's buttons, lane after lane."""
    return [
        element["action_id"]
        for block in rollout_card(rollout, plan)
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_a_lane_deploying_its_last_stage_offers_no_stop_until_it_completes() -> None:
    """GitHub cannot stop an approved job: a lane whose last stage is deploying offers no Roll
    back (no Kill-switch on a ring lane deploying GA), which would only be refused; the other
    lane keeps its own, and once the relay completes its lane offers the roll back after it."""
    relay = passed(half_observing(), "relay", "half", relay_verdict(), at(106))
    asked = snapshot(waiting(FULL), waiting_on={"relay-rollout-100"})
    relay = reconcile(relay, PLAN, asked, at(107)).rollout
    assert relay.track("relay").current.key == "full"  # type: ignore[union-attr]
    assert relay.track("relay").current.state is StageState.DEPLOYING  # type: ignore[union-attr]
    assert Action.ROLLBACK not in card_actions(relay, PLAN)
    assert Action.KILL in card_actions(relay, PLAN)

    ga = card_actions(desktop_at_ga(approved()), PLAN)
    assert Action.KILL not in ga and Action.ROLLBACK in ga

    done = reconcile(relay, PLAN, snapshot(job(FULL, done=True)), at(110)).rollout
    assert card_actions(done, PLAN)[0] == Action.REDEPLOY


API_LEFT = TrackLeft("api", "API", Left.COMPLETED, TrackState.COMPLETED, "100%", redeploy=True)


def test_a_rollback_names_the_completed_track_it_leaves_and_how_to_roll_it_back() -> None:
    plan = plan_with_an_api_track()
    rollout = api_done_relay_deploying(plan)

    assert tracks_left(rollout, plan, gate=GateKind.RELAY, stopping=["relay"]) == (API_LEFT,)
    told = render(TracksLeft("v1.4.2", False, (API_LEFT,), actor="U1"))
    assert told.startswith(":warning: Not rolled back by this Roll back:")
    assert "*API* completed (100%) and stays on `v1.4.2`" in told
    assert "*Roll back to the previous release…*" in told


def test_a_failed_gate_says_which_tracks_of_its_gate_it_did_not_roll_back() -> None:
    """The relay's canary gate fails after the API completed: the relay rolls back, and the
    thread is told that the API stays on the release (a failed gate stops its own track)."""
    plan = plan_with_an_api_track()
    rollout = api_done_relay_deploying(plan)
    canary_done = run_going(api_done=True, canary_done=True)
    rollout = reconcile(rollout, plan, canary_done, at(3)).rollout
    due = rollout.track("relay").stage("canary").window_ends_at
    assert due is not None
    evaluating = window_ended(rollout, track="relay", stage="canary", due_at=due).rollout
    failed = relay_verdict(error="0.5")

    decision = gate_evaluated(
        evaluating, plan, track="relay", stage="canary", verdict=failed, now=due
    )

    assert decision.rollout.track("relay").state is TrackState.ABORTING
    told = [e.event for e in decision.effects if isinstance(e, Announce)]
    assert TracksLeft("v1.4.2", False, (API_LEFT,)) in told
    assert render(told[-1]).startswith(
        ":warning: The failed gate stops its own track only; not rolled back:\n• *API* completed"
    )


def two_relay_plan(tmp_path: Path) -> str:
    """The fast plan with its second track (desktop) relay-gated too, as YAML."""
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml", window="1s", extension="1s"))
    second = plan["tracks"]["desktop"]
    second["gate"] = "relay"
    second["thresholds"]["error_threshold"] = "0.01"
    return yaml.safe_dump(plan, sort_keys=False)


def two_desktop_plan(tmp_path: Path) -> str:
    """The fast plan with its first track (the relay) desktop-gated too, as YAML."""
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml", window="1s", extension="1s"))
    first = plan["tracks"]["relay"]
    first["gate"] = "desktop"
    del first["thresholds"]["error_threshold"]
    return yaml.safe_dump(plan, sort_keys=False)


@asynccontextmanager
async def two_desktop_tracks(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """The bot under `two_desktop_plan`, dispatched: the first track holds on its canary."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=two_desktop_plan(tmp_path)
    ) as box:
        write_figures(box.figures, "relay", {"canary": {"crash_rate": "0"}})
        write_figures(box.figures, "desktop", RINGS_OK)
        await views.dispatched(box)
        await views.held(box, "relay", "canary")
        yield box


async def test_a_rollback_after_one_relay_gated_track_completed_rolls_back_the_other(
    tmp_path: Path, database_url: str
) -> None:
    """End to end (the real app, PyGithub against the GitHub simulator): a plan whose second
    track is relay-gated too. The relay reaches 100% while the second track holds on its first
    stage; `/rollout rollback` then rolls the second one back on GitHub."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=two_relay_plan(tmp_path)
    ) as box:
        write_figures(box.figures, "relay", RELAY_OK)
        write_figures(box.figures, "desktop", {"internal": {"crash_rate": "0", "error_rate": "0"}})
        await views.dispatched(box)
        await views.held(box, "desktop", "internal")
        await views.promote(box, "relay", "canary")
        await views.promote(box, "relay", "half")
        done = await box.wait_until(lambda r: r.track("relay").state is TrackState.COMPLETED)
        dialog = views.card_button(box, "rollback", "desktop")
        assert dialog is not None
        assert "Not stopped: Hosted relay stays on v1.4.2" in dialog["confirm"]["text"]["text"]

        answer = await box.command("rollback")

        assert "Not stopped, still on `v1.4.2`: *Hosted relay* (completed, 100%)" in answer
        told = await box.wait_for_thread("Not rolled back by this Roll back")
        assert "*Hosted relay* completed (100%) and stays on `v1.4.2`" in told
        stopped = await box.wait_until(lambda r: r.track("desktop").state is TrackState.ROLLED_BACK)
        assert stopped.track("relay").state is TrackState.COMPLETED
        trail = await box.audit.list_for_rollout(done.id)
        rolled_back = [e for e in trail if e.action == "abort_relay"]
        # The stop's `ok` names the claim it was done under (`Stops.put_back_of` reads by it).
        claim = (rolled_back[0].detail or {}).get("claim")
        assert [(e.track, e.result, e.detail) for e in rolled_back] == [
            ("desktop", "ok", {"reason": "", "claim": claim}),
            ("relay", "not_stopped", {"why": "completed", "state": "completed", "reached": "100%"}),
        ]
        assert views.reviews(box, "desktop") == views.HALTED_ON_INTERNAL


async def test_a_kill_switch_after_one_desktop_gated_track_completed_says_it_stays_on_ga(
    tmp_path: Path, database_url: str
) -> None:
    """The Kill-switch with two desktop-gated tracks (the relay's made one): the desktop
    reached its GA ring, the other holds on its first stage. `/rollout kill` halts the other
    and says the desktop stays on GA, which no kill-switch can take back."""
    async with two_desktop_tracks(tmp_path, database_url) as box:
        await views.promote(box, "desktop", "internal")
        await views.promote(box, "desktop", "beta")
        await box.wait_until(lambda r: r.track("desktop").state is TrackState.COMPLETED)

        answer = await box.command("kill crash reports")

        assert "Not stopped, still on `v1.4.2`: *Desktop app and CLI* (completed, GA ring)" in (
            answer
        )
        told = await box.wait_for_thread("Not stopped by this Kill-switch")
        assert "*Desktop app and CLI* completed (GA ring) and stays on `v1.4.2`" in told
        assert "the kill-switch cannot take a ring back" in told
        halted = await box.wait_until(lambda r: r.track("relay").state is TrackState.HALTED)
        assert halted.track("desktop").state is TrackState.COMPLETED


async def test_a_failed_gate_tells_the_thread_and_the_trail_what_else_of_its_gate_runs(
    tmp_path: Path, database_url: str
) -> None:
    """Two relay-gated tracks: the second one's first gate fails (50% errors) and rolls it
    back; the relay, on its own gate, keeps running, and the thread and audit trail say so."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=two_relay_plan(tmp_path)
    ) as box:
        write_figures(box.figures, "relay", RELAY_OK)
        failing = {"internal": {"crash_rate": "0", "error_rate": "0.5"}}
        write_figures(box.figures, "desktop", failing)
        started = await views.dispatched(box)

        told = await box.wait_for_thread("The failed gate stops its own track only")

        assert "*Hosted relay* keeps running" in told and "click *Roll back* to stop it too" in told
        stopped = await box.wait_until(lambda r: r.track("desktop").state is TrackState.ROLLED_BACK)
        assert stopped.track("relay").state is TrackState.ACTIVE
        trail = await box.audit.list_for_rollout(started.id)
        left = [(e.track, e.detail or {}) for e in trail if e.result == "not_stopped"]
        assert [(track, d["why"], d["state"]) for track, d in left] == [
            ("relay", "running", "active")
        ]
        assert all(e.action == "gate" for e in trail if e.result == "not_stopped")

"""The rollout's Block Kit as a release engineer reads it: preflight, lanes, buttons, modal."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
import yaml
from cleared import cleared_rollout

from bot.adapters.slack.actions import (
    Action,
    ButtonValue,
    Callback,
    FiguresMetadata,
    InvalidPayload,
)
from bot.adapters.slack.figures_modal import (
    CRASH_RATE_BLOCK,
    ERROR_RATE_BLOCK,
    FIGURE_ACTION,
    SAMPLE_BLOCK,
    figures_modal,
    parse_figures,
)
from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.preflight_card import preflight_card
from bot.adapters.slack.rollout_card import rollout_card, rollout_text
from bot.adapters.slack.status_views import (
    active_blocks,
    history_blocks,
    services_blocks,
    status_blocks,
)
from bot.adapters.slack.views import HOME_ROOM, home_tab
from bot.domain.controls import Hold
from bot.domain.gate import GateVerdict
from bot.domain.metrics import Figures
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Check,
    CheckState,
    Preflight,
    Rollout,
    StageState,
    TrackState,
    abort,
    begin_dispatch,
    cancel_preflight,
    confirm_flags,
    dispatched,
    gate_evaluated,
    reconcile,
    window_ended,
)
from bot.domain.run import JobConclusion, JobSnapshot, JobStatus, RunRef, RunSnapshot
from bot.plan_file import load_plan
from bot.version import build
from sandbox.render import render_blocks, render_view
from sandbox.slack_markup import problems_in

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
RUN_URL = "https://github.com/scriptum/scriptum/actions/runs/4242"
PLAN = load_plan(None)
CLEAR = Preflight(
    flags=Check(CheckState.PASS, "confirmed by <@U1>"),
    migrations=Check(CheckState.PASS, "3 migration files, additive only"),
    image=Check(CheckState.PASS, "relay:v1.4.2 is published"),
)


def plan_for(_: Rollout) -> RolloutPlan:
    return PLAN


def started(preflight: Preflight = CLEAR, plan: RolloutPlan = PLAN) -> Rollout:
    return cleared_rollout(plan, now=NOW, preflight=preflight, channel_id="C1", started_by="U1")


def running(plan: RolloutPlan = PLAN) -> Rollout:
    rollout = begin_dispatch(started(plan=plan), now=NOW)
    return replace(dispatched(rollout, plan, RunRef(4242, RUN_URL)).rollout, version=7)


def snapshot(*succeeded: str, waiting: tuple[str, ...] = ()) -> RunSnapshot:
    jobs = {
        name: JobSnapshot(
            name, JobStatus.COMPLETED, JobConclusion.SUCCESS, completed_at=NOW, html_url=None
        )
        for name in succeeded
    }
    return RunSnapshot(4242, "in_progress", None, RUN_URL, jobs, frozenset(waiting))


def canary_observing() -> Rollout:
    """Both first stages deployed and observing (through the state machine, as in production)."""
    rollout = running()
    rollout = reconcile(
        rollout, PLAN, snapshot(waiting=("relay-canary-5", "desktop-internal")), NOW
    ).rollout
    deployed = snapshot("Relay rollout 5% canary (30m)", "Desktop/CLI ring deploy - internal")
    return reconcile(rollout, PLAN, deployed, NOW).rollout


def canary_judged(verdict: GateVerdict) -> Rollout:
    rollout = canary_observing()
    ends = rollout.track("relay").stage("canary").window_ends_at
    assert ends is not None
    rollout = window_ended(rollout, track="relay", stage="canary", due_at=ends).rollout
    return gate_evaluated(
        rollout, PLAN, track="relay", stage="canary", verdict=verdict, now=ends
    ).rollout


def relay_verdict(crash: str, error: str, sample: int | None = None) -> GateVerdict:
    return PLAN.track("relay").evaluate_gate(
        baseline_crash=Decimal("0.001"),
        current_crash=Decimal(crash),
        current_error=Decimal(error),
        sample=sample,
    )


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [b["accessory"] for b in blocks if b["type"] == "section" and "accessory" in b]
    for block in blocks:
        if block["type"] == "actions":
            found.extend(block["elements"])
    return found


def lanes(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """Each lane's rendered text, by track label (lanes are separated by dividers)."""
    parts = render_blocks(blocks).split("\n---\n")[1:]
    by_label = {}
    for part in parts:
        label = part.split("*")[1]
        by_label[label] = part
    return by_label


# -- preflight -------------------------------------------------------------------------------


def test_a_blocked_preflight_names_the_blocking_checks_and_offers_no_dispatch() -> None:
    preflight = Preflight(
        flags=Check(CheckState.PENDING),
        migrations=Check(
            CheckState.FAIL,
            "destructive migration: `crates/relay/src/db/migrations/0007_drop.sql` line 3: "
            "`DROP TABLE sessions;`",
        ),
        image=Check(CheckState.SKIPPED),
    )
    blocks = preflight_card(started(preflight), PLAN)
    shown = render_blocks(blocks)

    assert "# Preflight: v1.4.2" in shown
    assert ":hourglass_flowing_sand: *Feature flags validated*: waiting for <@U1>" in shown
    assert "[Feature flags validated]" in shown
    assert "0007_drop.sql` line 3: `DROP TABLE sessions;`" in shown
    assert ":heavy_minus_sign: *Image tag published*: not checked (turned off in the plan)" in shown
    blocked = next(line for line in shown.splitlines() if "Dispatch is blocked by" in line)
    assert "Feature flags" in blocked and "Migrations" in blocked and "Image" not in blocked
    assert "[Dispatch]" not in shown
    assert [b["action_id"] for b in buttons(blocks)] == [
        Action.CONFIRM_FLAGS,
        Action.CANCEL_PREFLIGHT,
    ]


def test_a_clear_preflight_offers_dispatch_as_the_primary_button() -> None:
    blocks = preflight_card(started(), PLAN)
    shown = render_blocks(blocks)

    assert "Dispatch is blocked" not in shown
    assert shown.count(":white_check_mark:") == 3
    assert "[Dispatch] [Cancel]" in shown
    dispatch = next(b for b in buttons(blocks) if b["action_id"] == Action.DISPATCH)
    assert dispatch["style"] == "primary"
    assert ButtonValue.decode(dispatch["value"]) == ButtonValue(rollout_id="r-1", version=0)


def test_confirming_the_flags_removes_their_button_and_unblocks_dispatch() -> None:
    rollout = started(replace(CLEAR, flags=Check(CheckState.PENDING)))
    assert "[Dispatch]" not in render_blocks(preflight_card(rollout, PLAN))

    shown = render_blocks(preflight_card(confirm_flags(rollout, actor="U2"), PLAN))

    assert "confirmed by <@U2>" in shown
    assert "[Feature flags validated]" not in shown
    assert "[Dispatch]" in shown


def test_a_dispatched_or_cancelled_preflight_has_no_buttons_left() -> None:
    dispatched_card = preflight_card(running(), PLAN)
    cancelled_card = preflight_card(cancel_preflight(started(), actor="U3", now=NOW), PLAN)

    assert buttons(dispatched_card) == buttons(cancelled_card) == []
    assert f"Dispatched: <{RUN_URL}|run 4242>" in render_blocks(dispatched_card)
    assert "cancelled by <@U3>" in render_blocks(cancelled_card)


def test_the_rollout_card_is_the_preflight_card_before_dispatch() -> None:
    assert rollout_card(started(), PLAN) == preflight_card(started(), PLAN)


# -- the rollout card ------------------------------------------------------------------------


def test_each_lane_shows_its_stages_with_state_environment_and_window_end() -> None:
    rollout = canary_observing()
    blocks = rollout_card(rollout, PLAN)
    shown = render_blocks(blocks)
    relay, desktop = lanes(blocks)["Hosted relay"], lanes(blocks)["Desktop app and CLI"]

    assert "# Rollout v1.4.2 · running" in shown
    assert f"<{RUN_URL}|run 4242>" in shown
    ends = int((NOW + timedelta(minutes=30)).timestamp())
    assert f":eyes: *5% canary* · `relay-canary-5` · observing until <!date^{ends}^" in relay
    assert ":white_circle: *50%* · `relay-rollout-50` · pending, window 1h" in relay
    ring_ends = int((NOW + timedelta(hours=1)).timestamp())
    assert f"*internal ring* · `desktop-internal` · observing until <!date^{ring_ends}^" in desktop
    assert ":white_circle: *GA ring* · `desktop-ga` · pending" in desktop
    assert "[Extend window (+15m)] [Extend by…] [Roll back]" in relay
    assert "[Extend window (+15m)] [Extend by…] [Kill-switch]" in desktop
    assert "[Promote" not in shown


def test_a_passed_gate_holds_with_a_promote_button_for_that_lane_only() -> None:
    blocks = rollout_card(canary_judged(relay_verdict("0.0015", "0.004")), PLAN)
    relay, desktop = lanes(blocks)["Hosted relay"], lanes(blocks)["Desktop app and CLI"]

    assert "*5% canary* · `relay-canary-5` · holding: waiting for Promote" in relay
    assert "*PASS*: crash rate 0.0015 within 2x baseline 0.001" in relay
    assert "[Promote to 50%] [Roll back]" in relay
    assert "[Promote" not in desktop and "[Extend window (+15m)]" in desktop
    promote = next(b for b in buttons(blocks) if b["action_id"] == Action.PROMOTE)
    assert promote["style"] == "primary"
    assert "confirm" not in promote
    value = ButtonValue.decode(promote["value"])
    assert value == ButtonValue(
        rollout_id="r-1", track="relay", stage="canary", version=7, hold=Hold.PASS
    )


def test_promoting_an_inconclusive_hold_asks_to_confirm_the_override() -> None:
    held = canary_judged(relay_verdict("0.001", "0.002"))
    stage = held.track("relay").stage("canary")
    inconclusive = replace(
        stage,
        state=StageState.HOLDING,
        extensions=1,
        verdict=PLAN.track("relay").evaluate_gate(
            baseline_crash=Decimal("0.001"), current_crash=None, current_error=Decimal("0")
        ),
    )
    rollout = held.with_track(held.track("relay").with_stage(inconclusive))
    blocks = rollout_card(rollout, PLAN)

    assert "*INCONCLUSIVE*: current crash rate missing" in lanes(blocks)["Hosted relay"]
    promote = next(b for b in buttons(blocks) if b["action_id"] == Action.PROMOTE)
    assert ButtonValue.decode(promote["value"]).hold is Hold.INCONCLUSIVE
    dialog = promote["confirm"]
    assert "inconclusive" in dialog["title"]["text"].lower()
    assert "INCONCLUSIVE" in dialog["text"]["text"] and "overrides" in dialog["text"]["text"]
    assert len(dialog["text"]["text"]) <= 300


def test_roll_back_and_kill_switch_are_dangerous_and_ask_first() -> None:
    blocks = rollout_card(canary_observing(), PLAN)
    by_action = {b["action_id"]: b for b in buttons(blocks)}

    rollback, kill = by_action[Action.ROLLBACK], by_action[Action.KILL]
    assert rollback["style"] == kill["style"] == "danger"
    assert "Relay auto-rollback" in rollback["confirm"]["text"]["text"]
    assert "stays on the internal ring" in kill["confirm"]["text"]["text"]
    assert ButtonValue.decode(kill["value"]).track == "desktop"


def test_a_failed_relay_gate_leaves_only_the_desktop_lane_with_buttons() -> None:
    rollout = canary_judged(relay_verdict("0.001", "0.05"))
    blocks = rollout_card(rollout, PLAN)
    relay, desktop = lanes(blocks)["Hosted relay"], lanes(blocks)["Desktop app and CLI"]

    assert ":rotating_light: *Hosted relay*: rolling back" in relay
    assert "*ROLLBACK (error rate)*: error rate 0.05 exceeds the threshold 0.01" in relay
    assert "[" not in relay
    assert "[Kill-switch]" in desktop

    ended = replace(rollout.track("relay"), state=TrackState.ROLLED_BACK, ending=None)
    blocks = rollout_card(rollout.with_track(ended), PLAN)
    relay = lanes(blocks)["Hosted relay"]
    assert ":rewind: *Hosted relay*: rolled back from 5% canary: 5% canary gate ROLLBACK" in relay
    assert "[" not in relay


def test_a_kill_shows_the_ring_the_release_stays_on_and_removes_the_button() -> None:
    rollout = abort(
        canary_observing(), PLAN, track="desktop", actor="U2", reason="crash spike", now=NOW
    ).rollout
    halted = replace(rollout.track("desktop"), state=TrackState.HALTED, ending=None)
    blocks = rollout_card(rollout.with_track(halted), PLAN)
    desktop = lanes(blocks)["Desktop app and CLI"]

    assert ":octagonal_sign: *Desktop app and CLI*: halted on internal ring" in desktop
    assert "kill-switch by <@U2>: crash spike" in desktop
    assert "[Kill-switch]" not in desktop
    assert "[Roll back]" in lanes(blocks)["Hosted relay"]


def test_an_ended_rollout_only_offers_to_roll_the_completed_relay_back() -> None:
    rollout = running()
    tracks = tuple(replace(t, state=TrackState.COMPLETED) for t in rollout.tracks)
    done = replace(rollout, phase=rollout.phase.ENDED, tracks=tracks, ended_at=NOW)
    blocks = rollout_card(done, PLAN)

    assert [b["action_id"] for b in buttons(blocks)] == [Action.REDEPLOY]
    assert "[Roll back to the previous release…]" in lanes(blocks)["Hosted relay"]
    assert "completed (100%)" in lanes(blocks)["Hosted relay"]
    assert "completed (GA ring)" in lanes(blocks)["Desktop app and CLI"]


def evaluating(plan: RolloutPlan) -> Rollout:
    rollout = running(plan)
    stage = replace(rollout.track("relay").stages[0], state=StageState.EVALUATING)
    return rollout.with_track(rollout.track("relay").with_stage(stage))


def test_enter_figures_appears_while_evaluating_a_manual_source_only() -> None:
    blocks = rollout_card(evaluating(PLAN), PLAN)
    relay = lanes(blocks)["Hosted relay"]
    assert "window ended: waiting for the observed figures" in relay
    assert "[Enter figures] [Roll back]" in relay

    static = plan_with_static_relay()
    relay = lanes(rollout_card(evaluating(static), static))["Hosted relay"]
    assert "window ended: evaluating the gate" in relay
    assert "[Enter figures]" not in relay


def test_the_fallback_text_names_each_track() -> None:
    text = rollout_text(canary_judged(relay_verdict("0.0015", "0.004")), PLAN)

    assert text.startswith("Rollout v1.4.2 (running).")
    assert "Hosted relay: at 5% canary (holding: waiting for Promote)" in text
    assert "Desktop app and CLI: at internal ring (observing until <!date^" in text


# -- Slack's limits --------------------------------------------------------------------------


def default_data() -> dict[str, Any]:
    text = resources.files("bot.domain").joinpath("default_plan.yml").read_text("utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def plan_with_static_relay() -> RolloutPlan:
    data = default_data()
    figures = {"crash_rate": "0.001", "error_rate": "0"}
    data["tracks"]["relay"]["metrics"] = {
        "source": "static",
        "baseline_crash_rate": "0.001",
        "stages": {"canary": figures, "half": figures},
    }
    return RolloutPlan.model_validate(data)


def huge_plan(tracks: int, rings: int) -> RolloutPlan:
    data = default_data()
    desktop = data["tracks"].pop("desktop")
    data["inputs"] = {"relay_image_tag": {"from": "tag"}}
    for t in range(tracks):
        track = copy.deepcopy(desktop)
        track["label"] = f"Track {t} " + "L" * 240
        stages = []
        for r in range(rings):
            stage = copy.deepcopy(desktop["stages"][0])
            stage.update(
                key=f"ring{r}",
                label=f"ring {r} " + "x" * 240,
                ring=f"r{r}",
                environment=f"t{t}-r{r}",
                job=f"t{t} job {r}",
            )
            stages.append(stage)
        del stages[-1]["observe"]
        track["stages"] = stages
        track["on_failure"] = {"environment": f"t{t}-kill", "job": f"t{t} kill"}
        data["tracks"][f"t{t}"] = track
    return RolloutPlan.model_validate(data)


def texts(node: object) -> Iterator[tuple[str, str]]:
    """(kind, text) of every text object in a block tree."""
    if isinstance(node, Mapping):
        if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
            yield node["type"], node["text"]
        for value in node.values():
            yield from texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from texts(item)


def assert_within_slack_limits(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= 50
    assert problems_in({"blocks": blocks}) == []  # what it cuts says `&lt;tag&gt;`, as typed
    assert all(len(text) <= 3000 for _, text in texts(blocks))
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "actions":
            assert 0 < len(block["elements"]) <= 25
    for button in buttons(blocks):
        assert len(button["text"]["text"]) <= 75
        assert len(button["value"]) <= 2000
        if "confirm" in button:
            assert len(button["confirm"]["title"]["text"]) <= 100
            assert len(button["confirm"]["text"]["text"]) <= 300


@pytest.mark.parametrize(("tracks", "rings"), [(1, 60), (30, 3)])
def test_cards_of_huge_plans_stay_within_slack_limits(tracks: int, rings: int) -> None:
    plan = huge_plan(tracks, rings)
    rollout = running(plan)
    verdict = relay_verdict("0.0015", "0.004")
    for track in rollout.tracks:
        stages = tuple(
            replace(s, state=StageState.PASSED, verdict=verdict) for s in track.stages[:-2]
        )
        holding = replace(track.stages[-2], state=StageState.HOLDING, verdict=verdict)
        rollout = rollout.with_track(replace(track, stages=(*stages, holding, track.stages[-1])))

    blocks = rollout_card(rollout, plan)
    assert_within_slack_limits(blocks)
    shown = render_blocks(blocks)
    assert "[Promote to ring" in shown
    if tracks > 10:
        assert "more blocks not shown" in shown
    assert_within_slack_limits(status_blocks([rollout] * 5, lambda _: plan))
    assert_within_slack_limits(history_blocks([rollout] * 60, lambda _: plan))


def test_many_services_status_and_home_tab_stay_within_slack_limits() -> None:
    """Each service's status fits on its own; a channel of 26 services, or a Home tab of 49,
    put together is over Slack's 50 blocks a message and 100 a view unless cut as a whole:
    whole services are shown, and those left out are named."""
    one = active_blocks([(started(), PLAN)], service="billing-api")
    each = [(f"svc-{n}", one) for n in range(60)]

    status = services_blocks(each)
    assert_within_slack_limits(status)
    assert len(status) == 1 + len(one) * ((50 - 1) // len(one))  # whole services and the note
    assert "_Not shown: svc-" in render_blocks(status)

    home = home_tab(services_blocks(each, room=HOME_ROOM), running=build())
    assert len(home["blocks"]) <= 100
    assert "/rollout: staged releases" in render_view(home)

    many = active_blocks([(replace(started(), id=f"r-{n}"), PLAN) for n in range(60)], room=48)
    assert len(many) == 48  # beside a service's two lane lines, within one message


# -- status and history ----------------------------------------------------------------------


def test_status_without_active_rollouts_says_so() -> None:
    cancelled = cancel_preflight(started(), actor="U1", now=NOW)
    assert render_blocks(status_blocks([], plan_for)) == "No active rollouts."
    assert render_blocks(status_blocks([cancelled], plan_for)) == "No active rollouts."


def test_status_shows_where_each_track_of_each_active_rollout_stands() -> None:
    held = canary_judged(relay_verdict("0.0015", "0.004"))
    other = replace(started(), id="r-2", tag="v1.5.0")
    shown = render_blocks(status_blocks([held, other], plan_for))

    assert "*v1.4.2* · running" in shown
    assert "*Hosted relay*: at 5% canary: holding: waiting for Promote; gate PASS" in shown
    assert "*Desktop app and CLI*: at internal ring: observing until <!date^" in shown
    assert "*v1.5.0* · preflight" in shown


def test_history_shows_how_each_track_ended() -> None:
    rollout = canary_judged(relay_verdict("0.001", "0.05"))
    relay = replace(rollout.track("relay"), state=TrackState.ROLLED_BACK, ending=None)
    desktop = replace(rollout.track("desktop"), state=TrackState.COMPLETED)
    ended = replace(
        rollout.with_track(relay).with_track(desktop), phase=rollout.phase.ENDED, ended_at=NOW
    )
    shown = render_blocks(history_blocks([ended], plan_for))

    assert "*v1.4.2* · started <!date^" in shown and "ended <!date^" in shown
    assert "*Hosted relay*: rolled back from 5% canary: 5% canary gate ROLLBACK" in shown
    assert "*Desktop app and CLI*: completed (GA ring)" in shown
    assert render_blocks(history_blocks([], plan_for)) == "No rollouts yet."


# -- typed button values ---------------------------------------------------------------------


def test_button_values_round_trip_compactly() -> None:
    value = ButtonValue(rollout_id="r-1", track="desktop", stage="beta", version=12)
    encoded = value.encode()

    assert ButtonValue.decode(encoded) == value
    assert " " not in encoded
    assert json.loads(ButtonValue(rollout_id="r-1").encode()) == {"rollout_id": "r-1"}
    biggest = ButtonValue(
        rollout_id="r" * 32, track="t" * 32, stage="s" * 32, version=2**62, hold=Hold.INCONCLUSIVE
    )
    assert len(biggest.encode()) <= 2000


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "promote:r-1",
        "[]",
        "null",
        '{"track": "relay"}',
        '{"rollout_id": 5}',
        '{"rollout_id": ""}',
        '{"rollout_id": "r-1", "version": "7"}',
        '{"rollout_id": "r-1", "version": -1}',
        '{"rollout_id": "r-1", "admin": true}',
        json.dumps({"rollout_id": "r" * 65}),
    ],
)
def test_garbage_button_values_raise_the_clean_error(raw: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        ButtonValue.decode(raw)
    assert caught.value.code == "invalid_payload"
    assert "pydantic" not in caught.value.message and "validation" not in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_value_of_a_newer_version_is_told_as_such() -> None:
    """A rolling upgrade: a replica of this version answers a click on a card a newer one drew,
    whose value has a field this version does not know. Before, it was told as "not a value
    the bot made"; anything else wrong still is."""
    with pytest.raises(InvalidPayload) as caught:
        ButtonValue.decode('{"rollout_id": "r1", "stage": "canary", "since_version": 3}')
    assert "made by a newer version of the bot (an upgrade is under way)" in caught.value.message
    assert "nothing was done" in caught.value.message
    with pytest.raises(InvalidPayload) as caught:
        ButtonValue.decode('{"rollout_id": "", "since_version": 3}')
    assert "does not carry a value the bot made" in caught.value.message


# -- the manual-figures modal ----------------------------------------------------------------


def test_the_relay_modal_asks_for_crash_error_and_sample() -> None:
    rollout = evaluating(PLAN)
    ends = NOW + timedelta(minutes=30)
    relay = rollout.track("relay")
    canary = replace(relay.stage("canary"), window_started_at=NOW, window_ends_at=ends)
    view = figures_modal(rollout.with_track(relay.with_stage(canary)), PLAN, "relay", "canary")
    shown = render_view(view)

    assert view["callback_id"] == Callback.FIGURES
    assert FiguresMetadata.decode(view["private_metadata"]) == FiguresMetadata(
        rollout_id="r-1",
        track="relay",
        stage="canary",
        channel_id="C1",
        window=int(ends.timestamp()),  # the evaluation it is for, as its claim is keyed
    )
    ids = [b.get("block_id") for b in view["blocks"] if b["type"] == "input"]
    assert ids == [CRASH_RATE_BLOCK, ERROR_RATE_BLOCK, SAMPLE_BLOCK]
    hints = [b["hint"]["text"] for b in view["blocks"] if b["type"] == "input"]
    assert "0.01 = 1%" in hints[0] and "above 0.002" in hints[0]
    assert "0.01 = 1%" in hints[1] and "above 0.01" in hints[1]
    assert "*5% canary*" in shown and "[Evaluate gate]" in shown
    sample = view["blocks"][-1]
    assert sample["optional"] and not sample["element"]["is_decimal_allowed"]
    assert len(view["title"]["text"]) <= 24


def test_the_desktop_modal_asks_for_no_error_rate() -> None:
    view = figures_modal(canary_observing(), PLAN, "desktop", "internal")
    ids = [b.get("block_id") for b in view["blocks"] if b["type"] == "input"]

    assert ids == [CRASH_RATE_BLOCK, SAMPLE_BLOCK]
    assert "trips the kill-switch above 0.002" in view["blocks"][1]["hint"]["text"]


def test_the_modal_names_the_window_a_reopened_gate_reads() -> None:
    """A window opened again two hours after it closed (a missed gate extended by hand) reads
    its latest stretch, not the hours since the deploy: the modal asks for the figures of
    that stretch, not of the hours a person would average the failing last half hour into."""
    rollout = canary_observing()
    canary = rollout.track("relay").stage("canary")
    assert canary.window_started_at is not None
    later = NOW + timedelta(hours=2)
    reopened = replace(canary, observed_from=later, window_ends_at=later + timedelta(minutes=45))
    view = figures_modal(
        rollout.with_track(rollout.track("relay").with_stage(reopened)), PLAN, "relay", "canary"
    )
    shown = render_view(view)

    assert f"Window: {slack_time(later)} to {slack_time(later + timedelta(minutes=45))}" in shown


def submitted(**figures: str | None) -> dict[str, Any]:
    """A view.state.values as Slack sends it: every input block, empty ones with value None."""
    return {
        block: {FIGURE_ACTION: {"type": "number_input", "value": value}}
        for block, value in figures.items()
    }


def test_valid_figures_parse_to_decimals() -> None:
    figures, errors = parse_figures(submitted(crash_rate="1e-3", error_rate="0.004", sample="2500"))
    assert errors == {}
    assert figures == Figures(Decimal("0.001"), Decimal("0.004"), 2500)

    figures, errors = parse_figures(submitted(crash_rate="0", sample=None))
    assert (figures, errors) == (Figures(Decimal(0), None, None), {})


@pytest.mark.parametrize(
    ("values", "block", "words"),
    [
        (submitted(crash_rate="abc", sample=None), CRASH_RATE_BLOCK, "is not a decimal number"),
        (submitted(crash_rate="nan", sample=None), CRASH_RATE_BLOCK, "is not finite"),
        (submitted(crash_rate="-1", sample=None), CRASH_RATE_BLOCK, "is negative"),
        (submitted(crash_rate=None, sample=None), CRASH_RATE_BLOCK, "is empty"),
        (submitted(crash_rate="", sample=None), CRASH_RATE_BLOCK, "is empty"),
        (submitted(sample=None), CRASH_RATE_BLOCK, "is empty"),
        (submitted(crash_rate="1.5", sample=None), CRASH_RATE_BLOCK, "0.01 = 1%"),
        (submitted(crash_rate="9" * 500, sample=None), CRASH_RATE_BLOCK, "too long"),
        (submitted(crash_rate="0.001", error_rate=None), ERROR_RATE_BLOCK, "is empty"),
        (submitted(crash_rate="0.001", error_rate="inf"), ERROR_RATE_BLOCK, "is not finite"),
        (submitted(crash_rate="0.001", sample="12.5"), SAMPLE_BLOCK, "not a whole number"),
        (submitted(crash_rate="0.001", sample="-3"), SAMPLE_BLOCK, "not a whole number"),
    ],
)
def test_bad_figures_are_refused_under_their_input(
    values: dict[str, Any], block: str, words: str
) -> None:
    figures, errors = parse_figures(values)

    assert figures is None
    assert list(errors) == [block]
    assert words in errors[block]
    assert len(errors[block]) < 200


def test_every_bad_figure_is_reported_at_once() -> None:
    _, errors = parse_figures(submitted(crash_rate="abc", error_rate="-0.1", sample="x"))
    assert set(errors) == {CRASH_RATE_BLOCK, ERROR_RATE_BLOCK, SAMPLE_BLOCK}

"""A rollout's saved plan with thresholds that plan files now refuse: the gate holds (as it
does on a figures file's baseline whose limit no crash rate exceeds, naming the file).

Plan files refuse an error threshold of 1 or more (`1` meant as 1%), -0 and a baseline crash
rate above 1 (`2` meant as 2%); a rollout saved before keeps its plan. Its gate never PASSes on
such a figure (1 is 100%: no error rate exceeds it; twice 2 is a limit no crash rate reaches)
and never crashes on -0: it holds, INCONCLUSIVE, naming the saved figure, unless a rule it can
apply fails. The card and its Roll back keep working.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sandbox_views as views
import yaml
from figures import RELAY_OK, RINGS_OK
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

from bot.adapters.slack.messages import render
from bot.domain.gate import GateReason, GateVerdict, Verdict
from bot.domain.gate_report import metric_rows, verdict_reason
from bot.domain.plan import STORED_PLAN, RolloutPlan
from bot.domain.rollout import StageState, TrackState
from bot.domain.rollout.events import GateInconclusive
from bot.plan_file import load_plan
from sandbox.harness import Sandbox, fast_plan, write_figures
from storage.db import create_engine
from storage.models import RolloutRow

D = Decimal
PASSING = {"baseline_crash": D("0.001"), "current_crash": D("0.001"), "sample": 5000}


def saved_plan(**thresholds: str) -> RolloutPlan:
    """The built-in plan as a rollout saved it, with the relay's and desktop's `thresholds`
    (and `baseline_crash_rate`, of their metrics)."""
    data: dict[str, Any] = load_plan(None).model_dump(mode="json", by_alias=True)
    for track in data["tracks"].values():
        for key, value in thresholds.items():
            if key == "baseline_crash_rate":
                track["metrics"][key] = value
            elif key != "error_threshold" or track["gate"] == "relay":
                track["thresholds"][key] = value
    return RolloutPlan.model_validate(data, context=STORED_PLAN)


def held_on_the_saved_plan(verdict: GateVerdict) -> str:
    """The summary of a gate held INCONCLUSIVE on a saved plan's unusable threshold."""
    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.UNUSABLE_THRESHOLD,
    )
    said = verdict_reason(verdict, metric_rows(verdict, None))
    assert said.startswith("Holding: the plan this rollout was saved with has")
    return verdict.summary


@pytest.mark.parametrize(
    ("thresholds", "error", "named"),
    [
        # 50% errors: 1 (meant as 1%) is 100%, and the gate used to PASS them.
        ({"error_threshold": "1"}, "0.5", "error_threshold 1, which is 100%: an error rate never"),
        ({"error_threshold": "5"}, "0.5", "error_threshold 5, which is 500%: an error rate never"),
        ({"error_threshold": "-0"}, "0.5", "error_threshold -0, which is negative"),
        ({"crash_multiplier": "-0"}, "0.005", "crash_multiplier -0, which is negative"),
    ],
)
def test_a_saved_unusable_threshold_holds_the_gate_naming_it(
    thresholds: dict[str, str], error: str, named: str
) -> None:
    relay = saved_plan(**thresholds).track("relay")

    verdict = relay.evaluate_gate(current_error=D(error), **PASSING)

    assert named in held_on_the_saved_plan(verdict) and "fix the plan" in verdict.summary


@pytest.mark.parametrize("track", ["relay", "desktop"])
def test_a_saved_baseline_above_one_holds_the_gate_naming_it(track: str) -> None:
    """`baseline_crash_rate: 2` meant as 2%: twice 2 is a limit no crash rate reaches, so a
    crash rate of 3% (1.5 times 2%) used to PASS. Plan files refuse it; a saved plan holds."""
    plan_track = saved_plan(baseline_crash_rate="2").track(track)
    crashing = {"baseline_crash": D("2"), "current_crash": D("0.03"), "sample": 5000}

    verdict = plan_track.evaluate_gate(current_error=D("0"), **crashing)

    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.UNUSABLE_THRESHOLD,
    )
    assert (verdict.baseline_crash, verdict.crash_limit) == (D("2"), None)
    assert "baseline_crash_rate 2, which is 200%" in verdict.summary
    said = verdict_reason(verdict, metric_rows(verdict, None))
    assert said.startswith("Holding: the plan this rollout was saved with has baseline_crash_rate")


def test_a_saved_baseline_above_one_still_rolls_back_on_the_error_rate() -> None:
    relay = saved_plan(baseline_crash_rate="2").track("relay")
    verdict = relay.evaluate_gate(
        baseline_crash=D("2"), current_crash=D("0.001"), current_error=D("0.5"), sample=5000
    )
    assert (verdict.verdict, verdict.reason) == (Verdict.ROLLBACK, GateReason.ERROR_RATE)
    assert verdict.baseline_crash == D("2")


@pytest.mark.parametrize(
    ("track", "baseline", "named"),
    [
        ("relay", "1", "baseline_crash_rate 1, which times crash_multiplier 2 is a limit of 200%"),
        ("desktop", "0.5", "baseline_crash_rate 0.5, which times crash_multiplier 2 is a limit "),
    ],
)
def test_a_saved_baseline_whose_limit_no_crash_rate_exceeds_holds_the_gate(
    track: str, baseline: str, named: str
) -> None:
    """`baseline_crash_rate: 1` meant as 1%: twice 100% is a limit no crash rate exceeds, so
    every session crashing used to PASS. Plan files refuse it; a plan saved before is still
    read, and its gate holds instead of deciding on it."""
    plan_track = saved_plan(baseline_crash_rate=baseline).track(track)
    crashing = {"baseline_crash": D(baseline), "current_crash": D(1), "sample": 5000}

    verdict = plan_track.evaluate_gate(current_error=D("0"), **crashing)

    summary = held_on_the_saved_plan(verdict)
    assert named in summary and "no crash rate exceeds it" in summary


def test_a_plan_file_refuses_a_baseline_above_one() -> None:
    data: dict[str, Any] = load_plan(None).model_dump(mode="json", by_alias=True)
    data["tracks"]["relay"]["metrics"]["baseline_crash_rate"] = "2"
    with pytest.raises(ValueError, match="is below 1"):
        RolloutPlan.model_validate(data)


@given(
    baseline=st.decimals(min_value=D("1.0001"), max_value=100, places=4),
    crash=st.decimals(min_value=0, max_value=1, places=4),
)
def test_a_saved_baseline_above_one_never_passes(baseline: Decimal, crash: Decimal) -> None:
    for track in ("relay", "desktop"):
        verdict = (
            saved_plan(baseline_crash_rate=str(baseline))
            .track(track)
            .evaluate_gate(
                baseline_crash=baseline, current_crash=crash, current_error=D("0"), sample=5000
            )
        )
        assert verdict.verdict is not Verdict.PASS


def test_a_saved_negative_zero_multiplier_holds_the_desktop_gate() -> None:
    desktop = saved_plan(crash_multiplier="-0").track("desktop")
    verdict = desktop.evaluate_gate(**PASSING)
    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.UNUSABLE_THRESHOLD,
    )


def test_a_rule_the_gate_can_still_apply_rolls_back() -> None:
    """The crash ratio does not depend on the error threshold, nor the error rule on the
    multiplier: either one failing rolls back, with the figures as saved on the card."""
    relay = saved_plan(error_threshold="1").track("relay")
    verdict = relay.evaluate_gate(
        baseline_crash=D("0.001"), current_crash=D("0.01"), current_error=D("0.5"), sample=5000
    )
    assert (verdict.verdict, verdict.reason) == (Verdict.ROLLBACK, GateReason.CRASH_RATE)
    assert (verdict.error_threshold, verdict.current_error) == (1, D("0.5"))
    relay = saved_plan(crash_multiplier="-0").track("relay")
    verdict = relay.evaluate_gate(current_error=D("0.5"), **PASSING)
    assert (verdict.verdict, verdict.reason) == (Verdict.ROLLBACK, GateReason.ERROR_RATE)


RATES = st.decimals(min_value=0, max_value=1, places=4)


@given(
    threshold=st.sampled_from(["1", "1.5", "100", "-0"]),
    crash=RATES,
    error=RATES,
    baseline=RATES,
)
def test_a_saved_unusable_error_threshold_never_passes(
    threshold: str, crash: Decimal, error: Decimal, baseline: Decimal
) -> None:
    relay = saved_plan(error_threshold=threshold).track("relay")
    verdict = relay.evaluate_gate(
        baseline_crash=baseline, current_crash=crash, current_error=error, sample=5000
    )
    assert verdict.verdict is not Verdict.PASS


async def dispatched_until_held(box: Sandbox, said: str) -> tuple[GateVerdict, str]:
    """Dispatch the rollout started; once its canary holds on an unusable limit, the stored
    verdict and the thread's reply that contains `said`."""
    await box.wait_for_button("dispatch")
    await box.click("dispatch")
    held = await views.held(box, "relay", "canary")
    verdict = held.track("relay").stage("canary").verdict
    assert verdict is not None and verdict.reason is GateReason.UNUSABLE_THRESHOLD
    return verdict, await box.wait_for_thread(said)


async def test_a_rollout_saved_with_error_threshold_1_holds_and_rolls_back(
    tmp_path: Path, database_url: str
) -> None:
    """End to end: the canary's error rate is 50%. The rollout's saved plan says 1 (meant as
    1%): the gate holds, the thread says why, and Roll back still works."""
    plan_yaml = fast_plan(tmp_path / "figures.yml", window="1s", extension="1s")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan_yaml) as box:
        canary = {**RELAY_OK["canary"], "error_rate": "0.5"}
        write_figures(box.figures, "relay", {**RELAY_OK, "canary": canary})
        write_figures(box.figures, "desktop", RINGS_OK)
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
        started = await box.wait_until(lambda r: r.tag == "v1.4.2")
        saved = yaml.safe_load(plan_yaml)
        saved["tracks"]["relay"]["thresholds"]["error_threshold"] = "1"
        stored = RolloutPlan.model_validate(saved, context=STORED_PLAN)
        engine = create_engine(box.database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    update(RolloutRow)
                    .where(RolloutRow.id == started.id)
                    .values(plan=stored.model_dump(mode="json", by_alias=True))
                )
        finally:
            await engine.dispose()
        _, told = await dispatched_until_held(box, "No gate decides on an unusable limit")
        assert "error_threshold 1, which is 100%" in told
        assert await views.value_of(box, "promote", "relay")  # the card is drawn

        await box.command("rollback")

        stopped = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        assert stopped.track("relay").stage("canary").state is StageState.STOPPED


async def test_a_figures_files_baseline_whose_limit_no_crash_rate_exceeds_names_the_file(
    tmp_path: Path, database_url: str
) -> None:
    """The static source's figures file (read at every gate) says `baseline_crash_rate: 0.6`
    (meant as 0.6%): times 2 it is a limit of 120%. The plan is not at fault: the gate holds
    and the thread and the stored verdict name the figures file, and how to mend it."""
    plan_yaml = fast_plan(tmp_path / "figures.yml", window="1s", extension="1s")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan_yaml) as box:
        write_figures(box.figures, "relay", RELAY_OK, baseline="0.6")
        write_figures(box.figures, "desktop", RINGS_OK)
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
        verdict, told = await dispatched_until_held(box, "gate INCONCLUSIVE")

    named = (
        "the figures file has baseline_crash_rate 0.6, which times crash_multiplier 2 is a limit"
    )
    assert named in told and "Re-evaluate now" in told and "plan" not in told
    said = verdict_reason(verdict, metric_rows(verdict, None))
    assert said.startswith(f"Holding: {named}")


def test_an_inconclusive_event_stored_before_its_reason_reads_as_before() -> None:
    old = GateInconclusive("5% canary", "sample 3")
    assert old.reason is None
    assert "Not enough data for a verdict" in render(old)

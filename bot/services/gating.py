"""Gating a stage: reading and judging its figures, typed figures, taking its verdict.

A stage observes for its window; when it ends (`bot.services.window_ends`) the gate reads the
figures from the track's metrics source (or the approvers are asked for them, the `manual`
source), judges them, and the machine holds or promotes the stage on the verdict.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.domain import rollout as machine
from bot.domain.controls import typed_for_another_window
from bot.domain.freeze import Freeze
from bot.domain.gate import GateVerdict, Verdict
from bot.domain.metrics import (
    Figures,
    Reading,
    baseline_sample_detail,
    gate_windows,
)
from bot.domain.plan import PromoteMode, RolloutPlan, Track, settle_of
from bot.domain.rollout import (
    InvalidTransition,
    Rollout,
    Stage,
    StageState,
)
from bot.services.effects import EffectRunner
from bot.services.following import RunFollower
from bot.services.freeze_ends import watch_after_hold, watch_freeze_end
from bot.services.gate_reads import read_gate
from bot.services.outbox_messages import gate_card
from bot.services.ports import MetricsSources
from bot.services.records import NewAuditEvent, metrics_actor
from bot.services.words import Words

log = logging.getLogger(__name__)


class PromotionFreeze(Protocol):
    """The freeze that holds a rollout's automatic promotions now, or None
    (`bot.services.lane.ReleaseLane.holds_promotion`)."""

    async def __call__(self, *, rollout_id: str) -> Freeze | None: ...


class Gate:
    """Closes windows, reads and judges figures (a Re-evaluate's: `bot.services.reevaluations`)."""

    def __init__(
        self, effects: EffectRunner, follower: RunFollower, *, sources: MetricsSources
    ) -> None:
        self._effects = effects
        self._follower = follower
        self._sources = sources
        self._frozen: PromotionFreeze | None = None

    def frozen_with(self, frozen: PromotionFreeze) -> None:
        """Who says whether a freeze holds a `promote: auto` stage (the lane); wired by
        `bot.wiring` (without it, nothing holds one)."""
        self._frozen = frozen

    async def take(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        *,
        track: str,
        stage: str,
        judged: tuple[GateVerdict, Reading],
    ) -> None:
        """Apply the verdict read from the track's source (`read`) to the stage evaluating."""
        verdict, reading = judged
        held = await self.freeze_holding(rollout, plan, track=track, stage=stage, verdict=verdict)
        actor = metrics_actor(reading.source)
        await self.decide(
            rollout,
            plan,
            track=track,
            stage=stage,
            verdict=verdict,
            held=held,
            actor=actor,
            reading=reading,
        )

    async def read(
        self, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str
    ) -> tuple[GateVerdict, Reading] | None:
        """The gate's verdict and the reading it was decided on, read from the track's source
        now (None: a person types the figures, the `manual` source)."""
        plan_track = plan.track(track)
        return await read_gate(
            self._sources(plan_track.metrics),
            plan_track,
            gate_windows(
                rollout,
                track=track,
                stage=stage,
                now=self._effects.clock(),
                settle=settle_of(plan_track.metrics),
            ),
        )

    async def submit_figures(
        self,
        *,
        rollout_id: str,
        track: str,
        stage: str,
        figures: Figures,
        actor: str,
        window: int | None = None,
    ) -> None:
        """An approver typed the observed rates of a stage (manual metrics), in a form opened
        for the evaluation `window` names (`FiguresMetadata.window`); figures for another
        window than the one asked now are refused, nothing judged."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            if rollout.track(track).stage(stage).state is not StageState.EVALUATING:
                raise InvalidTransition(
                    "Those figures are no longer asked for: the gate already decided."
                )
            plan = await effects.plan_of(rollout)
            plan_track = plan.track(track)
            _same_window(
                effects.words, rollout, plan_track, track=track, stage=stage, window=window
            )
            verdict = plan_track.evaluate_gate(
                baseline_crash=plan_track.metrics.baseline_crash_rate,
                current_crash=figures.crash_rate,
                current_error=figures.error_rate,
                sample=figures.sample,
            )
            held = await self.freeze_holding(
                rollout, plan, track=track, stage=stage, verdict=verdict
            )
            await self.decide(
                rollout, plan, track=track, stage=stage, verdict=verdict, held=held, actor=actor
            )
            await self._follower.reconcile_locked(rollout_id)

    async def decide(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        *,
        track: str,
        stage: str,
        verdict: GateVerdict,
        held: Freeze | None,
        actor: str,
        reading: Reading | None = None,
    ) -> None:
        """Apply `verdict`; `held`: the freeze that holds the stage's automatic promotion
        (`_freeze_holding`, read by the caller before anything is saved)."""
        effects = self._effects
        late = reading.late if reading is not None else None
        # Recorded with the verdict's save: a replica that dies before it, or loses the save
        # to another replica, leaves no reading on record, and the retry's is the only one.
        event = gate_event(effects, actor, rollout, verdict, reading, track=track, stage=stage)
        now = effects.clock()
        decision = machine.gate_evaluated(
            rollout,
            plan,
            track=track,
            stage=stage,
            verdict=verdict,
            now=now,
            late=late,
            frozen=held,
        )
        # When the stage took the verdict, the thread shows the figures behind it.
        shown = gate_card(rollout, track=track, stage=stage, verdict=verdict, reading=reading)
        left = effects.left_events(actor, "gate", rollout, decision)
        # The freeze's end is watched before the stage is saved held: a fault between the two
        # would leave it held and unwatched for good (a retry finds it decided). A watch whose
        # hold was never saved tells nothing when it fires (`bot.services.freeze_ends`).
        holding = held is not None and decision.rollout.track(track).stage(stage).state is (
            StageState.HOLDING
        )
        if held is not None and holding:
            await watch_freeze_end(effects, decision.rollout, held)
        saved = await effects.apply(
            rollout,
            decision,
            plan,
            also=[shown] if decision.effects else [],
            audit=[event, *left],
        )
        if held is not None and holding:
            await watch_after_hold(effects, saved, held, hold=f"{track}:{stage}")
        effects.telemetry.gate_decided(
            service=rollout.service, track=track, verdict=verdict.verdict.value
        )

    async def freeze_holding(
        self, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str, verdict: GateVerdict
    ) -> Freeze | None:
        """The freeze that holds this stage's automatic promotion (read only when a PASS would
        promote it: a `promote: auto` stage)."""
        observe = plan.track(track).stage(stage).observe
        auto = observe is not None and observe.promote is PromoteMode.AUTO
        if self._frozen is None or not auto or verdict.verdict is not Verdict.PASS:
            return None
        return await self._frozen(rollout_id=rollout.id)


def gate_event(
    effects: EffectRunner,
    actor: str,
    rollout: Rollout,
    verdict: GateVerdict,
    reading: Reading | None,
    *,
    track: str,
    stage: str,
    interim: bool = False,
) -> NewAuditEvent:
    """The audit entry of a gate's verdict and the figures behind it (`interim`: a Re-evaluate
    of a stage still observing, whose window runs on)."""
    late = reading.late if reading is not None else None
    detail: dict[str, Any] = {
        **machine.verdict_to_json(verdict),
        **baseline_sample_detail(reading),
        **machine.late_to_json(late),
    }
    if interim:
        detail["interim"] = True
    return effects.event(
        actor, "gate", verdict.verdict.value, rollout, detail, track=track, stage=stage
    )


def still_evaluating(stage: Stage, asked: Stage) -> bool:
    """Whether `stage`, as stored now, still evaluates the window it was saved evaluating
    (`asked`): else a stop, another gate or an extension decided it meanwhile."""
    window = (stage.window_ends_at, stage.observed_from)
    return stage.state is StageState.EVALUATING and window == (
        asked.window_ends_at,
        asked.observed_from,
    )


def _same_window(
    words: Words, rollout: Rollout, plan_track: Track, *, track: str, stage: str, window: int | None
) -> None:
    """Raises, saying which window is asked now, when the figures' form was opened for
    another (`typed_for_another_window`)."""
    observed = rollout.track(track).stage(stage)
    first = plan_track.stage(stage).window
    if not typed_for_another_window(observed, first, window):
        return
    time = words.slack_time
    since, ends = observed.observed_since, observed.window_ends_at
    asked = f"{time(since)} to {time(ends)}" if since and ends else "another window"
    if window is None:
        opened = (
            "That form was opened by the previous version of the bot and does not say which "
            "window its figures are for, and the window has moved since"
        )
    else:
        ended = f"ending {time(_epoch(window))}" if window else "with no end"
        opened = f"Those figures were typed for the window {ended}"
    raise InvalidTransition(
        f"{opened}: the gate now asks for the figures of {asked}. Nothing was judged: "
        "open the form again from the Enter figures button in the thread, for this window."
    )


def _epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)

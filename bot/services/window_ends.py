"""A stage's window ends: its durable timer closes it, and the gate judges its figures.

The stage is saved evaluating under the rollout's lock; its figures are read from the track's
metrics source after the lock is let go, and the verdict is taken under it again only if the
stage still evaluates that window: a person's stop never waits for a slow source, and a stop
saved meanwhile is never overridden. A timer that gives up holds the stage, saying why.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.domain import rollout as machine
from bot.domain.plan import RolloutPlan, settle_of
from bot.domain.reasons import Reason
from bot.domain.rollout import Decision, ReadMetrics, Rollout
from bot.logs import rollout_context
from bot.services.effects import WINDOW_TIMER, EffectRunner
from bot.services.following import RunFollower
from bot.services.gating import Gate, still_evaluating
from bot.services.outbox_messages import figures_request
from bot.services.records import BOT, Timer
from bot.services.reevaluations import Reevaluations

log = logging.getLogger(__name__)


class WindowEnds:
    """Fires the windows' timers (`bot.services.rollouts` hands it their kind)."""

    def __init__(self, effects: EffectRunner, follower: RunFollower, gate: Gate) -> None:
        self._effects = effects
        self._follower = follower
        self._gate = gate

    async def on_timer(self, timer: Timer) -> None:
        """A durable timer fired (on one replica; again after a failure, later): it closes the
        window it was scheduled for. The stage is saved evaluating under the rollout's lock,
        its figures read after (`_evaluate_unlocked`): a stop never waits for them."""
        window = _window(timer)
        if window is None:
            log.warning("ignoring timer %s of kind %s", timer.key, timer.kind)
            return
        effects = self._effects
        rollout_id, track, stage, ends = window

        async def close_window() -> tuple[Rollout, RolloutPlan] | None:
            rollout, plan = await effects.with_plan(rollout_id)
            decision = machine.window_ended(rollout, track=track, stage=stage, due_at=ends)
            if not decision.effects:  # a stale timer: moved, stopped, done
                return None
            # Its gate runs now (the figures are read outside the lock): nothing else to do.
            assert decision.effects == (ReadMetrics(track, stage),), decision.effects
            evaluating = await effects.apply(rollout, Decision(decision.rollout), plan)
            # A Re-evaluate's backstop (`bot.services.backstops`) closes no window on time or
            # late: the stage's window ended before the click.
            if timer.key == machine.window_timer_key(rollout_id, track, stage, ends):
                due = ends + settle_of(plan.track(track).metrics)
                effects.telemetry.window_closed(lateness=effects.clock() - due)
            return evaluating, plan

        with rollout_context(rollout_id):
            async with effects.lock(rollout_id):
                closed = await effects.serialised(rollout_id, close_window)
            if closed is not None:
                await self._evaluate_unlocked(*closed, ReadMetrics(track, stage))
            await self._follower.reconcile(rollout_id)

    async def _evaluate_unlocked(
        self, rollout: Rollout, plan: RolloutPlan, read: ReadMetrics
    ) -> None:
        """Read the figures of the stage `rollout` was saved evaluating, without its lock; judge
        them under it on the rollout as stored then, if its stage still evaluates that window
        (else a stop or a Re-evaluate decided it meanwhile: the reading is dropped)."""
        effects = self._effects
        judged = await self._gate.read(rollout, plan, track=read.track, stage=read.stage)
        if judged is None:
            await effects.outbox.send(
                [figures_request(rollout, track=read.track, stage=read.stage)]
            )
            return
        track, key = read.track, read.stage
        asked = rollout.track(track).stage(key)

        async def take() -> None:
            current = await effects.get(rollout.id)
            if not still_evaluating(current.track(track).stage(key), asked):
                log.info("the gate of %s was decided while its figures were read", key)
                return
            await self._gate.take(current, plan, track=track, stage=key, judged=judged)

        async with effects.lock(rollout.id):
            await effects.serialised(rollout.id, take)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """A window timer gave up (dead-lettered): hold the stage whose gate never ran, and
        tell the thread why, so the window is not silently dropped."""
        window = _window(timer)
        if window is None:
            return
        effects = self._effects
        rollout_id, track, stage, ends = window

        async def hold() -> None:
            rollout = await effects.get(rollout_id)
            plan = await effects.plan_of(rollout)
            decision = machine.window_timer_dead(
                rollout,
                plan,
                track=track,
                stage=stage,
                due_at=ends,
                attempts=timer.attempts,
                reason=reason,
            )
            why = reason.detail()
            event = effects.event(
                BOT, "window_timer", "dead", rollout, why, track=track, stage=stage
            )
            held = decision.rollout != rollout
            await effects.apply(rollout, decision, plan, audit=[event] if held else [])

        async with effects.lock(rollout_id):
            with rollout_context(rollout_id):
                await effects.serialised(rollout_id, hold)


class EarlyGates:
    """Fires failing verdicts' backstops (`EARLY_GATE_TIMER`, `bot.services.backstops`)."""

    def __init__(self, reevaluations: Reevaluations) -> None:
        self._reevaluations = reevaluations

    async def on_timer(self, timer: Timer) -> None:
        """The gate of a stage whose window still ran at a Re-evaluate's failing verdict runs
        again, and takes only a failing verdict (`Reevaluations.take_failing`)."""
        window = _window(timer, kind=machine.EARLY_GATE_TIMER)
        if window is None:
            log.warning("ignoring timer %s of kind %s", timer.key, timer.kind)
            return
        rollout_id, track, stage, ends = window
        with rollout_context(rollout_id):
            await self._reevaluations.take_failing(
                rollout_id=rollout_id, track=track, stage=stage, ends=ends
            )

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """It gave up: the window's own timer still gates the stage at its end."""
        log.error("early gate %s gave up; the window's own timer gates it at its end", timer.key)


def _window(timer: Timer, *, kind: str = WINDOW_TIMER) -> tuple[str, str, str, datetime] | None:
    """The rollout, track, stage and window end a window timer (or another timer of `kind`
    carrying a window timer's payload) closes (None: not such a timer). The end is as stored
    when it was scheduled (a retry moves only its due time); window timers of earlier versions
    carry it in their key alone."""
    if timer.kind != kind or timer.rollout_id is None or timer.payload is None:
        return None
    rollout_id = timer.rollout_id
    track, stage = str(timer.payload["track"]), str(timer.payload["stage"])
    stored = timer.payload.get("window_ends_at")
    if stored is None:
        stored = timer.key.removeprefix(f"window:{rollout_id}:{track}:{stage}:")
    return rollout_id, track, stage, datetime.fromisoformat(str(stored))

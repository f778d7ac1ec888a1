"""Re-evaluate now: a stage's gate run again on request, and a failing verdict's backstop.

`bot.domain.controls.reevaluation` defines what a fresh verdict does to the stage; the stage
is saved evaluating, then its verdict taken (`Gate.decide`), each backstopped by a timer
written first (`bot.services.backstops`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from bot.domain import rollout as machine
from bot.domain.controls import not_reevaluable, reevaluation
from bot.domain.errors import ConcurrentChange
from bot.domain.freeze import Freeze
from bot.domain.gate import GateVerdict, Verdict
from bot.domain.metrics import Reading
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Decision, InvalidTransition, Reevaluated, Rollout, Stage
from bot.services.acting import put_back
from bot.services.backstops import verdict_unsaved, write_backstop
from bot.services.effects import EffectRunner
from bot.services.following import RunFollower
from bot.services.gating import Gate, gate_event, still_evaluating
from bot.services.records import metrics_actor

REREADS = 2
"""How many times a Re-evaluate reads the figures again when its track changed while they were
read (a stop, a look's save), before it is refused."""


class Reevaluations:
    """Runs a stage's gate again: on a person's Re-evaluate, and at a failing verdict's
    backstop (`bot.services.window_ends.EarlyGates`)."""

    def __init__(self, effects: EffectRunner, follower: RunFollower, gate: Gate) -> None:
        self._effects = effects
        self._follower = follower
        self._gate = gate

    async def reevaluate(self, *, actor: str, rollout_id: str, track: str) -> Rollout:
        """Re-evaluate now: read the current stage's figures again and apply the gate as
        `bot.domain.controls.reevaluation` defines (a held stage takes the new verdict; an
        observed one only stops early on a failing verdict, never promotes early)."""
        effects = self._effects
        for turn in range(REREADS, -1, -1):
            # Read without the rollout's lock: a metrics source slow to answer (its retries
            # and timeouts) never holds a person's Kill-switch or Roll back. A track with no
            # gate to run (stopped meanwhile) is refused under the lock, nothing read.
            read, plan = await effects.with_plan(rollout_id)
            stage = read.track(track).current
            judged = None
            if stage is not None and not_reevaluable(read, plan, track=track) is None:
                judged = await self._gate.read(read, plan, track=track, stage=stage.key)
            async with effects.lock(rollout_id):
                rollout = await effects.get(rollout_id)
                unchanged = rollout.track(track) == read.track(track)
                if unchanged or not_reevaluable(rollout, plan, track=track) is not None:
                    return await self._reevaluate(actor, rollout, plan, track, judged)
                if not turn:
                    message = (
                        f"{plan.track(track).label} changed while its figures were read, again "
                        "and again: nothing was judged. Press Re-evaluate again."
                    )
                    await effects.refuse(actor, "reevaluate", rollout, message, track=track)
                    raise InvalidTransition(message)
        raise AssertionError("the last turn judges or refuses")

    async def _reevaluate(
        self,
        actor: str,
        rollout: Rollout,
        plan: RolloutPlan,
        track: str,
        judged: tuple[GateVerdict, Reading] | None,
    ) -> Rollout:
        """`reevaluate` on the figures `judged` (read without the lock), the lock held and the
        track still as it was when they were read (or with no gate to run now)."""
        effects, rollout_id = self._effects, rollout.id
        stage = rollout.track(track).current
        message = not_reevaluable(rollout, plan, track=track)
        if message is None and judged is None:
            message = (
                f"{plan.track(track).label} has no gate to re-evaluate from a metrics source "
                "(figures entered by hand are asked in the thread when a window ends)."
            )
        if message is not None:
            await effects.refuse(actor, "reevaluate", rollout, message, track=track)
            raise InvalidTransition(message)
        assert stage is not None and judged is not None
        verdict, reading = judged
        ready = reevaluation(rollout, plan, track=track, verdict=verdict, now=effects.clock())
        if ready is None:
            event = gate_event(
                effects,
                actor,
                rollout,
                verdict,
                reading,
                track=track,
                stage=stage.key,
                interim=True,
            )
            plan_track = plan.track(track)
            shown = Reevaluated(
                actor,
                plan_track.label,
                plan_track.stage(stage.key).label,
                verdict.verdict,
                verdict.summary,
                stage.window_ends_at,
                reading.late,
            )
            # A new card version: Re-evaluate may be clicked again for a later reading.
            return await effects.redraw(rollout, saying=shown, audit=[event])
        # The lane is read before the stage is saved evaluating: a read that fails leaves
        # the stage as it was (held, its Promote shown), not evaluating with no gate.
        held = await self._gate.freeze_holding(
            rollout, plan, track=track, stage=stage.key, verdict=verdict
        )
        backstop = await write_backstop(effects, rollout, plan, track=track, stage=stage)
        readied = partial(self._take_readied, rollout, plan, ready, track=track, stage=stage)
        unsaved = partial(
            verdict_unsaved, effects, plan, track=track, stage=stage.key, backstop=backstop
        )
        await readied(judged=judged, held=held, actor=actor, unsaved=unsaved)
        return await effects.get(rollout_id)

    async def take_failing(
        self, *, rollout_id: str, track: str, stage: str, ends: datetime
    ) -> None:
        """A failing verdict's backstop fired (`bot.services.backstops`): the gate of `stage`,
        whose window ends at `ends`, runs again as Re-evaluate runs it, and only a failing
        verdict is taken (a PASS or INCONCLUSIVE waits for the window's own timer). A track saved
        while its figures were read, or other replicas' saves winning every try, raise
        `ConcurrentChange`: the timer is retried."""
        effects = self._effects
        read, plan = await effects.with_plan(rollout_id)
        if not machine.early_gate_stands(read, track=track, stage=stage, ends_at=ends):
            return  # decided, extended or moved on since the click
        # Read without the rollout's lock, as Re-evaluate reads: a slow metrics source never
        # holds a person's Kill-switch or Roll back.
        judged = await self._gate.read(read, plan, track=track, stage=stage)
        if judged is None or judged[0].verdict in (Verdict.PASS, Verdict.INCONCLUSIVE):
            return
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            if rollout.track(track) != read.track(track):
                if not machine.early_gate_stands(rollout, track=track, stage=stage, ends_at=ends):
                    return
                raise ConcurrentChange(f"{rollout_id} saved while read", rollout_id=rollout_id)
            verdict, reading = judged
            ready = reevaluation(rollout, plan, track=track, verdict=verdict, now=effects.clock())
            assert ready is not None  # a failing verdict on a stage observing or evaluating
            current = rollout.track(track).stage(stage)
            readied = partial(self._take_readied, rollout, plan, ready, track=track, stage=current)
            await readied(judged=judged, held=None, actor=metrics_actor(reading.source))

    async def _take_readied(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        ready: Decision,
        *,
        track: str,
        stage: Stage,
        judged: tuple[GateVerdict, Reading],
        held: Freeze | None,
        actor: str,
        unsaved: Callable[..., ConcurrentChange] | None = None,
    ) -> None:
        """Save `stage` evaluating (`ready`, from `reevaluation`), then take the verdict on it
        (`judged`), as Re-evaluate does. Raises `ConcurrentChange` when another replica saved
        the rollout first (then nothing was saved), or when other replicas' saves won every try
        to save the verdict (then the stage was saved evaluating: raised as `unsaved` makes it,
        if given)."""
        effects = self._effects
        evaluating = await effects.apply(rollout, ready, plan)
        put_back()  # readied for the verdict, not judged: the click's effect is not done yet
        asked, latest = evaluating.track(track).stage(stage.key), [evaluating]
        verdict, reading = judged
        gate = self._gate
        decide = partial(gate.decide, plan=plan, track=track, stage=stage.key, verdict=verdict)

        async def judge() -> None:
            # Another replica's save since the stage was saved evaluating: the verdict is
            # taken again on its state, while the stage still evaluates that window. A held
            # stage's only timer left is this click's backstop, minutes away.
            current = latest.pop() if latest else await effects.get(rollout.id)
            if not still_evaluating(current.track(track).stage(stage.key), asked):
                return
            await decide(current, held=held, actor=actor, reading=reading)

        try:
            await effects.serialised(rollout.id, judge)
        except ConcurrentChange as lost:
            if unsaved is None:
                raise
            raise unsaved(lost=lost) from lost
        await self._follower.settle(rollout.id)

"""A person's stop of a rollout under way: a Roll back of its relay-gated tracks, or the
Kill-switch of its desktop-gated ones.

Every track of the gate still running stops; one that completed or already stopped never keeps
another from stopping, and the thread is told what a stop did not stop. A stage saved as
deploying may still be held by GitHub (the bot's approval of it failed): the stop is saved
first, then the run is read, and a stage GitHub still holds is rejected; a last stage GitHub
deploys cannot be stopped, and its stop is refused (`bot.domain.rollout.abort`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from bot.domain import rollout as machine
from bot.domain.controls import Control
from bot.domain.errors import ConcurrentChange, GitHubError
from bot.domain.gate import GateKind
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Announce,
    Decision,
    Effect,
    InvalidTransition,
    Rollout,
    StageState,
    StopPutBack,
    StopUnconfirmed,
    TracksLeft,
    TrackStopped,
)
from bot.domain.rollout_summary import PUT_BACK
from bot.services.acting import acting_now, put_back
from bot.services.actions import target_of
from bot.services.effects import CONCURRENT_RETRIES, EffectRunner
from bot.services.following import RunFollower
from bot.services.records import Claim, ClaimState, NewAuditEvent

log = logging.getLogger(__name__)

_STOPS = {Control.ROLLBACK.value: GateKind.RELAY, Control.KILL.value: GateKind.DESKTOP}
"""The gate each stop's claim (its action) stops the tracks of."""


@dataclass(frozen=True)
class _Outcome:
    """What GitHub's answer made of a stop saved before it was read (`saved`): the decision
    `said` of the tracks it stops (`stopping`, their events), the others whose stop was saved
    (`oks`) put back; `waiting`, where the run waits (None: unread)."""

    saved: Rollout
    said: Decision
    stopping: list[NewAuditEvent]
    oks: list[NewAuditEvent]
    waiting: frozenset[str] | None


class Stops:
    """Roll back or trip the kill-switch of a rollout's tracks."""

    def __init__(self, effects: EffectRunner, follower: RunFollower) -> None:
        self._effects = effects
        self._follower = follower

    async def abort(
        self, *, actor: str, gate: str, reason: str = "", rollout_id: str | None = None
    ) -> Rollout:
        """Roll back the relay-gated tracks (`gate="relay"`) or trip the desktop kill-switch
        (a stage saved as deploying is asked of GitHub once the stop is saved)."""
        effects = self._effects
        kind = GateKind(gate)
        found = await target_of(effects, rollout_id)

        async def stop() -> None:
            rollout, plan = await effects.with_plan(found.id)
            try:
                if self._deploying(rollout, plan, kind):
                    await self._stop_deploying(rollout, plan, kind, actor=actor, reason=reason)
                else:
                    decision, oks = self._stop(rollout, plan, kind, actor, reason, frozenset())
                    left = effects.left_events(actor, f"abort_{gate}", rollout, decision)
                    await effects.apply(rollout, decision, plan, audit=[*oks, *left])
            except InvalidTransition as error:
                first = next((n for n, t in plan.tracks.items() if t.gate is kind), None)
                await effects.refuse(actor, f"abort_{gate}", rollout, error.message, track=first)
                raise

        async with effects.lock(found.id):
            # Another replica's save (its look) before the stop's is no reason to refuse it.
            await effects.serialised(found.id, stop)
            await self._follower.settle(found.id)
            return await effects.get(found.id)

    async def _stop_deploying(
        self, rollout: Rollout, plan: RolloutPlan, gate: GateKind, *, actor: str, reason: str
    ) -> None:
        """The stop is saved first as one whose read of the run failed would be (nothing said
        yet): a restart while GitHub is read leaves it made, and no look approves the stage
        again. Then GitHub says whether it still holds that stage (the bot's approval failed:
        the stop rejects it) or deploys it (a last stage that lands is not stopped after all),
        and the thread is told so; GitHub unread, it is told what is not known yet. Another
        replica's save meanwhile decides it again on the rollout as that replica left it
        (`_settle`)."""
        effects = self._effects
        kept, oks = self._stop(rollout, plan, gate, actor, reason, None)
        unsaid = tuple(e for e in kept.effects if not isinstance(e, Announce))
        # Its line is owed until told: a look that acts on the stop tells it if this dies.
        untold = (*rollout.untold_stops, *(event.track for event in oks if event.track))
        owing = replace(kept.rollout, untold_stops=untold, untold_stops_kept=True)
        saved = await effects.apply(rollout, Decision(owing, unsaid), plan, audit=oks)
        waiting = await self._waiting(saved)
        outcome, refusal = _Outcome(saved, kept, oks, oks, waiting), None
        if waiting is not None:
            try:
                said, stopping = self._stop(rollout, plan, gate, actor, reason, waiting)
                outcome = _Outcome(saved, said, stopping, oks, waiting)
            except InvalidTransition as error:  # every track GitHub deploys the last stage of
                outcome, refusal = _Outcome(saved, Decision(rollout), [], oks, waiting), error
        latest, stands, tries_left = saved, True, CONCURRENT_RETRIES
        while True:
            try:
                stands = await self._settle(latest, outcome, plan, actor)
                break
            except ConcurrentChange:  # another replica saved meanwhile: decided on its state
                read, latest = latest, await effects.get(rollout.id)
                if not more_waiting(read, latest):
                    tries_left -= 1
                if not tries_left:  # the stop stands as saved, its line owed to the next look
                    log.warning(
                        "rollout %s: the stop's outcome lost %d races to other replicas; "
                        "it stands as saved, its line told by the next look that acts on it",
                        rollout.id,
                        CONCURRENT_RETRIES,
                    )
                    break
        if refusal is not None and not stands:
            put_back()  # saved, then put back on every track: nothing was done after all
            raise refusal

    async def _settle(
        self, latest: Rollout, outcome: _Outcome, plan: RolloutPlan, actor: str
    ) -> bool:
        """Save what GitHub's answer made of the stop (`outcome`) on the rollout as it stands
        now, `latest`, and tell the thread. A track another replica has acted on since the
        stop's save (no longer as saved) keeps its stop: one put back stands then, and its line
        is told unless a look told it already (`Rollout.untold_stops`; told when a 091736d
        replica saved since, which drops that list and tells no stop). Returns whether any
        track stays stopped; raises ConcurrentChange when another replica saved again."""
        saved, said = outcome.saved, outcome.said
        saved_stops = [event.track for event in outcome.oks if event.track is not None]
        ours = [name for name in saved_stops if latest.track(name) == saved.track(name)]
        moved = [name for name in saved_stops if name not in ours]
        stopped = {event.track for event in outcome.stopping}
        stands = [name for name in moved if name not in stopped]
        settled = replace(
            latest,
            untold_stops=tuple(n for n in latest.untold_stops if n not in saved_stops),
            stop_waiters=tuple(w for w in latest.stop_waiters if w[0] not in saved_stops),
        )
        for name in ours:
            settled = settled.with_track(said.rollout.track(name))
        elsewhere = {plan.track(name).label for name in moved}
        told = [
            self._not_left(e, stands, elsewhere) for e in said.effects if isinstance(e, Announce)
        ]
        told.extend(
            # Where that replica left it: its look may have rejected or landed the stage.
            machine.stop_told(plan.track(name), latest.track(name), outcome.waiting or ())
            for name in moved
            if name in latest.untold_stops or not latest.untold_stops_kept
        )
        back = [name for name in ours if name not in stopped]
        did = [name for name in saved_stops if name in stopped or name in stands]
        told.append(_put_back_told(latest, settled, plan, back, actor, did))
        decision = Decision(settled, tuple(e for e in told if e is not None))
        gate = plan.track(saved_stops[0]).gate.value
        left = self._effects.left_events(actor, f"abort_{gate}", latest, decision)
        put_back = [e for e in self._put_back(outcome.oks, outcome.stopping) if e.track in ours]
        await self._effects.apply(latest, decision, plan, audit=[*left, *put_back])
        return bool(stopped or stands)

    async def wait_on(self, claim: Claim, actor: str) -> bool | None:
        """`actor` asked for the stop another person's request is deciding under `claim`
        (saved, GitHub being read: its line owed) and is answered that it is being done:
        recorded as waiting on its outcome, in the rollout, so that whichever process settles
        it names them if it is put back (`StopOutcomes`). False when no such stop is being decided
        (settled meanwhile); None when `claim` is not a stop's."""
        effects, kind = self._effects, _STOPS.get(claim.action)
        if kind is None or claim.rollout_id is None:
            return None
        rollout, plan = await effects.with_plan(claim.rollout_id)
        tries_left = CONCURRENT_RETRIES
        while tries_left:
            deciding = [n for n in rollout.untold_stops if plan.track(n).gate is kind]
            if not deciding or not rollout.untold_stops_kept:
                return False
            waiters = (*rollout.stop_waiters, *((name, actor) for name in deciding))
            waiting = replace(rollout, stop_waiters=tuple(dict.fromkeys(waiters)))
            if waiting == rollout:
                return True
            try:
                await effects.apply(rollout, Decision(waiting), plan)
            except ConcurrentChange:  # saved meanwhile (by that stop's settling, maybe): again
                read, rollout = rollout, await effects.get(claim.rollout_id)
                if not more_waiting(read, rollout):
                    tries_left -= 1
                continue
            return True
        return False

    async def put_back_of(self, claim: Claim) -> StopPutBack | None:
        """What the stop done under `claim` did not do after all: the tracks it was put back
        on (their `put_back` events, audited with the put back by whichever replica settled
        it), as they stand now, and the tracks it stopped. None when it stood on every track
        it stopped, or when `claim` is not a stop's that was done (`StopOutcomes`)."""
        kind, effects = _STOPS.get(claim.action), self._effects
        if kind is None or claim.rollout_id is None or claim.state is not ClaimState.DONE:
            return None
        rollout, plan = await effects.with_plan(claim.rollout_id)
        # Its events name the claim (`_stop`), not a moment: another replica's clock never
        # hides them, and an earlier stop of this person's, given back, is not read. A track
        # has at most one of each under one claim: the read is bounded by the plan.
        ours = await effects.audit.list_for_claim(
            claim,
            action=f"abort_{kind.value}",
            results=("ok", PUT_BACK),
            limit=2 * len(plan.tracks),
        )
        back = {event.track for event in ours if event.result == PUT_BACK}
        if not back:
            return None
        oks = [e.track for e in ours if e.result == "ok" and e.track and e.track not in back]
        return _put_back_event(rollout, plan, kind, claim.actor, (), back, dict.fromkeys(oks))

    @staticmethod
    def _not_left(announce: Announce, stands: list[str], elsewhere: set[str]) -> Announce | None:
        """`announce`, but none for a track another replica acted on (labels `elsewhere`:
        its line is told apart), and a `TracksLeft` without the tracks whose stop `stands`
        after all (None when it names no other)."""
        event = announce.event
        if isinstance(event, TrackStopped | StopUnconfirmed) and event.track in elsewhere:
            return None
        if not isinstance(event, TracksLeft) or not stands:
            return announce
        tracks = tuple(left for left in event.tracks if left.name not in stands)
        return replace(announce, event=replace(event, tracks=tracks)) if tracks else None

    def _put_back(
        self, saved: list[NewAuditEvent], stopping: list[NewAuditEvent]
    ) -> list[NewAuditEvent]:
        """The `put_back` events of the tracks whose stop was `saved` (its `ok`, recorded before
        GitHub was read) and is put back now (not `stopping`): that `ok` took no effect."""
        kept = {event.track for event in stopping}
        return [
            replace(event, at=self._effects.clock(), result=PUT_BACK)
            for event in saved
            if event.track not in kept
        ]

    @staticmethod
    def _as_stopped(saved: Rollout, stopped: Rollout) -> Rollout:
        """`saved` (its version) with the tracks as `stopped` has them."""
        for track in stopped.tracks:
            saved = saved.with_track(track)
        return saved

    def _stop(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        gate: GateKind,
        actor: str,
        reason: str,
        waiting: frozenset[str] | None,
    ) -> tuple[Decision, list[NewAuditEvent]]:
        """The stop of every track of `gate` still running (one that completed or already
        stopped never keeps another from stopping), and its audit events (`ok`, one a track);
        raises the refusal when none can stop. `waiting`: what GitHub holds (None: unread)."""
        effects = self._effects
        names = machine.tracks_to_stop(rollout, plan, gate=gate, waiting=waiting)
        left = machine.tracks_left(rollout, plan, gate=gate, stopping=names)
        told = TracksLeft(rollout.tag, gate is GateKind.DESKTOP, left, actor=actor)
        current, done, oks = rollout, list[Effect](), list[NewAuditEvent]()
        for name in names:
            decision = machine.abort(
                current,
                plan,
                track=name,
                actor=actor,
                reason=reason,
                now=effects.clock(),
                waiting=waiting,
            )
            if left and name == names[-1]:
                # Said with the last stop: whoever pressed it learns what it did not stop.
                decision = Decision(
                    decision.rollout, (*decision.effects, Announce(told, failure=True))
                )
            acting = acting_now.get()  # the claim it is done under: `put_back_of` reads by it
            detail = {"reason": reason, **({"claim": acting.claim.holder} if acting else {})}
            action = f"abort_{gate.value}"
            oks.append(effects.event(actor, action, "ok", current, detail, track=name))
            done.extend(decision.effects)
            current = decision.rollout
        return Decision(current, tuple(done)), oks

    def _deploying(self, rollout: Rollout, plan: RolloutPlan, gate: GateKind) -> bool:
        """Whether a track of `gate` is deploying a stage: the bot's approval of it may have
        failed, GitHub still holding it, and a stop rejects it then (`machine.held_on_github`)."""
        return rollout.run_id is not None and any(
            plan_track.gate is gate
            and (stage := rollout.track(name).current) is not None
            and stage.state is StageState.DEPLOYING
            for name, plan_track in plan.tracks.items()
        )

    async def _waiting(self, rollout: Rollout) -> frozenset[str] | None:
        """The environments the run waits at now; None when GitHub cannot say."""
        assert rollout.run_id is not None  # `_deploying`
        try:
            return (await self._effects.read_run(rollout.run_id)).waiting
        except GitHubError:
            return None


def more_waiting(read: Rollout, latest: Rollout) -> bool:
    """Whether the rollout as `read` changed, by `latest`, only by more people waiting on its
    stops (`Stops.wait_on`): a race lost to another waiter's progress, which uses none of a
    save's tries. Each person waits once on a track, so such races are as many as the people
    who ask at most, and 20 people asking at once neither exhaust a waiter's tries nor the
    stop's own settling."""
    grew = set(latest.stop_waiters) > set(read.stop_waiters)
    return grew and replace(latest, stop_waiters=read.stop_waiters, version=read.version) == read


def _put_back_told(
    latest: Rollout,
    settled: Rollout,
    plan: RolloutPlan,
    back: list[str],
    actor: str,
    stopped: list[str],
) -> Announce | None:
    """The line naming who else asked for the stop put back on the tracks `back` and was
    answered that it was being done (`Rollout.stop_waiters`, as `latest` has them); None
    when nobody waits on it: the person who pressed it is answered."""
    waiting = tuple(
        dict.fromkeys(who for name, who in latest.stop_waiters if name in back and who != actor)
    )
    if not back or not waiting:
        return None
    gate = plan.track(back[0]).gate
    told = _put_back_event(settled, plan, gate, actor, waiting, back, stopped)
    return Announce(told, failure=True)


def _put_back_event(
    rollout: Rollout,
    plan: RolloutPlan,
    gate: GateKind,
    actor: str,
    waiting: tuple[str, ...],
    back: Collection[str | None],
    stopped: Iterable[str],
) -> StopPutBack:
    """The stop of `gate` by `actor` put back on the tracks `back` (as `rollout` has them),
    told to the people `waiting`; `stopped`: the tracks it did stop (names)."""
    left = machine.tracks_left(rollout, plan, gate=gate, stopping=())
    return StopPutBack(
        rollout.tag,
        gate is GateKind.DESKTOP,
        actor,
        waiting,
        tuple(track for track in left if track.name in back),
        tuple(plan.track(name).label for name in stopped),
    )

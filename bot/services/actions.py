"""People's actions on a rollout under way: promote, extend a window, cancel (a roll back or a
kill-switch: `bot.services.stops`).

Who may act was decided before any of this, once per request, by the controls
(`bot.services.controls`); here each action is checked against the rollout as it stands,
carried out, and recorded.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot.domain import rollout as machine
from bot.domain.controls import StaleCard
from bot.domain.errors import ConcurrentChange, GitHubError, PromotedWhileStopping
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Announce,
    Decision,
    InvalidTransition,
    Phase,
    Review,
    Rollout,
    RolloutCancelled,
    Stage,
    StageState,
    TrackState,
)
from bot.services.acting import ON_GITHUB, saved_then_failed
from bot.services.effects import CONCURRENT_RETRIES, EffectRunner
from bot.services.following import RunFollower
from bot.services.words import Words

APPROVED_UNSAVED = (
    "GitHub took the approval, then the bot could not save the promotion right after, so the "
    "card may still show the stage held: the bot's next look at the run reads what GitHub "
    "deploys. Do not approve it again on GitHub."
)
"""Owed by a Promote GitHub approved whose save then failed."""

PROMOTION_SAVES = 5
"""Tries of saving a promotion GitHub approved while other replicas keep saving the rollout."""


class PeoplesActions:
    """Promote, extend and cancel rollouts."""

    def __init__(self, effects: EffectRunner, follower: RunFollower, words: Words) -> None:
        self._effects = effects
        self._follower = follower
        self._words = words

    async def cancel(self, *, rollout_id: str, actor: str) -> None:
        """Cancel a rollout still in its preflight."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            ended = machine.cancel_preflight(rollout, actor=actor, now=effects.clock())
            decision = Decision(ended, (Announce(RolloutCancelled(actor)),))
            event = effects.event(actor, "cancel", "ok", rollout)
            await effects.apply(rollout, decision, await effects.plan_of(rollout), audit=[event])

    async def cancel_schedule(self, *, rollout_id: str, actor: str) -> Rollout:
        """Cancel the dispatch scheduled for later; the preflight stays for a Dispatch click.
        Its timer is left to fire for nothing (the rollout no longer has that schedule)."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            decision = machine.cancel_schedule(rollout, actor=actor)
            event = effects.event(actor, "cancel_schedule", "ok", rollout)
            plan = await effects.plan_of(rollout)
            return await effects.apply(rollout, decision, plan, audit=[event])

    async def promote(
        self,
        *,
        actor: str,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
        override: bool = False,
    ) -> Rollout:
        """Approve the next stage of each track held on a gate (or of the one named, held at
        `stage` when given: a card's button names the stage it was drawn for).

        The approval goes to GitHub before the promotion is saved, so when GitHub fails the
        answer says so and the rollout stays as it was: the click can be repeated.
        """
        effects = self._effects
        target = await target_of(self._effects, rollout_id)
        async with effects.lock(target.id):
            rollout = await effects.get(target.id)
            plan = await effects.plan_of(rollout)
            tracks = [track] if track else machine.holding_tracks(rollout)
            if not tracks:
                message = "Nothing is waiting for a Promote. " + where_it_stands(
                    rollout, plan, self._words
                )
                await effects.refuse(actor, "promote", rollout, message)
                raise InvalidTransition(message)
            current = rollout
            for name in tracks:

                async def approved(name: str = name) -> tuple[Rollout, Decision]:
                    # Decided on the rollout as stored now: a stop saved on another replica
                    # while GitHub was read refuses it, before anything is approved.
                    now = await effects.get(rollout.id)
                    decision = await self._promoted(
                        now, plan, track=name, stage=stage, actor=actor, override=override
                    )
                    return now, await self._approve_first(decision, plan, track=name, actor=actor)

                current, decision = await effects.serialised(rollout.id, approved)
                current = await self._save_promotion(
                    current, decision, plan, track=name, actor=actor, override=override
                )
            await self._follower.settle(rollout.id)
            return await effects.get(rollout.id)

    async def _promoted(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        *,
        track: str,
        stage: str | None,
        actor: str,
        override: bool,
    ) -> Decision:
        """The promotion of `track` (held at `stage`, when a card names it); its refusal
        recorded and raised."""
        effects = self._effects
        held = rollout.track(track).current
        if stage is not None and (held is None or held.key != stage):
            message = "This card is out of date: " + where_it_stands(rollout, plan, self._words)
            await effects.refuse(actor, "promote", rollout, message, track=track)
            raise StaleCard(message)
        try:
            return machine.promote(rollout, plan, track=track, actor=actor, override=override)
        except InvalidTransition as error:
            await effects.refuse(actor, "promote", rollout, error.message, track=track)
            raise

    async def _approve_first(
        self, decision: Decision, plan: RolloutPlan, *, track: str, actor: str
    ) -> Decision:
        """Approve the promoted stage on GitHub now, before the promotion is saved (a failure
        raises GitHubError and changes nothing). The run is reconciled with the promotion, so
        the stage is saved as deploying; other tracks' effects follow after the save."""
        effects = self._effects
        promoted = decision.rollout
        if promoted.run_id is None:
            return decision
        try:
            snapshot = await effects.read_run(promoted.run_id)
        except GitHubError as error:
            await effects.record(
                effects.event(
                    actor,
                    "promote",
                    "github_error",
                    promoted,
                    {"error": error.message},
                    track=track,
                )
            )
            raise
        seen = machine.reconcile(promoted, plan, snapshot, effects.clock())
        approvals = [e for e in seen.effects if isinstance(e, Review) and e.track == track]
        if approvals and (await effects.get(promoted.id)).version != promoted.version:
            # Saved since it was read (a stop, while GitHub answered): decided again.
            raise ConcurrentChange(f"{promoted.id} saved since read", rollout_id=promoted.id)
        took = False
        for review in approvals:
            # The comment names who clicked: in App mode it is all GitHub shows of them.
            by = machine.github_person(actor)
            said = replace(review, comment=f"{review.comment}, promoted by {by}")
            took |= await effects.review(promoted, said, strict=True)
        if took:  # approved on GitHub: from here on, a failure never invites a second
            saved_then_failed(APPROVED_UNSAVED, where=ON_GITHUB)
        rest = tuple(effect for effect in seen.effects if effect not in approvals)
        return Decision(seen.rollout, (*decision.effects, *rest))

    async def _save_promotion(
        self,
        before: Rollout,
        decision: Decision,
        plan: RolloutPlan,
        *,
        track: str,
        actor: str,
        override: bool,
    ) -> Rollout:
        """Save a promotion GitHub already approved, with its audit event. Another replica may
        have saved the rollout meanwhile (a window, the other track): promote again on its
        state, never losing an approval that GitHub holds. One that saved a stop of the track
        (PromotedWhileStopping) is told to whoever promoted: the stage deploys, the track
        stops all the same."""
        effects = self._effects
        said = {"override": True} if override else None
        event = effects.event(actor, "promote", "ok", before, said, track=track)
        for _ in range(PROMOTION_SAVES):
            try:
                return await effects.apply(before, decision, plan, audit=[event])
            except ConcurrentChange:
                saved = await effects.get(before.id)
                if saved.track(track).state is TrackState.COMPLETED:
                    # GitHub deployed the stage approved, and another replica saw the track
                    # complete: the promotion asked for, done (no stop).
                    await effects.record(event)
                    return saved
                if saved.track(track).state is not TrackState.ACTIVE:
                    stopping = self._stopping(before, saved, plan, track=track)
                    await effects.record(
                        effects.event(actor, "promote", stopping.code, before, said, track=track)
                    )
                    raise stopping from None
                before = saved
                stage = before.track(track).current
                if stage is None or stage.state is not StageState.HOLDING:
                    await effects.record(event)  # someone else saved the promotion already
                    return before
                decision = machine.promote(
                    before, plan, track=track, actor=actor, override=override
                )
        return await effects.apply(before, decision, plan, audit=[event])

    def _stopping(
        self, promoted: Rollout, saved: Rollout, plan: RolloutPlan, *, track: str
    ) -> PromotedWhileStopping:
        """What the person whose approval reached GitHub as the track stopped is told."""
        plan_track = plan.track(track)
        held = promoted.track(track).current
        following = plan_track.next_stage(held.key) if held is not None else None
        approved = following.label if following is not None else "the next stage"
        where = where_it_stands(saved, plan, self._words)
        return PromotedWhileStopping.told(approved, plan_track.label, where)

    async def extend(self, *, actor: str, rollout_id: str, track: str, by: timedelta) -> Rollout:
        """Give a running window more time. Another replica may have saved the rollout since
        it was read (a look at the run, the other track): extended again on its state, as a
        Promote is, unless the track's window itself changed (extended, ended, stopped): the
        person extended a window that is no longer the one they saw, and is refused."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            plan = await effects.plan_of(rollout)
            seen = _window_of(rollout, track)
            event = effects.event(actor, "extend", "ok", rollout, {"by": str(by)}, track=track)
            for _ in range(CONCURRENT_RETRIES - 1):
                decision = await self._extended(rollout, plan, track=track, actor=actor, by=by)
                try:
                    return await effects.apply(rollout, decision, plan, audit=[event])
                except ConcurrentChange:
                    rollout = await effects.get(rollout_id)
                    if _window_of(rollout, track) != seen:
                        raise
            decision = await self._extended(rollout, plan, track=track, actor=actor, by=by)
            return await effects.apply(rollout, decision, plan, audit=[event])

    async def _extended(
        self, rollout: Rollout, plan: RolloutPlan, *, track: str, actor: str, by: timedelta
    ) -> Decision:
        """The extension of `track`'s window on `rollout`; its refusal recorded and raised."""
        effects = self._effects
        try:
            return machine.extend(
                rollout, plan, track=track, actor=actor, by=by, now=effects.clock()
            )
        except InvalidTransition as error:
            await effects.refuse(actor, "extend", rollout, error.message, track=track)
            raise


def _window_of(rollout: Rollout, track: str) -> tuple[TrackState, Stage | None]:
    """What a person extending `track`'s window saw of it: the track's state and its current
    stage (the window's end, its extensions, its verdict)."""
    current = rollout.track(track)
    return current.state, current.current


async def target_of(effects: EffectRunner, rollout_id: str | None) -> Rollout:
    """The named rollout, or (a command naming none) the one in progress."""
    if rollout_id is not None:
        return await effects.get(rollout_id)
    active = [r for r in await effects.store.active() if r.phase is not Phase.PREFLIGHT]
    if not active:
        raise InvalidTransition(
            "There is no rollout in progress. Start one with `/rollout start <tag>`."
        )
    return active[0]


def where_it_stands(rollout: Rollout, plan: RolloutPlan, words: Words) -> str:
    """Each track's stage and state in a sentence (why a card or a Promote no longer applies)."""
    parts = []
    for track in rollout.tracks:
        label = plan.track(track.name).label
        stage = track.current
        if track.state is not TrackState.ACTIVE or stage is None:
            parts.append(f"{label}: {machine.state_words(track)}")
            continue
        spec = plan.track(track.name).stage(stage.key)
        if stage.state is StageState.OBSERVING and stage.window_ends_at:
            ends = words.slack_time(stage.window_ends_at)
            parts.append(f"{label}: {spec.label} observing until {ends}")
        else:
            parts.append(f"{label}: {spec.label} {stage.state}")
    return "; ".join(parts) + "."

"""Redeploying the previous good release of a completed track (Roll back after it completed).

The previous good release is the last rollout before this one whose track completed, with
another tag; only the newest completed rollout of the track (the one in production) offers it.
It goes back through the plan's rollback workflow, or as a new rollout when the plan has none:
a roll back, so no freeze or lock holds that rollout's dispatch (`ReleaseLane.roll_back_for`).

A rollback workflow's dispatch is recorded before it is sent (audit result `sending`): from
then on GitHub may have started it, whatever becomes of the bot or its answer, so it is never
sent again unless GitHub clearly refused that attempt (`github_error`). A click that finds an
earlier attempt unsettled is told so, and a person checks the workflow's runs on GitHub.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain.controls import AlreadyDone, StaleCard
from bot.domain.errors import GitHubError, RunNotIdentified
from bot.domain.plan import Redeploy, RolloutPlan
from bot.domain.rollout import InvalidTransition, Redeploying, Rollout, TrackState
from bot.domain.rollout_summary import REDEPLOY, rolled_back_after
from bot.domain.run import RunRef
from bot.services.lane import ReleaseLane, roll_back_passed
from bot.services.records import AuditEvent
from bot.services.rollouts import RolloutService

HISTORY_DEPTH = 200
"""How many recent rollouts are searched for the previous good release of a track."""

SENDING = "sending"
"""The audit result of a rollback workflow's dispatch about to be sent; the attempt's outcome
(`ok`, `run_not_identified`, `github_error`) names it by this event's id (`attempt`)."""
REFUSED = "github_error"
"""The outcome of an attempt GitHub clearly refused: nothing was started."""


@dataclass(frozen=True)
class RedeployOffer:
    """What Roll back after a completed track would do: put `tag` back in place of
    `replaced_tag`, through `workflow` (None: as a new rollout of `tag`)."""

    rollout_id: str
    track: str
    track_label: str
    tag: str
    replaced_tag: str
    workflow: str | None
    version: int
    still: tuple[str, ...] = ()
    """Labels of the other tracks that completed `replaced_tag`: the workflow leaves them."""


class Redeployer:
    """Finds the previous good release of a track and puts it back."""

    def __init__(self, rollouts: RolloutService, lane: ReleaseLane) -> None:
        self._rollouts = rollouts
        self._effects = rollouts.effects
        self._lane = lane

    async def offer(self, rollout: Rollout, plan: RolloutPlan, track: str) -> RedeployOffer:
        """What Roll back on the completed `track` would redeploy (for its confirm dialog)."""
        previous = await self.previous_good(rollout, plan, track)
        spec = plan.track(track).redeploy
        return RedeployOffer(
            rollout_id=rollout.id,
            track=track,
            track_label=plan.track(track).label,
            tag=previous.tag,
            replaced_tag=rollout.tag,
            workflow=spec.workflow if spec is not None else None,
            version=rollout.version,
            still=still_on(rollout, plan, track) if spec is not None else (),
        )

    async def redeploy_offered(
        self, *, actor: str, rollout_id: str, track: str, tag: str
    ) -> Redeploying:
        """Put `tag` back on `track`, as the confirm dialog offered it; refused as out of date
        when the previous good release is another one now."""
        rollout = await self._rollouts.get(rollout_id)
        plan = await self._rollouts.plan_of(rollout)
        previous = await self.previous_good(rollout, plan, track)
        if previous.tag != tag:
            raise StaleCard(
                f"This form is out of date: the previous good release of "
                f"{plan.track(track).label} is now `{previous.tag}`, not `{tag}`. "
                "Click Roll back again."
            )
        return await self.redeploy(
            actor=actor, rollout=rollout, plan=plan, track=track, tag=previous.tag
        )

    async def redeploy(
        self, *, actor: str, rollout: Rollout, plan: RolloutPlan, track: str, tag: str
    ) -> Redeploying:
        """Put `tag` back in place of `rollout` on `track`; what the thread is told of it."""
        spec = plan.track(track).redeploy
        detail: dict[str, object] = {"tag": tag, "replaced_tag": rollout.tag}
        if spec is None:
            started = await self._rollouts.start(
                tag=tag, flags_ready=False, channel_id=rollout.channel_id, actor=actor
            )
            lane = await self._lane.roll_back_for(
                rollout_id=started.id, actor=actor, replaced=rollout.tag
            )
            lock = lane.lock if lane.lock is not None and lane.lock.actor != actor else None
            redeploying = Redeploying(
                actor, tag, rollout.tag, rollout_id=started.id, freeze=lane.freeze, lock=lock
            )
            detail.update(new=started.id, **roll_back_passed(lane.freeze, lock, actor))
        else:
            run, detail["attempt"] = await self._dispatch(actor, rollout, spec, track, tag)
            redeploying = Redeploying(
                actor,
                tag,
                rollout.tag,
                workflow=spec.workflow,
                run_id=run.run_id,
                run_url=run.html_url,
                track=plan.track(track).label,
                still=still_on(rollout, plan, track),
            )
            detail["run_id"] = run.run_id
            if redeploying.still:
                detail["still"] = list(redeploying.still)
        await self._effects.record(
            self._effects.event(actor, REDEPLOY, "ok", rollout, detail, track=track)
        )
        await self._effects.tell(rollout, redeploying)
        return redeploying

    async def _dispatch(
        self, actor: str, rollout: Rollout, spec: Redeploy, track: str, tag: str
    ) -> tuple[RunRef, int]:
        """Dispatch the track's rollback workflow, recorded first (`sending`): a click after
        an attempt whose outcome was lost (the bot died or stopped in the middle, or could not
        record GitHub's answer) finds it and sends nothing. The run, and the attempt's id."""
        effects = self._effects
        earlier = unsettled(await effects.audit.list_for_rollout(rollout.id), track)
        if earlier is not None:
            raise AlreadyDone(
                f"A roll back through *{spec.workflow}* was already sent to GitHub by "
                f"{self._rollouts.words.person(earlier.actor)}, and it may have started a run: "
                "it is not dispatched again. Check the workflow's runs on GitHub."
            )
        detail = {"tag": tag, "replaced_tag": rollout.tag}
        sending = effects.event(actor, REDEPLOY, SENDING, rollout, detail, track=track)
        (sent,) = await effects.audit.add([sending])
        try:
            run = await effects.github.dispatch(
                workflow_file=spec.workflow,
                ref=spec.ref,
                inputs=spec.dispatch_inputs(tag=tag, replaced_tag=rollout.tag),
                dispatched_at=effects.clock(),
            )
        except GitHubError as error:
            unclear = isinstance(error, RunNotIdentified)
            result = "run_not_identified" if unclear else REFUSED
            failure = {**detail, "error": error.message, "attempt": sent.id}
            await effects.record(
                effects.event(actor, REDEPLOY, result, rollout, failure, track=track)
            )
            if unclear:  # its words promise a search, which a roll back does not have
                raise RunNotIdentified(
                    f"GitHub did not say whether the dispatch of *{spec.workflow}* started a "
                    "run, or which. It is not dispatched again and the bot does not follow "
                    "it: check the workflow's runs on GitHub."
                ) from None
            raise
        return run, sent.id

    async def previous_good(self, rollout: Rollout, plan: RolloutPlan, track: str) -> Rollout:
        """The last rollout before this one whose `track` completed, with another tag, and
        that was not rolled back after it completed. Only the newest completed rollout of the
        track (the one in production) offers it."""
        label = plan.track(track).label
        completed = [
            r for r in await self._rollouts.history(limit=HISTORY_DEPTH) if completed_on(r, track)
        ]
        if completed and completed[0].id != rollout.id:
            newer = completed[0]
            raise StaleCard(
                f"This card is out of date: `{newer.tag}` ({newer.id}) completed {label} after "
                f"`{rollout.tag}`. Roll back from the card of `{newer.tag}`."
            )
        earlier = [
            r for r in completed if r.created_at < rollout.created_at and r.tag != rollout.tag
        ]
        for candidate in earlier:
            if not await self._rolled_back_after(candidate, track):
                return candidate
        raise InvalidTransition(
            f"No rollout before `{rollout.tag}` completed {label} without being rolled back "
            "afterwards, so there is no previous good release to redeploy. Start one with "
            "`/rollout start <tag>`."
        )

    async def _rolled_back_after(self, rollout: Rollout, track: str) -> bool:
        """Whether `rollout` was itself rolled back on `track` after it completed (the release
        before it redeployed over it): a known bad release, never put back."""
        events = await self._effects.audit.list_for_rollout(rollout.id)
        return rolled_back_after(events, track) or unsettled(events, track) is not None


def unsettled(events: Sequence[AuditEvent], track: str) -> AuditEvent | None:
    """The first dispatch of the track's rollback workflow (its `sending` event) that GitHub
    may have carried out: any but one whose outcome says GitHub refused it."""
    refused = {
        e.detail.get("attempt")
        for e in events
        if e.action == REDEPLOY and e.result == REFUSED and e.detail is not None
    }
    return next(
        (
            e
            for e in events
            if e.action == REDEPLOY
            and e.result == SENDING
            and e.track == track
            and e.id not in refused
        ),
        None,
    )


def still_on(rollout: Rollout, plan: RolloutPlan, track: str) -> tuple[str, ...]:
    """The labels of the rollout's other completed tracks: a rollback workflow of `track`
    leaves them on the rollout's tag (a new rollout of the previous tag would not)."""
    return tuple(
        plan.track(other.name).label
        for other in rollout.tracks
        if other.name != track and other.state is TrackState.COMPLETED
    )


def completed_on(rollout: Rollout, track: str) -> bool:
    """Whether the rollout completed `track` (False when it has no such track)."""
    try:
        return rollout.track(track).state is TrackState.COMPLETED
    except KeyError:
        return False

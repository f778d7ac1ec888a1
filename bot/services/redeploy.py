"""Redeploying the previous good release of a completed track (Roll back after it completed).

The previous good release is the last rollout before this one whose track completed, with
another tag; only the newest completed rollout of the track (the one in production) offers it.
It goes back through the plan's rollback workflow, or as a new rollout when the plan has none:
a roll back, so no freeze or lock holds that rollout's dispatch (`ReleaseLane.roll_back_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.controls import StaleCard
from bot.domain.errors import GitHubError, RunNotIdentified
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import InvalidTransition, Redeploying, Rollout, TrackState
from bot.domain.rollout_summary import DONE, REDEPLOY
from bot.services.lane import ReleaseLane, roll_back_passed
from bot.services.rollouts import RolloutService

HISTORY_DEPTH = 200
"""How many recent rollouts are searched for the previous good release of a track."""


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
            inputs = spec.dispatch_inputs(tag=tag, replaced_tag=rollout.tag)
            try:
                run = await self._effects.github.dispatch(
                    workflow_file=spec.workflow,
                    ref=spec.ref,
                    inputs=inputs,
                    dispatched_at=self._effects.clock(),
                )
            except GitHubError as error:
                failed = isinstance(error, RunNotIdentified)
                result = "run_not_identified" if failed else "github_error"
                failure = {**detail, "error": error.message}
                await self._effects.record(
                    self._effects.event(actor, REDEPLOY, result, rollout, failure, track=track)
                )
                raise
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
        return any(e.action == REDEPLOY and e.result in DONE and e.track == track for e in events)


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

"""Re-run rollback (or kill-switch): a track's failure job that failed on GitHub, run again.

The click is checked (`bot.domain.rollout.rerun_refusal`, the lane, and the run read afresh:
the failure job's id and that it still failed in the attempt the rollout follows), the job is
re-run on GitHub (`GitHubGateway.rerun_job`, which reads the run back after an unclear answer),
and only then is the rollout saved as stopping again at the new attempt: a poller that reads
the run in between finds the rollout ended, and one that read it before the re-run is not
taken for the new attempt (`reconcile`). The controls (`bot.services.controls`) claim the
effect once per run attempt before any of this.

A click whose claim lapsed unrecorded (the bot died, or could not save, after GitHub took its
re-run) leaves the run at the next attempt and the rollout ended: the click after it follows
that attempt as the bot's own, and never asks GitHub again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.domain import rollout as machine
from bot.domain.errors import (
    GitHubError,
    RerunLaneTaken,
    RerunNotSeen,
    RerunUnclear,
    RerunUnsaved,
    RolloutInProgress,
)
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import InvalidTransition, Rollout
from bot.services.effects import EffectRunner
from bot.services.records import Claim

ACTION = "rerun_failure_job"
"""The audit action of a re-run (with the job's id and the attempt it made, or the refusal)."""

INTERRUPTED = "rerun_interrupted"
"""The audit result of a re-run whose click was interrupted (a shutdown) once it was sent."""

Sending = Callable[[], Awaitable[datetime | None]]
"""Called right before the re-run is sent (`ExactlyOnce.sending`): refuses when the click's
claim is no longer its own, else keeps it through an interruption; when its lease runs out."""


class FailureJobReruns:
    """Re-runs the failure jobs that failed, once GitHub's and the lane's rules allow it."""

    def __init__(self, effects: EffectRunner) -> None:
        self._effects = effects

    async def rerun(
        self,
        *,
        rollout_id: str,
        track: str,
        actor: str,
        earlier: Claim | None = None,
        sending: Sending | None = None,
    ) -> Rollout:
        """Re-run the failure job of `track`, and follow the run's new attempt to its end.
        `earlier`: the claim of this very re-run that an earlier click left unrecorded and this
        click took over (its lease ran out): the next attempt, if GitHub runs it, is its.
        `sending`: the click's claim, looked at right before the re-run is sent."""
        async with self._effects.lock(rollout_id):
            rollout = await self._effects.get(rollout_id)
            plan = await self._effects.plan_of(rollout)
            job_id, attempt = await self._failed_job(rollout, plan, track, actor, earlier)
            if job_id is None or sending is None:
                return await self._sent(rollout, plan, track, actor, earlier, job_id, attempt)
            try:
                again_after = await sending()
            except InvalidTransition as late:  # its claim lapsed, or nearly: nothing sent
                await self._effects.refuse(actor, ACTION, rollout, str(late), track=track)
                raise
            try:
                return await self._sent(
                    rollout, plan, track, actor, earlier, job_id, attempt, again_after
                )
            except asyncio.CancelledError:  # a shutdown, once the re-run may have gone out
                detail = {"job_id": job_id, "attempt": attempt}
                event = self._effects.event(
                    actor, ACTION, INTERRUPTED, rollout, detail, track=track
                )
                told = machine.rerun_unconfirmed(
                    rollout, plan, track, actor=actor, why="interrupted", again_after=again_after
                )
                await asyncio.shield(self._effects.record(event))
                await asyncio.shield(self._effects.tell(rollout, told))
                raise

    async def _sent(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        track: str,
        actor: str,
        earlier: Claim | None,
        job_id: int | None,
        attempt: int,
        again_after: datetime | None = None,
    ) -> Rollout:
        """Send the re-run of job `job_id` (none: `earlier` sent it, GitHub runs it as
        `attempt`), then save the rollout as following the attempt GitHub runs it in."""
        effects = self._effects
        rollout_id = rollout.id
        assert rollout.run_id is not None  # checked by `rerun_refusal`
        by = earlier.actor if job_id is None and earlier is not None else actor
        try:
            rerun = attempt
            if job_id is not None:
                rerun = await effects.github.rerun_job(
                    run_id=rollout.run_id, job_id=job_id, attempt=attempt
                )
        except GitHubError as error:
            detail = {"job_id": job_id, "attempt": attempt, "error": error.cause}
            event = effects.event(actor, ACTION, error.code, rollout, detail, track=track)
            await effects.record(event)
            if isinstance(error, RerunNotSeen | RerunUnclear):  # the thread is told too
                unread = isinstance(error, RerunUnclear)
                why, after = ("unread", None) if unread else ("not_seen", again_after)
                unknown = machine.rerun_unconfirmed(
                    rollout, plan, track, actor=actor, why=why, again_after=after
                )
                await effects.tell(rollout, unknown)
            raise

        async def save() -> Rollout:
            # Read afresh: another replica's save since (its poller's) must not lose it.
            current = await effects.get(rollout_id)
            decision = machine.rerun_failure_job(
                current, plan, track=track, attempt=rerun, actor=by, sent_before=job_id is None
            )
            detail = {"job_id": job_id, "attempt": rerun, "sent_by": by}
            event = effects.event(actor, ACTION, "ok", current, detail, track=track)
            return await effects.apply(current, decision, plan, audit=[event])

        try:
            return await effects.serialised(rollout_id, save)
        except RolloutInProgress as busy:  # the lane was taken while GitHub re-ran it
            holder = await effects.store.get(busy.active_rollout_id or "")
            tag = holder.tag if holder is not None else "another rollout"
            told = await self._not_followed(rollout_id, plan, track, by, job_id, rerun, tag)
            raise told from None
        except Exception as lost:  # GitHub runs the attempt; the claim stays unrecorded
            job = plan.track(track).on_failure.job
            raise RerunUnsaved(
                f"GitHub re-runs {job} as attempt {rerun} of the run, but the bot could not "
                f"save that `{rollout.tag}` follows it: it is not asked of GitHub again."
            ) from lost

    async def _not_followed(
        self,
        rollout_id: str,
        plan: RolloutPlan,
        track: str,
        actor: str,
        job_id: int | None,
        attempt: int,
        tag: str,
    ) -> RerunLaneTaken:
        """GitHub re-ran the job as `attempt`, but another rollout (`tag`) took the lane
        before the rollout was saved as following it: the rollout stays ended; the thread and
        the audit trail are told what now waits on GitHub, unwatched, and so is the person
        (the answer returned)."""
        effects = self._effects
        rollout = await effects.get(rollout_id)
        await effects.tell(rollout, machine.rerun_told(rollout, plan, track, attempt, actor, tag))
        detail = {"job_id": job_id, "attempt": attempt, "lane_taken_by": tag}
        await effects.record(
            effects.event(actor, ACTION, RerunLaneTaken.code, rollout, detail, track=track)
        )
        job = plan.track(track).on_failure.job
        return RerunLaneTaken(
            f"GitHub re-runs {job} as attempt {attempt} of the run, but `{tag}` started on "
            f"{plan.track(track).label} meanwhile: `{rollout.tag}` does not follow that attempt, "
            f"and the bot approves nothing of it. It waits on GitHub for its environment's "
            f"approval: reject it there, unless taking `{tag}` back is meant (the thread says "
            "so too)."
        )

    async def _failed_job(
        self, rollout: Rollout, plan: RolloutPlan, track: str, actor: str, earlier: Claim | None
    ) -> tuple[int | None, int]:
        """The failed job's id and the attempt it failed in, as GitHub shows the run now (no
        id, and the run's attempt, when it is the next one and `earlier` sent it); refused
        (and recorded) when the rollout, its lane or the run says no."""
        effects = self._effects
        refusal = machine.rerun_refusal(rollout, plan, track=track)
        newer = None if refusal is not None else await self._newer_on_lane(rollout, track)
        if newer is not None and earlier is None:
            refusal = _lane_taken(rollout, plan, track, newer)
        if refusal is None:
            assert rollout.run_id is not None  # checked by `rerun_refusal`
            snapshot = await effects.read_run(rollout.run_id)
            name = plan.track(track).on_failure.job
            job = snapshot.job(name)
            sent = rollout.attempt is not None and snapshot.attempt == rollout.attempt + 1
            # The re-run its click sent (the bot's account started it, not a person on GitHub):
            # followed, not sent again; told, and never sent again, when the lane moved on.
            if sent and earlier is not None and snapshot.by_the_bot:
                if newer is not None:
                    raise await self._not_followed(
                        rollout.id, plan, track, earlier.actor, None, snapshot.attempt, newer.tag
                    )
                return None, snapshot.attempt
            if newer is not None:
                refusal = _lane_taken(rollout, plan, track, newer)
            elif snapshot.attempt != rollout.attempt:
                refusal = (
                    f"The run was re-run on GitHub since (attempt {snapshot.attempt}; the bot "
                    f"followed attempt {rollout.attempt}): nothing was re-run. Look at the run's "
                    "page on GitHub."
                )
            elif job is None or not job.failed or not job.job_id:
                refusal = (
                    f"GitHub does not show {name} as failed on the run any more: nothing was "
                    "re-run. Look at the run's page on GitHub."
                )
            else:
                return job.job_id, snapshot.attempt
        await effects.refuse(actor, ACTION, rollout, refusal, track=track)
        raise InvalidTransition(refusal)

    async def _newer_on_lane(self, rollout: Rollout, track: str) -> Rollout | None:
        """A rollout of the track started since `rollout` (the lane is not its any more)."""
        since = [
            later
            for later in await self._effects.store.recent()
            if later.created_at > rollout.created_at and any(t.name == track for t in later.tracks)
        ]
        return since[-1] if since else None


def _lane_taken(rollout: Rollout, plan: RolloutPlan, track: str, newer: Rollout) -> str:
    """Why the lane is not `rollout`'s any more: `newer` started on the track since
    (re-running the old rollback would take the newer release back)."""
    return (
        f"`{newer.tag}` has rolled out on {plan.track(track).label} since `{rollout.tag}`: "
        f"re-running the {plan.track(track).on_failure.job} of `{rollout.tag}` would take "
        "it back. Nothing was re-run; finish it on GitHub if it is still needed."
    )

"""The report afterwards: what a finished rollout did, built from its state and its audit trail.

Pure: the rollout, its plan and its recorded events in, a `RolloutSummary` out (the Slack edge
words it). Stage times: deployed (its window opened, or the track completed there), window end,
gate decided, promoted. "Held" is the time a stage waited for a person: from its gate's verdict
to the Promote click (or to the end of its track when nobody promoted it; nothing when the next
stage went on without one, `promote: auto`). The lead time runs
from the dispatch to the end (a scheduled start's wait for its time is not part of it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.domain.gate import GateVerdict, Verdict
from bot.domain.plan import RolloutPlan
from bot.domain.rollout.codec import verdict_from_json
from bot.domain.rollout.state import Rollout, StopReason, Track, TrackState

OVERRIDE = "override_freeze"
"""The audit detail of an override of a freeze (`bot.services.lane`), and its act."""

REDEPLOY = "redeploy"
"""The audit action of a completed track's previous release put back (Roll back after it
completed): the release it replaced was rolled back, though it reached 100%."""

PEOPLES_ACTIONS = {
    "start": "started",
    "confirm_flags": "confirmed the feature flags",
    "dispatch": "dispatched",
    "promote": "promoted",
    "extend": "extended the window",
    "abort_relay": "rolled back",
    "abort_desktop": "tripped the kill-switch",
    "rerun_failure_job": "re-ran the failed rollback or kill-switch job",
    REDEPLOY: "redeployed",
    "gate": "entered the figures",
    "cancel": "cancelled",
    "cancel_schedule": "cancelled the scheduled dispatch",
    "attach_run": "linked the run",
    OVERRIDE: "overrode the freeze",
}
"""The audit actions a person takes that the summary names, in words (OVERRIDE: an event
whose detail says a freeze was overridden, a start's or a form's)."""


HOLDS = (Verdict.PASS, Verdict.INCONCLUSIVE)
"""The verdicts after which a stage waits for a person."""

DONE = ("ok", "run_not_identified")
"""The results of a person's action that took place (a dispatch whose run GitHub did not name
still started the workflow); a refusal, a GitHub error or a duplicate did not."""

NOT_STOPPED = "not_stopped"
"""The audit result of a track a stop left as it is (`TracksLeft`), recorded under the stop's
action (a failed gate's: `gate`, by whoever entered its figures): no act, no gate of that
track."""

PUT_BACK = "put_back"
"""The audit result of a stop put back (`bot.services.stops`): saved with its `ok` before
GitHub was read, then GitHub said the track's last stage was approved and deploys, so the track
was left as it was. The `ok` recorded before it, of the same action and track, took no effect."""


class Recorded(Protocol):
    """One audit trail entry as the summary reads it (`bot.services.records.AuditEvent`)."""

    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def track(self) -> str | None: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def detail(self) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class StageTimes:
    track: str
    stage: str
    """The plan's labels of the track and stage."""
    deployed_at: datetime
    window_ended_at: datetime | None
    decided_at: datetime | None
    promoted_at: datetime | None
    promoted_by: str | None
    held: timedelta | None
    """From the gate's verdict to the promotion (or the track's end): waiting for a person."""


@dataclass(frozen=True)
class StageVerdict:
    track: str
    stage: str
    at: datetime
    verdict: GateVerdict


@dataclass(frozen=True)
class PersonAct:
    at: datetime
    actor: str
    what: str
    """Words from `PEOPLES_ACTIONS`, with `(override)` for a promotion that overrode a hold."""
    track: str | None
    said: str = ""
    """A reason the person gave (a rollback, a kill)."""


@dataclass(frozen=True)
class TrackOutcome:
    track: str
    state: TrackState
    reason: StopReason | None
    redeployed: PersonAct | None = None
    """A person put the previous good release back on the completed track afterwards (Roll
    back after it completed): the release was rolled back, though it reached 100%."""


@dataclass(frozen=True)
class RolloutSummary:
    rollout_id: str
    tag: str
    started_by: str
    started_at: datetime
    dispatched_at: datetime | None
    ended_at: datetime
    outcomes: tuple[TrackOutcome, ...]
    stages: tuple[StageTimes, ...]
    verdicts: tuple[StageVerdict, ...]
    acts: tuple[PersonAct, ...]

    @property
    def lead_time(self) -> timedelta:
        """From the dispatch (from the start for a rollout without one) to the end."""
        return self.ended_at - (self.dispatched_at or self.started_at)

    @property
    def held(self) -> timedelta:
        """Time held waiting for a person, over every stage."""
        return sum((s.held for s in self.stages if s.held is not None), timedelta(0))

    @property
    def reached_the_end(self) -> bool:
        """Every track reached its last stage (a release rolled back afterwards did too)."""
        return all(o.state is TrackState.COMPLETED for o in self.outcomes)

    @property
    def succeeded(self) -> bool:
        """Every track completed, and none was rolled back after it completed."""
        return self.reached_the_end and not any(o.redeployed for o in self.outcomes)


def summarize(
    rollout: Rollout,
    plan: RolloutPlan,
    events: Sequence[Recorded],
    *,
    machine: Callable[[str], bool],
) -> RolloutSummary:
    """The summary of an ended rollout; `events` is its audit trail, oldest first. Actors
    that are a `machine` (the bot, a metrics source) are not named among the people."""
    if rollout.ended_at is None:
        raise ValueError(f"rollout {rollout.id} has not ended")
    ok = _took_place([e for e in events if not (e.detail or {}).get("interim")])
    verdicts = tuple(
        StageVerdict(
            plan.track(e.track).label,
            plan.track(e.track).stage(e.stage).label,
            e.at,
            verdict_from_json(dict(e.detail or {})),
        )
        for e in ok
        if e.action == "gate" and e.track and e.stage and e.detail
    )
    return RolloutSummary(
        rollout_id=rollout.id,
        tag=rollout.tag,
        started_by=rollout.started_by,
        started_at=rollout.created_at,
        dispatched_at=rollout.dispatched_at,
        ended_at=rollout.ended_at,
        outcomes=tuple(
            TrackOutcome(
                plan.track(t.name).label,
                t.state,
                t.ended_reason,
                next(
                    (_act(e, plan) for e in ok if e.action == REDEPLOY and e.track == t.name),
                    None,
                ),
            )
            for t in rollout.tracks
        ),
        stages=tuple(s for t in rollout.tracks for s in _stage_times(t, plan, ok)),
        verdicts=verdicts,
        acts=tuple(
            _act(e, plan) for e in ok if _action(e) in PEOPLES_ACTIONS and not machine(e.actor)
        ),
    )


def rolled_back_after(events: Sequence[Recorded], track: str) -> bool:
    """Whether a person put the previous release back over `track` after it completed (Roll
    back after it completed, as recorded in its rollout's audit trail)."""
    return any(e.action == REDEPLOY and e.result in DONE and e.track == track for e in events)


def _took_place(events: Sequence[Recorded]) -> list[Recorded]:
    """The gates, and the people's actions that took place: each promotion once (a replica
    that lost the race to save a promotion records it again: the first after a track's gate
    counts); a stop put back (`PUT_BACK`) never."""
    kept: list[Recorded] = []
    gates: dict[str | None, int] = {}
    promoted: set[tuple[str | None, int]] = set()
    for e in events:
        if e.result == PUT_BACK:
            undone = [k for k in kept if (k.action, k.track, k.result) == (e.action, e.track, "ok")]
            if undone:
                kept.remove(undone[-1])
            continue
        if e.result == NOT_STOPPED:
            continue
        if e.action == "gate":
            gates[e.track] = gates.get(e.track, 0) + 1
        elif _action(e) in PEOPLES_ACTIONS and e.result not in DONE:
            continue
        if e.action == "promote":
            key = (e.track, gates.get(e.track, 0))
            if key in promoted:
                continue
            promoted.add(key)
        kept.append(e)
    return kept


_SECOND = timedelta(seconds=1)


def _stage_times(track: Track, plan: RolloutPlan, events: Sequence[Recorded]) -> list[StageTimes]:
    spec = plan.track(track.name)
    promotions = [e for e in events if e.action == "promote" and e.track == track.name]
    deployments = [
        stage.window_started_at
        or (track.ended_at if last and track.state is TrackState.COMPLETED else None)
        for last, stage in ((s is track.stages[-1], s) for s in track.stages)
    ]
    times = []
    for index, stage in enumerate(track.stages):
        deployed = deployments[index]
        if deployed is None:
            continue  # never reached
        # A promotion of this stage comes before the next stage deploys; one after it is a
        # later stage's (this one promoted itself: `promote: auto`). GitHub gives a job's
        # completion in whole seconds: a promotion in that second came before it.
        following = deployments[index + 1] if index + 1 < len(deployments) else None
        gates = [
            e
            for e in events
            if e.action == "gate" and (e.track, e.stage) == (track.name, stage.key)
        ]
        # Held: a gate that passed (or stayed inconclusive) waits for a Promote.
        decided = gates[-1].at if gates and gates[-1].result in HOLDS else None
        promotion = next(
            (
                e
                for e in promotions
                if decided and decided <= e.at and (following is None or e.at < following + _SECOND)
            ),
            None,
        )
        # Not promoted: held until the track ended, unless the next stage went on without a
        # person.
        until = promotion.at if promotion else (track.ended_at if following is None else None)
        times.append(
            StageTimes(
                track=spec.label,
                stage=spec.stage(stage.key).label,
                deployed_at=deployed,
                window_ended_at=stage.window_ends_at,
                decided_at=decided,
                promoted_at=promotion.at if promotion else None,
                promoted_by=promotion.actor if promotion else None,
                held=until - decided if decided and until and until >= decided else None,
            )
        )
    return times


def _action(event: Recorded) -> str:
    """The act `event` records: OVERRIDE when it overrode a freeze, else its action."""
    return OVERRIDE if (event.detail or {}).get(OVERRIDE) else event.action


def _act(event: Recorded, plan: RolloutPlan) -> PersonAct:
    detail = event.detail or {}
    action = _action(event)
    what = PEOPLES_ACTIONS[action]
    if action == OVERRIDE:
        what += f" ({detail.get('freeze')})" if detail.get("freeze") else ""
        said = str(detail[OVERRIDE])
    else:
        said = str(detail.get("reason") or "")
    if detail.get("override"):
        what += " (override)"
    track = plan.track(event.track).label if event.track else None
    return PersonAct(event.at, event.actor, what, track, said)

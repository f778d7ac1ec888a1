"""The pure rollout machine under random interleavings (hypothesis stateful testing).

GitHub is the sandbox's Actions engine (in memory, on a manual clock: no I/O), so run
snapshots follow GitHub's own job and environment rules. Hypothesis interleaves: fresh,
duplicated, stale (out of order, late) and review-less (GitHub's history lagging) snapshots,
review webhooks (parsed by `github_events`) filling in what the history lacks;
effects executed late, out of order or lost in a restart; durable window timers firing late or
twice; metrics answered late; clicks (promote, with or without override; roll back; kill;
extend); and restarts, where the rollout is rebuilt from what the store keeps and every effect
not yet carried out is lost.

Invariants, after every step: no stage is approved unless the machine has it deploying, and
GitHub approves each environment at most once; a stage is passed (its next one promoted) only
on a PASS verdict or a person's Promote confirming an override, never past a failed gate; a
window is evaluated at most once per window end; a stopped track never moves forward again,
but for a stage GitHub runs all the same (an approval that beat the stop's rejection), and
a stage of a stopping track lands as its job ended (stopped on success, failed otherwise); a
finished stage never changes; an ended rollout stays ended. At the end, with no more clicks,
the world is run to a standstill: every window has been evaluated and every rollback or kill
has ended in its stopped state.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from cleared import cleared_rollout
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from bot.domain.gate import GateKind, GateVerdict, Verdict, evaluate_desktop, evaluate_relay
from bot.domain.github_events import run_event
from bot.domain.rollout import (
    TERMINAL_TRACK,
    Announce,
    CancelWindow,
    Check,
    CheckState,
    Decision,
    Effect,
    InvalidTransition,
    Phase,
    Preflight,
    ReadMetrics,
    Review,
    Rollout,
    ScheduleWindow,
    Stage,
    StageState,
    Track,
    TrackState,
    abort,
    begin_dispatch,
    check_from_json,
    check_to_json,
    dispatched,
    extend,
    gate_evaluated,
    holding_tracks,
    promote,
    reason_from_json,
    reason_to_json,
    reconcile,
    verdict_from_json,
    verdict_to_json,
    window_ended,
)
from bot.domain.rollout.events import StageRejected
from bot.domain.run import (
    EnvironmentReview,
    JobConclusion,
    JobSnapshot,
    JobStatus,
    RunRef,
    RunSnapshot,
)
from bot.plan_file import load_plan
from sandbox import github_json as shapes
from sandbox.clock import ManualClock
from sandbox.github_actions import ActionsEngine
from sandbox.github_events import deployment_review_event
from sandbox.github_runs import ActionsError, SimJob
from sandbox.workflows import deployment_strategy_workflow

PLAN = load_plan(None)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BOT = "release-bot"
WINDOWS = [(t, s.key) for t, track in PLAN.tracks.items() for s in track.stages if s.observe]
FAILING = frozenset({Verdict.ROLLBACK, Verdict.KILL_SWITCH})
STOPPED = frozenset({TrackState.ABORTING, *TERMINAL_TRACK} - {TrackState.COMPLETED})
FINAL_STAGE = frozenset(
    {
        StageState.PASSED,
        StageState.DEPLOYED,
        StageState.FAILED_GATE,
        StageState.REJECTED,
        StageState.FAILED,
        StageState.STOPPED,
    }
)
WATCHED = frozenset({StageState.OBSERVING, StageState.EVALUATING})
CLEAR = Preflight(
    flags=Check(CheckState.PASS, confirmed_by="U1"),
    migrations=Check(CheckState.PASS, "1 migration file, additive only"),
    image=Check(CheckState.SKIPPED),
)
MIGRATION = "CREATE TABLE documents (id UUID PRIMARY KEY);\n"
URLS = shapes.Urls(
    api="https://api.github.test", html="https://github.test", repository="o/r", repository_id=1
)


def verdict(track: str, outcome: str) -> GateVerdict:
    """A real gate verdict for a scripted outcome: pass, fail or no data."""
    crash = {"pass": Decimal("0.001"), "fail": Decimal("0.005"), "none": None}[outcome]
    if track == "relay":
        return evaluate_relay(
            baseline_crash=Decimal("0.001"), current_crash=crash, current_error=Decimal("0")
        )
    return evaluate_desktop(baseline_crash=Decimal("0.001"), current_crash=crash)


# -- what the store keeps ------------------------------------------------------------------------


def _moment(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def stored(rollout: Rollout) -> dict[str, Any]:
    """The rollout as plain JSON: columns, context and verdicts, as the store writes them."""
    return {
        "id": rollout.id,
        "tag": rollout.tag,
        "channel": rollout.channel_id,
        "by": rollout.started_by,
        "phase": rollout.phase.value,
        "preflight": [
            check_to_json(c)
            for c in (
                rollout.preflight.flags,
                rollout.preflight.migrations,
                rollout.preflight.image,
            )
        ],
        "created_at": _moment(rollout.created_at),
        "run_id": rollout.run_id,
        "run_url": rollout.run_url,
        "message_ts": rollout.message_ts,
        "dispatched_at": _moment(rollout.dispatched_at),
        "ended_at": _moment(rollout.ended_at),
        "version": rollout.version,
        "attempt": rollout.attempt,
        "tracks": [
            {
                "name": t.name,
                "state": t.state.value,
                "ending": None if t.ending is None else t.ending.value,
                "reason": None if t.ended_reason is None else reason_to_json(t.ended_reason),
                "ended_at": _moment(t.ended_at),
                "stages": [
                    {
                        "key": s.key,
                        "state": s.state.value,
                        "started": _moment(s.window_started_at),
                        "ends": _moment(s.window_ends_at),
                        "extensions": s.extensions,
                        "observed_from": _moment(s.observed_from),
                        "cleared_at": _moment(s.cleared_at),
                        "verdict": None if s.verdict is None else verdict_to_json(s.verdict),
                    }
                    for s in t.stages
                ],
            }
            for t in rollout.tracks
        ],
    }


def restored(data: dict[str, Any]) -> Rollout:
    flags, migrations, image = (check_from_json(c) for c in data["preflight"])
    created_at = _at(data["created_at"])
    assert created_at is not None
    return Rollout(
        id=data["id"],
        tag=data["tag"],
        channel_id=data["channel"],
        started_by=data["by"],
        phase=Phase(data["phase"]),
        preflight=Preflight(flags, migrations, image),
        created_at=created_at,
        run_id=data["run_id"],
        run_url=data["run_url"],
        message_ts=data["message_ts"],
        dispatched_at=_at(data["dispatched_at"]),
        ended_at=_at(data["ended_at"]),
        version=data["version"],
        attempt=data["attempt"],
        tracks=tuple(
            Track(
                name=t["name"],
                state=TrackState(t["state"]),
                ending=None if t["ending"] is None else TrackState(t["ending"]),
                ended_reason=None if t["reason"] is None else reason_from_json(t["reason"]),
                ended_at=_at(t["ended_at"]),
                stages=tuple(
                    Stage(
                        key=s["key"],
                        state=StageState(s["state"]),
                        window_started_at=_at(s["started"]),
                        window_ends_at=_at(s["ends"]),
                        extensions=s["extensions"],
                        observed_from=_at(s["observed_from"]),
                        cleared_at=_at(s["cleared_at"]),
                        verdict=None if s["verdict"] is None else verdict_from_json(s["verdict"]),
                    )
                    for s in t["stages"]
                ),
            )
            for t in data["tracks"]
        ),
    )


# -- GitHub as snapshots -------------------------------------------------------------------------


def snapshot_of(engine: ActionsEngine, run_id: int, *, with_reviews: bool = True) -> RunSnapshot:
    """What the gateway would read of the run now (jobs by display name, waiting environments,
    the review history; without it when GitHub's history lags)."""
    run = engine.runs[run_id]
    jobs = {
        job.name: JobSnapshot(
            name=job.name,
            status=JobStatus(job.status),
            conclusion=None if job.conclusion is None else JobConclusion(job.conclusion),
            completed_at=job.completed_at,
            ran=job.started_at is not None,
        )
        for job in run.jobs
    }
    reviews = tuple(
        EnvironmentReview(environment, review.state, review.actor, review.comment)
        for review in engine.reviews
        if review.run_id == run_id and with_reviews
        for environment in review.environments
    )
    waiting = frozenset(job.environment or "" for job in engine.waiting_jobs(run_id))
    return RunSnapshot(
        run_id=run_id,
        status=run.status,
        conclusion=run.conclusion,
        html_url=f"https://github.test/runs/{run_id}",
        jobs=jobs,
        waiting=waiting,
        reviews=reviews,
    )


class RolloutWorld(RuleBasedStateMachine):
    """One rollout, the GitHub run it drives, its durable timers and the people clicking."""

    # -- setup ----------------------------------------------------------------------------------

    @initialize(
        outcomes=st.lists(st.sampled_from(["pass", "fail", "none"]), min_size=4, max_size=4)
    )
    def dispatch(self, outcomes: list[str]) -> None:
        self.clock = ManualClock(T0)
        self.engine = ActionsEngine(
            workflows=[deployment_strategy_workflow()],
            protected_environments=None,
            clock=self.clock,
            secrets={},
            files={"main": {"crates/relay/src/db/migrations/0001_init.sql": MIGRATION}},
            job_duration=timedelta(minutes=2),
        )
        self.verdicts = {
            window: verdict(window[0], outcome)
            for window, outcome in zip(WINDOWS, outcomes, strict=True)
        }
        spec = self.engine.workflows[0]
        inputs = spec.default_inputs() | {"feature_flags_ready": "true"}
        run = self.engine.start_run(
            spec, event="workflow_dispatch", branch="main", actor=BOT, inputs=inputs
        )
        self.engine.process()
        self.run_id = run.id
        rollout = cleared_rollout(PLAN, now=T0, preflight=CLEAR)
        self.rollout = begin_dispatch(rollout, now=T0)
        self.pending: list[Effect] = []
        self.timers: set[tuple[str, str, datetime]] = set()
        self.fired: set[tuple[str, str, datetime]] = set()
        self.reads: list[tuple[ReadMetrics, datetime]] = []
        self.history: list[RunSnapshot] = []
        self.evaluations: Counter[tuple[str, str, datetime]] = Counter()
        self.ever_stopped: set[str] = set()
        self.overriding = False
        """A person's Promote confirming an override (an INCONCLUSIVE hold) is being applied."""
        self.apply(dispatched(self.rollout, PLAN, RunRef(run.id, "https://github.test/run")))

    # -- the shell: save, then act (and maybe crash before acting) -------------------------------

    def apply(self, decision: Decision) -> None:
        before, after = self.rollout, decision.rollout
        self.check_step(before, after, decision.effects)
        self.rollout = after
        self.pending += [e for e in decision.effects if not isinstance(e, Announce | ReadMetrics)]
        # The service reads the metrics right after saving the EVALUATING stage.
        self.reads += [
            (e, after.track(e.track).stage(e.stage).window_ends_at or T0)
            for e in decision.effects
            if isinstance(e, ReadMetrics)
        ]
        for track in after.tracks:
            if track.state in STOPPED:
                self.ever_stopped.add(track.name)

    def check_step(self, before: Rollout, after: Rollout, effects: tuple[Effect, ...]) -> None:
        assert after.version == before.version  # the domain never touches the stored version
        if before.phase is Phase.ENDED:
            assert after == before, "an ended rollout changed"
        for old in before.tracks:
            new = after.track(old.name)
            for was, now in zip(old.stages, new.stages, strict=True):
                landing = self.landing(old, was, now)
                if was.state in FINAL_STAGE and not landing:
                    assert now == was, f"{old.name}/{was.key} changed after {was.state}"
                if now.state is StageState.PASSED and was.state is not now.state:
                    verdict = now.verdict
                    failed = verdict is not None and verdict.verdict in FAILING
                    assert not failed, f"{old.name}/{was.key} promoted past a failed gate"
                    assert (verdict is not None and verdict.passed) or self.overriding, (
                        f"{old.name}/{was.key} promoted on {verdict} without an override"
                    )
                if now.state is StageState.EVALUATING and was.state is not now.state:
                    assert now.window_ends_at is not None
                    assert self.clock() >= now.window_ends_at, "a window evaluated before its end"
                if old.state in STOPPED:
                    assert landing or now.state in (was.state, *FINAL_STAGE), (
                        f"stopped {old.name}/{was.key} moved from {was.state} to {now.state}"
                    )
                if old.state is TrackState.ABORTING and was.state is StageState.DEPLOYING:
                    landed = now.state in (StageState.STOPPED, StageState.FAILED)
                    assert not landed or self.as_its_job(old, now), (
                        f"{old.name}/{was.key} landed {now.state}, its job {self.job_of(old, now)}"
                    )
            if old.state in STOPPED:
                assert new.state in STOPPED, f"stopped track {old.name} became {new.state}"
        plan_envs = {
            s.environment: (t, s.key) for t, track in PLAN.tracks.items() for s in track.stages
        }
        for effect in effects:
            if isinstance(effect, Review) and effect.approve and effect.environment in plan_envs:
                track, key = plan_envs[effect.environment]
                now_track = after.track(track)
                assert now_track.state is TrackState.ACTIVE, (
                    f"{effect.environment} approved on a {now_track.state} track"
                )
                assert now_track.stage(key).state is StageState.DEPLOYING, (
                    f"{effect.environment} approved while {key} is {now_track.stage(key).state}"
                )

    def landing(self, track: Track, was: Stage, now: Stage) -> bool:
        """A stage of a stopping track that GitHub runs all the same (an approval carried out
        after the stop's rejection, the order two replicas may take), as its job goes."""
        not_run = (StageState.PENDING, StageState.APPROVING, StageState.REJECTED)
        stopping = track.state is TrackState.ABORTING
        return stopping and was.state in not_run and self.as_its_job(track, now)

    def job_of(self, track: Track, stage: Stage) -> SimJob:
        return self.engine.runs[self.run_id].job(PLAN.track(track.name).stage(stage.key).job)

    def as_its_job(self, track: Track, now: Stage) -> bool:
        """The stage is where its job (GitHub now, maybe later than the snapshot the machine
        read) says it may be: deploying once it started, landed (stopped) once it succeeded,
        failed once it ended otherwise."""
        job = self.job_of(track, now)
        if now.state is StageState.DEPLOYING:
            return job.started_at is not None
        if now.state is StageState.STOPPED:
            return job.conclusion == "success"
        ended = job.status == "completed" and job.conclusion != "success"
        return now.state is StageState.FAILED and ended

    def carry_out(self, effect: Effect) -> None:
        if isinstance(effect, Review):
            try:
                self.engine.review(
                    self.run_id,
                    environment_ids=[self.engine.environments[effect.environment]],
                    state="approved" if effect.approve else "rejected",
                    comment=effect.comment,
                    actor=BOT,
                )
            except ActionsError as refused:
                assert refused.status == 422  # not waiting (any more): GitHub changes nothing
        elif isinstance(effect, ScheduleWindow):
            key = (effect.track, effect.stage, effect.due_at)
            if key not in self.fired:
                self.timers.add(key)
        elif isinstance(effect, CancelWindow):
            self.timers.discard((effect.track, effect.stage, effect.due_at))

    def look(self, snapshot: RunSnapshot) -> None:
        self.apply(reconcile(self.rollout, PLAN, snapshot, self.clock()))

    # -- GitHub ---------------------------------------------------------------------------------

    @rule()
    def poll(self) -> None:
        """The poller (or a webhook delivery) reconciles with the run as it is now."""
        snapshot = snapshot_of(self.engine, self.run_id)
        self.history.append(snapshot)
        self.look(snapshot)

    @precondition(lambda self: bool(self.history))
    @rule(data=st.data())
    def stale_look(self, data: st.DataObject) -> None:
        """A replica reconciles with a snapshot it read earlier (duplicated, out of order)."""
        self.look(data.draw(st.sampled_from(self.history)))

    @rule()
    def look_while_reviews_lag(self) -> None:
        self.look(snapshot_of(self.engine, self.run_id, with_reviews=False))

    @precondition(lambda self: bool(self.engine.reviews))
    @rule(data=st.data())
    def review_delivered(self, data: st.DataObject) -> None:
        """A `deployment_review` webhook (late, or again) names its reviewer while GitHub's
        review history does not list it yet: the receiver adds it to the snapshot."""
        review = data.draw(st.sampled_from(self.engine.reviews))
        run = self.engine.runs[self.run_id]
        job = next(j for j in run.jobs if j.environment in review.environments)
        payload = deployment_review_event(
            URLS, review.state, run, job, review, default_branch="main", reviewer=BOT
        )
        event = run_event("deployment_review", payload)
        assert event is not None and event.run_id == self.run_id and event.reviews
        lagging = snapshot_of(self.engine, self.run_id, with_reviews=False)
        self.look(replace(lagging, reviews=event.reviews))

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def carry_out_one(self, data: st.DataObject) -> None:
        """One effect is carried out, in any order (several replicas act at once)."""
        index = data.draw(st.integers(0, len(self.pending) - 1))
        self.carry_out(self.pending.pop(index))

    @precondition(lambda self: bool(self.pending))
    @rule()
    def carry_out_all(self) -> None:
        while self.pending:
            self.carry_out(self.pending.pop(0))

    @rule(minutes=st.integers(1, 90))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))
        self.engine.process()

    @rule()
    def restart(self) -> None:
        """The process dies after a save: the store's value comes back, pending effects and
        metric reads are lost; durable timers (in the database) survive."""
        kept = json.loads(json.dumps(stored(self.rollout)))
        back = restored(kept)
        assert back == self.rollout, "the store does not keep the whole rollout"
        self.rollout = back
        self.pending.clear()
        self.reads.clear()

    # -- timers and gates -----------------------------------------------------------------------

    def due_timers(self) -> list[tuple[str, str, datetime]]:
        return sorted(t for t in self.timers if t[2] <= self.clock())

    @precondition(lambda self: bool(self.due_timers()))
    @rule(data=st.data(), twice=st.booleans())
    def timer_fires(self, data: st.DataObject, twice: bool) -> None:
        """A due window timer fires (late, by whatever the clock says); it stays until its gate
        ran, and fires again if the process dies before that."""
        track, stage, due_at = data.draw(st.sampled_from(self.due_timers()))
        decision = window_ended(self.rollout, track=track, stage=stage, due_at=due_at)
        self.apply(decision)
        if not decision.effects:
            self.timers.discard((track, stage, due_at))
            self.fired.add((track, stage, due_at))
        if twice:
            self.apply(window_ended(self.rollout, track=track, stage=stage, due_at=due_at))

    @precondition(lambda self: bool(self.fired))
    @rule(data=st.data())
    def completed_timer_fires_again(self, data: st.DataObject) -> None:
        track, stage, due_at = data.draw(st.sampled_from(sorted(self.fired)))
        self.apply(window_ended(self.rollout, track=track, stage=stage, due_at=due_at))

    @precondition(lambda self: bool(self.reads))
    @rule(data=st.data())
    def metrics_answer(self, data: st.DataObject) -> None:
        """The metrics of one window come back (in any order, however late)."""
        self.answer(data.draw(st.integers(0, len(self.reads) - 1)))

    def answer(self, index: int) -> None:
        read, window_end = self.reads.pop(index)
        key = (read.track, read.stage, window_end)
        decision = gate_evaluated(
            self.rollout,
            PLAN,
            track=read.track,
            stage=read.stage,
            verdict=self.verdicts[(read.track, read.stage)],
            now=self.clock(),
        )
        if decision.effects:  # the stage took the verdict (the service posts its gate card)
            self.evaluations[key] += 1
        self.apply(decision)
        if key in self.timers:  # the timer completes once its gate ran
            self.timers.discard(key)
            self.fired.add(key)

    # -- people ---------------------------------------------------------------------------------

    def click(self, decide: Any) -> None:
        try:
            decision = decide()
        except InvalidTransition:
            return  # refused with a message: nothing changed
        self.apply(decision)

    @rule(track=st.sampled_from(list(PLAN.tracks)), override=st.booleans())
    def promote_click(self, track: str, override: bool) -> None:
        self.overriding = override
        try:
            self.click(
                lambda: promote(self.rollout, PLAN, track=track, actor="U2", override=override)
            )
        finally:
            self.overriding = False

    @rule(track=st.sampled_from(list(PLAN.tracks)), reason=st.sampled_from(["", "bad build"]))
    def stop_click(self, track: str, reason: str) -> None:
        """Roll back (relay) or trip the kill-switch (desktop)."""
        before = self.rollout.track(track).state
        self.click(
            lambda: abort(
                self.rollout, PLAN, track=track, actor="U3", reason=reason, now=self.clock()
            )
        )
        after = self.rollout.track(track)
        if before is TrackState.ACTIVE and after.state is not TrackState.ACTIVE:
            wanted = TrackState.ROLLED_BACK if track == "relay" else TrackState.HALTED
            assert after.state is TrackState.ABORTING and after.ending is wanted

    @rule(track=st.sampled_from(list(PLAN.tracks)), minutes=st.integers(1, 60))
    def extend_click(self, track: str, minutes: int) -> None:
        by = timedelta(minutes=minutes)
        self.click(
            lambda: extend(self.rollout, PLAN, track=track, actor="U4", by=by, now=self.clock())
        )

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def github_approves_each_environment_once(self) -> None:
        if not hasattr(self, "engine"):
            return
        approved = Counter(
            environment
            for review in self.engine.reviews
            if review.state == "approved"
            for environment in review.environments
        )
        assert all(n == 1 for n in approved.values()), approved

    @invariant()
    def each_window_end_is_evaluated_at_most_once(self) -> None:
        if hasattr(self, "evaluations"):
            assert all(n == 1 for n in self.evaluations.values()), self.evaluations

    def teardown(self) -> None:
        """The release manager sees it through: no more stops or extensions, every hold is
        promoted (overriding an INCONCLUSIVE one), and the world runs until the rollout ends.
        Every window ends and is evaluated, and each track ends where its gates and its
        stops send it."""
        if not hasattr(self, "engine"):
            return
        for _ in range(40):
            self.carry_out_all()
            while self.reads:
                self.answer(0)
            for track, stage, due_at in self.due_timers():
                decision = window_ended(self.rollout, track=track, stage=stage, due_at=due_at)
                self.apply(decision)
                if not decision.effects:
                    self.timers.discard((track, stage, due_at))
            self.overriding = True
            for track in holding_tracks(self.rollout):
                self.apply(promote(self.rollout, PLAN, track=track, actor="U2", override=True))
            self.overriding = False
            self.poll()
            self.time_passes(30)
        assert self.rollout.phase is Phase.ENDED, [
            (t.name, t.state, t.current) for t in self.rollout.tracks
        ]
        for track in self.rollout.tracks:
            failed_gate = any(s.state is StageState.FAILED_GATE for s in track.stages)
            relay = PLAN.track(track.name).gate is GateKind.RELAY
            ending = TrackState.ROLLED_BACK if relay else TrackState.HALTED
            if track.name in self.ever_stopped or failed_gate:
                assert track.state is ending, f"{track.name} stopped but ended {track.state}"
            else:
                assert track.state is TrackState.COMPLETED, f"{track.name} ended {track.state}"
            for stage in track.stages:
                if stage.verdict is not None:
                    assert stage.verdict == self.verdicts[(track.name, stage.key)]


RolloutWorld.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
)
TestRolloutWorld = RolloutWorld.TestCase


def test_a_restart_keeps_the_whole_rollout() -> None:
    """The round trip the restarts rely on is lossless, so a restart in the machine above is
    exactly what the store brings back."""
    world = RolloutWorld()
    world.dispatch(["pass", "fail", "none", "pass"])
    world.carry_out_all()
    for _ in range(6):
        world.poll()
        world.carry_out_all()
        world.time_passes(40)
        for track, stage, due_at in world.due_timers():
            world.apply(window_ended(world.rollout, track=track, stage=stage, due_at=due_at))
        while world.reads:
            world.answer(0)
    assert any(s.verdict is not None for t in world.rollout.tracks for s in t.stages)
    assert restored(json.loads(json.dumps(stored(world.rollout)))) == world.rollout


def test_a_late_snapshot_never_rejects_a_stage_that_already_deployed() -> None:
    """Found by the machine above: the kill-switch tripped while the internal ring was
    deploying; its job finished (the stage is STOPPED, "deployed, not observed"); then a late
    snapshot from before the approval still lists `desktop-internal` as waiting."""
    world = RolloutWorld()
    world.dispatch(["pass", "pass", "pass", "pass"])
    world.poll()
    late = world.history[-1]
    assert late.is_waiting("desktop-internal")
    world.carry_out_all()
    world.time_passes(2)  # the ring's job ran to its end
    world.stop_click("desktop", "bad build")
    world.poll()
    assert world.rollout.track("desktop").stage("internal").state is StageState.STOPPED

    decision = reconcile(world.rollout, PLAN, late, world.clock())

    assert decision.rollout.track("desktop").stage("internal").state is StageState.STOPPED
    assert not [e for e in decision.effects if isinstance(e, Review) and not e.approve]
    told = [e.event for e in decision.effects if isinstance(e, Announce)]
    assert not [e for e in told if isinstance(e, StageRejected)]

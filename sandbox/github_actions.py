"""The GitHub Actions run/job state machine behind the GitHub simulator (no HTTP here).

It follows GitHub's rules: a job starts when its needs completed; a job whose needs did not all
succeed is skipped, unless it is an `if: failure()` job and something before it failed; a job
targeting an environment that requires review, or has a GitHub App's custom protection rule,
waits until each is approved (a review through `pending_deployments`, the App's answer through
`deployment_protection_rule`); a rejection fails the job.
Time comes from an injected clock; a job takes its configured duration on that clock, and
timestamps chain (a job starts when its needs completed), so jumping the clock is deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Literal

from sandbox.github_gates import EnvironmentGates
from sandbox.github_job_failures import FailurePlan, has_job
from sandbox.github_runs import (
    COMPLETE_STEP,
    SETUP_STEP,
    ActionsError,
    Deployment,
    Ids,
    JobFailure,
    Review,
    SimJob,
    SimRun,
    SimStep,
    Transition,
    ancestors,
    commit_sha,
)
from sandbox.workflows import StepContext, StepOutcome, Workflow

Clock = Callable[[], datetime]
RERUN_WITHIN = timedelta(days=30)
"""GitHub re-runs a run (or a job of it) up to 30 days after the run was created."""
RERUNS_AT_MOST = 50
"""GitHub re-runs a run at most 50 times (attempts 2 to 51)."""


class ActionsEngine(EnvironmentGates):
    """Runs workflow runs to a fixed point at the clock's current time, GitHub's way."""

    def __init__(
        self,
        *,
        workflows: Iterable[Workflow],
        protected_environments: Iterable[str] | None,
        clock: Clock,
        secrets: Mapping[str, datetime],
        files: Mapping[str, Mapping[str, str]],
        job_duration: timedelta = timedelta(0),
        ids: Ids | None = None,
        environment_secrets: Mapping[str, Mapping[str, datetime]] | None = None,
    ) -> None:
        self.ids = ids or Ids()
        """Shared by every repository of one simulator (GitHub's ids are global)."""
        self.workflows = list(workflows)
        self.clock = clock
        self.job_duration = job_duration
        self.job_durations: dict[str, timedelta] = {}
        self.runs: dict[int, SimRun] = {}
        self.reviews: list[Review] = []
        self.deployments: list[Deployment] = []
        self.listeners: list[Callable[[Transition], None]] = []
        self._secrets = secrets
        self._environment_secrets = environment_secrets or {}
        """By environment: a job in one reads its secrets, then the repository's and the
        organization's (GitHub: the lowest level wins)."""
        self._files = files
        self.npm_up_to_date = False
        """The Release workflow's packages are all on npm already: its publish step publishes
        nothing (and passes, whatever the token)."""
        self.npm_changesets_pending = False
        """The Release workflow's ref has changesets to version: its publish step opens the
        "Version Packages" pull request and publishes nothing (and passes, whatever the token)."""
        names = [job.environment for wf in self.workflows for job in wf.jobs if job.environment]
        self.environments: dict[str, int] = {}
        for name in [*names, *(protected_environments or ())]:
            if name not in self.environments:
                self.environments[name] = next(self.ids.environments)
        self.protected = set(names if protected_environments is None else protected_environments)
        self.self_review_prevented: set[str] = set()
        """Protected environments whose rule has "Prevent self-review" ticked (as GitHub lists
        it; the approvals are not refused)."""
        self.rule_environments: set[str] = set()
        self.rule_reviews: list[Review] = []
        self.bypasses: list[Review] = []
        self._failures = FailurePlan()
        self._run_numbers: dict[int, int] = {}
        self._touched: set[int] = set()
        """Runs that may move: started, or a job of theirs began or completed since they
        were last advanced (a run nothing touched waits on a review or on a job's end)."""
        self._ends: list[tuple[datetime, int]] = []
        """A heap of the running jobs' ends and their runs: a run moves again at its job's end."""

    # -- runs -----------------------------------------------------------------------------------

    def start_run(
        self,
        workflow: Workflow,
        *,
        event: str,
        branch: str,
        actor: str,
        inputs: Mapping[str, str],
        created_at: datetime | None = None,
    ) -> SimRun:
        at = created_at or self.clock()
        number = self._run_numbers.get(workflow.id, 0) + 1
        self._run_numbers[workflow.id] = number
        run = SimRun(
            id=next(self.ids.runs),
            number=number,
            workflow=workflow,
            event=event,
            branch=branch,
            head_sha=commit_sha(branch),
            actor=actor,
            inputs=dict(inputs),
            created_at=at,
            updated_at=at,
        )
        self.runs[run.id] = run
        self._attempt(run, at)
        return run

    def rerun(self, run_id: int, *, by: str = "") -> None:
        """Re-run every job of a completed run (`POST .../rerun`, by `by`): its next attempt,
        the same run id, new jobs; the review history keeps the earlier attempts' reviews."""
        run = _next_attempt(self.runs[run_id], self.clock(), by)
        self._attempt(run, run.updated_at)

    def rerun_job(self, run_id: int, job_id: int, *, by: str = "") -> None:
        """Re-run one job of a completed run (`POST .../jobs/{job_id}/rerun`, by `by`): the
        run's next attempt, in which that job and every job that needs it (directly or not)
        run again as new jobs, the others keeping their results."""
        again = _needing(self.runs[run_id], job_id)
        run = _next_attempt(self.runs[run_id], self.clock(), by)
        self._attempt(run, run.updated_at, again)

    def _attempt(self, run: SimRun, at: datetime, again: set[str] | None = None) -> None:
        """The jobs of the run's current attempt, each queued (of a re-run, those `again`; the
        others keep their results), and the run requested."""
        run.attempt_started_at = at
        kept = {job.key: job for job in run.jobs}
        run.jobs = []
        for spec in run.workflow.jobs:
            if again is not None and spec.key not in again:
                run.jobs.append(kept[spec.key])
                continue
            names = [SETUP_STEP, *(step.name for step in spec.steps), COMPLETE_STEP]
            steps = [SimStep(name=name, number=i) for i, name in enumerate(names, start=1)]
            run.jobs.append(SimJob(next(self.ids.jobs), run.id, spec, at, steps))
        self._failures.attach(run)
        self._touched.add(run.id)
        self._emit(Transition("workflow_run", "requested", run))

    def fail_job(
        self,
        run: int | Literal["next", "every"],
        job: str,
        *,
        lines: tuple[str, ...],
        step: str | None,
    ) -> None:
        failure = JobFailure(step, lines)
        specs = [wf.job(job) for wf in self.workflows if has_job(wf, job)]
        if not specs:
            raise ValueError(f"no workflow has a job {job!r}")
        if step is not None and not any(step in (s.name for s in spec.steps) for spec in specs):
            raise ValueError(f"job {job!r} has no step {step!r}")
        if run == "next" or run == "every":
            self._failures.add(run, job, failure)
        else:
            sim_job = self.runs[run].job(job)
            if sim_job.status == "completed":
                raise ValueError(f"job {job!r} of run {run} already completed")
            sim_job.failure = failure

    def cancel(self, run_id: int) -> None:
        run = self.runs[run_id]
        if run.status == "completed":
            raise ActionsError(409, "Cannot cancel a workflow run that is completed.")
        now = self.clock()
        for job in run.jobs:
            if job.status != "completed":
                for step in job.steps:
                    if step.status != "completed":
                        step.status, step.conclusion = "completed", "cancelled"
                        step.completed_at = now if step.started_at else None
                self._complete(run, job, "cancelled", now)
        self._update_run(run)

    def process(self) -> bool:
        """Move every run as far as it can go at the clock's time; True when anything moved.
        Only the runs that can move are looked at (see `_touched`), in the order they were
        started, pass after pass, as GitHub would move them all at once."""
        now = self.clock()
        while self._ends and self._ends[0][0] <= now:
            self._touched.add(heapq.heappop(self._ends)[1])
        moved = False
        while self._touched:
            touched, self._touched = sorted(self._touched), set()
            for position, run_id in enumerate(touched):
                run = self.runs[run_id]
                try:
                    advanced = run.status != "completed" and self._advance(run, now)
                except BaseException:
                    self._touched.update(touched[position:])  # looked at again next time
                    raise
                if advanced:
                    moved = True
                    self._touched.add(run.id)
        return moved

    def _advance(self, run: SimRun, now: datetime) -> bool:
        changed = False
        for job in run.jobs:
            if job.status == "queued":
                changed |= self._try_start(run, job)
            elif job.status == "in_progress" and job.due_at is not None and job.due_at <= now:
                self._finish(run, job)
                changed = True
        return self._update_run(run) or changed

    def _try_start(self, run: SimRun, job: SimJob) -> bool:
        needs = [run.job(key) for key in job.spec.needs]
        if any(need.status != "completed" for need in needs):
            return False
        ready_at = max([run.created_at, *(need.completed_at or run.created_at for need in needs)])
        if job.spec.if_failure:
            runs = any(a.conclusion == "failure" for a in ancestors(run, job)) and all(
                run.job(key).conclusion == "success" for key in job.spec.if_succeeded
            )
        else:
            runs = all(need.conclusion == "success" for need in needs)
        if not runs:
            job.steps = []
            job.started_at = ready_at
            self._complete(run, job, "skipped", ready_at)
            return True
        self._emit(Transition("workflow_job", "queued", run, job))
        job.gates = self._gates(job.environment)
        if job.gates:
            job.status, job.waiting_since = "waiting", ready_at
            run.updated_at = max(run.updated_at, ready_at)
            self._emit(Transition("workflow_job", "waiting", run, job))
            if "rule" in job.gates:
                # GitHub creates the deployment, `waiting`, and asks the rule's App.
                deployment = self._deploy(run, job, run.actor, ready_at)
                self._set_status(deployment, "waiting", ready_at)
                self._emit(Transition("deployment_protection_rule", "requested", run, job))
        else:
            self._begin(run, job, ready_at)
        return True

    def _begin(self, run: SimRun, job: SimJob, at: datetime) -> None:
        duration = self.job_durations.get(job.key, self.job_durations.get(job.name))
        job.status, job.started_at = "in_progress", at
        run.updated_at = max(run.updated_at, at)
        job.due_at = at + (self.job_duration if duration is None else duration)
        heapq.heappush(self._ends, (job.due_at, run.id))
        self._touched.add(run.id)
        first = job.steps[0]
        first.status, first.started_at = "in_progress", at
        self._emit(Transition("workflow_job", "in_progress", run, job))

    def _finish(self, run: SimRun, job: SimJob) -> None:
        assert job.started_at is not None and job.due_at is not None
        environment = self._environment_secrets.get(job.environment or "", {})
        context = StepContext(
            inputs=run.inputs,
            secrets=frozenset(self._secrets) | frozenset(environment),
            files=self._files.get(run.branch, {}),
            npm_up_to_date=self.npm_up_to_date,
            npm_changesets_pending=self.npm_changesets_pending,
        )
        slot = (job.due_at - job.started_at) / len(job.steps)
        failed = False
        for index, step in enumerate(job.steps):
            if failed and step.name != COMPLETE_STEP:
                step.status, step.conclusion = "completed", "skipped"
                continue
            step.started_at = job.started_at + slot * index
            step.completed_at = step.started_at + slot
            outcome = self._run_step(job, step, context)
            step.status, step.lines = "completed", outcome.lines
            step.conclusion = "success" if outcome.passed else "failure"
            failed = failed or not outcome.passed
        self._complete(run, job, "failure" if failed else "success", job.due_at)

    def _run_step(self, job: SimJob, step: SimStep, context: StepContext) -> StepOutcome:
        specs = {s.name: s for s in job.spec.steps}
        failure = job.failure
        target = job.spec.steps[-1].name if failure and failure.step is None else None
        if failure is not None and step.name in (failure.step, target):
            return StepOutcome(False, failure.lines)
        if step.name in specs:
            return specs[step.name].run(context)
        return StepOutcome(True, ())

    def _complete(self, run: SimRun, job: SimJob, conclusion: str, at: datetime) -> None:
        job.status, job.conclusion, job.completed_at = "completed", conclusion, at
        job.started_at = job.started_at or at
        if job.deployment is not None:
            self._set_status(
                job.deployment, "success" if conclusion == "success" else "failure", at
            )
        run.updated_at = max(run.updated_at, at)
        self._touched.add(run.id)
        self._emit(Transition("workflow_job", "completed", run, job))

    def _update_run(self, run: SimRun) -> bool:
        before = run.status
        statuses = {job.status for job in run.jobs}
        if statuses <= {"completed"}:
            conclusions = {job.conclusion for job in run.jobs}
            run.status = "completed"
            if "failure" in conclusions:
                run.conclusion = "failure"
            elif "cancelled" in conclusions:
                run.conclusion = "cancelled"
            else:
                run.conclusion = "success"
        elif "in_progress" in statuses:
            run.status = "in_progress"
        elif "waiting" in statuses:
            run.status = "waiting"
        if run.status == before:
            return False
        if before == "queued":
            self._emit(Transition("workflow_run", "in_progress", run))
        if run.status == "completed":
            self._emit(Transition("workflow_run", "completed", run))
        return True

    def _emit(self, transition: Transition) -> None:
        for listener in self.listeners:
            listener(transition)


def _next_attempt(run: SimRun, now: datetime, by: str) -> SimRun:
    """The run, at its next attempt (re-run by `by`), unless GitHub refuses to re-run it (or a
    job of it): 403 while it goes, past 30 days from its creation, and after 50 re-runs."""
    if run.status != "completed":
        raise ActionsError(403, "This workflow is already running")
    if now - run.created_at > RERUN_WITHIN:
        raise ActionsError(
            403, "Unable to re-run this workflow run because it was created over a month ago"
        )
    if run.attempt > RERUNS_AT_MOST:
        raise ActionsError(403, "This workflow run has reached the maximum number of re-runs")
    run.attempt += 1
    run.rerun_by = by
    run.status, run.conclusion, run.updated_at = "queued", None, now
    return run


def _needing(run: SimRun, job_id: int) -> set[str]:
    """The key of the run's job `job_id` (404 when its latest attempt has none) and of every
    job that needs it, directly or not."""
    job = next((j for j in run.jobs if j.id == job_id), None)
    if job is None:
        raise ActionsError(404, "Not Found")
    again = {job.key}
    while grown := {s.key for s in run.workflow.jobs if again & set(s.needs)} - again:
        again |= grown
    return again

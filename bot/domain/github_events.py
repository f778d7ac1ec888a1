"""GitHub webhook deliveries about workflow runs, reduced to what the bot follows.

A delivery never changes a rollout by itself: it names the run to reconcile (the same
level-triggered reconcile the poller does) and, for the `all` notification level, a line for
the thread saying what GitHub reported. Reviews carry who approved or rejected an
environment, which the reconcile uses when GitHub's review history lags behind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain.plan import RolloutPlan
from bot.domain.protection_rules import EVENT, environment_jobs
from bot.domain.run import EnvironmentReview
from bot.domain.text import clean_text

FOLLOWED = frozenset(
    {"workflow_run", "workflow_job", "deployment", "deployment_status", "deployment_review"}
)
"""The events to subscribe the webhook to (besides `ping`)."""

_RUN_URL = re.compile(r"/actions/runs/(\d+)")


@dataclass(frozen=True)
class RunEvent:
    """One delivery: which run of which repository it is about, and what happened."""

    event: str
    action: str
    repository: str
    """`owner/name`, empty when the payload names none."""
    run_id: int | None
    job: str | None = None
    environment: str | None = None
    outcome: str | None = None
    """A job's or run's conclusion, or a deployment status's state."""
    reviews: tuple[EnvironmentReview, ...] = ()


def repository_of(payload: Mapping[str, Any]) -> str:
    """The `repository.full_name` a delivery is about ("" when it names none)."""
    return _text(_object(payload.get("repository")).get("full_name"))


def repository_id_of(payload: Mapping[str, Any]) -> int | None:
    """GitHub's id of the repository a delivery is about, which a rename or transfer keeps
    (None when it gives none)."""
    return _number(_object(payload.get("repository")).get("id"))


def run_event(event: str, payload: Mapping[str, Any]) -> RunEvent | None:
    """The delivery as a RunEvent; None for an event the bot does not follow."""
    if event not in FOLLOWED:
        return None
    action = _text(payload.get("action"))
    repository = repository_of(payload)
    run = _object(payload.get("workflow_run"))
    run_id = _number(run.get("id"))
    if event == "workflow_run":
        return RunEvent(event, action, repository, run_id, outcome=_text(run.get("conclusion")))
    if event == "workflow_job":
        job = _object(payload.get("workflow_job"))
        return RunEvent(
            event,
            action,
            repository,
            _number(job.get("run_id")),
            job=_text(job.get("name")) or None,
            outcome=_text(job.get("conclusion")) or None,
        )
    if event == "deployment":
        deployment = _object(payload.get("deployment"))
        environment = _text(deployment.get("environment")) or None
        return RunEvent(event, action, repository, run_id, environment=environment)
    if event == "deployment_status":
        status = _object(payload.get("deployment_status"))
        deployment = _object(payload.get("deployment"))
        if run_id is None:  # older payloads link the run only through the status's URLs
            run_id = run_id_in(status.get("target_url"), status.get("log_url"))
        environment = _text(status.get("environment") or deployment.get("environment"))
        return RunEvent(
            event,
            action,
            repository,
            run_id,
            environment=environment or None,
            outcome=_text(status.get("state")) or None,
        )
    return _review_event(action, repository, run_id, payload)


def _review_event(
    action: str, repository: str, run_id: int | None, payload: Mapping[str, Any]
) -> RunEvent:
    jobs = [_object(job) for job in payload.get("workflow_job_runs") or []]
    jobs.append(_object(payload.get("workflow_job_run")))
    environments = [_text(payload.get("environment"))]
    environments += [_text(job.get("environment")) for job in jobs]
    named = tuple(dict.fromkeys(name for name in environments if name))
    reviewer = _text(_object(payload.get("approver")).get("login"))
    reviews: tuple[EnvironmentReview, ...] = ()
    if action in ("approved", "rejected") and reviewer:
        comment = _text(payload.get("comment"))
        reviews = tuple(EnvironmentReview(name, action, reviewer, comment) for name in named)
    return RunEvent(
        "deployment_review",
        action,
        repository,
        run_id,
        job=next((_text(job.get("name")) for job in jobs if job.get("name")), None),
        environment=", ".join(named) or None,
        reviews=reviews,
    )


@dataclass(frozen=True)
class GitHubReported:
    """A delivery the thread is told of at the `all` level."""

    event: RunEvent
    environment: str | None
    """The environment of the event's job, from the plan (job payloads do not say)."""


_TOLD = {
    "workflow_job": {"waiting", "queued", "in_progress", "completed"},
    "workflow_run": {"requested", "in_progress", "completed"},
    "deployment": {"created"},
}


def reported(event: RunEvent, plan: RolloutPlan) -> GitHubReported | None:
    """What the thread is told of this delivery at the `all` level (None: nothing). A
    protection rule's request at an environment the plan does not name is not: the
    reconcile tells it, with what to do (`WaitsOutsidePlan`), at every level."""
    if event.event == EVENT:
        told = (event.environment or "").casefold() in environment_jobs(plan)
    elif event.event in _TOLD:
        told = event.action in _TOLD[event.event]
    else:
        told = event.event == "deployment_status" or event.action == "requested"
        told = told or bool(event.reviews)
    return GitHubReported(event, _environment_of(event, plan)) if told else None


def _environment_of(event: RunEvent, plan: RolloutPlan) -> str | None:
    """The environment a job deploys to, from the plan (workflow_job payloads do not say)."""
    for track in plan.tracks.values():
        if event.job is None:
            break
        if (stage := track.stage_for_job(event.job)) is not None:
            return stage.environment
        if track.on_failure.job == event.job:
            return track.on_failure.environment
    return None


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return clean_text(value) if isinstance(value, str) else ""


def _number(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def run_id_in(*urls: object) -> int | None:
    """The run id the first of these URLs that links a run names (`…/actions/runs/{id}…`)."""
    for url in urls:
        if isinstance(url, str) and (found := _RUN_URL.search(url)):
            return int(found.group(1))
    return None

"""A job of a run as GitHub lists it, made the domain's `JobSnapshot` (for `runs`)."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.domain.run import JobConclusion, JobSnapshot, JobStatus

_log = logging.getLogger(__name__)


def job_snapshot(
    run_id: int,
    name: str,
    status: str,
    conclusion: str | None,
    completed_at: datetime | None,
    html_url: str | None,
    *,
    ran: bool = True,
    job_id: int = 0,
    started_at: datetime | None = None,
) -> JobSnapshot:
    """A job as the domain sees it. GitHub adds statuses and conclusions over time: an unknown
    status counts as queued (not started, nothing to act on yet); an unknown conclusion of a
    completed job counts as a failure, so the rollout reports it instead of waiting forever."""
    try:
        job_status = JobStatus(status)
    except ValueError:
        job_status = JobStatus.QUEUED
    job_conclusion: JobConclusion | None = None
    if job_status is JobStatus.COMPLETED:
        try:
            job_conclusion = JobConclusion(conclusion or "")
        except ValueError:
            _log.warning(
                "GitHub: run %s: job %r ended with unknown conclusion %r; treated as a failure",
                run_id,
                name,
                conclusion,
            )
            job_conclusion = JobConclusion.FAILURE
    return JobSnapshot(
        name=name,
        job_id=job_id,
        status=job_status,
        conclusion=job_conclusion,
        completed_at=completed_at,
        html_url=html_url,
        started_at=started_at
        if job_status in (JobStatus.IN_PROGRESS, JobStatus.COMPLETED)
        else None,
        ran=ran,
    )

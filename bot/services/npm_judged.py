"""A Release run's result, as the walkthrough shows it: its publishing job's steps and log,
judged (`bot.domain.npm_run`)."""

from __future__ import annotations

from bot.domain.errors import GitHubError
from bot.domain.npm import ReleaseRun, RunCheck
from bot.domain.npm_run import assess_run
from bot.domain.plan import NpmRelease
from bot.services.ports import ReleaseGateway


async def judged(github: ReleaseGateway, run: ReleaseRun | None, npm: NpmRelease) -> RunCheck:
    """The run's job, its steps and (once it completed) its log, judged."""
    if run is None or not run.completed:
        return assess_run(run, None, None, npm=npm)
    job = await github.release_job(run_id=run.run_id, name=npm.job)
    text: str | None = None
    unavailable: str | None = None
    if job is not None and job.status == "completed" and job.conclusion != "skipped":
        try:
            text = await github.job_log(job.job_id)
        except GitHubError as error:
            unavailable = error.message
    return assess_run(run, job, text, npm=npm, log_unavailable=unavailable)

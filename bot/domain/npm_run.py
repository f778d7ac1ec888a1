"""A Release run's verdict on the npm publish credentials: its validate and publish steps, and
the npm error its log shows (`bot.domain.npm`'s `RunCheck`). Pure: GitHub's answers come in as
values."""

from __future__ import annotations

from bot.domain.npm import (
    JobStep,
    ReleaseJob,
    ReleaseRun,
    RunCheck,
    RunSummary,
    SecretCheck,
    StepVerdict,
    clip_error,
)
from bot.domain.npm_log import (
    npm_error,
    output_lines,
    printed_skip_warning,
    published_nothing,
    published_some,
)
from bot.domain.plan import NpmRelease


def _verdict(step: JobStep | None, *, warned: bool = False) -> StepVerdict:
    if step is None:
        return StepVerdict.MISSING
    if step.status != "completed" or step.conclusion in (None, "cancelled"):
        return StepVerdict.NOT_RUN
    if step.conclusion == "skipped":
        return StepVerdict.SKIPPED
    if step.conclusion in ("success", "neutral"):
        return StepVerdict.WARNED if warned else StepVerdict.PASSED
    return StepVerdict.FAILED


def _published_nothing(publish: StepVerdict, lines: list[str]) -> bool | None:
    """True when the passed publish step shows it published nothing, False when it shows
    packages published, None when its log shows neither (or it did not pass)."""
    if publish is not StepVerdict.PASSED:
        return None
    if published_nothing(lines):
        return True
    return False if published_some(lines) else None


def assess_run(
    run: ReleaseRun | None,
    job: ReleaseJob | None,
    log: str | None,
    *,
    npm: NpmRelease,
    log_unavailable: str | None = None,
) -> RunCheck:
    """The verdict on a Release run: did the validate step pass without the NPM_TOKEN warning,
    did the publish step pass, and if not, which npm error its log shows."""
    if run is None:
        return RunCheck()
    summary = RunSummary.of(run)
    if not run.completed:
        return RunCheck(run=summary)
    if job is None:
        return RunCheck(run=summary, job_found=False)
    lines = output_lines(log) if log is not None else []
    publish = _verdict(job.step(npm.publish_step))
    return RunCheck(
        run=summary,
        job_found=True,
        job_id=job.job_id,
        validate_step=_verdict(job.step(npm.validate_step), warned=printed_skip_warning(lines)),
        publish_step=publish,
        npm_error=npm_error(lines) if publish is StepVerdict.FAILED else None,
        published_nothing=_published_nothing(publish, lines),
        log_unavailable=clip_error(log_unavailable) if log_unavailable else None,
    )


def renewed_since(run: RunSummary | None, secret: SecretCheck | None, *, oidc_only: bool) -> bool:
    """The secret the job reads (step 3's) was updated after the run was created: the run used
    an older value, so its verdict says nothing of the secret now. Never for a job that
    publishes with trusted publishing only (it reads no secret)."""
    if run is None or secret is None or not secret.found or secret.updated_at is None:
        return False
    return not oidc_only and secret.updated_at > run.created_at

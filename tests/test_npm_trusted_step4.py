"""Step 4 (and 5) for a job that publishes with npm trusted publishing only, and steps 1-3 on
GitHub Enterprise Server, where npm trusted publishing takes no OIDC token: pure view and
domain functions."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.adapters.slack.npm_secret_step import add_tone, secret_text
from bot.adapters.slack.npm_steps import (
    WalkthroughSetup,
    create_text,
    create_tone,
    last_run_text,
    release_text,
)
from bot.domain.npm import (
    JobStep,
    ReleaseFollow,
    ReleaseJob,
    ReleasePhase,
    ReleaseRun,
    RunCheck,
    RunSummary,
    SecretCheck,
    StepVerdict,
    Tone,
    Walkthrough,
)
from bot.domain.npm_log import NpmError
from bot.domain.npm_run import assess_run
from bot.domain.npm_secrets import PublishJob, trusted_publishing_on, with_trusted_publishing
from bot.domain.plan import NpmRelease

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SETUP = WalkthroughSetup(repository="acme/scriptum", web_url="https://github.com", npm=NpmRelease())
GHES = WalkthroughSetup(
    repository="acme/scriptum",
    web_url="https://ghe.acme.test",
    npm=NpmRelease(),
    trusted_publishing=False,
)
OIDC_ONLY = SecretCheck(max_age_days=80, oidc=True, oidc_only=True)


def _run(validate: StepVerdict, publish: StepVerdict, error: NpmError | None = None) -> RunCheck:
    summary = RunSummary(
        id=7,
        number=3,
        event="push",
        branch="main",
        created_at=NOW,
        status="completed",
        conclusion="failure" if StepVerdict.FAILED in (validate, publish) else "success",
    )
    return RunCheck(
        run=summary,
        job_found=True,
        job_id=9,
        validate_step=validate,
        publish_step=publish,
        npm_error=error,
    )


def test_an_oidc_only_job_needs_no_validate_step() -> None:
    """Before, step 4 said :x: and sent them to the plan's `npm.validate_step`, although steps
    1-3 said NPM_TOKEN (which that step validates) is not needed."""
    check = _run(StepVerdict.MISSING, StepVerdict.PASSED)
    walkthrough = Walkthrough(secret=OIDC_ONLY, last_run=check)
    assert walkthrough.last_run_tone is Tone.OK
    text = last_run_text(check, OIDC_ONLY, SETUP, oidc_only=True)
    assert "npm.validate_step" not in text
    assert ":x:" not in text
    assert "trusted publishing" in text
    # A job that reads NPM_TOKEN still needs it.
    assert Walkthrough(secret=SecretCheck(max_age_days=80), last_run=check).last_run_tone is (
        Tone.FAILED
    )
    assert "npm.validate_step" in last_run_text(check, None, SETUP, oidc_only=False)


def test_the_npm_token_warning_is_expected_of_an_oidc_only_job() -> None:
    """When the publish step's log shows packages published (else the warning's "skipping
    npm publish" may be true: below)."""
    check = _run(StepVerdict.WARNED, StepVerdict.PASSED).model_copy(
        update={"published_nothing": False}
    )
    assert Walkthrough(secret=OIDC_ONLY, last_run=check).last_run_tone is Tone.OK
    text = last_run_text(check, OIDC_ONLY, SETUP, oidc_only=True)
    assert "create the token" not in text


def test_eneedauth_of_an_oidc_only_job_points_at_trusted_publishing() -> None:
    """Before, it advised handing npm NPM_TOKEN in the step's env."""
    check = _run(StepVerdict.MISSING, StepVerdict.FAILED, NpmError.NEED_AUTH)
    walkthrough = Walkthrough(secret=OIDC_ONLY, last_run=check)
    assert walkthrough.last_run_tone is Tone.FAILED
    text = last_run_text(check, OIDC_ONLY, SETUP, oidc_only=True)
    assert "secrets.NPM_TOKEN" not in text and "steps 1 and 2" not in text
    for needed in ("trusted publisher", "release.yml", "acme/scriptum", "`id-token: write`"):
        assert needed in text
    assert "11.5.1" in text and "22.14" in text
    for error in (NpmError.UNAUTHORIZED, NpmError.FORBIDDEN, NpmError.NOT_FOUND):
        failed = _run(StepVerdict.MISSING, StepVerdict.FAILED, error)
        shown = last_run_text(failed, OIDC_ONLY, SETUP, oidc_only=True)
        assert "trusted publisher" in shown and "(step 1)" not in shown, error
    # Step 5's run is judged the same way.
    release = ReleaseFollow(requested_by="U1", phase=ReleasePhase.DONE, run_id=7, check=check)
    assert "secrets.NPM_TOKEN" not in release_text(release, SETUP, oidc_only=True)
    passed = release.model_copy(update={"check": _run(StepVerdict.MISSING, StepVerdict.PASSED)})
    assert Walkthrough(secret=OIDC_ONLY, release=passed).release_tone is Tone.OK


def test_trusted_publishing_is_github_coms_only() -> None:
    assert trusted_publishing_on("https://api.github.com")
    assert trusted_publishing_on("https://api.github.com/")
    assert not trusted_publishing_on("https://ghe.acme.test/api/v3")
    assert not trusted_publishing_on("https://ghe.acme.test/api/v3/")
    assert not trusted_publishing_on("https://api.acme.ghe.com")
    job = PublishJob(oidc=True, oidc_only=True)
    assert with_trusted_publishing(job, available=True) == job
    assert with_trusted_publishing(job, available=False) == PublishJob()


def test_on_enterprise_server_an_oidc_job_still_needs_the_token() -> None:
    """npm trusted publishing takes no GHES OIDC token: steps 1-3 check NPM_TOKEN, with a note."""
    missing = SecretCheck(max_age_days=80)  # the job's OIDC flags dropped on GHES
    walkthrough = Walkthrough(secret=missing)
    assert missing.tone is Tone.FAILED
    assert add_tone(walkthrough) is Tone.FAILED and create_tone(walkthrough) is Tone.TODO
    text = secret_text(missing, GHES)
    assert "add it (step 2)" in text and "Enterprise Server" in text
    assert "Enterprise Server" not in secret_text(missing, SETUP)
    assert "Token-free alternative" not in create_text(GHES)
    assert "Enterprise Server" in create_text(GHES)
    assert "Token-free alternative" in create_text(SETUP)


def test_an_oidc_only_run_that_published_nothing_speaks_of_no_token() -> None:
    check = _run(StepVerdict.MISSING, StepVerdict.PASSED).model_copy(
        update={"published_nothing": True}
    )
    assert Walkthrough(secret=OIDC_ONLY, last_run=check).last_run_tone is Tone.WARNING
    text = last_run_text(check, OIDC_ONLY, SETUP, oidc_only=True)
    assert "published nothing" in text and "trusted publisher" in text
    assert "token" not in text.replace("NPM_TOKEN", "")


def test_an_oidc_only_run_whose_validate_step_skipped_the_publish_is_not_done() -> None:
    """The validate step printed “NPM_TOKEN secret not configured — skipping npm publish.” and
    the publish step passed without showing a package published (a `run:` script that honours
    the validate step's skip exits 0): the job may never publish. Before, step 4 said
    :white_circle: "as expected" and the run was green."""
    log = (
        "2026-03-01T10:00:00.0000000Z ##[group]Run ./validate.sh\n"
        "2026-03-01T10:00:00.0000000Z ##[endgroup]\n"
        "2026-03-01T10:00:01.0000000Z ##[warning]NPM_TOKEN secret not configured — skipping "
        "npm publish.\n"
        "2026-03-01T10:00:02.0000000Z ##[group]Run ./publish.sh\n"
        "2026-03-01T10:00:02.0000000Z ##[endgroup]\n"
        "2026-03-01T10:00:03.0000000Z Skipped: no credentials\n"
    )
    skipped = assess_run(_release_run(), _release_job(), log, npm=NpmRelease())
    assert skipped.validate_step is StepVerdict.WARNED
    assert skipped.publish_step is StepVerdict.PASSED
    assert Walkthrough(secret=OIDC_ONLY, last_run=skipped).last_run_tone is Tone.WARNING
    text = last_run_text(skipped, OIDC_ONLY, SETUP, oidc_only=True)
    assert "as expected" not in text and "skipping npm publish" in text
    # A publish the log shows (changesets' own words) is the trusted publisher's proof.
    published = log + "2026-03-01T10:00:04.0000000Z 🦋  success packages published successfully\n"
    done = assess_run(_release_run(), _release_job(), published, npm=NpmRelease())
    assert Walkthrough(secret=OIDC_ONLY, last_run=done).last_run_tone is Tone.OK
    assert "as expected" in last_run_text(done, OIDC_ONLY, SETUP, oidc_only=True)
    # A token job's warning is judged as before (a warning, whatever was published).
    assert done.tone is Tone.WARNING


def _release_run() -> ReleaseRun:
    return ReleaseRun(
        run_id=7,
        number=3,
        html_url="https://github.com/acme/scriptum/actions/runs/7",
        event="push",
        branch="main",
        created_at=NOW,
        status="completed",
        conclusion="success",
    )


def _release_job() -> ReleaseJob:
    def done(name: str) -> JobStep:
        return JobStep(name=name, status="completed", conclusion="success")

    npm = NpmRelease()
    steps = (done(npm.validate_step), done(npm.publish_step))
    return ReleaseJob(job_id=9, name=npm.job, status="completed", conclusion="success", steps=steps)

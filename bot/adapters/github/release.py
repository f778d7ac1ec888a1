"""What the npm Release walkthrough reads on GitHub: the Actions secret's metadata (of the
publishing job's environment, the repository and the organization), the Release workflow's runs
and jobs, and the tail of a job's log.

Runs and jobs are read as JSON through PyGithub's requester: one run is all that is needed,
and PyGithub's lists fetch pages of a hundred.
"""

from __future__ import annotations

import logging
from urllib.error import HTTPError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

from github import UnknownObjectException
from github.Secret import Secret

from bot.adapters.github.environment_rules import EnvironmentRulesReads
from bot.adapters.github.pages import every_page, first_and_last
from bot.adapters.github.runs import run_jobs
from bot.adapters.github.schema import Run, RunsPage, SecretsPage
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from bot.domain.npm import ReleaseJob, ReleaseRun, SecretMetadata
from bot.domain.npm_secrets import PublishJob, SecretLevels

_log = logging.getLogger(__name__)

_RUN_PAGES = 10
"""Pages of the Release workflow's runs read at most when GitHub's `Link` names no last page
(a thousand runs: the newest may be on the last of them)."""
_SECRET_PAGES = 10
"""Pages of the organization's secrets shared with the repository read at most (a thousand)."""
_LOG_LIMIT = 4 * 1024 * 1024
"""The bytes of a job log kept: its end, where npm's errors are."""


class ReleaseReads:
    """The npm Release workflow of one repository, as the walkthrough follows it."""

    def __init__(self, github: GitHubTransport) -> None:
        self._github = github
        self._protection = EnvironmentRulesReads(github)

    async def secret_levels(self, name: str, job: PublishJob, *, ref: str) -> SecretLevels:
        def read() -> tuple[SecretMetadata | None, SecretMetadata | None]:
            secret = self._github.repo.get_secret(name)  # lazy: the first attribute fetches it
            return _metadata(secret), self._organization_secret(name)

        operation = f"read the Actions secret {name}"
        repository, organization = await self._github.call(operation, read, kind="secret")
        environment, refused = None, None
        protection, unread = None, False
        if job.environment is not None:
            try:
                environment = await self._environment_secret(name, job.environment)
            except GitHubError as error:
                refused = error.message  # not "missing": the bot cannot tell
            try:
                protection = await self._protection.read(job.environment, ref=ref)
            except GitHubError as error:
                _log.warning("GitHub: the rules of environment %s: %s", job.environment, error)
                unread = True
        levels = SecretLevels(
            job=job,
            environment=environment,
            environment_refused=refused,
            repository=repository,
            organization=organization,
            protection=protection,
            protection_unread=unread,
        )
        _log.info("GitHub: Actions secret %s at %s", name, _levels(levels))
        return levels

    async def _environment_secret(self, name: str, environment: str) -> SecretMetadata | None:
        def read() -> SecretMetadata | None:
            found = self._github.repo.get_environment(environment).get_secret(name)  # lazy
            return _metadata(found)

        # 404: the environment has no such secret, or does not exist yet (GitHub creates it
        # when a job that names it runs): either way the job reads the next level's.
        operation = f"read the secret {name} of the environment {environment}"
        return await self._github.call(operation, read, kind="environment_secret")

    def _organization_secret(self, name: str) -> SecretMetadata | None:
        """The organization's secret of that name shared with the repository, if any: the
        workflow reads it when the repository has none of its own (in the pool's thread)."""
        path = f"/repos/{self._github.repository}/actions/organization-secrets"
        try:
            for page in every_page(self._github, path, {"per_page": 100}, most=_SECRET_PAGES):
                for secret in SecretsPage.model_validate(page).secrets:
                    if secret.name == name:
                        return SecretMetadata(
                            name=secret.name,
                            created_at=secret.created_at,
                            updated_at=secret.updated_at,
                        )
        except UnknownObjectException:
            return None  # a repository of a user, not of an organization
        return None

    async def latest_run(self, *, workflow_file: str) -> ReleaseRun | None:
        workflow = quote(workflow_file, safe="")
        path = f"/repos/{self._github.repository}/actions/workflows/{workflow}/runs"

        def read() -> ReleaseRun | None:
            # The newest run, whichever order GitHub lists them in (its reference promises
            # none): on the first page or the last, and in no place within it.
            query = {"per_page": 100, "exclude_pull_requests": "true"}
            runs = [
                run
                for page in first_and_last(self._github, path, query, most=_RUN_PAGES)
                for run in RunsPage.model_validate(page).workflow_runs
            ]
            newest = max(runs, key=lambda run: (run.created_at, run.id), default=None)
            return None if newest is None else newest.release_run()

        return await self._github.call(f"list the runs of {workflow_file}", read, kind="release")

    async def release_run(self, run_id: int) -> ReleaseRun:
        def read() -> ReleaseRun:
            return Run.model_validate(
                self._github.get_json(self._github.runs_path(run_id))
            ).release_run()

        return await self._github.call(f"read run {run_id}", read, run_id=run_id, kind="release")

    async def release_job(self, *, run_id: int, name: str) -> ReleaseJob | None:
        def read() -> ReleaseJob | None:
            path = f"{self._github.runs_path(run_id)}/jobs"
            for job in run_jobs(self._github, path):
                # A matrix job is reported as "name (value, ...)".
                if job.name == name or job.name.startswith(f"{name} ("):
                    return job.release_job()
            return None

        return await self._github.call(
            f"read the jobs of run {run_id}", read, run_id=run_id, kind="release"
        )

    async def job_log(self, job_id: int) -> str:
        operation = f"read the log of job {job_id}"

        def read() -> str:
            # GitHub answers 302 to a short-lived signed address on another host: fetched
            # without the token, which must never leave for a host that is not GitHub's API.
            headers, _ = self._github.client.requester.requestBlobAndCheck(
                "GET", f"/repos/{self._github.repository}/actions/jobs/{job_id}/logs"
            )
            location = str(headers.get("location") or "")
            if urlsplit(location).scheme not in ("https", "http"):
                raise GitHubError(f"Could not {operation}: GitHub gave no address for it.")
            try:
                return _download_tail(location, limit=_LOG_LIMIT)
            except HTTPError as exc:
                # 410 Gone: the log outlived the repository's retention period.
                raise GitHubError(
                    f"Could not {operation}: its download answered {exc.code} "
                    "(logs are deleted after the repository's retention period)."
                ) from None

        return await self._github.call(operation, read, kind="release")


def _metadata(secret: Secret) -> SecretMetadata | None:
    """The secret's name and dates (its first attribute fetches it); None on a 404."""
    try:
        return SecretMetadata(
            name=secret.name, created_at=secret.created_at, updated_at=secret.updated_at
        )
    except UnknownObjectException:
        return None


def _levels(levels: SecretLevels) -> str:
    """Where the secret is, for the log (never its value: GitHub does not show it)."""
    found = [
        f"environment {levels.job.environment}" if levels.environment else "",
        "the repository" if levels.repository else "",
        "the organization" if levels.organization else "",
    ]
    said = ", ".join(place for place in found if place) or "no level"
    return said + (" (environment not checked)" if levels.environment_refused else "")


def _download_tail(url: str, *, limit: int) -> str:
    request = Request(url, headers={"User-Agent": "rollout-bot"})  # noqa: S310 - http(s) only
    kept = bytearray()
    with urlopen(request, timeout=30) as response:  # noqa: S310 - http(s) checked by the caller
        while chunk := response.read(64 * 1024):
            kept += chunk
            if len(kept) > limit:
                del kept[:-limit]
    return kept.decode("utf-8", errors="replace")

"""GitHub's JSON shapes for the simulator's objects: runs, jobs, environments, deployments, hooks.

Every `url` is absolute under the API base the client was given (PyGithub refuses to follow a URL
outside it) and every `html_url` under the simulator's web base, as GitHub does.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sandbox.github_runs import Deployment, Review, SimJob, SimRun, SimStep
from sandbox.workflows import Workflow

Json = dict[str, Any]

DOCS_URL = "https://docs.github.com/rest"
CREATED = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_timestamp(when: datetime) -> str:
    """The timestamp prefix of a line of a job log: seven fractional digits, as Actions writes."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}0Z"


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"{kind}{number}".encode()).decode().rstrip("=")


def installation(number: int) -> Json:
    """The App's installation as a delivery to the App's webhook names it (`installation`)."""
    return {"id": number, "node_id": node_id("Installation", number)}


def stable_id(text: str) -> int:
    """A numeric id that is the same for the same name in every run of the simulator."""
    return 1_000_000 + zlib.crc32(text.encode()) % 90_000_000


def error(message: str, status: int) -> Json:
    return {"message": message, "documentation_url": DOCS_URL, "status": str(status)}


@dataclass(frozen=True)
class Urls:
    """The simulator's bases: `api` (what the client's base_url is) and `html` (the web pages)."""

    api: str
    html: str
    repository: str
    repository_id: int
    """GitHub's id of the repository, which a rename or transfer keeps."""

    @property
    def repo_api(self) -> str:
        return f"{self.api}/repos/{self.repository}"

    @property
    def repo_html(self) -> str:
        return f"{self.html}/{self.repository}"


def user(urls: Urls, login: str, *, kind: str | None = None) -> Json:
    """A user as GitHub shows one; an App's bot account (`<slug>[bot]`) is of type Bot."""
    kind = kind or ("Bot" if login.endswith("[bot]") else "User")
    user_id = stable_id(f"user:{login}")
    return {
        "login": login,
        "id": user_id,
        "node_id": node_id("User", user_id),
        "avatar_url": f"{urls.html}/avatars/{login}",
        "gravatar_id": "",
        "url": f"{urls.api}/users/{login}",
        "html_url": f"{urls.html}/{login}",
        "followers_url": f"{urls.api}/users/{login}/followers",
        "following_url": f"{urls.api}/users/{login}/following{{/other_user}}",
        "gists_url": f"{urls.api}/users/{login}/gists{{/gist_id}}",
        "starred_url": f"{urls.api}/users/{login}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{urls.api}/users/{login}/subscriptions",
        "organizations_url": f"{urls.api}/users/{login}/orgs",
        "repos_url": f"{urls.api}/users/{login}/repos",
        "events_url": f"{urls.api}/users/{login}/events{{/privacy}}",
        "received_events_url": f"{urls.api}/users/{login}/received_events",
        "type": kind,
        "site_admin": False,
    }


def repository(urls: Urls, *, default_branch: str) -> Json:
    owner, name = urls.repository.split("/", 1)
    repo_id = urls.repository_id
    api = urls.repo_api
    return {
        "id": repo_id,
        "node_id": node_id("Repository", repo_id),
        "name": name,
        "full_name": urls.repository,
        "private": True,
        "visibility": "private",
        "owner": user(urls, owner, kind="Organization"),
        "html_url": urls.repo_html,
        "description": None,
        "fork": False,
        "url": api,
        "contents_url": f"{api}/contents/{{+path}}",
        "deployments_url": f"{api}/deployments",
        "hooks_url": f"{api}/hooks",
        "default_branch": default_branch,
        "archived": False,
        "disabled": False,
        "created_at": iso(CREATED),
        "updated_at": iso(CREATED),
        "pushed_at": iso(CREATED),
        "permissions": {
            "admin": False,
            "maintain": False,
            "push": True,
            "triage": True,
            "pull": True,
        },
    }


def workflow(urls: Urls, spec: Workflow, *, default_branch: str) -> Json:
    return {
        "id": spec.id,
        "node_id": node_id("Workflow", spec.id),
        "name": spec.name,
        "path": spec.path,
        "state": "active",
        "created_at": iso(CREATED),
        "updated_at": iso(CREATED),
        "url": f"{urls.repo_api}/actions/workflows/{spec.id}",
        "html_url": f"{urls.repo_html}/blob/{default_branch}/{spec.path}",
        "badge_url": f"{urls.repo_html}/workflows/{quote(spec.name)}/badge.svg",
    }


def run(urls: Urls, sim: SimRun, *, default_branch: str) -> Json:
    api = f"{urls.repo_api}/actions/runs/{sim.id}"
    actor = user(urls, sim.actor)
    repo = repository(urls, default_branch=default_branch)
    return {
        "id": sim.id,
        "name": sim.workflow.name,
        "node_id": node_id("WorkflowRun", sim.id),
        "head_branch": sim.branch,
        "head_sha": sim.head_sha,
        "path": sim.workflow.path,
        "display_title": sim.workflow.name,
        "run_number": sim.number,
        "event": sim.event,
        "status": sim.status,
        "conclusion": sim.conclusion,
        "workflow_id": sim.workflow.id,
        "check_suite_id": sim.id + 1,
        "check_suite_node_id": node_id("CheckSuite", sim.id + 1),
        "url": api,
        "html_url": f"{urls.repo_html}/actions/runs/{sim.id}",
        "pull_requests": [],
        "created_at": iso(sim.created_at),
        "updated_at": iso(sim.updated_at),
        "actor": actor,
        "triggering_actor": user(urls, sim.triggering_actor),
        "run_attempt": sim.attempt,
        "referenced_workflows": [],
        "run_started_at": iso(sim.attempt_started_at or sim.created_at),
        "jobs_url": f"{api}/jobs",
        "logs_url": f"{api}/logs",
        "check_suite_url": f"{urls.repo_api}/check-suites/{sim.id + 1}",
        "artifacts_url": f"{api}/artifacts",
        "cancel_url": f"{api}/cancel",
        "rerun_url": f"{api}/rerun",
        "previous_attempt_url": f"{api}/attempts/{sim.attempt - 1}" if sim.attempt > 1 else None,
        "workflow_url": f"{urls.repo_api}/actions/workflows/{sim.workflow.id}",
        "head_commit": {
            "id": sim.head_sha,
            "tree_id": sim.head_sha[::-1],
            "message": f"Release from {sim.branch}",
            "timestamp": iso(sim.created_at),
            "author": {"name": sim.actor, "email": f"{sim.actor}@users.noreply.github.com"},
            "committer": {"name": "GitHub", "email": "noreply@github.com"},
        },
        "repository": repo,
        "head_repository": repo,
    }


def step(sim: SimStep) -> Json:
    return {
        "name": sim.name,
        "status": sim.status,
        "conclusion": sim.conclusion,
        "number": sim.number,
        "started_at": iso(sim.started_at),
        "completed_at": iso(sim.completed_at),
    }


def job(urls: Urls, sim: SimJob, sim_run: SimRun) -> Json:
    has_runner = sim.status in ("in_progress", "completed") and sim.conclusion != "skipped"
    return {
        "id": sim.id,
        "run_id": sim.run_id,
        "workflow_name": sim_run.workflow.name,
        "head_branch": sim_run.branch,
        "run_url": f"{urls.repo_api}/actions/runs/{sim.run_id}",
        "run_attempt": sim_run.attempt,
        "node_id": node_id("CheckRun", sim.id),
        "head_sha": sim_run.head_sha,
        "url": f"{urls.repo_api}/actions/jobs/{sim.id}",
        "html_url": f"{urls.repo_html}/actions/runs/{sim.run_id}/job/{sim.id}",
        "status": sim.status,
        "conclusion": sim.conclusion,
        "created_at": iso(sim.created_at),
        "started_at": iso(sim.started_at or sim.created_at),
        "completed_at": iso(sim.completed_at),
        "name": sim.name,
        "steps": [] if not has_runner else [step(s) for s in sim.steps],
        "check_run_url": f"{urls.repo_api}/check-runs/{sim.id}",
        "labels": ["ubuntu-latest"],
        "runner_id": 7 if has_runner else None,
        "runner_name": "GitHub Actions 7" if has_runner else None,
        "runner_group_id": 2 if has_runner else None,
        "runner_group_name": "GitHub Actions" if has_runner else None,
    }


def environment(
    urls: Urls,
    name: str,
    env_id: int,
    *,
    protected: bool,
    reviewer: str,
    prevent_self_review: bool = False,
    team: str | None = None,
) -> Json:
    """An environment; `team` (a slug): its required reviewer is that team, not `reviewer`."""
    rules = []
    if protected:
        reviewers = (
            [{"type": "Team", "reviewer": team_json(urls, team)}]
            if team is not None
            else [{"type": "User", "reviewer": user(urls, reviewer)}]
        )
        rules.append(
            {
                "id": env_id + 1,
                "node_id": node_id("ProtectionRule", env_id + 1),
                "type": "required_reviewers",
                "prevent_self_review": prevent_self_review,
                "reviewers": reviewers,
            }
        )
    return {
        **environment_ref(urls, name, env_id),
        "created_at": iso(CREATED),
        "updated_at": iso(CREATED),
        "protection_rules": rules,
        "deployment_branch_policy": None,
    }


def team_json(urls: Urls, slug: str) -> Json:
    """A team of the repository's organisation as GitHub lists it (a required reviewer)."""
    org = urls.repository.split("/", 1)[0]
    team_id = stable_id(f"team:{org}/{slug}")
    return {
        "id": team_id,
        "node_id": node_id("Team", team_id),
        "url": f"{urls.api}/organizations/{stable_id(f'org:{org}')}/team/{team_id}",
        "html_url": f"{urls.html}/orgs/{org}/teams/{slug}",
        "name": slug,
        "slug": slug,
        "description": None,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": f"{urls.api}/organizations/{stable_id(f'org:{org}')}/team/{team_id}"
        "/members{/member}",
        "repositories_url": f"{urls.api}/organizations/{stable_id(f'org:{org}')}/team/"
        f"{team_id}/repos",
        "parent": None,
    }


def environment_ref(urls: Urls, name: str, env_id: int) -> Json:
    return {
        "id": env_id,
        "node_id": node_id("Environment", env_id),
        "name": name,
        "url": f"{urls.repo_api}/environments/{quote(name, safe='')}",
        "html_url": f"{urls.repo_html}/deployments/activity_log?environments_filter={quote(name)}",
    }


def pending_deployment(
    urls: Urls, sim: SimJob, env_id: int, *, reviewer: str | None, can_approve: bool
) -> Json:
    """A wait of the run (`reviewer` None: no required reviewers, a custom rule holds it)."""
    assert sim.environment is not None
    reviewers = [] if reviewer is None else [{"type": "User", "reviewer": user(urls, reviewer)}]
    return {
        "environment": environment_ref(urls, sim.environment, env_id),
        "wait_timer": 0,
        "wait_timer_started_at": iso(sim.waiting_since),
        "current_user_can_approve": can_approve,
        "reviewers": reviewers,
    }


def review(urls: Urls, sim: Review, environment_ids: Mapping[str, int]) -> Json:
    """One entry of a run's review history (`GET .../approvals`): no attempt, no time."""
    return {
        "state": sim.state,
        "comment": sim.comment,
        "environments": [
            environment_ref(urls, name, environment_ids[name]) for name in sim.environments
        ],
        "user": user(urls, sim.actor),
    }


def deployment(urls: Urls, sim: Deployment) -> Json:
    api = f"{urls.repo_api}/deployments/{sim.id}"
    return {
        "url": api,
        "id": sim.id,
        "node_id": node_id("Deployment", sim.id),
        "sha": sim.sha,
        "ref": sim.ref,
        "task": "deploy",
        "payload": {},
        "original_environment": sim.environment,
        "environment": sim.environment,
        "description": None,
        "creator": user(urls, sim.creator),
        "created_at": iso(sim.created_at),
        "updated_at": iso(sim.created_at),
        "statuses_url": f"{api}/statuses",
        "repository_url": urls.repo_api,
        "transient_environment": False,
        "production_environment": False,
        "performed_via_github_app": None,
    }

"""The webhook deliveries of the GitHub simulator: `workflow_run`, `workflow_job` and
`deployment_review` payloads as GitHub sends them, each carrying its repository in the shape
webhooks use (octokit/webhooks' `common/repository.schema.json`), so a receiver serving several
repositories tells them apart by `repository.full_name`."""

from __future__ import annotations

from sandbox.github_json import Json, Urls, iso, job, repository, run, user, workflow
from sandbox.github_runs import Review, SimJob, SimRun, Transition


def webhook_repository(urls: Urls, *, default_branch: str) -> Json:
    """The repository as a webhook carries it: the REST shape with every field octokit's
    `common/repository.schema.json` requires."""
    api, html = urls.repo_api, urls.repo_html
    host = html.split("://", 1)[-1].split("/", 1)[0]
    templates = {
        "forks_url": "/forks",
        "keys_url": "/keys{/key_id}",
        "collaborators_url": "/collaborators{/collaborator}",
        "teams_url": "/teams",
        "issue_events_url": "/issues/events{/number}",
        "events_url": "/events",
        "assignees_url": "/assignees{/user}",
        "branches_url": "/branches{/branch}",
        "tags_url": "/tags",
        "blobs_url": "/git/blobs{/sha}",
        "git_tags_url": "/git/tags{/sha}",
        "git_refs_url": "/git/refs{/sha}",
        "trees_url": "/git/trees{/sha}",
        "statuses_url": "/statuses/{sha}",
        "languages_url": "/languages",
        "stargazers_url": "/stargazers",
        "contributors_url": "/contributors",
        "subscribers_url": "/subscribers",
        "subscription_url": "/subscription",
        "commits_url": "/commits{/sha}",
        "git_commits_url": "/git/commits{/sha}",
        "comments_url": "/comments{/number}",
        "issue_comment_url": "/issues/comments{/number}",
        "compare_url": "/compare/{base}...{head}",
        "merges_url": "/merges",
        "archive_url": "/{archive_format}{/ref}",
        "downloads_url": "/downloads",
        "issues_url": "/issues{/number}",
        "pulls_url": "/pulls{/number}",
        "milestones_url": "/milestones{/number}",
        "notifications_url": "/notifications{?since,all,participating}",
        "labels_url": "/labels{/name}",
        "releases_url": "/releases{/id}",
    }
    counts = ("size", "stargazers_count", "watchers_count", "forks_count", "open_issues_count")
    return {
        **repository(urls, default_branch=default_branch),
        **{name: f"{api}{tail}" for name, tail in templates.items()},
        **dict.fromkeys((*counts, "forks", "open_issues", "watchers"), 0),
        **dict.fromkeys(("has_issues", "has_projects", "has_downloads", "has_wiki"), True),
        "git_url": f"git://{host}/{urls.repository}.git",
        "ssh_url": f"git@{host}:{urls.repository}.git",
        "clone_url": f"{html}.git",
        "svn_url": html,
        "homepage": None,
        "language": None,
        "has_pages": False,
        "mirror_url": None,
        "license": None,
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": [],
        "custom_properties": {},
    }


def job_run(urls: Urls, sim: SimJob) -> Json:
    """The short job shape `deployment_review` events carry (`workflow_job_run(s)`)."""
    return {
        "id": sim.id,
        "name": sim.name,
        "status": sim.status,
        "conclusion": sim.conclusion,
        "environment": sim.environment,
        "html_url": f"{urls.repo_html}/actions/runs/{sim.run_id}/job/{sim.id}",
        "created_at": iso(sim.created_at),
        "updated_at": iso(sim.completed_at or sim.started_at or sim.created_at),
    }


def deployment_review_event(
    urls: Urls,
    action: str,
    sim_run: SimRun,
    sim_job: SimJob,
    review: Review | None,
    *,
    default_branch: str,
    reviewer: str,
) -> Json:
    payload: Json = {
        "action": action,
        "since": iso(sim_job.waiting_since),
        "environment": sim_job.environment,
        "workflow_run": run(urls, sim_run, default_branch=default_branch),
        "workflow_job_run": job_run(urls, sim_job),
        "workflow_job_runs": [job_run(urls, sim_job)],
        "repository": webhook_repository(urls, default_branch=default_branch),
    }
    if review is None:
        payload["requestor"] = user(urls, sim_run.actor)
        payload["reviewers"] = [{"type": "User", "reviewer": user(urls, reviewer)}]
        payload["sender"] = user(urls, sim_run.actor)
    else:
        payload["approver"] = user(urls, review.actor)
        payload["comment"] = review.comment
        payload["sender"] = user(urls, review.actor)
    return payload


def webhook_events(
    urls: Urls, transition: Transition, *, default_branch: str, reviewer: str
) -> list[tuple[str, Json]]:
    """The webhook deliveries (event name, payload) a run's or a job's transition makes."""
    sim_run, sim_job, branch = transition.run, transition.job, default_branch
    base: Json = {
        "repository": webhook_repository(urls, default_branch=branch),
        "sender": user(urls, sim_run.actor),
    }
    if transition.kind == "workflow_run":
        return [
            (
                "workflow_run",
                {
                    "action": transition.action,
                    "workflow_run": run(urls, sim_run, default_branch=branch),
                    "workflow": workflow(urls, sim_run.workflow, default_branch=branch),
                    **base,
                },
            )
        ]
    if sim_job is None:
        return []
    if transition.kind == "workflow_job":
        events: list[tuple[str, Json]] = [
            (
                "workflow_job",
                {"action": transition.action, "workflow_job": job(urls, sim_job, sim_run), **base},
            )
        ]
        if transition.action == "waiting" and "reviewers" in sim_job.gates:
            requested = deployment_review_event(
                urls, "requested", sim_run, sim_job, None, default_branch=branch, reviewer=reviewer
            )
            events.append(("deployment_review", requested))
        return events
    review = deployment_review_event(
        urls,
        transition.action,
        sim_run,
        sim_job,
        transition.review,
        default_branch=branch,
        reviewer=reviewer,
    )
    return [("deployment_review", review)]

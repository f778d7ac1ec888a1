"""One repository of the GitHub simulator: its workflows and runs, environments and their
protection rules, files, history, secrets, webhooks and dispatches, and the scenario knobs tests
turn on them. The simulator is its first repository and serves more (`add_repository`).
"""

from __future__ import annotations

import itertools
from collections import ChainMap
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sandbox.github_actions import ActionsEngine, Clock
from sandbox.github_environment_rules import EnvironmentRules
from sandbox.github_events import webhook_events
from sandbox.github_history import History
from sandbox.github_hooks import Hook
from sandbox.github_json import Json, Urls, stable_id
from sandbox.github_routes import Dispatch
from sandbox.github_rules import APP_LOGIN, requested_payload
from sandbox.github_rulesets import BranchRuleset
from sandbox.github_runs import Ids, Review, SimRun, Transition, commit_sha
from sandbox.workflows import (
    Workflow,
    deployment_strategy_workflow,
    release_workflow,
    workflow_file,
)

if TYPE_CHECKING:
    from sandbox.github import GitHubSimulator

EventCallback = Callable[[str, Json], Awaitable[None] | None]

DEFAULT_MIGRATION = (
    "-- Initial relay schema (expand phase: additive only)\n"
    "CREATE TABLE documents (\n"
    "    id UUID PRIMARY KEY,\n"
    "    title TEXT NOT NULL,\n"
    "    created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX documents_created_at ON documents (created_at);\n"
)
WORKFLOW_ID_STEP = 100
"""How far apart the default workflows' ids of two repositories are (GitHub's are global)."""

# GitHub's "Events that trigger workflows" (its GITHUB_SHA and GITHUB_REF of each event), kept
# here apart from the bot's own rule (`bot.domain.run_link.OF_ITS_REF`), which it checks.
DEFAULT_BRANCH_EVENTS = frozenset({"schedule", "repository_dispatch"})
"""Events whose run is of the default branch's last commit (GITHUB_REF: the default branch),
reported so (`head_branch`: GitHub's `repository_dispatch` example): on no other ref. A
`workflow_run` run also runs the default branch, but may report its triggering run's branch:
the simulator lets a test give one."""
RUNS_ITS_REF = frozenset(
    {"push", "create", "release", "workflow_dispatch", "deployment", "deployment_status"}
)
"""Events whose run is of the commit its ref is at: on a tag, the tag's commit."""


def default_workflows(position: int) -> list[Workflow]:
    """The Deployment Strategy and Release workflows, with the ids of the `position`th
    repository (the first keeps `DEPLOYMENT_STRATEGY_WORKFLOW_ID`, `RELEASE_WORKFLOW_ID`)."""
    return [
        replace(spec, id=spec.id + WORKFLOW_ID_STEP * position)
        for spec in (deployment_strategy_workflow(), release_workflow())
    ]


class SimRepository:
    """A repository's state on the simulator (`server`), which answers its REST paths
    (`/repos/{owner}/{repo}/...`) from it and delivers its events."""

    def __init__(
        self,
        server: GitHubSimulator,
        repository: str,
        *,
        clock: Clock,
        ids: Ids,
        workflows: Iterable[Workflow],
        protected_environments: Iterable[str] | None = None,
        job_duration: timedelta = timedelta(0),
        default_branch: str = "main",
        app_rule_environments: set[str] | None = None,
    ) -> None:
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must be owner/name, not {repository!r}")
        self.server = server
        self.repository = repository
        self.id = stable_id(f"repo:{repository}")
        """GitHub's id of the repository: kept when it is renamed or transferred."""
        self.default_branch = default_branch
        self.refs: set[str] = {default_branch}
        self.files: dict[str, dict[str, str]] = {
            default_branch: {"crates/relay/src/db/migrations/0001_init.sql": DEFAULT_MIGRATION}
        }
        self.reviewer_teams: dict[str, str] = {}
        """Environments whose required reviewer is a team (its slug), not the bot's account."""
        self.hooks: list[Hook] = []
        """The repository's webhooks and their deliveries (`add_hook`), for the doctor."""
        self.secrets: dict[str, datetime] = {}
        self.organization_secrets: dict[str, datetime] = {}
        """The organization's secrets shared with the repository (its own take precedence)."""
        self.secrets_forbidden = False
        self.environment_secrets: dict[str, dict[str, datetime]] = {}
        """Secrets of the repository's environments, by environment name: a job that runs in
        one reads its secrets before the repository's and the organization's."""
        self.environment_secrets_forbidden = False
        self.environment_rules: dict[str, EnvironmentRules] = {}
        """Environments' wait timers and deployment branch and tag policies (reported by
        `GET .../environments/{name}`, not enforced on runs)."""
        self.protected_branches: set[str] = set()
        """Branches with a branch protection rule (`protected` in `GET .../branches`); a name
        here is a branch of the repository too."""
        """GitHub answers 403 to reading an environment's secrets (a token without the
        Environments permission)."""
        self.rulesets: list[BranchRuleset] = []
        """Branch rulesets: a branch an active one targets is `protected` too."""
        self.history = History()
        """Commits, tags and releases (what compare and releases/latest answer from)."""
        self.dispatches: list[Dispatch] = []
        self.engine = ActionsEngine(
            workflows=workflows,
            protected_environments=protected_environments,
            clock=clock,
            secrets=ChainMap(self.secrets, self.organization_secrets),
            environment_secrets=self.environment_secrets,
            files=self.files,
            job_duration=job_duration,
            ids=ids,
        )
        self.engine.listeners.append(self._record_transition)
        for spec in self.engine.workflows:
            self.files[default_branch][spec.path] = workflow_file(spec)
        self.rule_app = APP_LOGIN
        self.app_rule_environments = (
            set() if app_rule_environments is None else app_rule_environments
        )
        """Environments where the installed App's custom protection rule is enabled, as
        `GET .../deployment_protection_rules` lists them (the first repository's is the App's
        `rule_environments`)."""
        self.unlisted_deployments: set[str] = set()
        """Environments whose deployments GitHub does not list yet (its lists lag its events)."""
        self.unlisted_workflows: set[str] = set()  # paths whose runs GitHub lists not yet
        self.callbacks: list[EventCallback] = []
        """This repository's webhook receivers (`on_event`)."""

    @property
    def urls(self) -> Urls:
        return Urls(
            api=self.server.api_url,
            html=self.server.html_url,
            repository=self.repository,
            repository_id=self.id,
        )

    # -- inspection -----------------------------------------------------------------------------

    @property
    def reviews(self) -> list[Review]:
        return self.engine.reviews

    @property
    def runs(self) -> dict[int, SimRun]:
        return self.engine.runs

    def run(self, run_id: int) -> SimRun:
        return self.engine.runs[run_id]

    def environment_id(self, name: str) -> int:
        return self.engine.environments[name]

    def waiting_environments(self, run_id: int) -> list[str]:
        return [job.environment or "" for job in self.engine.waiting_jobs(run_id)]

    # -- scenario knobs -------------------------------------------------------------------------

    def add_hook(self, url: str) -> Hook:
        """A repository webhook posting to `url`; record its deliveries with `deliver`."""
        hook = Hook(id=next(self.engine.ids.hooks), url=url)
        self.hooks.append(hook)
        return hook

    def on_event(self, callback: EventCallback) -> None:
        """Call `callback(event_name, payload)` for every `workflow_run`, `workflow_job` and
        `deployment_review` change of this repository (its own webhook), with payloads shaped
        like GitHub's webhook deliveries."""
        self.callbacks.append(callback)

    def protection_rule(
        self, environments: Iterable[str], *, app: str = APP_LOGIN, reviewers: bool = False
    ) -> None:
        """Enable `app`'s custom deployment protection rule on these environments (without
        their required reviewers unless `reviewers`): a job reaching one waits for the App."""
        names = set(environments)
        self.engine.rule_environments |= names
        self.rule_app = app
        if self.server.app is not None:  # the installed App's rule (its slug is what GitHub lists)
            self.app_rule_environments |= names
            self.rule_app = self.server.app.bot_login
        if not reviewers:
            self.engine.protected -= names

    def rename(self, new_name: str) -> None:
        """Rename (or transfer) the repository to `new_name` (`owner/name`). As on GitHub, the
        old name keeps answering, by redirect to the new one: 301 to a GET or HEAD, 307 to
        any other method, to be repeated there verbatim ("Follow any redirects that the API
        sends you", docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-rest-api;
        developer.github.com/changes/2015-07-21-automatic-redirects-for-renamed-repositories).
        GitHub's `Location` names the repository by id (`/repositories/{id}/...`); the
        simulator's names it by its new name, which a client follows the same way."""
        owner, _, name = new_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must be owner/name, not {new_name!r}")
        server = self.server
        if new_name.lower() in server.repositories:
            raise ValueError(f"the simulator already serves {new_name}")
        old = self.repository.lower()
        del server.repositories[old]
        server.renamed[old] = self
        server.renamed.pop(new_name.lower(), None)
        server.repositories[new_name.lower()] = self
        self.repository = new_name
        server.install_app_for(new_name)

    def branch_protected(self, name: str) -> bool:
        """`protected` in "Get a branch": by a branch protection rule or an active ruleset."""
        return name in self.protected_branches or any(
            ruleset.protects(name, default_branch=self.default_branch) for ruleset in self.rulesets
        )

    def run_job_in_environment(self, file_name: str, job: str, environment: str) -> None:
        """Give a workflow's job `environment:` in its file (every ref) and its runs from now
        on. The environment is created unprotected, as GitHub creates one a job names."""
        engine = self.engine
        (spec,) = [w for w in engine.workflows if w.file_name == file_name]
        jobs = tuple(
            replace(j, environment=environment) if job in (j.key, j.name) else j for j in spec.jobs
        )
        changed = replace(spec, jobs=jobs)
        engine.workflows = [changed if w is spec else w for w in engine.workflows]
        if environment not in engine.environments:
            engine.environments[environment] = next(engine.ids.environments)
        for tree in self.files.values():
            tree[changed.path] = workflow_file(changed)

    def remove_workflow(self, file_name: str) -> None:
        """Delete a workflow file from the repository (every ref): GitHub no longer knows it."""
        self.engine.workflows = [w for w in self.engine.workflows if w.file_name != file_name]
        for tree in self.files.values():
            tree.pop(f".github/workflows/{file_name}", None)

    def set_job_duration(self, job: str, duration: timedelta) -> None:
        """How long a job (key or display name) runs on the clock once started."""
        self.engine.job_durations[job] = duration

    def fail_job(
        self,
        run: int | Literal["next", "every"],
        job: str,
        *,
        log: str = "Error: Process completed with exit code 1.",
        step: str | None = None,
    ) -> None:
        """Make a job (key or display name) fail in one run, the next run, or every run.

        The failing step (default: the job's last step) prints `log`; later steps are skipped.
        """
        self.engine.fail_job(run, job, lines=tuple(log.splitlines()), step=step)

    def push_tag(
        self, name: str, *, at: str | None = None, annotated: bool = False, levels: int = 1
    ) -> None:
        """A tag pushed at commit `at`; by default at the commit a run on `name` reports (the
        simulator's runs are at `commit_sha(ref)`). `git/ref/tags/<name>` answers it; an
        annotated tag's ref names its tag object, which `git/tags/<sha>` answers: a tag of a
        tag of ... (`levels` tag objects) names the next, the last the commit."""
        self.refs.add(name)
        self.history.tags[name] = at or commit_sha(name)
        if annotated:
            objects = [commit_sha(f"tag object {name} {level}") for level in range(levels)]
            objects[0] = commit_sha(f"tag object {name}")
            self.history.annotated[name] = objects[0]
            self.history.inner.update(itertools.pairwise(objects))
        else:  # pushed again as a lightweight tag (`git tag -f`): no tag object any more
            self.history.annotated.pop(name, None)

    def create_foreign_run(
        self,
        *,
        actor: str = "someone-else",
        branch: str | None = None,
        created_at: datetime | None = None,
        workflow: str | int | None = None,
        event: str = "workflow_dispatch",
        inputs: Mapping[str, str] | None = None,
    ) -> int:
        """Start a run that the bot did not dispatch (another person, branch or time). As on
        GitHub ("Events that trigger workflows"), a `schedule` or `repository_dispatch` run is
        on the default branch only; a run of its ref's commit on a pushed tag (`push`,
        `workflow_dispatch`, `release`...) reports the tag's commit as its `head_sha`; a pull
        request's run reports its head branch's (`commit_sha(branch)`), not the tag's."""
        spec = self.workflow(str(workflow)) if workflow is not None else self.engine.workflows[0]
        if spec is None:
            raise KeyError(workflow)
        ref = branch or self.default_branch
        if event in DEFAULT_BRANCH_EVENTS and ref != self.default_branch:
            raise ValueError(f"GitHub runs `{event}` on the default branch only, not on {ref}")
        run = self.engine.start_run(
            spec,
            event=event,
            branch=ref,
            actor=actor,
            inputs=spec.default_inputs() if inputs is None else inputs,
            created_at=created_at,
        )
        if event in RUNS_ITS_REF and ref in self.history.tags:
            run.head_sha = self.history.tags[ref]
        self.engine.process()
        self.server.schedule_flush()
        return run.id

    def review(
        self,
        run_id: int,
        environments: Iterable[str],
        state: Literal["approved", "rejected"],
        *,
        comment: str = "",
        actor: str = "octocat",
    ) -> None:
        """A person reviews pending deployments on github.com (not through the bot's token)."""
        ids = [self.engine.environments[name] for name in environments]
        self.engine.review(run_id, environment_ids=ids, state=state, comment=comment, actor=actor)
        self.server.schedule_flush()

    def workflow(self, id_or_file: str) -> Workflow | None:
        """The workflow with this id or file name, if the repository has it."""
        for spec in self.engine.workflows:
            if id_or_file in (str(spec.id), spec.file_name):
                return spec
        return None

    # -- events ---------------------------------------------------------------------------------

    def _record_transition(self, transition: Transition) -> None:
        server = self.server
        if transition.kind == "deployment_protection_rule":
            assert transition.job is not None
            installation_id = server.app_installation_id(self.repository)
            if installation_id is None:
                return  # the App's events come from the accounts it is installed on only
            payload = requested_payload(
                self.urls,
                transition.run,
                transition.job,
                default_branch=self.default_branch,
                sender=transition.run.triggering_actor,  # who re-ran it, on a re-run
                installation_id=installation_id,
                with_deployment=not server.requests_without_deployment,
            )
            server.queue_app_event(transition.kind, payload)
        elif server.listens_to(self):
            for name, payload in webhook_events(
                self.urls, transition, default_branch=self.default_branch, reviewer=server.actor
            ):
                server.queue_event(self, name, payload)

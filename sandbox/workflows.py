"""GitHub Actions workflows described as data, for the GitHub simulator.

A workflow is its jobs (needs, environment, `if: failure()`) and each job's steps. A step either
just prints its log lines or runs a small script against the run's context (inputs, secrets, the
repository files at the ref), which is how the simulated workflows reproduce what Scriptum's real
workflow files do: the preflight's migration check, the gate scripts, the npm credentials check.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath

from sandbox.yaml_text import yaml_text

DEPLOYMENT_STRATEGY_WORKFLOW_ID = 61_234_501
RELEASE_WORKFLOW_ID = 61_234_502

NPM_PUBLISH_SKIPPED_WARNING = "NPM_TOKEN secret not configured — skipping npm publish."
MIGRATIONS_DIR = "crates/relay/src/db/migrations/"
_DESTRUCTIVE_SQL = re.compile(r"\bDROP (TABLE|COLUMN)\b")


@dataclass(frozen=True)
class StepContext:
    """What a step script sees: the dispatch inputs, the secret names set, the files at the ref."""

    inputs: Mapping[str, str]
    secrets: frozenset[str]
    files: Mapping[str, str]
    npm_up_to_date: bool = False
    """Every package version at the ref is on npm already: `changeset publish` has nothing to do."""
    npm_changesets_pending: bool = False  # changesets/action opens its version PR: no publish


@dataclass(frozen=True)
class StepOutcome:
    """The result of a step: passed or failed, and the lines it printed."""

    passed: bool
    lines: tuple[str, ...] = ()


StepScript = Callable[[StepContext], StepOutcome]


@dataclass(frozen=True)
class Step:
    """One step of a job: prints `lines`, or runs `script` when given (which decides pass/fail)."""

    name: str
    lines: tuple[str, ...] = ()
    script: StepScript | None = None

    def run(self, context: StepContext) -> StepOutcome:
        if self.script is None:
            return StepOutcome(passed=True, lines=self.lines)
        return self.script(context)


@dataclass(frozen=True)
class Job:
    """A job of a workflow, reported by the jobs API under its display `name`, not its `key`."""

    key: str
    name: str
    steps: tuple[Step, ...]
    needs: tuple[str, ...] = ()
    environment: str | None = None
    if_failure: bool = False
    if_succeeded: tuple[str, ...] = ()
    """With `if_failure`: `if: failure() && needs.<key>.result == 'success'` for each key (a
    direct need): a rollback that runs only once a stage deployed, skipped otherwise."""


@dataclass(frozen=True)
class WorkflowInput:
    """A `workflow_dispatch` input; `default` is only used for runs the simulator starts itself."""

    name: str
    required: bool = True
    default: str = ""


@dataclass(frozen=True)
class Workflow:
    """A workflow file: its id, path, name, dispatch inputs and jobs."""

    id: int
    path: str
    name: str
    jobs: tuple[Job, ...]
    inputs: tuple[WorkflowInput, ...] = ()
    events: tuple[str, ...] = field(default=("workflow_dispatch",))

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def job(self, key_or_name: str) -> Job:
        """The job with this key or display name; KeyError when the workflow has none."""
        for job in self.jobs:
            if key_or_name in (job.key, job.name):
                return job
        raise KeyError(key_or_name)

    def default_inputs(self) -> dict[str, str]:
        return {spec.name: spec.default for spec in self.inputs}


def _rate(inputs: Mapping[str, str], name: str) -> Decimal | None:
    try:
        value = Decimal(inputs.get(name, ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


def _gate_step(track: str, stage: str) -> Step:
    """The workflow's own gate step after a stage's deploy: SPEC's gate rule on the dispatch
    inputs `<track>_baseline_crash_rate`, `<track>_<stage>_crash_rate` and, on the relay,
    `relay_<stage>_error_rate`."""
    baseline, crash = f"{track}_baseline_crash_rate", f"{track}_{stage}_crash_rate"
    error = f"relay_{stage}_error_rate" if track == "relay" else None
    verdict = "ROLLBACK" if track == "relay" else "KILL_SWITCH"

    def run(context: StepContext) -> StepOutcome:
        names = [baseline, crash] + ([error] if error else [])
        values = {name: _rate(context.inputs, name) for name in names}
        bad = [name for name, value in values.items() if value is None]
        if bad:
            return StepOutcome(False, (f"##[error]not a non-negative decimal rate: {bad[0]}",))
        base, current = values[baseline], values[crash]
        assert base is not None and current is not None
        figures = f"baseline={base} current_crash={current}"
        if error is not None:
            current_error = values[error]
            assert current_error is not None
            figures += f" current_error={current_error}"
            if current_error > Decimal("0.01"):
                return StepOutcome(False, (f"{verdict}: error rate above 0.01 ({figures})",))
        if base <= 0:
            if current > 0:
                return StepOutcome(False, (f"{verdict}: crashes with a zero baseline ({figures})",))
            return StepOutcome(True, (f"PASS: {figures}",))
        if current > base * 2:
            return StepOutcome(False, (f"{verdict}: crash rate above 2x baseline ({figures})",))
        return StepOutcome(True, (f"PASS: {figures}",))

    name = "Relay rollback gate" if track == "relay" else "Desktop kill-switch gate"
    return Step(name, script=run)


def _check_feature_flags(context: StepContext) -> StepOutcome:
    if context.inputs.get("feature_flags_ready") == "true":
        return StepOutcome(True, ("Feature flags validated.",))
    return StepOutcome(
        False, ("##[error]Feature flags are not validated (feature_flags_ready != true).",)
    )


def _check_migrations(context: StepContext) -> StepOutcome:
    lines: list[str] = []
    for path in sorted(context.files):
        # The workflow's glob, `migrations/*.sql`: files in the directory itself, not below it.
        file = PurePosixPath(path)
        if not (file.parent == PurePosixPath(MIGRATIONS_DIR) and file.suffix == ".sql"):
            continue
        lines.append(f"checking {path}")
        for number, text in enumerate(context.files[path].splitlines(), start=1):
            if _DESTRUCTIVE_SQL.search(text):
                lines.append(f"##[error]destructive migration {path}:{number}: {text.strip()}")
                return StepOutcome(False, tuple(lines))
    return StepOutcome(True, (*lines, "Migrations are additive only."))


@dataclass(frozen=True)
class _Stage:
    """A job of a track: its key, display name and environment, the step it deploys with, and
    the stage whose `<track>_<gate>_*` rates the track's gate step checks after it (None: none)."""

    key: str
    name: str
    environment: str
    deploy: Step
    gate: str | None = None


def _track(
    track: str, stages: tuple[_Stage, ...], *, failure: _Stage, first: Job | None = None
) -> tuple[Job, ...]:
    """A track's jobs: `first` (its preflight), then its stages in order, each needing the job
    before it, then `failure`, which needs them all and runs when one failed (`if: failure()`)."""
    jobs = [] if first is None else [first]
    for stage in stages:
        gate = () if stage.gate is None else (_gate_step(track, stage.gate),)
        needs = (jobs[-1].key,) if jobs else ()
        jobs.append(Job(stage.key, stage.name, (stage.deploy, *gate), needs, stage.environment))
    every = tuple(job.key for job in jobs)
    return (
        *jobs,
        Job(
            failure.key,
            failure.name,
            (failure.deploy,),
            every,
            failure.environment,
            if_failure=True,
        ),
    )


def _ring(ring: str, label: str, *, gated: bool) -> _Stage:
    """A desktop/CLI ring's stage (`label` as the job and step names write the ring)."""
    publish = Step(f"Publish to {label} ring", ("Publishing desktop and CLI builds",))
    name = f"Desktop/CLI ring deploy - {label}"
    return _Stage(
        f"desktop-cli-ring-{ring}", name, f"desktop-{ring}", publish, ring if gated else None
    )


@functools.cache
def deployment_strategy_workflow() -> Workflow:
    """Scriptum's `Deployment Strategy` workflow (SPEC section 1, "The GitHub side"): one
    frozen value, built once."""
    rate_inputs = (
        "relay_baseline_crash_rate",
        "relay_canary_crash_rate",
        "relay_canary_error_rate",
        "relay_half_crash_rate",
        "relay_half_error_rate",
        "desktop_baseline_crash_rate",
        "desktop_internal_crash_rate",
        "desktop_beta_crash_rate",
    )
    checkout = Step("Check out repository", ("Syncing repository: scriptum/scriptum",))
    preflight = Job(
        key="relay-preflight",
        name="Relay preflight checks",
        steps=(
            checkout,
            Step("Validate feature flags", script=_check_feature_flags),
            Step("Check migrations are additive", script=_check_migrations),
        ),
    )
    relay = _track(
        "relay",
        (
            _Stage(
                "relay-canary-5",
                "Relay rollout 5% canary (30m)",
                "relay-canary-5",
                Step("Deploy relay canary (5%)", ("Routing 5% of relay traffic to the release",)),
                gate="canary",
            ),
            _Stage(
                "relay-rollout-50",
                "Relay rollout 50% (60m)",
                "relay-rollout-50",
                Step("Deploy relay to 50%", ("Routing 50% of relay traffic to the release",)),
                gate="half",
            ),
            _Stage(
                "relay-rollout-100",
                "Relay rollout 100%",
                "relay-rollout-100",
                Step("Deploy relay to 100%", ("Routing all relay traffic to the release",)),
            ),
        ),
        first=preflight,
        failure=_Stage(
            "relay-rollback",
            "Relay auto-rollback",
            "relay-rollback",
            Step("Roll back relay", ("Restoring the previous relay image",)),
        ),
    )
    desktop = _track(
        "desktop",
        (
            _ring("internal", "internal", gated=True),
            _ring("beta", "beta", gated=True),
            _ring("ga", "GA", gated=False),
        ),
        failure=_Stage(
            "desktop-cli-kill-switch",
            "Desktop/CLI kill-switch",
            "desktop-kill-switch",
            Step("Trip kill-switch", ("Halting desktop/CLI ring promotion",)),
        ),
    )
    return Workflow(
        id=DEPLOYMENT_STRATEGY_WORKFLOW_ID,
        path=".github/workflows/deployment-strategy.yml",
        name="Deployment Strategy",
        inputs=(
            WorkflowInput("relay_image_tag", default="v0.0.0"),
            WorkflowInput("feature_flags_ready", default="true"),
            *(WorkflowInput(name, default="0.001") for name in rate_inputs),
        ),
        jobs=(*relay, *desktop),
    )


def _validate_npm_credentials(context: StepContext) -> StepOutcome:
    if "NPM_TOKEN" in context.secrets:
        return StepOutcome(True, ("npm publish credentials are configured.",))
    return StepOutcome(True, (f"##[warning]{NPM_PUBLISH_SKIPPED_WARNING}",))


def _publish_packages(context: StepContext) -> StepOutcome:
    if context.npm_changesets_pending:  # changesets/action's version branch: no npm at all
        return StepOutcome(True, ("setting GitHub credentials", "creating pull request"))
    if context.npm_up_to_date:
        # changesets' own words; npm is only read, so no token is needed nor checked.
        already = "is not being published because version 1.4.2 is already published on npm"
        nothing = "🦋  warn No unpublished projects to publish"
        return StepOutcome(
            True, ("Running changesets publish", f"🦋  warn @scriptum/cli {already}", nothing)
        )
    if "NPM_TOKEN" in context.secrets:
        return StepOutcome(
            True,
            (
                "Running changesets publish",
                "🦋  success packages published successfully",
            ),
        )
    return StepOutcome(
        False,
        (
            "Running changesets publish",
            "npm ERR! code ENEEDAUTH",
            "npm ERR! need auth This command requires you to be logged in to https://registry.npmjs.org/",
            "npm ERR! need auth You need to authorize this machine using `npm adduser`",
            "Error: The process '/usr/local/bin/npm' failed with exit code 1",
        ),
    )


@functools.cache
def release_workflow() -> Workflow:
    """Scriptum's npm `Release` workflow: its outcome depends on the `NPM_TOKEN` secret."""
    return Workflow(
        id=RELEASE_WORKFLOW_ID,
        path=".github/workflows/release.yml",
        name="Release",
        events=("push", "release", "workflow_dispatch"),
        jobs=(
            Job(
                key="changesets",
                name="changesets",
                steps=(
                    Step("Check out repository", ("Syncing repository: scriptum/scriptum",)),
                    Step("Validate npm publish credentials", script=_validate_npm_credentials),
                    Step("Version / publish packages", script=_publish_packages),
                ),
            ),
        ),
    )


@functools.cache
def workflow_file(spec: Workflow) -> str:
    """The workflow's YAML as the repository holds it: its name, dispatch inputs and jobs
    (written once per workflow: every simulated repository holds the same files)."""
    document = {
        "name": spec.name,
        "on": {
            "workflow_dispatch": {
                "inputs": {i.name: {"required": i.required, "type": "string"} for i in spec.inputs}
            },
            **{event: None for event in spec.events if event != "workflow_dispatch"},
        },
        "jobs": {
            job.key: {
                "name": job.name,
                **({"needs": list(job.needs)} if job.needs else {}),
                **({"environment": job.environment} if job.environment else {}),
                **({"if": _condition(job)} if job.if_failure else {}),
                "runs-on": "ubuntu-latest",
                "steps": [{"name": step.name, "run": "true"} for step in job.steps],
            }
            for job in spec.jobs
        },
    }
    return yaml_text(document, sort_keys=False)


def _condition(job: Job) -> str:
    """A failure job's `if:` as the workflow file writes it."""
    succeeded = (f"needs.{key}.result == 'success'" for key in job.if_succeeded)
    return " && ".join(("failure()", *succeeded))

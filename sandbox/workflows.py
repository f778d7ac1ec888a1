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

import yaml

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


@functools.cache
def deployment_strategy_workflow() -> Workflow:
    """Scriptum's `Deployment Strategy` workflow (SPEC section 1, "The GitHub side"): one
    frozen value, built once."""
    relay_jobs = ("relay-preflight", "relay-canary-5", "relay-rollout-50", "relay-rollout-100")
    rings = ("desktop-cli-ring-internal", "desktop-cli-ring-beta", "desktop-cli-ring-ga")
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
    return Workflow(
        id=DEPLOYMENT_STRATEGY_WORKFLOW_ID,
        path=".github/workflows/deployment-strategy.yml",
        name="Deployment Strategy",
        inputs=(
            WorkflowInput("relay_image_tag", default="v0.0.0"),
            WorkflowInput("feature_flags_ready", default="true"),
            *(WorkflowInput(name, default="0.001") for name in rate_inputs),
        ),
        jobs=(
            Job(
                key="relay-preflight",
                name="Relay preflight checks",
                steps=(
                    checkout,
                    Step("Validate feature flags", script=_check_feature_flags),
                    Step("Check migrations are additive", script=_check_migrations),
                ),
            ),
            Job(
                key="relay-canary-5",
                name="Relay rollout 5% canary (30m)",
                needs=("relay-preflight",),
                environment="relay-canary-5",
                steps=(
                    Step(
                        "Deploy relay canary (5%)", ("Routing 5% of relay traffic to the release",)
                    ),
                    _gate_step("relay", "canary"),
                ),
            ),
            Job(
                key="relay-rollout-50",
                name="Relay rollout 50% (60m)",
                needs=("relay-canary-5",),
                environment="relay-rollout-50",
                steps=(
                    Step("Deploy relay to 50%", ("Routing 50% of relay traffic to the release",)),
                    _gate_step("relay", "half"),
                ),
            ),
            Job(
                key="relay-rollout-100",
                name="Relay rollout 100%",
                needs=("relay-rollout-50",),
                environment="relay-rollout-100",
                steps=(
                    Step("Deploy relay to 100%", ("Routing all relay traffic to the release",)),
                ),
            ),
            Job(
                key="relay-rollback",
                name="Relay auto-rollback",
                needs=relay_jobs,
                environment="relay-rollback",
                if_failure=True,
                steps=(Step("Roll back relay", ("Restoring the previous relay image",)),),
            ),
            Job(
                key="desktop-cli-ring-internal",
                name="Desktop/CLI ring deploy - internal",
                environment="desktop-internal",
                steps=(
                    Step("Publish to internal ring", ("Publishing desktop and CLI builds",)),
                    _gate_step("desktop", "internal"),
                ),
            ),
            Job(
                key="desktop-cli-ring-beta",
                name="Desktop/CLI ring deploy - beta",
                needs=("desktop-cli-ring-internal",),
                environment="desktop-beta",
                steps=(
                    Step("Publish to beta ring", ("Publishing desktop and CLI builds",)),
                    _gate_step("desktop", "beta"),
                ),
            ),
            Job(
                key="desktop-cli-ring-ga",
                name="Desktop/CLI ring deploy - GA",
                needs=("desktop-cli-ring-beta",),
                environment="desktop-ga",
                steps=(Step("Publish to GA ring", ("Publishing desktop and CLI builds",)),),
            ),
            Job(
                key="desktop-cli-kill-switch",
                name="Desktop/CLI kill-switch",
                needs=rings,
                environment="desktop-kill-switch",
                if_failure=True,
                steps=(Step("Trip kill-switch", ("Halting desktop/CLI ring promotion",)),),
            ),
        ),
    )


def _validate_npm_credentials(context: StepContext) -> StepOutcome:
    if "NPM_TOKEN" in context.secrets:
        return StepOutcome(True, ("npm publish credentials are configured.",))
    return StepOutcome(True, (f"##[warning]{NPM_PUBLISH_SKIPPED_WARNING}",))


def _publish_packages(context: StepContext) -> StepOutcome:
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
                **({"if": "failure()"} if job.if_failure else {}),
                "runs-on": "ubuntu-latest",
                "steps": [{"name": step.name, "run": "true"} for step in job.steps],
            }
            for job in spec.jobs
        },
    }
    return yaml.safe_dump(document, sort_keys=False)

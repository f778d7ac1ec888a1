"""The plan's schema: workflow, preflight, tracks and stages, notifications, two-person rule."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationInfo, model_validator

from bot.domain.gate import GateKind, GateVerdict, format_rate
from bot.domain.members import member
from bot.domain.plan.fields import (
    Duration,
    InputName,
    Key,
    Path_,
    PlanModel,
    Problems,
    Text,
    dotted,
    loaded,
)
from bot.domain.plan.freezes import CalendarFreeze
from bot.domain.plan.inputs import (
    BaselineInput,
    FeatureFlagsInput,
    InputSource,
    Redeploy,
    TagInput,
)
from bot.domain.plan.metrics import (
    Metrics,
    PrometheusMetrics,
    SentryMetrics,
    StaticMetrics,
    Thresholds,
    baseline_origin,
    baseline_sample_problems,
    crash_limit_problems,
)


class Workflow(PlanModel):
    """The GitHub Actions workflow the bot dispatches."""

    file: Text
    name: Text
    ref: Text = "main"


class Migrations(PlanModel):
    """Where the release's database migrations live and which statements make them destructive."""

    directory: Text
    pattern: Text = "*.sql"
    destructive: tuple[Text, ...] = Field(min_length=1)

    def applies_to(self, path: str) -> bool:
        """Whether the file at `path` (repository-relative) is a migration this rule reads."""
        file = PurePosixPath(path)
        return file.parent == PurePosixPath(self.directory) and fnmatchcase(file.name, self.pattern)

    def offending_lines(self, text: str) -> list[tuple[int, str]]:
        """(line number, line) of every destructive statement: a case-sensitive word match."""
        words = "|".join(re.escape(statement) for statement in self.destructive)
        rule = re.compile(rf"(?<![A-Za-z0-9_])(?:{words})(?![A-Za-z0-9_])")
        return [
            (number, line)
            for number, line in enumerate(text.splitlines(), start=1)
            if rule.search(line)
        ]


class Preflight(PlanModel):
    """The checks before anything deploys (SPEC section 1, relay preconditions)."""

    job: Text
    migrations: Migrations
    check_image_published: bool = True
    image_package: Text = "relay"
    """The GitHub Packages container (of the repository's owner) that must have the tag."""


class PromoteMode(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


class TwoPersonAction(StrEnum):
    """What the person who started a rollout cannot do alone (`two_person:` in the plan)."""

    DISPATCH = "dispatch"
    PROMOTE = "promote"
    """Every promotion, of every track."""
    PROMOTE_TO_LAST = "promote_to_last"
    """The promotion to a track's last stage (the relay's 100%, the desktop GA ring)."""
    REDEPLOY = "redeploy"
    OVERRIDE_FREEZE = "override_freeze"
    """Dispatching a rollout whose freeze its starter overrode (docs/freezes.md)."""


class Observation(PlanModel):
    """How a stage is watched before the next one may start."""

    window: Duration
    promote: PromoteMode = PromoteMode.MANUAL
    """After a PASS: hold the next stage for a Promote click, or approve it at once."""
    inconclusive_extension: Duration | None = None
    """Added once to the window on an INCONCLUSIVE verdict; None holds for a human at once."""


class Stage(PlanModel):
    """One step of a track: a share of traffic or a release ring, behind a GitHub environment."""

    key: Key
    label: Text
    percent: Annotated[int, Field(ge=1, le=100, strict=True)] | None = None
    ring: Text | None = None
    environment: Text
    job: Text
    """The job's display name, as GitHub's jobs API reports it."""
    observe: Observation | None = None
    two_person: bool = False
    """Promoting into this stage needs an approver other than the one who started the rollout."""

    @property
    def window(self) -> timedelta | None:
        return None if self.observe is None else self.observe.window


class FailureJob(PlanModel):
    """The `if: failure()` job of a track: the relay rollback or the desktop kill-switch."""

    environment: Text
    job: Text


class Track(PlanModel):
    """A sequence of stages gated one after the other, with its own failure job and metrics."""

    label: Text
    gate: GateKind
    stages: tuple[Stage, ...] = Field(min_length=1)
    on_failure: FailureJob
    thresholds: Thresholds = Thresholds()
    metrics: Metrics
    redeploy: Redeploy | None = None
    """How Roll back redeploys the previous good tag after the track completed (default: a new
    rollout of that tag)."""

    def stage(self, key: str) -> Stage:
        return member(
            self.stages, key, by=lambda s: s.key, missing=f"no stage {key!r} in this track"
        )

    def next_stage(self, key: str) -> Stage | None:
        """The stage after `key`, or None after the last."""
        index = self.stages.index(self.stage(key))
        return self.stages[index + 1] if index + 1 < len(self.stages) else None

    def stage_for_environment(self, environment: str) -> Stage | None:
        """The stage held by a GitHub environment (names compare case-insensitively, as GitHub)."""
        wanted = environment.casefold()
        return next((s for s in self.stages if s.environment.casefold() == wanted), None)

    def stage_for_job(self, job: str) -> Stage | None:
        """The stage whose job has this display name."""
        return next((stage for stage in self.stages if stage.job == job), None)

    def evaluate_gate(
        self,
        *,
        baseline_crash: Decimal | None,
        current_crash: Decimal | None,
        current_error: Decimal | None = None,
        sample: int | None = None,
    ) -> GateVerdict:
        """This track's gate on these figures, with the plan's thresholds."""
        return self.thresholds.evaluate(
            self.gate,
            baseline_crash=baseline_crash,
            current_crash=current_crash,
            current_error=current_error,
            sample=sample,
            baseline_origin=baseline_origin(self.metrics),
        )

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> Track:
        problems = [*self._stage_problems(), *self._gate_problems(), *self._metrics_problems()]
        if loaded(info):  # a rule that came after some rollouts started (`STORED_PLAN`)
            problems.extend(crash_limit_problems(self.thresholds, self.metrics))
            problems.extend(baseline_sample_problems(self.metrics))
        if problems:
            raise Problems(problems)
        return self

    def _stage_problems(self) -> Iterable[tuple[Path_, str]]:
        last = len(self.stages) - 1
        keys: dict[str, int] = {}
        previous_percent: int | None = None
        for index, stage in enumerate(self.stages):
            at: Path_ = ("stages", index)
            if stage.key in keys:
                yield (*at, "key"), f"'{stage.key}' is already the key of stages[{keys[stage.key]}]"
            keys.setdefault(stage.key, index)
            if (stage.percent is None) == (stage.ring is None):
                yield at, "needs exactly one of percent (a share of traffic) or ring (a ring name)"
            elif (stage.percent is None) != (self.stages[0].percent is None):
                yield at, "mixes percent and ring stages in one track"
            if stage.percent is not None:
                if previous_percent is not None and stage.percent <= previous_percent:
                    yield (
                        (*at, "percent"),
                        f"{stage.percent} is not above the previous stage's {previous_percent}",
                    )
                previous_percent = stage.percent
            if index < last and stage.observe is None:
                yield (*at, "observe"), "is required on every stage but the last"
            if index == last and stage.observe is not None:
                yield (*at, "observe"), "the last stage has no next stage to hold: remove it"
        final = self.stages[last].percent
        if final is not None and final != 100:
            yield ("stages", last, "percent"), f"the last stage must reach 100, not {final}"

    def _gate_problems(self) -> Iterable[tuple[Path_, str]]:
        at: Path_ = ("thresholds", "error_threshold")
        if self.gate is GateKind.RELAY and self.thresholds.error_threshold is None:
            yield at, "is required by the relay gate"
        if self.gate is GateKind.DESKTOP and self.thresholds.error_threshold is not None:
            yield at, "the desktop gate reads no error rate: remove it"

    def _metrics_problems(self) -> Iterable[tuple[Path_, str]]:
        if isinstance(self.metrics, PrometheusMetrics | SentryMetrics):
            yield from self._live_metrics_problems(self.metrics)
        if not isinstance(self.metrics, StaticMetrics):
            return
        figures = self.metrics.stages
        known = {stage.key for stage in self.stages}
        for key, stage_figures in figures.items():
            at: Path_ = ("metrics", "stages", key)
            if key not in known:
                yield at, f"'{key}' is not a stage of this track"
            elif self.gate is GateKind.RELAY and stage_figures.error_rate is None:
                yield (*at, "error_rate"), "is required by the relay gate"
            elif self.gate is GateKind.DESKTOP and stage_figures.error_rate is not None:
                yield (*at, "error_rate"), "the desktop gate reads no error rate: remove it"
        for stage in self.stages:
            if self.metrics.file is None and stage.observe is not None and stage.key not in figures:
                yield ("metrics", "stages"), f"has no figures for the observed stage '{stage.key}'"

    def _live_metrics_problems(
        self, metrics: PrometheusMetrics | SentryMetrics
    ) -> Iterable[tuple[Path_, str]]:
        if isinstance(metrics, SentryMetrics):
            if self.gate is GateKind.RELAY:
                yield (
                    ("metrics", "source"),
                    "sentry reads crash rates only; the relay gate also needs an error rate "
                    "(use prometheus)",
                )
            return
        at: Path_ = ("metrics", "error_rate")
        if self.gate is GateKind.RELAY and metrics.error_rate is None:
            yield at, "is required by the relay gate"
        if self.gate is GateKind.DESKTOP and metrics.error_rate is not None:
            yield at, "the desktop gate reads no error rate: remove it"
        if metrics.error_rate is not None and metrics.error_rate.baseline is not None:
            yield (*at, "baseline"), "the error rate has a threshold, not a baseline: remove it"
        queries = [metrics.crash_rate, metrics.error_rate]
        if self.thresholds.min_sample > 0 and all(q is None or q.sample is None for q in queries):
            yield (
                ("metrics",),
                "thresholds.min_sample needs a sample query on at least one metric",
            )


NpmScope = Annotated[str, StringConstraints(strict=True, pattern=r"^@[a-z0-9][a-z0-9._-]{0,213}$")]


class NpmRelease(PlanModel):
    """The npm Release workflow that `/rollout npm-token` checks and may dispatch."""

    scope: NpmScope = "@scriptum"
    workflow: Text = "release.yml"
    """The workflow file under `.github/workflows/`."""
    ref: Text = "main"
    """The branch Run Release dispatches the workflow on."""
    job: Text = "changesets"
    """The display name of the job that validates credentials and publishes."""
    validate_step: Text = "Validate npm publish credentials"
    publish_step: Text = "Version / publish packages"
    max_secret_age_days: Annotated[int, Field(ge=1, le=365, strict=True)] = 80
    """Warn when NPM_TOKEN was last updated longer ago (granular write tokens live <= 90 days)."""


class NotificationLevel(StrEnum):
    ALL = "all"
    """Every stage change, plus each job and deployment step GitHub reports (webhooks)."""
    STAGES = "stages"
    """Stage changes: approvals, deploys, windows, verdicts, failures, the end."""
    FAILURES = "failures"
    """Only what went wrong: failed gates, rejections, rollbacks, kill-switches, failures."""


SlackChannelId = Annotated[str, StringConstraints(strict=True, pattern=r"^[CG][A-Z0-9]{2,31}$")]


class Notifications(PlanModel):
    """What a rollout's thread is told, and where failures are posted as well."""

    level: NotificationLevel = NotificationLevel.STAGES
    failure_channel: SlackChannelId | None = None
    """A channel id (`C...`) that also receives every failure, with a link to the thread."""

    def shows(self, *, failure: bool, detail: bool) -> bool:
        """Whether the thread shows a message of this kind at this level."""
        if failure:
            return True
        if self.level is NotificationLevel.FAILURES:
            return False
        return not detail or self.level is NotificationLevel.ALL


class RolloutPlan(PlanModel):
    """The whole plan."""

    version: Literal[1] = 1
    workflow: Workflow
    preflight: Preflight
    tracks: dict[Key, Track] = Field(min_length=1)
    inputs: dict[InputName, InputSource]
    npm: NpmRelease = NpmRelease()
    notifications: Notifications = Notifications()
    two_person: tuple[TwoPersonAction, ...] = ()
    """Actions the person who started a rollout cannot take alone (docs/controls.md)."""
    freezes: tuple[CalendarFreeze, ...] = ()
    """The freeze calendar: when start and dispatch are refused (docs/freezes.md)."""

    def track(self, name: str) -> Track:
        try:
            return self.tracks[name]
        except KeyError:
            raise KeyError(f"no track {name!r} in the plan") from None

    def dispatch_inputs(
        self, *, tag: str, feature_flags_ready: bool, baselines: Mapping[str, Decimal]
    ) -> dict[str, str]:
        """The workflow_dispatch inputs, all strings; `baselines` maps track name to rate."""
        values: dict[str, str] = {}
        for name, source in self.inputs.items():
            if isinstance(source, TagInput):
                values[name] = tag
            elif isinstance(source, FeatureFlagsInput):
                values[name] = "true" if feature_flags_ready else "false"
            elif isinstance(source, BaselineInput):
                values[name] = format_rate(baselines[source.track])
            else:
                values[name] = source.value
        return values

    @model_validator(mode="after")
    def _cross_check(self) -> RolloutPlan:
        problems: list[tuple[Path_, str]] = []
        environments: dict[str, Path_] = {}
        jobs: dict[str, Path_] = {self.preflight.job: ("preflight", "job")}
        for name, track in self.tracks.items():
            holders: list[tuple[Path_, Stage | FailureJob]] = [
                (("stages", i), stage) for i, stage in enumerate(track.stages)
            ]
            for at, holder in [*holders, (("on_failure",), track.on_failure)]:
                where: Path_ = ("tracks", name, *at)
                env = holder.environment.casefold()
                if env in environments:
                    seen = dotted(environments[env])
                    problems.append(((*where, "environment"), f"already used by {seen}"))
                environments.setdefault(env, where)
                if holder.job in jobs:
                    problems.append(
                        ((*where, "job"), f"already used by {dotted(jobs[holder.job])}")
                    )
                jobs.setdefault(holder.job, where)
        for input_name, source in self.inputs.items():
            if isinstance(source, BaselineInput) and source.track not in self.tracks:
                tracks = ", ".join(self.tracks)
                problem = f"'{source.track}' is not a track of this plan ({tracks})"
                problems.append((("inputs", input_name, "track"), problem))
        if problems:
            raise Problems(problems)
        return self

"""The rollout plan: which workflow to drive, the tracks and their stages, gates and metrics.

A YAML file (ROLLOUT_PLAN) or the built-in Scriptum plan (`default_plan.yml`), validated into
frozen pydantic models. Every problem of a bad plan is reported at once, each under the dotted
path of its key (`tracks.relay.stages[1].observe.window: '6o' is not a duration ...`).
docs/plan.md documents every key.
"""

from __future__ import annotations

import re
import string
from collections.abc import Hashable, Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)

from bot.domain.durations import HINT, format_duration, parse_duration
from bot.domain.errors import PlanError
from bot.domain.gate import GateKind, GateVerdict, evaluate_desktop, evaluate_relay, format_rate

# libyaml's parser when PyYAML was built with it (ten times faster), the Python one otherwise.
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

Path_ = tuple[str | int, ...]
"""A key's location in the plan: ("tracks", "relay", "stages", 1, "observe")."""


def _duration(value: object) -> object:
    if isinstance(value, timedelta):
        # Same rules as the written form: whole seconds, positive, at most MAX_DURATION.
        return parse_duration(format_duration(value))
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not a duration ({HINT})")


Duration = Annotated[
    timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)
]
Rate = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
_KEY = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")


def _key(value: str) -> str:
    if not _KEY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid key: a lowercase letter, then up to 31 lowercase letters, "
            "digits, '-' or '_'"
        )
    return value


def _input_name(value: str) -> str:
    if not _INPUT_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid workflow input name")
    return value


Key = Annotated[str, StringConstraints(strict=True), AfterValidator(_key)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=255, strict=True)]
InputName = Annotated[str, StringConstraints(strict=True), AfterValidator(_input_name)]
Count = Annotated[int, Field(ge=0, strict=True)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Problems(ValueError):
    """Several problems found by one cross-check, each at a path relative to the model checked."""

    def __init__(self, problems: list[tuple[Path_, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_dotted(path)}: {problem}" for path, problem in problems))


class Workflow(_Model):
    """The GitHub Actions workflow the bot dispatches."""

    file: Text
    name: Text
    ref: Text = "main"


class Migrations(_Model):
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


class Preflight(_Model):
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


class Observation(_Model):
    """How a stage is watched before the next one may start."""

    window: Duration
    promote: PromoteMode = PromoteMode.MANUAL
    """After a PASS: hold the next stage for a Promote click, or approve it at once."""
    inconclusive_extension: Duration | None = None
    """Added once to the window on an INCONCLUSIVE verdict; None holds for a human at once."""


class Stage(_Model):
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


class FailureJob(_Model):
    """The `if: failure()` job of a track: the relay rollback or the desktop kill-switch."""

    environment: Text
    job: Text


class Thresholds(_Model):
    """The gate's limits (SPEC section 1) and how much data a verdict needs."""

    crash_multiplier: Rate = Decimal("2.0")
    error_threshold: Rate | None = None
    min_sample: Count = 0


class StageFigures(_Model):
    """Observed figures of one stage, for the `static` metrics source."""

    crash_rate: Rate
    error_rate: Rate | None = None
    sample: Count | None = None


class StaticMetrics(_Model):
    """Fixed figures from the plan: tests, the demo, dry runs."""

    source: Literal["static"]
    baseline_crash_rate: Rate
    stages: dict[Key, StageFigures] = Field(default_factory=dict)
    file: Path | None = None
    """A YAML file with `baseline_crash_rate` and `stages`, read again at every gate and
    taking precedence over the values here (a dry run or the demo changes it as it goes)."""


class ManualMetrics(_Model):
    """The runbook's human flow: at the end of a window the approvers type the observed rates."""

    source: Literal["manual"]
    baseline_crash_rate: Rate


PLACEHOLDERS = ("window", "since_start", "tag", "stage", "track")
"""What a query template may name: `$window` (the stage's window so far, `1800s`),
`$since_start` (time since the rollout was dispatched, for `offset`), `$tag`, `$stage`, `$track`."""


def _template(value: str) -> str:
    template = string.Template(value)
    if not template.is_valid():
        raise ValueError("has a lone '$': write '$$' for a literal dollar sign")
    unknown = sorted(set(template.get_identifiers()) - set(PLACEHOLDERS))
    if unknown:
        known = ", ".join(f"${name}" for name in PLACEHOLDERS)
        raise ValueError(f"unknown placeholder ${unknown[0]} (known: {known})")
    return value


def fill(template: str, values: Mapping[str, str]) -> str:
    """A query template with its placeholders replaced (`values` names every placeholder)."""
    return string.Template(template).substitute(values)


QueryTemplate = Annotated[
    str, StringConstraints(min_length=1, max_length=4000, strict=True), AfterValidator(_template)
]


class PrometheusQuery(_Model):
    """One gated metric in PromQL: the rate, the count it came from, and optionally a baseline."""

    query: QueryTemplate
    sample: QueryTemplate | None = None
    """The number of requests or sessions behind the rate, compared with `min_sample`."""
    baseline: QueryTemplate | None = None
    """crash_rate only: the baseline read live (e.g. the same query `offset $since_start`)
    instead of the fixed `baseline_crash_rate`."""


class PrometheusMetrics(_Model):
    """Live figures from Prometheus (PROMETHEUS_URL), one PromQL template per metric."""

    source: Literal["prometheus"]
    baseline_crash_rate: Rate
    """The fixed baseline: the workflow's baseline inputs, and the gate's without a query."""
    crash_rate: PrometheusQuery
    error_rate: PrometheusQuery | None = None


class SentryMetrics(_Model):
    """Crash rates from Sentry release health (SENTRY_ORG, SENTRY_PROJECT, SENTRY_TOKEN)."""

    source: Literal["sentry"]
    baseline_crash_rate: Rate
    release: QueryTemplate = "$tag"
    """The Sentry release name of the tag being rolled out (e.g. `scriptum-desktop@$tag`)."""
    environment: QueryTemplate | None = None
    """The Sentry environment of the stage (e.g. `$stage` when rings are environments)."""
    crash_rate: Literal["crash_rate(session)", "crash_rate(user)"] = "crash_rate(session)"
    baseline_query: QueryTemplate | None = None
    """A Sentry search for the baseline sessions (e.g. `!release:scriptum-desktop@$tag`, every
    other release) instead of the fixed `baseline_crash_rate`."""


Metrics = Annotated[
    StaticMetrics | ManualMetrics | PrometheusMetrics | SentryMetrics,
    Field(discriminator="source"),
]


class Track(_Model):
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
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise KeyError(f"no stage {key!r} in this track")

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
        if self.gate is GateKind.RELAY:
            assert self.thresholds.error_threshold is not None  # required for relay gates
            return evaluate_relay(
                baseline_crash=baseline_crash,
                current_crash=current_crash,
                current_error=current_error,
                crash_multiplier=self.thresholds.crash_multiplier,
                error_threshold=self.thresholds.error_threshold,
                sample=sample,
                min_sample=self.thresholds.min_sample,
            )
        return evaluate_desktop(
            baseline_crash=baseline_crash,
            current_crash=current_crash,
            crash_multiplier=self.thresholds.crash_multiplier,
            sample=sample,
            min_sample=self.thresholds.min_sample,
        )

    @model_validator(mode="after")
    def _cross_check(self) -> Track:
        problems = [*self._stage_problems(), *self._gate_problems(), *self._metrics_problems()]
        if problems:
            raise _Problems(problems)
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


class TagInput(_Model):
    """The release tag being rolled out."""

    from_: Literal["tag"] = Field(alias="from")


class FeatureFlagsInput(_Model):
    """`"true"` once the feature flags are confirmed validated, `"false"` otherwise."""

    from_: Literal["feature_flags"] = Field(alias="from")


class BaselineInput(_Model):
    """A track's baseline crash rate (the bot gates live, so stage rate inputs get it too)."""

    from_: Literal["baseline"] = Field(alias="from")
    track: Key


class LiteralInput(_Model):
    """A fixed string."""

    from_: Literal["literal"] = Field(alias="from")
    value: Annotated[str, StringConstraints(strict=True)]


class ReplacedTagInput(_Model):
    """The tag being replaced by a redeploy (the rollout whose Roll back was clicked)."""

    from_: Literal["replaced_tag"] = Field(alias="from")


RedeployInputSource = Annotated[
    TagInput | ReplacedTagInput | LiteralInput, Field(discriminator="from_")
]


class Redeploy(_Model):
    """A rollback workflow: dispatched with the previous good tag to put it back in place."""

    workflow: Text
    """The workflow file under `.github/workflows/`."""
    ref: Text = "main"
    inputs: dict[InputName, RedeployInputSource] = Field(default_factory=dict)
    """`{from: tag}` is the tag redeployed (the previous good one), `{from: replaced_tag}`
    the tag it replaces, `{from: literal, value: ...}` a fixed string."""

    def dispatch_inputs(self, *, tag: str, replaced_tag: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for name, source in self.inputs.items():
            if isinstance(source, TagInput):
                values[name] = tag
            elif isinstance(source, ReplacedTagInput):
                values[name] = replaced_tag
            else:
                values[name] = source.value
        return values


InputSource = Annotated[
    TagInput | FeatureFlagsInput | BaselineInput | LiteralInput, Field(discriminator="from_")
]


NpmScope = Annotated[str, StringConstraints(strict=True, pattern=r"^@[a-z0-9][a-z0-9._-]{0,213}$")]


class NpmRelease(_Model):
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


class Notifications(_Model):
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


class RolloutPlan(_Model):
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
                    seen = _dotted(environments[env])
                    problems.append(((*where, "environment"), f"already used by {seen}"))
                environments.setdefault(env, where)
                if holder.job in jobs:
                    problems.append(
                        ((*where, "job"), f"already used by {_dotted(jobs[holder.job])}")
                    )
                jobs.setdefault(holder.job, where)
        for input_name, source in self.inputs.items():
            if isinstance(source, BaselineInput) and source.track not in self.tracks:
                tracks = ", ".join(self.tracks)
                problem = f"'{source.track}' is not a track of this plan ({tracks})"
                problems.append((("inputs", input_name, "track"), problem))
        if problems:
            raise _Problems(problems)
        return self


def load_plan(path: Path | None) -> RolloutPlan:
    """The plan in the YAML file at `path`, or the built-in Scriptum plan when None."""
    if path is None:
        default = resources.files("bot.domain").joinpath("default_plan.yml")
        return parse_plan(default.read_text(encoding="utf-8"), "the built-in plan")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PlanError(f"cannot read the rollout plan {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise PlanError(f"cannot read the rollout plan {path}: it is not UTF-8 text") from None
    return parse_plan(text, str(path))


def parse_plan(text: str, source: str) -> RolloutPlan:
    """The plan in `text`; `source` names it in errors. Raises PlanError listing every problem."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise PlanError(
            f"the rollout plan {source} is not valid YAML: {_yaml_problem(error)}"
        ) from None
    if data is None:
        raise PlanError(f"the rollout plan {source} is empty")
    try:
        return RolloutPlan.model_validate(data)
    except ValidationError as error:
        problems = "\n".join(f"  {line}" for line in _problem_lines(error, data))
        raise PlanError(f"the rollout plan {source} is invalid:\n{problems}") from None


class _StrictLoader(_SafeLoader):
    """A safe loader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return " ".join(str(error).split())


def _problem_lines(error: ValidationError, data: object) -> list[str]:
    lines: list[str] = []
    for detail in error.errors():
        at = _plan_path(detail["loc"], data)
        kind = detail["type"]
        context = detail.get("ctx", {})
        if kind == "value_error" and isinstance(context.get("error"), _Problems):
            problems: list[tuple[Path_, str]] = context["error"].problems
            lines.extend(f"{_dotted((*at, *path))}: {problem}" for path, problem in problems)
        elif kind == "union_tag_not_found":
            lines.append(f"{_dotted(at)}: needs a {_discriminator(context)} key")
        elif kind == "union_tag_invalid":
            key = _discriminator(context).strip("'")
            problem = f"{context['tag']!r} is not one of {context['expected_tags']}"
            lines.append(f"{_dotted((*at, key))}: {problem}")
        else:
            lines.append(f"{_dotted(at)}: {_problem(kind, detail)}")
    return lines


def _problem(kind: str, detail: Mapping[str, Any]) -> str:
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key (docs/plan.md lists every key)"
    if kind == "value_error":
        return str(detail["ctx"]["error"])
    if kind == "too_short":
        return "must not be empty"
    shown = repr(detail["input"])
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    message = str(detail["msg"])
    return f"{message[:1].lower()}{message[1:]}, not {shown}"


def _discriminator(context: Mapping[str, Any]) -> str:
    # pydantic names a discriminator field with an alias as "'from_' | 'from'"; YAML uses the alias.
    return str(context["discriminator"]).split(" | ")[-1]


def _plan_path(loc: tuple[int | str, ...], data: object) -> Path_:
    """pydantic's location as a path through the YAML: without the union tags it inserts."""
    path: list[str | int] = []
    node: object = data
    for index, part in enumerate(loc):
        found, child = _child(node, part)
        if not found and isinstance(node, dict) and index < len(loc) - 1:
            continue  # a tag naming the member of a discriminated union, not a key of the plan
        node = child
        path.append(part)
    return tuple(path)


def _child(node: object, part: int | str) -> tuple[bool, object]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue  # the error is about the key itself, and its message quotes it
        else:
            text += f".{part}" if text else part
    return text or "(the plan)"

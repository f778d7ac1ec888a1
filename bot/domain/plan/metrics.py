"""Where a track's figures come from (Prometheus, Sentry, static, people) and thresholds."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
)

from bot.domain.gate import GateKind, GateVerdict, evaluate_track
from bot.domain.plan.fields import (
    BaselineRate,
    Count,
    Duration,
    ErrorThreshold,
    Fraction_,
    Key,
    Path_,
    PlanModel,
    Rate,
)
from bot.domain.rates import BaselineOrigin, crash_limit_problem


class Thresholds(PlanModel):
    """The gate's limits (SPEC section 1) and how much data a verdict needs."""

    crash_multiplier: Rate = Decimal("2.0")
    error_threshold: ErrorThreshold | None = None
    min_sample: Count = 0

    def evaluate(
        self,
        gate: GateKind,
        *,
        baseline_crash: Decimal | None,
        current_crash: Decimal | None,
        current_error: Decimal | None = None,
        sample: int | None = None,
        baseline_origin: BaselineOrigin = "live",
    ) -> GateVerdict:
        """The gate on these figures with these limits (`evaluate_track`: a saved plan's
        unusable threshold holds the gate)."""
        return evaluate_track(
            gate,
            baseline_crash=baseline_crash,
            current_crash=current_crash,
            current_error=current_error,
            crash_multiplier=self.crash_multiplier,
            error_threshold=self.error_threshold if gate is GateKind.RELAY else None,
            sample=sample,
            min_sample=self.min_sample,
            baseline_origin=baseline_origin,
        )


class StageFigures(PlanModel):
    """Observed figures of one stage, for the `static` metrics source."""

    crash_rate: Fraction_
    error_rate: Fraction_ | None = None
    sample: Count | None = None


class StaticMetrics(PlanModel):
    """Fixed figures from the plan: tests, the demo, dry runs."""

    source: Literal["static"]
    baseline_crash_rate: BaselineRate
    stages: dict[Key, StageFigures] = Field(default_factory=dict)
    file: Path | None = None
    """A YAML file with `baseline_crash_rate` and `stages`, read again at every gate and
    taking precedence over the values here (a dry run or the demo changes it as it goes)."""


class ManualMetrics(PlanModel):
    """The runbook's human flow: at the end of a window the approvers type the observed rates."""

    source: Literal["manual"]
    baseline_crash_rate: BaselineRate


PLACEHOLDERS = ("window", "since_start", "tag", "stage", "track", "service")
"""What a query template may name: `$window` (the stage's window so far, `1800s`),
`$since_start` (time since the rollout was dispatched, for `offset`), `$tag`, `$stage`, `$track`,
`$service` (so that services sharing one plan file read their own metrics)."""


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


class PrometheusQuery(PlanModel):
    """One gated metric in PromQL: the rate, the count it came from, and optionally a baseline."""

    query: QueryTemplate
    sample: QueryTemplate | None = None
    """The number of requests or sessions behind the rate, compared with `min_sample`."""
    baseline: QueryTemplate | None = None
    """crash_rate only: the baseline read live (e.g. the same query `offset $since_start`)
    instead of the fixed `baseline_crash_rate`."""
    baseline_sample: QueryTemplate | None = None
    """With `baseline`: the requests or sessions behind it, a sample too (the smallest decides):
    a baseline read over a handful of requests sets a limit a crashing canary passes under."""


class PrometheusMetrics(PlanModel):
    """Live figures from Prometheus (PROMETHEUS_URL), one PromQL template per metric."""

    source: Literal["prometheus"]
    baseline_crash_rate: BaselineRate
    """The fixed baseline: the workflow's baseline inputs, and the gate's without a query."""
    crash_rate: PrometheusQuery
    error_rate: PrometheusQuery | None = None
    settle: Duration | None = None
    """How long after a window's end its gate waits before reading it (`settle_of`)."""


class SentryMetrics(PlanModel):
    """Crash rates from Sentry release health (SENTRY_ORG, SENTRY_PROJECT, SENTRY_TOKEN)."""

    source: Literal["sentry"]
    baseline_crash_rate: BaselineRate
    release: QueryTemplate = "$tag"
    """The Sentry release name of the tag being rolled out (e.g. `scriptum-desktop@$tag`)."""
    environment: QueryTemplate | None = None
    """The Sentry environment of the stage (e.g. `$stage` when rings are environments)."""
    crash_rate: Literal["crash_rate(session)", "crash_rate(user)"] = "crash_rate(session)"
    baseline_query: QueryTemplate | None = None
    """A Sentry search for the baseline sessions (e.g. `!release:scriptum-desktop@$tag`, every
    other release) instead of the fixed `baseline_crash_rate`."""
    settle: Duration | None = None
    """How long after a window's end its gate waits before reading it (`settle_of`)."""


Metrics = Annotated[
    StaticMetrics | ManualMetrics | PrometheusMetrics | SentryMetrics,
    Field(discriminator="source"),
]


def settle_of(metrics: Metrics) -> timedelta:
    """How long a gate waits after its window's end before it reads the window: the figures of
    its last minutes that arrive late (a desktop app's crash reported at its next start, a
    remote-write store's ingestion delay) are in by then. Zero without `settle`."""
    if isinstance(metrics, PrometheusMetrics | SentryMetrics) and metrics.settle:
        return metrics.settle
    return timedelta(0)


def fixed_baseline(metrics: Metrics) -> Decimal | None:
    """The baseline crash rate the gate judges by when it is the plan's fixed number, or None
    when the gate reads it live (`crash_rate.baseline`, `baseline_query`)."""
    if isinstance(metrics, PrometheusMetrics) and metrics.crash_rate.baseline is not None:
        return None
    if isinstance(metrics, SentryMetrics) and metrics.baseline_query is not None:
        return None
    return metrics.baseline_crash_rate


def baseline_origin(metrics: Metrics) -> BaselineOrigin:
    """Where the gate's baseline crash rate comes from (a static source's figures file, read
    at every gate, overrides the plan's)."""
    if fixed_baseline(metrics) is None:
        return "live"
    return "figures file" if isinstance(metrics, StaticMetrics) and metrics.file else "plan"


def crash_limit_problems(thresholds: Thresholds, metrics: Metrics) -> Iterable[tuple[Path_, str]]:
    """A fixed baseline whose limit (baseline x crash_multiplier) is 1 or more: no crash rate
    exceeds it, so the crash rule could never fail (`0.5` meant as 0.5%)."""
    baseline = fixed_baseline(metrics)
    if baseline is None:
        return  # read live: judged as it is read (`evaluate_track`)
    problem = crash_limit_problem(baseline, thresholds.crash_multiplier)
    if problem is not None:
        yield ("metrics", "baseline_crash_rate"), problem


def baseline_sample_problems(metrics: Metrics) -> Iterable[tuple[Path_, str]]:
    """`baseline_sample` counts the requests behind a Prometheus baseline read live: a count of
    no baseline counts nothing (without one, the gate says the baseline's sample is not
    counted)."""
    if not isinstance(metrics, PrometheusMetrics):
        return
    crash, error = metrics.crash_rate, metrics.error_rate
    at: Path_ = ("metrics", "crash_rate")
    if crash.baseline is None and crash.baseline_sample is not None:
        yield (
            (*at, "baseline_sample"),
            "counts the requests behind crash_rate.baseline: add it, or remove this",
        )
    if error is not None and error.baseline_sample is not None:
        yield (
            ("metrics", "error_rate", "baseline_sample"),
            "the error rate has a threshold, not a baseline: remove it",
        )

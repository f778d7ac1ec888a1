"""What one check of `rollout-bot doctor` found: ✓ and what was found, ✗ and the fix, or ⚠ (a
risk, not a failure) and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    ok: bool
    check: str
    """What was checked, and on success what was found."""
    fix: str = ""
    """What to do about a failure or a warning."""
    warning: bool = False
    """Not a failure (the doctor still exits 0), but a risk worth acting on: ⚠ and the fix."""

    def line(self) -> str:
        if self.warning:
            return f"⚠ {self.check}: {self.fix}"
        return f"✓ {self.check}" if self.ok else f"✗ {self.check}: {self.fix}"


def passed(check: str) -> Finding:
    return Finding(True, check)


def failed(check: str, fix: str) -> Finding:
    return Finding(False, check, fix)


def warned(check: str, fix: str) -> Finding:
    return Finding(True, check, fix, warning=True)


def metrics_queries_finding(metrics: str, answers: tuple[list[str], list[str]] | None) -> Finding:
    """A track's metrics queries asked once (`MetricsProbe`): any unanswered fails; answered no
    data warns (a misspelt metric, label or environment answers as a release without traffic
    yet does, and a gate reading it says INCONCLUSIVE); None: a source with no queries."""
    if answers is None:
        return passed(f"{metrics}: no queries")
    unanswered, no_data = answers
    if unanswered:
        return failed(
            f"{metrics}: {'; '.join(unanswered)}",
            "check PROMETHEUS_URL or SENTRY_* and the plan's queries "
            "(rollout-bot metrics <stage> --tag <tag> shows each)",
        )
    if no_data:
        baselines = all(" baseline" in part.split(":", 1)[0] for part in no_data)
        return warned(
            f"{metrics} answer no data: {'; '.join(no_data)}",
            "check the metric names, labels and environment in the plan's queries "
            "(rollout-bot metrics <stage> --tag <tag> shows each): a release with traffic has "
            "figures, and a gate reading none says INCONCLUSIVE. No data is expected only "
            + (
                "for a baseline while no other release has traffic (the tag at 100%, or the "
                "first release of its ring)"
                if baselines
                else "while the release has no traffic yet"
            ),
        )
    return passed(f"{metrics} answer their queries")

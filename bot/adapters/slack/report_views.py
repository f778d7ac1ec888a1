"""`/rollout report`'s answer: a period's rollouts in a few lines."""

from __future__ import annotations

from bot.adapters.slack.blocks import BlockJson, as_json, sections
from bot.adapters.slack.limits import fit
from bot.adapters.slack.messages import person, reason_text, slack_time
from bot.adapters.slack.summary_views import span
from bot.domain.period_report import PeriodReport, StoppedTrack
from bot.domain.rollout.words import ended_words


def report_text(report: PeriodReport, *, service: str | None = None) -> str:
    """`service`: the service whose rollouts these are, named when the bot releases several."""
    return "\n".join(_lines(report, service))


def report_blocks(report: PeriodReport, *, service: str | None = None) -> list[BlockJson]:
    return as_json(fit(sections(_lines(report, service)), "a shorter period"))


def _lines(report: PeriodReport, service: str | None) -> list[str]:
    of = f"{service} in " if service is not None else ""
    period = report.period
    zone = ""
    if period.month is not None:  # a month's days are the asker's (`Period.zone`)
        zone = f"{period.zone}: " if period.zone else "UTC, Slack did not say your time zone: "
    title = (
        f"*Rollouts of {of}{period.text}* ({zone}{slack_time(report.start)} to "
        f"{slack_time(report.end)})"
    )
    if not report.rollouts:
        return [f"{title}: no rollout ended in this period."]
    lines = [
        title,
        f"• {report.rollouts} rollout(s), {report.reached_the_end} to 100%"
        + (
            f" ({report.reached_the_end - report.succeeded} rolled back after)"
            if report.reached_the_end > report.succeeded
            else ""
        )
        + f": success rate {_success_rate(report)}",
        "• lead time dispatch to 100%: "
        + (
            f"median {span(report.lead_median)}, p90 {span(report.lead_p90)}"
            if report.lead_median is not None and report.lead_p90 is not None
            else "none reached 100%"
        ),
    ]
    if report.held_median is not None:
        lines.append(f"• median time held waiting for a person: {span(report.held_median)}")
    if report.stopped:
        lines.append("*Rollbacks, kills and other stops*")
        lines.extend(_stopped(s) for s in report.stopped)
    return lines


def _success_rate(report: PeriodReport) -> str:
    """The share of rollouts that succeeded, to the nearest percent; but never 100% while
    one did not, nor 0% while one did (199 of 200 is 99%, not 100%)."""
    whole = round(100 * (report.success_rate or 0.0))
    if report.succeeded < report.rollouts:
        whole = min(whole, 99)
    if report.succeeded:
        whole = max(whole, 1)
    return f"{whole}%"


def _stopped(track: StoppedTrack) -> str:
    if track.redeployed is not None:
        return (
            f"• `{track.tag}` {track.track}: rolled back after it completed (redeployed the "
            f"previous release by {person(track.redeployed.actor)}, "
            f"{slack_time(track.redeployed.at)})"
        )
    why = f" ({reason_text(track.reason)})" if track.reason else ""
    return f"• `{track.tag}` {track.track}: {ended_words(track.state)}{why}"

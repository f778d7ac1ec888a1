"""The report afterwards, in words: a rollout's summary (`bot.domain.rollout_summary`) as the
thread shows it."""

from __future__ import annotations

from datetime import timedelta

from bot.adapters.slack.messages import person, reason_text, slack_time
from bot.adapters.slack.mrkdwn import escape
from bot.domain.durations import format_duration
from bot.domain.rollout.state import StopKind, StopReason
from bot.domain.rollout.words import ended_words
from bot.domain.rollout_summary import RolloutSummary, StageTimes


def span(duration: timedelta) -> str:
    """A duration to the second, as `1h30m` (never negative)."""
    return format_duration(timedelta(seconds=max(0, round(duration.total_seconds()))))


def summary_text(summary: RolloutSummary) -> str:
    """The whole report: outcome, stages, verdicts, people, time held, lead time."""
    outcome = "completed" if summary.reached_the_end else "ended"
    since, dispatched = "", ""
    if summary.dispatched_at is not None:  # the lead time runs from the dispatch
        since, dispatched = (
            " from its dispatch",
            f"dispatched {slack_time(summary.dispatched_at)}, ",
        )
    lines = [
        f"*Report of `{summary.tag}`*: {outcome} in {span(summary.lead_time)}{since} "
        f"(started {slack_time(summary.started_at)} by {person(summary.started_by)}, "
        f"{dispatched}ended {slack_time(summary.ended_at)}); held waiting for a person "
        f"{span(summary.held)}.",
        *(f"• {o.track}: {ended_words(o.state)}{_why(o.reason)}" for o in summary.outcomes),
        "*Stages*",
        *(_stage_line(s) for s in summary.stages),
    ]
    if summary.verdicts:
        lines.append("*Verdicts*")
        lines.extend(
            f"• {v.track} {v.stage}: {v.verdict.verdict.value} ({v.verdict.summary})"
            for v in summary.verdicts
        )
    if summary.acts:
        lines.append("*Who did what*")
        # A reason (a kill's, a freeze's) is a person's own words, shown as typed: escaped,
        # a `<!channel>` in it reads as typed instead of notifying the channel.
        lines.extend(
            f"• {slack_time(a.at)} {person(a.actor)} {escape(a.what)}"
            + (f" ({a.track})" if a.track else "")
            + (f": {escape(a.said)}" if a.said else "")
            for a in summary.acts
        )
    return "\n".join(lines)


def _why(reason: StopReason | None) -> str:
    """Why a track ended; a failed gate is named without its verdict, which the thread has
    said once already (and the Verdicts below repeat with the figures)."""
    if reason is None:
        return ""
    if reason.kind is StopKind.GATE_FAILED:
        return f" (the {reason.subject} gate failed: see the verdicts)"
    return f" ({reason_text(reason)})"


def _stage_line(stage: StageTimes) -> str:
    parts = [f"• {stage.track} {stage.stage}: deployed {slack_time(stage.deployed_at)}"]
    if stage.window_ended_at:
        parts.append(f"window {span(stage.window_ended_at - stage.deployed_at)}")
    if stage.promoted_at:
        by = f" by {person(stage.promoted_by)}" if stage.promoted_by else ""
        parts.append(f"promoted{by} after {span(stage.promoted_at - stage.deployed_at)}")
    if stage.held is not None:
        parts.append(f"held {span(stage.held)}")
    return ", ".join(parts)

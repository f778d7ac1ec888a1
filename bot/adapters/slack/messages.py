"""The thread's words: every event the domain tells of, rendered as Slack mrkdwn.

The domain speaks events (`bot.domain.rollout.events`) and keeps reasons as data; this is the
one place that turns them into what the channel shows, with mentions, bold, links and emoji.
"""

from __future__ import annotations

from bot.adapters.slack.audit_reasons import reason_mrkdwn
from bot.adapters.slack.audit_reasons import recorded as recorded
from bot.adapters.slack.github_words import (
    approval_refused_text,
    failure_job_ended_text,
    github_reported_text,
    promoted_on_github_text,
    rerun_not_followed_text,
    rerun_unconfirmed_text,
    review_unanswered_text,
    run_readable_text,
    run_unreadable_text,
    waits_outside_plan_text,
)
from bot.adapters.slack.lane_words import (
    auto_held_text,
    freeze_text,
    lane_event_text,
    lock_text,
    override_answer,
)
from bot.adapters.slack.late_words import judged_late

# Re-exported: every view takes its marks from here.
from bot.adapters.slack.mrkdwn import channel as channel
from bot.adapters.slack.mrkdwn import escape
from bot.adapters.slack.mrkdwn import message_link as message_link
from bot.adapters.slack.mrkdwn import person as person
from bot.adapters.slack.mrkdwn import slack_time as slack_time
from bot.adapters.slack.overtaken_words import approval_overtaken_text, rejection_overtaken_text
from bot.adapters.slack.schedule_words import held_then_text, schedule_event_text, went_late
from bot.domain.controls import Control
from bot.domain.durations import format_duration
from bot.domain.freeze import ROLL_BACK_LASTS
from bot.domain.gate import GateReason, gate_reason_words
from bot.domain.permissions import TwoPersonRefusal
from bot.domain.rollout import events as told
from bot.domain.rollout.left import Left, TrackLeft
from bot.domain.rollout.state import Check, StageState, StopReason, TrackState
from bot.domain.rollout.words import ended_words, reason_words


def reason_text(reason: StopReason) -> str:
    """Why a track ended, as the card and thread say it."""
    return reason_words(reason, person, escape)


def check_text(check: Check) -> str:
    """What a preflight check found, as the preflight card says it (empty: nothing said)."""
    if check.confirmed_by is None:
        return check.detail
    said = f" {check.detail}" if check.detail else ""
    return f"confirmed by {person(check.confirmed_by)}{said}"


def two_person_text(refused: TwoPersonRefusal) -> str:
    """The two-person rule's refusal, naming the starter."""
    what = {
        Control.DISPATCH: f"dispatch `{refused.tag}`",
        Control.LINK_RUN: f"link a run to `{refused.tag}`",
        Control.REDEPLOY: f"redeploy over `{refused.tag}`",
        # The stage promotes itself on a PASS: its figures are the promotion.
        Control.FIGURES: f"enter the figures whose PASS promotes {refused.track} to "
        f"*{refused.stage}*",
        Control.REEVALUATE: f"re-evaluate the gate whose PASS promotes {refused.track} to "
        f"*{refused.stage}*",
    }.get(refused.control, f"promote {refused.track} to *{refused.stage}*")
    return (
        f"The plan's two-person rule: {person(refused.actor)} started `{refused.tag}`, so "
        f"another approver must {what}. Ask a second approver to click it (or type the command)."
    )


def _stays_on(reached: str | None, *, desktop: bool) -> str:
    if desktop:
        return f"The release stays on the {reached}." if reached else "No ring was reached."
    return f"Reached: {reached}." if reached else "Nothing was deployed yet."


def render(event: told.Event) -> str:
    """The thread's message for `event`."""
    match event:
        case told.RunDispatched():
            firsts = ", ".join(f"{stage} ({track})" for stage, track in event.firsts)
            run = f"<{event.run_url}|run {event.run_id}>"
            said = (
                f"{person(event.linked_by)} linked {run} of *{event.workflow}* to `{event.tag}`."
                if event.linked_by is not None
                else f"Dispatched *{event.workflow}* for `{event.tag}`{went_late(event)}: {run}."
            )
            return f"{said} Approving {firsts} as soon as GitHub waits for them."
        case told.StageApproved():
            return f"Approved *{event.stage}* ({event.track}): deploying."
        case told.ApprovalRefused():
            return approval_refused_text(event)
        case told.ReviewUnanswered():
            return review_unanswered_text(event)
        case told.StageJobFailed():
            links = ", ".join(f"<{url}|{name}>" for name, url in event.logs)
            what = "was skipped" if event.outcome is None else f"ended `{event.outcome}`"
            return (
                f":x: {event.track}: *{event.job}* {what} on GitHub. "
                f"Logs: {links or f'<{event.run_url}|the run>'}. "
                f"The track has failed; approving *{event.failure_job}* if it waits."
            )
        case told.PromotedOnGitHub():
            return promoted_on_github_text(event)
        case told.RejectedOnGitHub():
            who = escape(event.reviewer or "Someone")
            said = f" ({escape(event.comment)})" if event.comment else ""
            action = "tripping the kill-switch" if event.desktop else "rolling back"
            return (
                f":no_entry: {who} rejected *{event.stage}* ({event.track}) on GitHub{said}. "
                f"{_stays_on(event.reached, desktop=event.desktop)} {event.track}: {action}: "
                f"approving *{event.failure_job}* when it waits."
            )
        case told.StageDeployed():
            return (
                f"*{event.stage}* deployed ({event.track}). Observing for "
                f"{format_duration(event.window)}, until {slack_time(event.until)}."
            )
        case told.TrackCompleted():
            return f":white_check_mark: *{event.stage}* deployed: {event.track} is done."
        case told.LandedWhileStopping():
            what = "deployed" if event.outcome is None else f"ended `{event.outcome}`"
            return f"*{event.stage}* {what} ({event.track}); not observed: the track is stopping."
        case told.StageRejected():
            return f"Rejected *{event.stage}* ({event.track})."
        case told.FailureJobEnded() | told.FailureJobRerun():
            return failure_job_ended_text(event)
        case told.RunEnded():
            unseen = f" before *{event.unseen}* was seen to end: check it on GitHub"
            said = f"The run ended (`{event.conclusion}`){unseen if event.unseen else ''}."
            return f"{said} {event.track}: {ended_words(event.ended)}."
        case told.RolloutEnded():
            lanes = "; ".join(f"{track}: {ended_words(state)}" for track, state in event.tracks)
            return f"Rollout of `{event.tag}` ended. {lanes}."
        case told.GateMissed():
            gate = (
                "*Extend* observes longer and asks for the figures again"
                if event.manual
                else "*Re-evaluate now* runs the gate, *Extend* observes longer"
            )
            return (
                f":warning: The window of *{event.stage}* ({event.track}) ended at "
                f"{slack_time(event.due_at)}, but its gate could not run: {event.attempts} "
                f"attempts failed (last: {reason_mrkdwn(event.error)}). Holding: {gate}, "
                f"{_overrides(event.desktop)}."
            )
        case told.GatePassed():
            then = (
                f"Promoting to *{event.following}* automatically (plan: promote auto)."
                if event.auto
                else f"Holding *{event.following}* until someone clicks Promote."
                if event.frozen is None
                else auto_held_text(event.following, event.frozen)
            )
            late = judged_late(event.late)
            return f":large_green_circle: {event.stage} gate PASS ({event.figures}).{late} {then}"
        case told.GateInconclusive():
            return (
                f":large_yellow_circle: {event.stage} gate INCONCLUSIVE ({event.figures})."
                f"{judged_late(event.late)} {_inconclusive_then(event)}"
            )
        case told.GateFailed():
            action = "tripping the kill-switch" if event.desktop else "rolling back"
            return (
                f":red_circle: {event.stage} gate *{event.verdict}*: "
                f"{gate_reason_words(event.reason)} ({event.figures}).{judged_late(event.late)} "
                f"{_stays_on(event.reached, desktop=event.desktop)} "
                f"{event.track}: {action} now: rejecting the next stage and approving "
                f"*{event.failure_job}*."
            )
        case told.StagePromoted():
            how = {
                StageState.HOLDING: " (override of an INCONCLUSIVE gate)",
                StageState.PENDING: " (override: the gate never ran)",
            }.get(event.override or StageState.PASSED, "")
            return f"{person(event.actor)} promoted {event.track} to *{event.stage}*{how}."
        case told.WindowExtended():
            return (
                f"{person(event.actor)} extended the window of *{event.stage}* ({event.track}) "
                f"by {format_duration(event.by)}, until {slack_time(event.until)}."
            )
        case told.Reevaluated():
            at = f" {slack_time(event.until)}" if event.until is not None else ""
            # Judged late, its window has ended already: its gate waits for its timer, late.
            runs_on = (
                f"The window ended{' at' + at if at else ''}; the gate decides when its late "
                "timer fires."
                if event.late is not None
                else f"The window runs on{' until' + at if at else ''}; the gate decides when "
                "it ends."
            )
            return (
                f"{person(event.actor)} re-evaluated *{event.stage}* ({event.track}) while "
                f"observing: {event.verdict} ({event.figures}).{judged_late(event.late)} {runs_on}"
            )
        case told.TrackStopped():
            return (
                f":rotating_light: {event.track}: {reason_text(event.reason)}. "
                f"{_stays_on(event.reached, desktop=event.desktop)} Rejecting the next stage "
                f"and approving *{event.failure_job}*."
            )
        case told.StopUnconfirmed():
            return (
                f":rotating_light: {event.track}: {reason_text(event.reason)}. The bot could not "
                f"read the run on GitHub, so it cannot tell yet whether *{event.stage}* is "
                "deploying (GitHub cannot stop an approved job: it lands) or GitHub still holds "
                f"it (the bot's approval of it failed). The stop is saved: *{event.stage}* is "
                "not approved again. As soon as GitHub answers, the bot rejects it if it still "
                f"waits and approves *{event.failure_job}*; this thread says which."
            )
        case told.TracksLeft():
            return tracks_left_text(event)
        case told.StopPutBack():
            return stop_put_back_text(event)
        case told.RolloutCancelled():
            return f"{person(event.actor)} cancelled the rollout."
        case told.Redeploying():
            how = (
                f"as a new rollout ({event.rollout_id}): follow its preflight card"
                if event.rollout_id is not None
                else f"through *{event.workflow}*: <{event.run_url}|run {event.run_id}>"
            )
            on = f" on *{event.track}*" if event.track else ""
            still = ", ".join(f"*{label}*" for label in event.still)
            left = (
                f" Still on `{event.replaced}`: {still}; this workflow puts back *{event.track}* "
                "only (each relay-gated lane of the card offers its own roll back)."
                if still
                else ""
            )
            return (
                f":rewind: {person(event.actor)} is redeploying `{event.tag}`{on} in place of "
                f"`{event.replaced}` {how}.{left}{_roll_back_passes(event)}"
            )
        case told.DispatchGaveUp():
            return (
                f":warning: No run of the dispatch of `{event.tag}` could be identified on "
                f"GitHub within {format_duration(event.after)}. Check the runs of "
                f"*{event.workflow}* (cancel any stray run), then dispatch again, or link "
                "the run it started: `/rollout link &lt;run URL&gt;`."
            )
        case told.DispatchUnclear():
            return f":warning: {event.message}"
        case told.DispatchScheduled() | told.ScheduleHeld() | told.ScheduleCancelled():
            return schedule_event_text(event)
        case told.ScheduleFrozen():
            return held_then_text(event.held, lifted_by=event.lifted_by)
        case told.FreezeLiftedHolding() | told.FreezeEnded():
            return lane_event_text(event)
        case told.FreezeOverridden():
            return override_answer(event.actor, event.tag, event.freeze, event.reason)
        case told.GitHubReported():
            return github_reported_text(event)
        case told.WaitsOutsidePlan():
            return waits_outside_plan_text(event)
        case told.RerunNotFollowed():
            return rerun_not_followed_text(event)
        case told.ApprovalOvertaken():
            return approval_overtaken_text(event)
        case told.RejectionOvertaken():
            return rejection_overtaken_text(event)
        case told.RerunUnconfirmed():
            return rerun_unconfirmed_text(event)
        case told.RunUnreadable():
            return run_unreadable_text(event)
        case told.RunReadable():
            return run_readable_text(event)


def tracks_left_text(event: told.TracksLeft) -> str:
    """What a stop did not stop, track by track, and what to do about each."""
    stop = "Kill-switch" if event.desktop else "Roll back"
    done = "stopped" if event.desktop else "rolled back"
    head = (
        f"Not {done} by this {stop}"
        if event.actor is not None
        else f"The failed gate stops its own track only; not {done}"
    )
    lines = "\n".join(f"• {_left_line(left, event)}" for left in event.tracks)
    return f":warning: {head}:\n{lines}"


def stop_put_back_text(event: told.StopPutBack) -> str:
    """A stop put back (GitHub deploys the last stage), told to those who were answered that
    it was being done while it was decided: by name, so none walks away thinking it done."""
    stop = "Kill-switch" if event.desktop else "Roll back"
    waiting = ", ".join(person(actor) for actor in event.waiting)
    did, lines = _put_back_words(event)
    return (
        f":warning: {waiting}: the {stop} of `{event.tag}` by {person(event.actor)}, which you "
        f"were told was being done, is put back: {did}\n{lines}"
    )


def stop_put_back_answer(event: told.StopPutBack) -> str:
    """The end of "Already done by @alice at …: trip the kill-switch of `v1.4.2`" answered to
    whoever asked for a stop that was done, but put back on some of its tracks (`event`,
    whose `waiting` it ignores): which, why, what it stopped, and what to do about each."""
    back = ", ".join(f"*{left.track}*" for left in event.tracks)
    did, lines = _put_back_words(event)
    return f", put back on {back}: {did} Nothing more was done.\n{lines}"


def _put_back_words(event: told.StopPutBack) -> tuple[str, str]:
    """Why a stop is put back and what it did stop; and a line for each track put back."""
    stopped = ", ".join(f"*{label}*" for label in event.stopped)
    did = f"It stopped {stopped} only." if stopped else "Nothing was stopped."
    lines = "\n".join(f"• {_left_line(left, event)}" for left in event.tracks)
    return f"GitHub had already approved the last stage, which it cannot stop. {did}", lines


def _left_line(left: TrackLeft, event: told.TracksLeft | told.StopPutBack) -> str:
    track, tag = f"*{left.track}*", f"`{event.tag}`"
    redeploy = "click *Roll back to the previous release…* on its lane of the card"
    fix = "ship a fixed release (`/rollout start &lt;tag&gt;`)"
    match left.why:
        case Left.COMPLETED if left.redeploy:
            return f"{track} completed ({left.reached}) and stays on {tag}: to go back, {redeploy}."
        case Left.COMPLETED:
            return (
                f"{track} completed ({left.reached}) and stays on {tag}: the kill-switch cannot "
                f"take a ring back; {fix}."
            )
        case Left.LANDING:
            then = f"once it completes, {redeploy}" if not event.desktop else f"{fix} once it lands"
            return (
                f"{track} is already deploying its last stage ({left.reached}), which GitHub "
                f"cannot stop: {then}."
            )
        case Left.ENDED if left.state is TrackState.ABORTING:
            return f"{track} is already being stopped."
        case Left.ENDED:
            return f"{track} is already {ended_words(left.state)}."
    reached = f"at {left.reached}" if left.reached else "nothing deployed yet"
    stop = "*Kill-switch*" if event.desktop else "*Roll back*"
    return f"{track} keeps running ({reached}) on its own gate: click {stop} to stop it too."


def _overrides(desktop: bool) -> str:
    """What a person may do about a stage held without a verdict, with its track's stop
    button: Kill-switch on the desktop gate, Roll back on the relay one."""
    return f"Promote overrides, {'Kill-switch' if desktop else 'Roll back'} stops"


def _inconclusive_then(event: told.GateInconclusive) -> str:
    if event.extended_by is not None and event.until is not None:
        return (
            f"Window extended once by {format_duration(event.extended_by)}, "
            f"until {slack_time(event.until)}."
        )
    choices = _overrides(event.desktop)
    if event.reason is GateReason.UNUSABLE_THRESHOLD:
        return (
            "No gate decides on an unusable limit: holding for a human (check the figures: "
            f"{choices})."
        )
    if event.reason is GateReason.CLOCK_SKEW:
        return f"Holding for a human: sync the clocks, then Re-evaluate ({choices})."
    if event.reason is GateReason.UNREACHABLE_LIMIT:
        return (
            "Holding for a human: check the baseline query and the baseline's own health, then "
            f"Re-evaluate ({choices})."
        )
    return f"Not enough data for a verdict: holding for a human ({choices})."


def _roll_back_passes(event: told.Redeploying) -> str:
    """What a new rollout of the previous release passes: it is a roll back, so the freeze
    and someone else's lock in force as it started do not hold its Dispatch."""
    held = [
        *([f"{freeze_text(event.freeze)}."] if event.freeze is not None else []),
        *([f"{lock_text(event.lock)}."] if event.lock is not None else []),
    ]
    if not held:
        return ""
    what = " or ".join(
        name
        for name, on in (("the freeze", event.freeze), ("the lock", event.lock))
        if on is not None
    )
    within = format_duration(ROLL_BACK_LASTS)
    return (
        f" A roll back: not held by {what}; its Dispatch goes through within {within}, unless "
        f"a newer release goes out first. ({' '.join(held)})"
    )

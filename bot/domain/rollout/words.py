"""The rollout's states and stop reasons in words: what every edge says of them (the Slack
edge with mentions and escaped text, GitHub's comments with plain names)."""

from __future__ import annotations

from collections.abc import Callable

from bot.domain.gate import gate_reason_words
from bot.domain.rollout.state import UNKNOWN_STOP, StopKind, StopReason, Track, TrackState
from bot.domain.stored_reason import known_reason


def github_person(actor: str) -> str:
    """A person of the project's own as a comment on GitHub names them: GitHub shows text as
    it is and knows no Slack mention (in App mode the comment is all it shows of them)."""
    return f"Slack user {actor}"


def ended_words(state: TrackState) -> str:
    return {
        TrackState.COMPLETED: "completed",
        TrackState.ROLLED_BACK: "rolled back",
        TrackState.HALTED: "halted by the kill-switch",
        TrackState.FAILED: "failed",
        TrackState.CANCELLED: "cancelled",
    }.get(state, str(state))


def state_words(track: Track) -> str:
    """The track's state in words: `rolling back` while it stops, `rolled back` once done."""
    if track.state is TrackState.ABORTING:
        return {
            TrackState.ROLLED_BACK: "rolling back",
            TrackState.HALTED: "tripping the kill-switch",
        }.get(track.ending or TrackState.FAILED, "failing")
    return ended_words(track.state)


def reason_words(
    reason: StopReason,
    person: Callable[[str], str] = str,
    typed: Callable[[str], str] = str,
) -> str:
    """Why a track ended, in words; `person` names an actor of the project's own (the Slack
    edge makes it a mention, GitHub's comments `github_person`), `typed` shows a person's own
    words, kept as typed (the Slack edge escapes them). GitHub logins are named as they are."""
    who, said = _by(reason, person, typed)
    match reason.kind:
        case StopKind.CANCELLED:
            return f"cancelled by {who}"
        case StopKind.ROLLED_BACK:
            return f"rolled back by {who}{said}"
        case StopKind.KILL_SWITCH:
            return f"kill-switch by {who}{said}"
        case StopKind.GATE_FAILED:
            why = gate_reason_words(known_reason(reason.detail))
            return f"{reason.subject} gate {reason.outcome}: {why}"
        case StopKind.REJECTED_ON_GITHUB:
            return f"{reason.subject} rejected on GitHub by {reason.actor or 'Someone'}"
        case StopKind.JOB_FAILED if reason.outcome is None:
            return f"{reason.subject} was skipped"
        case StopKind.FAILURE_JOB_FAILED if reason.detail:
            stop = f"; the stop: {_stop_words(reason.cause, person, typed)}" if reason.cause else ""
            return (
                f"the release reached {reason.detail} before the stop took hold; nothing was "
                f"rolled back ({reason.subject} was skipped{stop})"
            )
        case StopKind.JOB_FAILED | StopKind.FAILURE_JOB_FAILED:
            cause = f" ({_stop_words(reason.cause, person, typed)})" if reason.cause else ""
            return f"{reason.subject} ended `{reason.outcome}`{cause}"
        case StopKind.RUN_ENDED if reason.subject:
            cause = f" ({_stop_words(reason.cause, person, typed)})" if reason.cause else ""
            return (
                f"the run ended `{reason.outcome}` before {reason.subject} was seen to end{cause}"
            )
        case StopKind.RUN_ENDED:
            return f"the run ended `{reason.outcome}` first"
        case StopKind.COMPLETED:
            return f"{reason.subject} deployed"
        case StopKind.RERUN:
            return (
                f"the run was re-run on GitHub (attempt {reason.outcome}) before the bot saw "
                "the attempt it followed end; the bot does not follow a re-run"
            )
    return reason.detail or UNKNOWN_STOP


def _stop_words(
    reason: StopReason, person: Callable[[str], str], typed: Callable[[str], str]
) -> str:
    """The stop itself (a Roll back, a Kill-switch), where the words of its intended end
    (`rolled back by`) would say something that did not happen."""
    button = {StopKind.ROLLED_BACK: "Roll back", StopKind.KILL_SWITCH: "Kill-switch"}
    if reason.kind not in button:
        return reason_words(reason, person, typed)
    who, said = _by(reason, person, typed)
    return f"{button[reason.kind]} by {who}{said}"


def _by(
    reason: StopReason, person: Callable[[str], str], typed: Callable[[str], str]
) -> tuple[str, str]:
    """Who acted (`someone` when nobody is named), and their words after a colon (or none)."""
    who = person(reason.actor) if reason.actor else "someone"
    return who, f": {typed(reason.detail)}" if reason.detail else ""

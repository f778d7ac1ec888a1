"""The thread's lines about a review of the bot's a re-run overtook on its way
(`bot.domain.rollout.overtaken`): GitHub took it, its review naming no attempt, and the
rollout ends as a re-run not followed. Names come from the plan and GitHub: escaped."""

from __future__ import annotations

from bot.adapters.slack.github_words import rerun_ended
from bot.adapters.slack.mrkdwn import escape
from bot.domain.rollout.events import ApprovalOvertaken, RejectionOvertaken


def approval_overtaken_text(event: ApprovalOvertaken) -> str:
    """The run was re-run while the bot's approval was on its way, and GitHub took it: it may
    have approved the new attempt's job there, unwatched; the rollout ends, and what to do.
    One still waiting there waits for another of its protection rules, if the approval reached
    it (an approval that did not is told as a plain re-run)."""
    rerun = event.rerun
    before, run, tracks = rerun_ended(rerun)
    where = f"`{escape(event.environment)}`"
    if event.waits:
        now = (
            f"Attempt {rerun.attempt}'s job at {where} still waits, for its other protection "
            "rules if the approval reached it: reject it or cancel the run"
        )
    else:
        now = (
            f"Attempt {rerun.attempt}'s job at {where} no longer waits: if it should not "
            "deploy, cancel the run"
        )
    return (
        f":warning: {run} was re-run on GitHub (attempt {rerun.attempt}) while the bot's "
        f"approval of *{escape(event.what)}* ({escape(event.track)}), decided on attempt "
        f"{before}, was on its way. GitHub took it, and its review names no attempt: it may "
        f"have approved {where} on attempt {rerun.attempt}, which no gate of the bot's "
        "watched. The bot does not follow a re-run, so this rollout ends here"
        f"{': ' + tracks if tracks else ''}. {now} on GitHub (the run's page shows who "
        f"approved what), and start a new rollout with `/rollout start {rerun.tag}`."
    )


def rejection_overtaken_text(event: RejectionOvertaken) -> str:
    """The run was re-run while the bot's rejection of a stopped track's stage was on its way,
    and GitHub took it on the attempt the rollout followed: the new attempt's job there waited
    again (rejected by the bot too, or not) or went past it, and what else of it waits for the
    bot; the rollout ends, and what to do."""
    rerun = event.rerun
    before, run, tracks = rerun_ended(rerun)
    where = f"`{escape(event.environment)}`"
    job = f"Attempt {rerun.attempt}'s job at {where}"
    if event.waits and event.rejected:
        now = (
            f"{job} waited there again: the track being stopped, the bot rejected it on "
            f"attempt {rerun.attempt} as well."
        )
    elif event.waits:
        # Not sent (a person answered it first, or a later re-run), or GitHub failed it (one
        # whose answer was lost and not read back may have been taken): the run's page shows.
        now = (
            f"{job} waited there again, and the bot could not confirm its rejection of it on "
            f"attempt {rerun.attempt} (it no longer waited, or GitHub failed it): reject it if "
            "it still waits; if it went past it, cancel the run on GitHub (it deploys what the "
            "stop meant to stop)."
        )
    else:
        now = (
            f"{job} went past it: it deploys (or deployed) what the stop meant to stop. "
            "Cancel the run on GitHub, and see the run's page for where the release is."
        )
    # What else of the new attempt waits (a stopped track's rollback or kill-switch job, its
    # run on the old attempt cancelled by the re-run), which nothing of the bot's answers.
    others = [name for name in rerun.waiting if name.casefold() != event.environment.casefold()]
    if others:
        waits = ", ".join(f"`{escape(name)}`" for name in others)
        now += (
            f" Attempt {rerun.attempt} waits at {waits} too, for the bot's answer, which does "
            "not come: answer it or cancel the run on GitHub."
        )
    return (
        f":warning: {run} was re-run on GitHub (attempt {rerun.attempt}) while the bot's "
        f"rejection of *{escape(event.what)}* ({escape(event.track)}, stopped), decided on "
        f"attempt {before}, was on its way: GitHub took it, and its review names no attempt. "
        f"{now} The bot does not follow a re-run, so this rollout ends here"
        f"{': ' + tracks if tracks else ''}. Where each track ended in attempt {before} (its "
        "rollback, its kill-switch) is on the run's page. Start a new rollout with "
        f"`/rollout start {rerun.tag}` if the release should go on."
    )

"""The thread's lines about what GitHub reports of a run: its deliveries, a job that waits for
the bot's answer (the App's rule, or its account's review) where the plan has no stage, a
track's failure job's end, a stage that went on on GitHub, and a run GitHub does not let the
bot read. Names, comments and
answers come from GitHub: they are escaped, so a `<!channel>` in a job's name or a reviewer's
comment reads as typed instead of notifying the channel.
"""

from __future__ import annotations

from datetime import timedelta

from bot.adapters.slack.mrkdwn import escape, person, slack_time
from bot.domain.durations import format_duration
from bot.domain.github_events import GitHubReported
from bot.domain.rollout.events import (
    ApprovalRefused,
    FailureJobEnded,
    FailureJobRerun,
    PromotedOnGitHub,
    RerunNotFollowed,
    RerunUnconfirmed,
    ReviewUnanswered,
    RunReadable,
    RunUnreadable,
    WaitsOutsidePlan,
)
from bot.domain.rollout.state import StageState, TrackState
from bot.domain.rollout.words import ended_words


def failure_job_ended_text(event: FailureJobEnded | FailureJobRerun) -> str:
    """A track's failure job ended; one that did not succeed rolled back nothing for sure, so
    the line says where the release may still be (the rollback) or stays (the kill-switch).
    Or it was re-run (`failure_job_rerun_text`)."""
    if isinstance(event, FailureJobRerun):
        return failure_job_rerun_text(event)
    link = f" <{event.url}|logs>" if event.url else ""
    said = f"{link} {event.track}: {ended_words(event.ended)}."
    if event.outcome is None:
        return f"*{event.job}* finished.{said}"
    if event.outcome == "skipped" and event.ended is not TrackState.FAILED:
        # Skipped while nothing of the track had deployed (`bot.domain.rollout.stopping`).
        took = "halt" if event.desktop else "roll back"
        return (
            f"*{event.job}* was skipped on GitHub:{link} nothing of {event.track} had been "
            f"deployed, so there was nothing to {took}. {event.track}: "
            f"{ended_words(event.ended)}: nothing was deployed."
        )
    left = ""
    if event.landed:
        left = (
            f" It never ran: {event.track} reached *{event.reached}* before the stop took hold; "
            "nothing was rolled back."
        )
    elif event.desktop:
        on = f"stays on the {event.reached}" if event.reached else "reached no ring"
        left = f" The release {on}{': its next ring was rejected' if event.rejected else ''}."
    elif event.outcome == "skipped":
        # GitHub skips an `if: failure()` job when nothing failed (a stop that rejected nothing:
        # its last stage was approved first) or the run was cancelled: it rolled back nothing.
        on = f"is on *{event.reached}*" if event.reached else "reached no stage"
        left = f" It never ran: nothing was rolled back, {event.track} {on}."
    elif event.reached is not None:
        left = (
            f" The rollback did not finish: {event.track} may still be on *{event.reached}*. "
            "Finish it on GitHub (its logs say what stopped it)."
        )
    return f":x: *{event.job}* ended `{escape(event.outcome)}`.{said}{left}"


def failure_job_rerun_text(event: FailureJobRerun) -> str:
    """A person re-ran the failure job that failed: the attempt GitHub runs it in, and what
    the bot does with it (approves its environment, follows it to its end)."""
    run = f"<{event.run_url}/attempts/{event.attempt}|attempt {event.attempt}>"
    if not event.run_url:
        run = f"attempt {event.attempt}"
    if event.lane_taken_by:
        return (
            f":warning: {person(event.actor)} re-ran *{event.job}* on GitHub: it runs again as "
            f"{run} of the run, but `{escape(event.lane_taken_by)}` started on {event.track} "
            "meanwhile, so this rollout does not follow that attempt and the bot approves "
            f"nothing of it. On GitHub, *{event.job}* waits for its environment's approval: "
            f"reject it, unless taking `{escape(event.lane_taken_by)}` back is meant."
        )
    where = ""
    if event.reached:
        on = "stays on the" if event.desktop else "may still be on"
        where = f" Until it ends, {event.track} {on} *{event.reached}*."
    if event.sent_before:
        return (
            f":repeat: The re-run of *{event.job}* the bot sent before for {person(event.actor)} "
            f"(it could not record it then) is {run} of the run; the bot follows it now, and "
            f"approves its environment as it did the first time. {event.track} is stopping "
            f"again.{where}"
        )
    return (
        f":repeat: {person(event.actor)} re-ran *{event.job}* on GitHub: it runs again as "
        f"{run} of the run, and the bot approves its environment as it did the first time. "
        f"{event.track} is stopping again.{where}"
    )


def rerun_unconfirmed_text(event: RerunUnconfirmed) -> str:
    """The bot does not know whether GitHub took the re-run of the failure job: what is known,
    what the bot does (and does not) do, and what a person may do meanwhile."""
    job = escape(event.job)
    run = f"<{event.run_url}|the run's page>" if event.run_url else "the run's page on GitHub"
    asked = f"asked GitHub to re-run *{job}* for {person(event.actor)}"
    if event.why == "interrupted":
        known = (
            f"The bot stopped (a restart) just after it {asked}: it does not know whether "
            "GitHub did."
        )
    elif event.why == "unread":
        known = (
            f":warning: GitHub did not answer clearly when the bot {asked}, and the run could "
            "not be read back: GitHub may have re-run it."
        )
    else:
        known = (
            f":warning: GitHub did not answer clearly when the bot {asked}, and the run still "
            f"shows attempt {event.attempt}: GitHub may still re-run it (a request it took "
            "late), or never."
        )
    yourself = (
        f"You may re-run *{job}* yourself on {run} instead: the bot does not follow an "
        "attempt made there, so approve its environment there and watch it to its end."
    )
    if event.again_after is None:
        does = (
            "The bot does not ask GitHub again and follows no new attempt: look at "
            f"{run}. If *{job}* runs again there, approve its environment there."
        )
        yourself = "If it does not, re-run it there yourself and watch it to its end."
    else:
        does = (
            f"The bot does not ask GitHub again on its own. Click *Re-run "
            f"{'kill-switch' if event.desktop else 'rollback'}* again after "
            f"{slack_time(event.again_after)}: the bot then looks at the run first, follows the "
            "attempt it sent if GitHub made it, or else asks for it."
        )
    where = ""
    if event.reached:
        on = "stays on the" if event.desktop else "may still be on"
        where = f" Until then, {event.track} {on} *{event.reached}*."
    return f"{known} {does} {yourself}{where}"


def github_reported_text(told: GitHubReported) -> str:
    """What GitHub reported of the run (a delivery), for the `all` notification level."""
    event = told.event
    job = f"*{escape(event.job)}*" if event.job else "A job"
    environment = f"`{escape(event.environment)}`" if event.environment else "an environment"
    outcome = f"`{escape(event.outcome or 'unknown')}`"
    if event.event == "workflow_job":
        if event.action == "waiting":
            of = f"`{escape(told.environment)}`" if told.environment else "its environment"
            return f"GitHub: {job} is waiting for approval of {of}."
        return {
            "queued": f"GitHub: {job} queued.",
            "in_progress": f"GitHub: {job} started.",
        }.get(event.action, f"GitHub: {job} finished: {outcome}.")
    if event.event == "workflow_run":
        return {
            "requested": "GitHub: the run was requested.",
            "in_progress": "GitHub: the run is in progress.",
        }.get(event.action, f"GitHub: the run completed: {outcome}.")
    if event.event == "deployment":
        return f"GitHub: deployment to {environment} created."
    if event.event == "deployment_status":
        return f"GitHub: deployment to {environment} is {outcome}."
    if event.event == "deployment_protection_rule":
        return f"GitHub: {environment} is waiting for the bot's protection rule."
    if event.action == "requested":
        return f"GitHub: {environment} is waiting for a reviewer."
    review = event.reviews[0]
    said = f" ({escape(review.comment)})" if review.comment else ""
    return f"GitHub: {escape(review.reviewer)} {escape(event.action)} {environment}{said}."


def waits_outside_plan_text(event: WaitsOutsidePlan) -> str:
    """A job waits at an environment the plan does not name, for the bot's answer that never
    comes (the App's rule, or the review of the bot's account, whose mail nobody reads): say
    so, and what a person can do."""
    name = f"`{escape(event.environment)}`"
    run = f"<{event.run_url}|run {event.run_id}>"
    admin = "a repository admin can start the waiting job past its protection rules, or cancel"
    if event.by_review:
        waits = "for the bot's review (its account is a required reviewer there)"
        who = f"another of its required reviewers can approve or reject it, {admin} the run"
        off = "take the bot's account off its required reviewers"
    else:
        waits = "for the bot's protection rule"
        who = f"{admin} the run"
        off = "take the bot's rule off it"
    return (
        f":warning: A job of {run} waits at {name} {waits}, but the plan does not name "
        f"{name}, so the bot neither approves nor rejects it: the job waits on GitHub until "
        f"someone acts. Answer it on the run's page ({who}), or add {name} to the plan (or "
        f"{off}) for the next rollouts."
    )


def approval_refused_text(event: ApprovalRefused) -> str:
    """GitHub refused the approval the thread was told of ("Approved … deploying"), or the
    rejection ("Rejected …") of a stopping track: what GitHub said, that nothing deploys there
    yet (or that the stop waits on it), what the bot does and what a person can do."""
    review, verb, held, run = _held(event.rejected, event.run_url)
    return (
        f":warning: GitHub refused the bot's {review} of *{escape(event.what)}* "
        f"({escape(event.track)}): {escape(event.cause)} {held} Fix what GitHub answered, or "
        f"{_by_hand(event, verb, run)}."
    )


def review_unanswered_text(event: ReviewUnanswered) -> str:
    """GitHub has failed, without refusing it, the approval (rejection) the thread was told
    of, for a while: since when, its last answer, what that holds up, what a person can do."""
    review, verb, held, run = _held(event.rejected, event.run_url)
    return (
        f":warning: GitHub has not taken the bot's {review} of *{escape(event.what)}* "
        f"({escape(event.track)}) since {slack_time(event.since)}: it fails it each time "
        f"(last: {escape(event.cause)}). {held} Check https://www.githubstatus.com, or "
        f"{_by_hand(event, verb, run)}."
    )


def _by_hand(event: ApprovalRefused | ReviewUnanswered, verb: str, run: str) -> str:
    """What a person can do on the run's page meanwhile: a required reviewer's review, or,
    where the App's protection rule holds the environment (which no person answers), an
    admin's start of the job past it, or a cancel of the run."""
    if not event.by_rule:
        reviewers = "have one of the environment's required reviewers"
        return f"{reviewers} {verb} it on the run's page ({run})"
    if event.rejected:
        return (
            f"cancel the run on its page ({run}): only the bot's App answers its protection "
            "rule, and the failure job does not run then (roll back by hand)"
        )
    return (
        "have a repository admin start the waiting job past its protection rules on the "
        f"run's page ({run}): only the bot's App answers its rule there"
    )


def _held(rejected: bool, run_url: str | None) -> tuple[str, str, str, str]:
    """The review's name, its verb, what GitHub's holding it holds up and that the bot asks
    again (a sentence), and the run's link."""
    run = f"<{run_url}|the run>" if run_url else "the run"
    review, verb = ("rejection", "reject") if rejected else ("approval", "approve")
    held = (
        "GitHub still holds it there, so the track's failure job (its rollback or kill-switch) "
        "cannot start until GitHub takes a rejection"
        if rejected
        else "It does not deploy until GitHub takes an approval"
    )
    asks = "the bot asks again at each look at the run (and says no more of it here)."
    return review, verb, f"{held}: {asks}", run


def run_unreadable_text(event: RunUnreadable) -> str:
    """GitHub has not let the bot read the run for a while: since when, why, what the bot
    still does and cannot do, and what a person can do meanwhile."""
    run = f"<{event.run_url}|the run>" if event.run_url else "the run"
    if event.rate_limited:
        todo = (
            "Wait for GitHub's rate limit to reset, or find what else spends the requests of "
            "the bot's token (or of its App installation)"
        )
    else:
        todo = (
            "Check https://www.githubstatus.com and the bot's GitHub credentials (the token, "
            "or the App's installation on the repository's owner), as GitHub's answer says"
        )
    return (
        f":warning: The bot cannot read {run} on GitHub since {slack_time(event.since)}. "
        f"GitHub's last answer: {escape(event.cause)}\n"
        "It keeps trying at every poll. Observation windows still end on time and their gates "
        "still evaluate on the metrics, but until GitHub answers the bot cannot approve or "
        "reject a stage (a promotion or a rollback does not reach the run) and does not see "
        f"what the run does. {todo}; a stage that must move meanwhile can be approved or "
        "rejected on the run's page on GitHub. This thread is told when the bot reads the run "
        "again."
    )


def run_readable_text(event: RunReadable) -> str:
    """The run is read again after the thread was told it could not be."""
    unread = timedelta(seconds=int((event.back_at - event.since).total_seconds()))
    return (
        f":white_check_mark: The bot reads the run on GitHub again (since "
        f"{slack_time(event.back_at)}, after {format_duration(unread)} "
        "without an answer): it follows, approves and rejects as before."
    )


def rerun_not_followed_text(event: RerunNotFollowed) -> str:
    """The run was re-run before the bot saw the attempt it followed end: the rollout ends,
    each track where it was last seen, and nothing approves the new attempt's waits."""
    before, run, tracks = rerun_ended(event)
    waits = ", ".join(f"`{escape(name)}`" for name in event.waiting)
    waiting = (
        f"Attempt {event.attempt} waits at {waits} for the bot's answer, which does not come: "
        if waits
        else f"Attempt {event.attempt} is not answered by the bot: when it waits for it, "
    )
    return (
        f":warning: {run} was re-run on GitHub (attempt {event.attempt}) before the bot saw "
        f"attempt {before} end. The bot does not follow a re-run, so this rollout ends here"
        f"{': ' + tracks if tracks else ''}. Where each track ended in attempt {before} (its "
        f"rollback, its kill-switch) is on the run's page. {waiting}reject it or cancel the run "
        "on GitHub (with the GitHub App, the run's card in the release channel offers Adopt or "
        f"Reject), and start a new rollout with `/rollout start {event.tag}`."
    )


def rerun_ended(event: RerunNotFollowed) -> tuple[int, str, str]:
    """The attempt the rollout followed, the run's link, and where each track ended."""
    run = f"<{event.run_url}|run {event.run_id}>"
    tracks = "; ".join(
        f"{track}: failed, last seen at *{reached}*"
        if reached
        else f"{track}: failed, nothing seen deployed"
        for track, reached in event.tracks
    )
    return event.attempt - 1, run, tracks


def promoted_on_github_text(event: PromotedOnGitHub) -> str:
    """The thread's line when the stage after a held one went on GitHub: approved by a
    reviewer, started past its protection rules by an admin, or started without the bot."""
    if event.held is StageState.OBSERVING:
        held = f"the window of {event.stage} is stopped before its gate"
    elif event.held is StageState.EVALUATING:
        held = f"the gate of {event.stage} is skipped"
    else:
        held = f"the hold after {event.stage} ends"
    if event.reviewer is not None:
        what = f"{event.reviewer} approved *{event.following}* ({event.track}) on GitHub"
    elif event.bypassed:
        what = (
            f"*{event.following}* ({event.track}) was started on GitHub by a repository admin "
            "past its protection rules, not let through by the bot's gate (the bot's protection "
            "rule was never answered, and the bot will not answer it now)"
        )
    elif event.late_minutes:
        what = (
            f"*{event.following}* ({event.track}) started on GitHub at least {event.late_minutes} "
            f"minute{'' if event.late_minutes == 1 else 's'} after the bot's approval was sent, "
            "whose reply from GitHub the bot never saw: the approval may not have reached "
            "GitHub, and a repository admin may have started it past its protection rules"
        )
    elif event.by_bot:
        what = (
            f"*{event.following}* ({event.track}) started on GitHub on the bot's own approval, "
            "whose reply from GitHub the bot had not seen"
        )
    else:
        what = f"*{event.following}* ({event.track}) started on GitHub without the bot"
    return f":white_check_mark: {what}: {held}. Deploying."
